"""The engine hooks every ``llama-server`` model gets from the process driver.

``preflight`` checks the model file named by ``-m``/``--model`` before anything is spawned,
so a typo in a path is one clear error naming the file (not an engine that starts, fails and is
started again by the next request). The KV-cache steps run when ``kvCache.persist`` is on.
"""

from __future__ import annotations

from pathlib import Path

from swapd.config.command import flag_value
from swapd.config.model import ModelConfig
from swapd.drivers.base import LogSink, Upstream
from swapd.errors import StartFailed
from swapd.llamacpp.kvcache import MODEL_FLAGS, KvCacheHooks, hooks_for

GGUF_MAGIC = b"GGUF"


def check_model_file(model: ModelConfig) -> None:
    """Raise ``StartFailed`` naming the file when ``-m`` is missing, unreadable or not GGUF."""
    value = flag_value(model.cmd, *MODEL_FLAGS)
    if value is None:
        return  # -hf / --model-url downloads: llama-server reports its own errors
    path = Path(value).expanduser()
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise StartFailed(
            model.id, f"model {model.id}: GGUF file {path} does not exist", permanent=True
        ) from None
    except OSError as exc:
        raise StartFailed(
            model.id,
            f"model {model.id}: cannot read GGUF file {path}: {exc.strerror or exc}",
            permanent=True,
        ) from None
    if magic != GGUF_MAGIC:
        raise StartFailed(
            model.id,
            f"model {model.id}: {path} is not a GGUF file (it starts with {magic!r})",
            permanent=True,
        )


class LlamaServerHooks:
    def __init__(self, model: ModelConfig, logs: LogSink) -> None:
        self.model = model
        self.kv: KvCacheHooks | None = hooks_for(model, logs)

    async def preflight(self) -> None:
        check_model_file(self.model)

    async def after_ready(self, upstream: Upstream) -> None:
        if self.kv is not None:
            await self.kv.after_ready(upstream)

    async def before_stop(self, upstream: Upstream) -> None:
        if self.kv is not None:
            await self.kv.before_stop(upstream)
