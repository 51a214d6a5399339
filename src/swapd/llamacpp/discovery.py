"""GGUF discovery: every ``*.gguf`` under ``modelsDir.paths`` (or ``--models-dir``) is a model.

Plain folders and the Hugging Face cache layout (``models--org--name/snapshots/<rev>/…``) are
walked recursively. A model's id is the file name without ``.gguf`` (and without the
``-00001-of-00003`` part of a split model, whose later parts are skipped). Two files that would
get the same id are both kept: each is renamed ``<folder>/<id>`` (``org/name/<id>`` in the
Hugging Face cache), with ``~2``, ``~3``… if that still clashes, and a warning names them.
Explicit ``models:`` entries win over discovered ones with the same id.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from swapd.config.issues import Issues
from swapd.config.tree import MapNode, Scalar, to_plain

DEFAULT_CMD = "llama-server -m ${MODEL_PATH} --port ${PORT}"
MODEL_PATH = "${MODEL_PATH}"
_SPLIT = re.compile(r"^(?P<base>.+)-(?P<part>\d{5})-of-(?P<total>\d{5})$")
_HF_REPO = re.compile(r"^models--(?P<repo>.+)$")


@dataclass(frozen=True, slots=True)
class Found:
    id: str
    path: Path


@dataclass(slots=True)
class Discovery:
    models: list[Found] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def base_id(path: Path) -> str | None:
    """The id a file would get, or None for a later part of a split model."""
    stem = path.name[: -len(".gguf")] if path.name.lower().endswith(".gguf") else path.stem
    if m := _SPLIT.match(stem):
        return m.group("base") if int(m.group("part")) == 1 else None
    return stem


def _qualifier(path: Path, root: Path) -> str:
    """``org/name`` for a Hugging Face cache file, else the name of the folder holding it."""
    for parent in path.parents:
        if m := _HF_REPO.match(parent.name):
            return m.group("repo").replace("--", "/")
        if parent == root:
            break
    return path.parent.name or root.name


def _walk(root: Path, warnings: list[str]) -> Iterable[Path]:
    def onerror(exc: OSError) -> None:
        warnings.append(f"modelsDir: cannot read {exc.filename}: {exc.strerror or exc}")

    for folder, dirs, files in os.walk(root, onerror=onerror, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(".gguf") and not name.startswith("."):
                yield Path(folder) / name


def discover(paths: Sequence[str | os.PathLike[str]]) -> Discovery:
    out = Discovery()
    found: list[tuple[str, Path, Path]] = []  # (id, file, root)
    seen: set[Path] = set()
    for given in paths:
        root = Path(given).expanduser()
        if not root.is_dir():
            why = "does not exist" if not root.exists() else "is not a directory"
            out.warnings.append(f"modelsDir: {root} {why}")
            continue
        if not os.access(root, os.R_OK | os.X_OK):
            out.warnings.append(f"modelsDir: cannot read {root}: permission denied")
            continue
        before = len(found)
        for file in _walk(root, out.warnings):
            real = file.resolve()
            if real in seen:  # HF snapshots symlink into blobs; the same file twice counts once
                continue
            seen.add(real)
            mid = base_id(file)
            if mid is not None:
                found.append((mid, file, root))
        if len(found) == before:
            out.warnings.append(f"modelsDir: no *.gguf files in {root}")
    by_id: dict[str, list[tuple[Path, Path]]] = {}
    for mid, file, root in found:
        by_id.setdefault(mid, []).append((file, root))
    taken = {mid for mid, files in by_id.items() if len(files) == 1}
    for mid, files in sorted(by_id.items()):
        if len(files) == 1:
            out.models.append(Found(mid, files[0][0]))
            continue
        renamed: list[str] = []
        for file, root in files:
            new = f"{_qualifier(file, root)}/{mid}"
            n = 2
            while new in taken:
                new = f"{_qualifier(file, root)}/{mid}~{n}"
                n += 1
            taken.add(new)
            renamed.append(f"{new} ({file})")
            out.models.append(Found(new, file))
        out.warnings.append(
            f"modelsDir: {len(files)} files would get the id '{mid}'; kept as: "
            + ", ".join(renamed)
        )
    out.models.sort(key=lambda f: f.id)
    return out


def command(template: str, path: Path) -> str:
    """The model's cmd text: ``template`` with ``${MODEL_PATH}`` replaced (shell-quoted)."""
    return template.replace(MODEL_PATH, shlex.quote(str(path)))


def inject(
    root: MapNode, models: MapNode, issues: Issues, extra_paths: Sequence[str] = ()
) -> dict[str, str]:
    """Add discovered models to the config tree (explicit ``models:`` win); id → GGUF path."""
    pos = root.key_pos("modelsDir")
    node = root.pop("modelsDir")  # read here; macros and the schema never see it
    paths: list[str] = list(extra_paths)
    template = DEFAULT_CMD
    if node is not None and not isinstance(node, MapNode):
        issues.warn(pos, "modelsDir: expected a mapping with 'paths' and 'cmd' (ignored)")
    if isinstance(node, MapNode):
        plain = to_plain(node)
        given = plain.get("paths")
        if isinstance(given, str):
            given = [given]
        if isinstance(given, list):
            paths[:0] = [str(p) for p in given if isinstance(p, str | int | float)]
        elif given is not None:
            issues.warn(pos, "modelsDir.paths: expected a list of folders (ignored)")
        if isinstance(plain.get("cmd"), str) and plain["cmd"].strip():
            template = plain["cmd"]
    if not paths:
        return {}
    result = discover(paths)
    for warning in result.warnings:
        issues.warn(pos, warning)
    if MODEL_PATH not in template:
        issues.warn(pos, f"modelsDir.cmd does not use {MODEL_PATH}; every model runs the same cmd")
    out: dict[str, str] = {}
    for found in result.models:
        if found.id in models.items:
            continue  # an explicit entry wins
        entry = MapNode(pos)
        entry.put("cmd", Scalar(command(template, found.path), pos))
        models.put(found.id, entry, pos)
        out[found.id] = str(found.path)
    return out
