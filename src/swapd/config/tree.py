"""Positioned YAML nodes: the loader's working copy of a config, independent of ruamel.

Every node remembers the file, line and column (1-based) it was written at, and mappings also
remember where each key was written, so any problem found later (after merging files, expanding
macros or validating types) points at the text the user wrote. Anchors and aliases are
materialised: each use becomes its own node, so per-model macro expansion sees separate copies.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from ruamel.yaml.comments import CommentedMap, CommentedSeq

Path: TypeAlias = tuple[str | int, ...]
ColMap: TypeAlias = Callable[[int, int], int]  # (0-based line, 0-based col) -> original col


@dataclass(frozen=True, slots=True)
class Pos:
    file: str
    line: int  # 1-based
    col: int  # 1-based


@dataclass(slots=True)
class Scalar:
    value: Any  # str | int | float | bool | None
    pos: Pos
    end: int = 0  # last source line this value may span (0 = only its own line)


@dataclass(slots=True)
class MapNode:
    pos: Pos
    items: dict[str, Node] = field(default_factory=dict)
    keys: dict[str, Pos] = field(default_factory=dict)

    def get(self, key: str) -> Node | None:
        return self.items.get(key)

    def key_pos(self, key: str) -> Pos:
        return self.keys.get(key, self.pos)

    def put(self, key: str, node: Node, key_pos: Pos | None = None) -> None:
        self.items[key] = node
        self.keys[key] = key_pos or node.pos

    def pop(self, key: str) -> Node | None:
        self.keys.pop(key, None)
        return self.items.pop(key, None)


@dataclass(slots=True)
class SeqNode:
    pos: Pos
    items: list[Node] = field(default_factory=list)


Node: TypeAlias = Scalar | MapNode | SeqNode


def kind(node: Node) -> str:
    if isinstance(node, MapNode):
        return "a mapping"
    if isinstance(node, SeqNode):
        return "a list"
    return "null" if node.value is None else "a scalar"


def scalar_value(obj: Any) -> Any:
    """A plain Python scalar for a ruamel scalar (ScalarFloat, LiteralScalarString, …)."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, datetime.date):
        return obj.isoformat()
    value = getattr(obj, "value", None)  # TaggedScalar
    return str(value if value is not None else obj)


def key_text(key: Any) -> str:
    """Map keys are strings (as Go decodes them into map[string]…)."""
    value = scalar_value(key)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def convert(data: Any, file: str, colmap: ColMap, last_line: int) -> Node:
    """Turn a ruamel round-trip document into positioned nodes."""

    def pos(line: int, col: int) -> Pos:
        return Pos(file, line + 1, colmap(line, col) + 1)

    def conv(obj: Any, at: Pos, end: int) -> Node:
        if isinstance(obj, CommentedMap):
            node = MapNode(at)
            keys = list(obj.keys())
            lines = [obj.lc.data[k][0] + 1 if k in obj.lc.data else None for k in keys]
            for i, k in enumerate(keys):
                lc = obj.lc.data.get(k)
                kpos, vpos = (pos(lc[0], lc[1]), pos(lc[2], lc[3])) if lc else (at, at)
                if obj[k] is None:
                    vpos = kpos  # ruamel places an empty value at the next token
                nxt = next((n for n in lines[i + 1 :] if n is not None), end + 1)
                node.put(key_text(k), conv(obj[k], vpos, max(nxt - 1, vpos.line)), kpos)
            return node
        if isinstance(obj, CommentedSeq):
            seq = SeqNode(at)
            for i, item in enumerate(obj):
                lc = obj.lc.data.get(i)
                ipos = pos(lc[0], lc[1]) if lc else at
                nxt_lc = obj.lc.data.get(i + 1)
                nxt = nxt_lc[0] + 1 if nxt_lc else end + 1
                seq.items.append(conv(item, ipos, max(nxt - 1, ipos.line)))
            return seq
        return Scalar(scalar_value(obj), at, end)

    return conv(data, Pos(file, 1, 1), last_line)


def to_plain(node: Node) -> Any:
    if isinstance(node, MapNode):
        return {k: to_plain(v) for k, v in node.items.items()}
    if isinstance(node, SeqNode):
        return [to_plain(v) for v in node.items]
    return node.value


def lookup(root: Node, path: Path) -> Node | None:
    node: Node | None = root
    for part in path:
        if isinstance(node, MapNode) and isinstance(part, str):
            node = node.get(part)
        elif isinstance(node, SeqNode) and isinstance(part, int) and 0 <= part < len(node.items):
            node = node.items[part]
        else:
            return None
    return node


def locate(root: Node, path: Path, *, key: bool = False) -> Pos:
    """Where ``path`` was written: its value (or its key), else its nearest written ancestor."""
    node: Node = root
    where = root.pos
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, MapNode) and isinstance(part, str) and part in node.items:
            where = node.key_pos(part) if (last and key) else node.items[part].pos
            node = node.items[part]
        elif isinstance(node, SeqNode) and isinstance(part, int) and 0 <= part < len(node.items):
            node = node.items[part]
            where = node.pos
        elif not isinstance(part, str) or not isinstance(node, MapNode):
            break  # a pydantic union tag or a bad index: keep the nearest position
    return where


def scalars(node: Node, path: Path = ()) -> Iterator[tuple[Path, Scalar]]:
    """Every scalar below ``node`` with its path (map keys are not scalars here)."""
    if isinstance(node, MapNode):
        for k, v in node.items.items():
            yield from scalars(v, (*path, k))
    elif isinstance(node, SeqNode):
        for i, v in enumerate(node.items):
            yield from scalars(v, (*path, i))
    else:
        yield path, node


def dotted(path: Path) -> str:
    return ".".join(str(p) for p in path)
