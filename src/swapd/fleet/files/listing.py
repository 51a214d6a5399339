"""What model files this machine holds, and which configured models use them.

Two kinds of entries: a repository in the Hugging Face cache (``HF_HUB_CACHE``, else
``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``), read with ``huggingface_hub``'s
``scan_cache_dir``; and a GGUF file in a folder holding a GGUF file some configured model runs
(``modelsDir`` discoveries and ``-m PATH`` commands alike). A model uses an entry when its command
or container spec names the repository id (``vllm serve Qwen/Qwen3-8B``, ``-hf org/repo:Q4_K_M``),
a path inside the repository's cache folder, or the file's path.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from swapd.config.model import Config, ModelConfig
from swapd.errors import Conflict, NotFound

GGUF = ".gguf"
SAFETENSORS = ".safetensors"


def hub_cache() -> Path:
    """The Hugging Face hub cache folder, as ``huggingface_hub`` finds it from the environment."""
    if cache := os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(cache).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface"
    )
    return Path(home).expanduser() / "hub"


@dataclass(slots=True)
class Entry:
    """One row of the listing: a cached repository or a GGUF file."""

    kind: str  # "hf" (a Hugging Face cache repository) or "gguf" (a file in a folder)
    name: str  # the repository id, or the file name
    path: str  # the repository's cache folder, or the file
    size: int  # bytes on disk
    last_used: float | None  # Unix seconds: last access (atime), else last change
    format: str  # "gguf", "safetensors" or "other": what add-model makes of it
    files: list[str] = field(default_factory=list)  # a repository's files (latest revision)
    revisions: list[str] = field(default_factory=list)  # a repository's commits (short)
    models: list[str] = field(default_factory=list)  # configured models that use it

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _format(names: Iterable[str]) -> str:
    lowered = [n.lower() for n in names]
    if any(n.endswith(GGUF) for n in lowered):
        return "gguf"
    if any(n.endswith(SAFETENSORS) for n in lowered):
        return "safetensors"
    return "other"


def cached_repos(cache: Path) -> list[Entry]:
    """Every model repository in the Hugging Face cache ``cache`` (none when it is missing)."""
    from huggingface_hub import CacheNotFound, scan_cache_dir

    try:
        info = scan_cache_dir(cache)
    except CacheNotFound:
        return []
    out = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        latest = max(repo.revisions, key=lambda r: r.last_modified, default=None)
        names = (
            sorted(str(f.file_path.relative_to(latest.snapshot_path)) for f in latest.files)
            if latest
            else []
        )
        out.append(
            Entry(
                kind="hf",
                name=repo.repo_id,
                path=str(repo.repo_path),
                size=repo.size_on_disk,
                last_used=repo.last_accessed or repo.last_modified,
                format=_format(names),
                files=names,
                revisions=sorted(r.commit_hash[:12] for r in repo.revisions),
            )
        )
    return sorted(out, key=lambda e: e.name.lower())


def model_text(model: ModelConfig) -> str:
    """Everything of a model that may name a file or repository: command, source, container."""
    options = json.dumps(model.options.as_dict(), default=str)
    return "\n".join((" ".join(model.cmd), model.source or "", options))


def gguf_paths(text: str) -> list[Path]:
    """Absolute ``*.gguf`` paths named in ``text`` (a command line, a container spec)."""
    return [Path(m) for m in re.findall(r"(/[^\s'\"=,:]+\.gguf)\b", text, re.IGNORECASE)]


def gguf_files(config: Config, cache: Path) -> list[Entry]:
    """Each GGUF file in a folder (outside the Hugging Face cache) holding one a model uses."""
    folders: dict[Path, None] = {}
    for model in config.models.values():
        for path in gguf_paths(model_text(model)):
            if not path.is_relative_to(cache):
                folders[path.parent] = None
    out = []
    for folder in folders:
        try:
            names = sorted(p for p in folder.iterdir() if p.name.lower().endswith(GGUF))
        except OSError:
            continue
        for path in names:
            try:
                st = path.stat()
            except OSError:
                continue
            out.append(
                Entry(
                    "gguf", path.name, str(path), st.st_size, max(st.st_atime, st.st_mtime), "gguf"
                )
            )
    return out


def _uses(entry: Entry, text: str) -> bool:
    if entry.kind == "gguf":
        return entry.path in text or str(Path(entry.path).resolve()) in text
    if entry.path + "/" in text:  # a file inside the repository's cache folder
        return True
    return re.search(rf"(?<![\w.\-/]){re.escape(entry.name)}(?![\w.\-])", text) is not None


def with_models(entries: list[Entry], models: Mapping[str, ModelConfig]) -> list[Entry]:
    """``entries`` with the ids of the configured models that use each."""
    texts = {model_id: model_text(model) for model_id, model in models.items()}
    for entry in entries:
        entry.models = sorted(m for m, text in texts.items() if _uses(entry, text))
    return entries


def local_entries(config: Config) -> list[Entry]:
    """This machine's model files, each with the models that use it."""
    cache = hub_cache()
    return with_models([*cached_repos(cache), *gguf_files(config, cache)], config.models)


def is_remote(endpoint: str) -> bool:
    """A node whose Docker endpoint is another machine (``tcp://``, ``ssh://``, ``http(s)://``)."""
    return bool(endpoint) and urlsplit(endpoint).scheme not in ("", "unix")


def listing(config: Config) -> dict[str, Any]:
    """``GET /api/files``: the nodes on this machine with its files, then the remote ones."""
    local = [n.name for n in config.nodes.values() if not is_remote(n.docker)] or ["local"]
    entries = [e.as_dict() for e in local_entries(config)]
    nodes: list[dict[str, Any]] = [
        {
            "node": ", ".join(local),
            "host": socket.gethostname(),
            "reachable": True,
            "cache": str(hub_cache()),
            "files": entries,
        }
    ]
    for node in config.nodes.values():
        if is_remote(node.docker):
            nodes.append(
                {
                    "node": node.name,
                    "host": urlsplit(node.docker).hostname or node.docker,
                    "reachable": False,
                    "reason": f"not reachable for files ({urlsplit(node.docker).scheme}:// node)",
                    "files": [],
                }
            )
    return {"nodes": nodes}


def remove(target: str, entries: list[Entry], *, force: bool = False) -> dict[str, Any]:
    """Delete the listed entry ``target`` (a repository id or a path from the listing); one
    that configured models use only with ``force``. Nothing that is not listed is touched."""
    import shutil

    given = str(Path(target).expanduser().absolute()) if target.startswith(("/", "~")) else target
    entry = next((e for e in entries if given in (e.name, e.path)), None)
    if entry is None:
        raise NotFound(f"{target!r} is not a listed model file (see `swapd files`)")
    if entry.models and not force:
        raise Conflict(
            f"{entry.name} is used by {', '.join(entry.models)}: remove or change those models "
            "first, or force it (--force)"
        )
    path = Path(entry.path)
    if entry.kind == "hf":
        shutil.rmtree(path)
        shutil.rmtree(path.parent / ".locks" / path.name, ignore_errors=True)
    else:
        path.unlink()
    return {"removed": entry.path, "name": entry.name, "freed": entry.size, "models": entry.models}
