"""KV cache kept across swaps for ``llama-server`` models with ``kvCache: {persist: true}``.

Before swapd stops such an engine it saves every non-empty slot (``POST /slots/N?action=save``);
after the next start, before the engine is reported ready, it restores them
(``action=restore``). Files live in the model's ``--slot-save-path`` (swapd adds it) and are
named by a key over the model id, the GGUF file's identity (path, size, mtime) and the flags that
change the cache layout, so a changed model or context size never restores a stale cache. Any
failure is logged and ignored: a swap is never blocked or failed by the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import anyio

from swapd.config.command import flag_value
from swapd.config.model import ModelConfig
from swapd.drivers import pidfile
from swapd.drivers.base import LogSink, Upstream

SAVE_PATH_FLAG = "--slot-save-path"
# Flags whose values change what a saved slot means or how it is laid out.
LAYOUT_FLAGS = {
    "-c": "ctx",
    "--ctx-size": "ctx",
    "-ctk": "ctk",
    "--cache-type-k": "ctk",
    "-ctv": "ctv",
    "--cache-type-v": "ctv",
    "-np": "parallel",
    "--parallel": "parallel",
    "-fa": "fa",
    "--flash-attn": "fa",
    "--swa-full": "swa",
    "--kv-unified": "unified",
    "-kvu": "unified",
    "--no-kv-unified": "unified",
}
MODEL_FLAGS = ("-m", "--model")
RESTORE_TIMEOUT = 30.0
PREFIX = "[swapd] kv cache:"


def default_dir(model_id: str) -> Path:
    """``kvcache/<id>`` in swapd's state dir (``$SWAPD_STATE_DIR``, ``serve --state-dir``, else
    ``$XDG_STATE_HOME/swapd``, ``~/.local/state/swapd`` when unset)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", model_id)
    return pidfile.state_dir().parent / "kvcache" / safe


def with_save_path(cmd: Sequence[str], directory: Path) -> tuple[str, ...]:
    """``cmd`` plus ``--slot-save-path directory`` unless the user set one."""
    if flag_value(cmd, SAVE_PATH_FLAG) is not None:
        return tuple(cmd)
    return (*cmd, SAVE_PATH_FLAG, str(directory))


def cache_key(model_id: str, cmd: Sequence[str]) -> str:
    """Identity of a cache: model id, GGUF path/size/mtime, layout flags."""
    ident: dict[str, Any] = {"id": model_id}
    gguf = flag_value(cmd, *MODEL_FLAGS)
    if gguf is not None:
        ident["gguf"] = os.path.abspath(gguf)
        try:
            st = os.stat(gguf)
            ident["size"], ident["mtime_ns"] = st.st_size, st.st_mtime_ns
        except OSError:
            ident["size"] = None
    for i, arg in enumerate(cmd):
        name, eq, inline = arg.partition("=")
        if name in LAYOUT_FLAGS:
            takes_value = i + 1 < len(cmd) and not cmd[i + 1].startswith("-")
            ident[LAYOUT_FLAGS[name]] = inline if eq else (cmd[i + 1] if takes_value else name)
    blob = json.dumps(ident, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class KvCacheHooks:
    """``after_ready`` restores the saved slots, ``before_stop`` saves the non-empty ones."""

    def __init__(self, model: ModelConfig, logs: LogSink, directory: Path) -> None:
        self.model = model
        self.logs = logs
        self.dir = directory
        self.key = cache_key(model.id, model.cmd)
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", model.id)
        self.stem = f"{safe}-{self.key}"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.log(f"cannot create {self.dir}: {exc}")

    def log(self, text: str) -> None:
        self.logs.write(f"{PREFIX} {text}")

    def filename(self, slot: int) -> str:
        return f"{self.stem}-slot{slot}.bin"

    def saved(self) -> list[tuple[int, Path]]:
        found: list[tuple[int, Path]] = []
        pattern = re.compile(re.escape(self.stem) + r"-slot(\d+)\.bin\Z")
        try:
            entries = list(self.dir.iterdir())
        except OSError:
            return []
        for path in entries:
            if m := pattern.match(path.name):
                found.append((int(m.group(1)), path))
        return sorted(found)

    async def _post(
        self, session: aiohttp.ClientSession, url: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        async with session.post(url, json=body) as r:
            try:
                data = await r.json(content_type=None)
            except (ValueError, aiohttp.ContentTypeError):
                data = {}
            return r.status, data if isinstance(data, dict) else {}

    async def after_ready(self, upstream: Upstream) -> None:
        saved = self.saved()
        if not saved:
            return
        timeout = aiohttp.ClientTimeout(total=RESTORE_TIMEOUT)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                for slot, path in saved:
                    url = f"{upstream.base_url}/slots/{slot}?action=restore"
                    status, data = await self._post(session, url, {"filename": path.name})
                    if status == 200:
                        self.log(f"restored slot {slot} ({data.get('n_restored', '?')} tokens)")
                        continue
                    message = (data.get("error") or {}).get("message", f"HTTP {status}")
                    self.log(f"WARNING ignoring unusable cache file {path}: {message}")
                    path.unlink(missing_ok=True)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.log(f"WARNING restore failed, starting with an empty cache: {exc!r}")

    async def before_stop(self, upstream: Upstream) -> None:
        timeout = aiohttp.ClientTimeout(total=max(self.model.unload_timeout, 1.0))
        try:
            with anyio.fail_after(max(self.model.unload_timeout, 1.0) * 2):
                async with aiohttp.ClientSession(timeout=timeout) as session:
                    async with session.get(f"{upstream.base_url}/slots") as r:
                        slots = await r.json(content_type=None) if r.status == 200 else []
                    ids = [s["id"] for s in slots if isinstance(s, dict) and "id" in s]
                    for slot in ids:
                        name = self.filename(slot)
                        url = f"{upstream.base_url}/slots/{slot}?action=save"
                        status, data = await self._post(session, url, {"filename": name})
                        if status != 200:
                            self.log(f"WARNING saving slot {slot} failed: HTTP {status}")
                        elif not data.get("n_saved"):
                            (self.dir / name).unlink(missing_ok=True)  # empty slot: keep none
                        else:
                            self.log(f"saved slot {slot} ({data['n_saved']} tokens) to {name}")
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            self.log(f"WARNING save failed (cache not kept): {exc!r}")


def kv_cache_dir(model: ModelConfig) -> Path | None:
    """Where this model's cache lives, if it persists one."""
    if model.kv_cache is None or not model.kv_cache.persist:
        return None
    given = flag_value(model.cmd, SAVE_PATH_FLAG)
    return Path(given) if given else Path(model.kv_cache.dir or default_dir(model.id))


def hooks_for(model: ModelConfig, logs: LogSink) -> KvCacheHooks | None:
    directory = kv_cache_dir(model)
    return None if directory is None else KvCacheHooks(model, logs, directory)
