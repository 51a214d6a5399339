"""Merging several config files into one document (llama-swap's ``-config-dir`` rules).

- Children of identity maps (``models``, ``groups``, ``routing.router.settings.groups``, …)
  may be defined in one file only: a second definition is an error naming both files.
- mapping + mapping merges recursively; list + list concatenates.
- scalar + scalar is an error unless both are equal (same value and type).
- null yields to non-null; any other kind mismatch is an error.
"""

from __future__ import annotations

from swapd.config.issues import Issues
from swapd.config.tree import MapNode, Node, Path, Scalar, SeqNode, dotted, kind

IDENTITY_MAPS: frozenset[Path] = frozenset(
    {
        ("models",),
        ("groups",),
        ("profiles",),
        ("selectors",),
        ("peers",),
        ("matrix",),
        ("routing", "router", "settings", "groups"),
        ("routing", "router", "settings", "matrix"),
    }
)


def _where(node: Node) -> str:
    return f"{node.pos.file}:{node.pos.line}"


def merge(a: Node, b: Node, path: Path, issues: Issues) -> Node:
    """``b`` (a later file) merged into ``a``; ``a`` is updated in place when it is a mapping."""
    if isinstance(b, Scalar) and b.value is None:
        return a
    if isinstance(a, Scalar) and a.value is None:
        return b
    if isinstance(a, MapNode) and isinstance(b, MapNode):
        identity = path in IDENTITY_MAPS
        for key, value in b.items.items():
            if key not in a.items:
                a.put(key, value, b.key_pos(key))
            elif identity:
                issues.error(
                    b.key_pos(key),
                    f'duplicate {dotted(path)} "{key}" found in {b.key_pos(key).file} '
                    f"and {a.key_pos(key).file}",
                )
            else:
                a.items[key] = merge(a.items[key], value, (*path, key), issues)
        return a
    if isinstance(a, SeqNode) and isinstance(b, SeqNode):
        a.items.extend(b.items)
        return a
    if isinstance(a, Scalar) and isinstance(b, Scalar):
        if type(a.value) is not type(b.value) or a.value != b.value:
            issues.error(
                b.pos,
                f"conflicting values for '{dotted(path)}': {b.value!r} here, "
                f"{a.value!r} in {_where(a)}",
            )
        return a
    issues.error(b.pos, f"cannot merge '{dotted(path)}': {kind(b)} here, {kind(a)} in {_where(a)}")
    return a


def merge_all(docs: list[MapNode], issues: Issues) -> MapNode | None:
    if not docs:
        return None
    root = docs[0]
    for doc in docs[1:]:
        merge(root, doc, (), issues)
    return root
