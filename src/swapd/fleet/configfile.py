"""A config file edited in place: ruamel round-trip (comments, key order, quotes and indentation
kept), every comment around a model entry kept when one is added or removed, and
:meth:`ConfigFile.save`, the one way every config edit (``swapd recipes add | remove``,
``swapd files add-model --write``, their admin API routes) is written: the edited text is loaded
by swapd's own loader (with the config's other files) first, and only a text that loads is
written, atomically (temp file + rename in the same folder), the previous text left in
``<file>.bak`` for :func:`restore`. The server serializes its edits and the reload that applies
each (:mod:`swapd.proxy.fleet.edits`).

Round-trip ruamel hangs the comment lines that follow a mapping item on that item's last value,
so the comments *above* the next entry (or below the ``models:`` block) belong to the entry
before them. :func:`add_entry` and :func:`remove_entry` move those lines to the entry that now
comes before them; lines indented deeper than the entry's key stay with their entry.
"""

from __future__ import annotations

import copy
import io
import os
import shutil
import tempfile
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedBase, CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark, YAMLError
from ruamel.yaml.tokens import CommentToken

from swapd.config.loader import load_sources
from swapd.config.source import Source
from swapd.errors import ConfigError, RequestError
from swapd.extensions import standard

Tail = tuple[CommentedBase, Hashable, int]  # the holder of a trailing comment: container, key, slot


class InvalidEdit(RequestError):
    """The edited config would not load: nothing was written (the message lists the issues)."""

    code = "invalid_config"
    exit_code = 2

    def __init__(self, path: Path, error: ConfigError) -> None:
        lines = "\n".join(str(issue) for issue in error.issues)
        super().__init__(f"{path} left unchanged: the edited config would not load:\n{lines}")


class ConfigFile:
    """One YAML config file, loaded for round-trip editing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise RequestError(f"cannot read {path}: {reason}") from None
        mapping, sequence, offset = _indents(self.text)
        self.yaml = YAML(typ="rt")
        self.yaml.preserve_quotes = True
        self.yaml.width = 4096  # never re-wrap a long line
        self.yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
        try:
            root = self.yaml.load(self.text)
        except YAMLError as exc:
            raise RequestError(f"{path}: not valid YAML, fix it first: {exc}") from None
        if root is None:
            root = CommentedMap()
        if not isinstance(root, CommentedMap):
            raise RequestError(f"{path}: the top level is not a mapping (key: value)")
        self.root = root

    def models(self, create: bool = False) -> CommentedMap | None:
        """The top-level ``models:`` mapping (made when ``create`` and missing or empty)."""
        models = self.root.get("models")
        if isinstance(models, CommentedMap):
            return models
        if models is not None:
            raise RequestError(f"{self.path}: models: is not a mapping of model id to settings")
        if create:
            self.root["models"] = CommentedMap()
            return self.root["models"]  # type: ignore[no-any-return]
        return None

    def dump(self) -> str:
        out = io.StringIO()
        self.yaml.dump(self.root, out)
        return out.getvalue()

    def save(self, others: Sequence[str] = ()) -> Path:
        """Write the edited file if swapd would load it (with the config's ``others``), else
        raise :class:`InvalidEdit` and leave it as it was; returns the backup's path."""
        text = self.dump()
        check(self.path, text, others)
        return self._write(text)

    def _write(self, text: str) -> Path:
        """Replace the file by ``text`` atomically; the old text goes to ``<file>.bak``."""
        target = self.path.resolve()  # a symlinked config stays a symlink
        backup = target.with_name(target.name + ".bak")
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            shutil.copymode(target, tmp)
            shutil.copy2(target, backup)
            os.replace(tmp, target)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise RequestError(f"cannot write {target}: {exc.strerror or exc}") from exc
        return backup


@dataclass(frozen=True, slots=True)
class Change:
    """What an edit did: for the CLI's message and the API's answer."""

    action: str  # added | replaced | removed
    model_id: str
    file: str
    backup: str
    entry: dict[str, Any] = field(default_factory=dict)  # as written (empty when removed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "id": self.model_id,
            "file": self.file,
            "backup": self.backup,
            "entry": self.entry,
        }


