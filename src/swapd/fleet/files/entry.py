"""``swapd files add-model``: a model entry made from a file or a cached repository.

- a GGUF file (or a folder or repository holding one model's GGUF) becomes a llama.cpp model:
  ``cmd: llama-server -m PATH --port ${PORT}``, the command ``modelsDir`` discovery writes
  (:mod:`swapd.llamacpp.discovery`), with the id discovery would give it;
- a folder or repository of ``*.safetensors`` becomes a vLLM recipe model: the shipped recipe
  made for that repository when there is one, else :data:`BASE_RECIPE` (any model, no
  model-specific arguments) with ``set: {model}``
  (a repository id: the recipe mounts the Hugging Face cache; a plain folder is mounted into
  the container read-only at the same path).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from swapd.errors import Conflict, NotFound, RequestError
from swapd.fleet.configfile import Change, ConfigFile, add_entry
from swapd.fleet.files.listing import GGUF, SAFETENSORS, Entry, hub_cache
from swapd.llamacpp.discovery import DEFAULT_CMD, base_id, command

BASE_RECIPE = "vllm/generic"  # the vLLM recipe a repository without its own recipe starts from
_SNAPSHOT = re.compile(r"/models--(?P<repo>[^/]+)/snapshots/[^/]+")


@dataclass(slots=True)
class ModelEntry:
    id: str
    entry: dict[str, Any]
    source: str  # the file or folder it was made from
    notes: list[str] = field(default_factory=list)

    def yaml(self) -> str:
        """The entry as it goes under ``models:`` (``id:`` and its keys)."""
        out = io.StringIO()
        yaml = YAML()
        yaml.default_flow_style = False
        yaml.width = 4096  # a command stays on one line
        yaml.dump({self.id: self.entry}, out)
        return out.getvalue()

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "entry": self.entry,
            "source": self.source,
            "notes": self.notes,
            "yaml": self.yaml(),
        }


def _snapshot(repo: Entry) -> Path:
    """The newest snapshot folder of a cached repository."""
    snapshots = [p for p in (Path(repo.path) / "snapshots").iterdir() if p.is_dir()]
    return max(snapshots, key=lambda p: p.stat().st_mtime)


def locate(target: str, entries: list[Entry]) -> Path:
    """``target`` as a path on this machine: a path, ``org/repo`` (its newest snapshot) or
    ``org/repo:FILE`` in the Hugging Face cache."""
    repo, _, name = target.partition(":")
    cached = next((e for e in entries if e.kind == "hf" and e.name == repo), None)
    if cached is not None:
        path = _snapshot(cached) / name if name else _snapshot(cached)
    elif target.startswith(("/", "~", ".")):
        path = Path(target).expanduser().absolute()
    else:
        raise NotFound(f"{target!r} is neither a path nor a repository in the cache")
    if not path.exists():
        raise NotFound(f"{path} does not exist")
    return path


def _ggufs(folder: Path) -> list[Path]:
    """The GGUF files in ``folder`` (recursively) that are a model (first parts of splits)."""
    found = sorted(p for p in folder.rglob("*") if p.name.lower().endswith(GGUF))
    return [p for p in found if base_id(p) is not None]


def _gguf_entry(path: Path, model_id: str | None) -> ModelEntry:
    found = base_id(path)
    if found is None:
        raise RequestError(f"{path.name} is a later part of a split model; name the first part")
    return ModelEntry(model_id or found, {"cmd": command(DEFAULT_CMD, path)}, str(path))


def _vllm_entry(folder: Path, model_id: str | None) -> ModelEntry:
    from swapd.recipes.lookup import catalog, parse_file

    match = _SNAPSHOT.search(str(folder)) if folder.is_relative_to(hub_cache()) else None
    repo = match.group("repo").replace("--", "/") if match else None
    mid = model_id or (repo or folder.name).split("/")[-1].lower()
    for name, file in catalog().items():
        if name.startswith("vllm/") and repo is not None:
            recipe = parse_file(file, name)
            if recipe.model == repo and recipe.runtime == "container":
                return ModelEntry(mid, {"recipe": name}, str(folder))
    entry: dict[str, Any] = {"recipe": {"name": BASE_RECIPE, "set": {"model": repo or str(folder)}}}
    if repo is None:
        entry["docker"] = {"volumes": [f"{folder}:{folder}:ro"]}
    note = (
        f"made from {BASE_RECIPE}: add the model's own arguments (recipe.args: reasoning and "
        "tool-call parsers, --max-model-len) and resources.memory so placement reserves it"
    )
    return ModelEntry(mid, entry, str(folder), [note])


def model_entry(target: str, entries: list[Entry], model_id: str | None = None) -> ModelEntry:
    """The entry for ``target`` (see the module doc); ``model_id`` replaces the id it gets."""
    path = locate(target, entries)
    if path.is_file():
        if path.name.lower().endswith(GGUF):
            return _gguf_entry(path, model_id)
        path = path.parent
    ggufs = _ggufs(path)
    if len(ggufs) == 1:
        return _gguf_entry(ggufs[0], model_id)
    if ggufs:
        names = ", ".join(str(p.relative_to(path)) for p in ggufs)
        raise RequestError(f"{target} holds {len(ggufs)} GGUF models ({names}); name one")
    if any(p.name.endswith(SAFETENSORS) for p in path.rglob("*")):
        return _vllm_entry(path, model_id)
    raise RequestError(f"{target}: no *.gguf or *.safetensors files to serve")


def _block(value: Any) -> Any:
    """Plain mappings as ruamel's, so the written entry is in block style like the file."""
    if isinstance(value, dict):
        return CommentedMap((k, _block(v)) for k, v in value.items())
    return value


def write(made: ModelEntry, path: Path, others: Sequence[str] = ()) -> Change:
    """Add ``made`` as the last entry of the ``models:`` of the config file ``path`` (comments
    and layout kept; checked by swapd's loader with the config's ``others`` before anything is
    written, :meth:`~swapd.fleet.configfile.ConfigFile.save`)."""
    file = ConfigFile(path)
    models = file.models(create=True)
    assert models is not None
    if made.id in models:
        raise Conflict(f"model {made.id!r} is in {path} already; give another id")
    add_entry(models, made.id, _block(made.entry))
    return Change("added", made.id, str(path), str(file.save(others)), made.entry)