def check(path: Path, text: str, others: Sequence[str] = ()) -> None:
    """Load ``text`` as ``path`` (with the config's ``others``) as swapd would."""
    sources = [Source(str(path), text)]
    for other in others:
        try:
            sources.append(Source(other, Path(other).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue  # an unreadable other file: the server reports it on reload
    try:
        load_sources(sources, env=os.environ, extensions=standard())
    except ConfigError as exc:
        raise InvalidEdit(path, exc) from None


def restore(path: Path, backup: Path) -> None:
    """Put back the text from before :meth:`ConfigFile.save` (a reload rejected the new one)."""
    backup.replace(path.resolve())


def _indents(text: str) -> tuple[int, int, int]:
    """The file's block indentation as ruamel's ``indent()`` takes it: a nested mapping's
    step, a block sequence's (dash offset + 2) and its dash offset; from the first of each."""
    mapping = sequence = offset = None
    opener: int | None = None  # the indent of a ``key:`` line that opens a block
    for line in text.split("\n"):
        body = line.strip()
        if not body or body.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        if opener is not None and indent >= opener:
            if body.startswith("- ") and sequence is None:
                offset = indent - opener
                sequence = offset + 2
            elif not body.startswith("-") and mapping is None and indent > opener:
                mapping = indent - opener
        opener = indent if body.endswith(":") and not body.startswith("-") else None
        if mapping is not None and sequence is not None:
            break
    mapping = mapping or 2
    return mapping, sequence or mapping, offset or 0


def add_entry(models: CommentedMap, model_id: str, entry: CommentedMap) -> None:
    """``entry`` as the last model, after the comments that end the entry before it."""
    moved = _take_following(models, list(models)[-1]) if len(models) else ""
    models[model_id] = entry
    if moved:
        _append(_tail(models, model_id), moved)


def replace_entry(models: CommentedMap, model_id: str, entry: CommentedMap) -> None:
    """``entry`` in place of ``model_id``'s, where it was, the comments after it kept."""
    moved = _take_following(models, model_id)
    models[model_id] = entry
    if moved:
        _append(_tail(models, model_id), moved)


def remove_entry(models: CommentedMap, model_id: str) -> None:
    """``model_id`` gone with the comments inside it; those after it stay where they were."""
    keys = list(models)
    moved = _take_following(models, model_id)
    index = keys.index(model_id)
    del models[model_id]
    if not moved:
        return
    if index > 0:
        _append(_tail(models, keys[index - 1]), moved)
    elif len(models):  # the first entry: the lines go above the new first key
        column = models.lc.key(keys[0])[1]
        lines = [line.strip().removeprefix("#").removeprefix(" ") for line in moved.split("\n")]
        before = "\n".join(line for line in lines if line)
        models.yaml_set_comment_before_after_key(keys[1], before=before, indent=column)
    # an emptied models: keeps no trailing comment (ruamel would print it as `models: {}`)


def _tail(container: CommentedBase, key: Hashable) -> Tail:
    """Where the comment after the item ``key`` of ``container`` lives: the deepest last item
    of a block collection, or the item itself (a scalar or a flow collection)."""
    while True:
        value = container[key]  # type: ignore[index]
        if isinstance(value, CommentedMap | CommentedSeq) and len(value) and not _flow(value):
            container = value
            key = list(value)[-1] if isinstance(value, CommentedMap) else len(value) - 1
            continue
        return container, key, 2 if isinstance(container, CommentedMap) else 0


def _flow(value: CommentedMap | CommentedSeq) -> bool:
    return bool(value.fa.flow_style())


def _take_following(models: CommentedMap, model_id: str) -> str:
    """Cut, from the comment after ``model_id``'s entry, the lines that are not inside it (as
    deep as its key or less) and return them, each line ending in a newline."""
    holder, key, slot = _tail(models, model_id)
    items: dict[Any, list[Any]] = holder.ca.items
    token = items.get(key, [None] * 4)[slot]
    if token is None or "\n" not in token.value:
        return ""
    head, _, rest = token.value.partition("\n")
    column = models.lc.key(model_id)[1] if model_id in (models.lc.data or {}) else 0
    lines = rest.split("\n")
    cut = next(
        (
            i
            for i, line in enumerate(lines)
            if line.strip() and len(line) - len(line.lstrip()) <= column
        ),
        len(lines),
    )
    inside, following = lines[:cut], lines[cut:]
    if not "".join(following).strip():
        return ""
    kept = head + "\n" + "\n".join(inside)
    if not kept.strip():
        items[key][slot] = None
    else:
        token.value = kept if kept.endswith("\n") else kept + "\n"
    return "\n".join(following)


def _append(tail: Tail, lines: str) -> None:
    """Add comment ``lines`` after the item at ``tail``."""
    holder, key, slot = tail
    items: dict[Any, list[Any]] = holder.ca.items
    entry = items.setdefault(key, [None] * 4)
    token = entry[slot]
    if token is None:
        entry[slot] = CommentToken("\n" + lines, CommentMark(0))
    else:
        token = copy.copy(token)
        token.value = token.value.rstrip("\n") + "\n" + lines
        entry[slot] = token
