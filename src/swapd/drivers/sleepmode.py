"""vLLM's sleep mode over HTTP, for any driver whose engine speaks it.

``POST /sleep?level=N`` frees the GPU memory: level 1 keeps the weights in CPU memory, level 2
discards them. Waking from level 1 is ``POST /wake_up``. Waking from level 2 is vLLM's documented
sequence (``docs/features/sleep_mode.md``; a plain ``/wake_up`` would serve garbage, vllm#29341):
``POST /wake_up?tags=weights`` re-maps the weight memory, ``POST /collective_rpc`` with
``{"method": "reload_weights"}`` loads the weights in place, ``POST /wake_up?tags=kv_cache``
re-maps the KV cache. ``GET /is_sleeping`` then confirms. These are vLLM's dev-mode endpoints
(``VLLM_SERVER_DEV_MODE=1``). The scheduler calls a driver's ``sleep(level)`` / ``wake()`` for
models configured with ``sleep: {level: N}``; the driver wakes with the level it slept at.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import aiohttp

TIMEOUT = aiohttp.ClientTimeout(total=300)
RELOAD_WEIGHTS = {"method": "reload_weights"}


async def _post(base_url: str, path: str, body: Any = None) -> None:
    url = base_url + path
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, timeout=TIMEOUT) as resp,
    ):
        if resp.status >= 300:
            text = (await resp.text())[:200]
            where = urlsplit(url)
            target = f"{where.path}?{where.query}" if where.query else where.path
            raise RuntimeError(f"POST {target} answered {resp.status}: {text}")


async def sleep(base_url: str, level: int) -> None:
    """Put the engine to sleep; raises on failure."""
    await _post(base_url, f"/sleep?level={level}")


async def wake(base_url: str, level: int = 1) -> None:
    """Wake an engine that slept at ``level`` and check that it reports awake; raises on
    failure."""
    if level >= 2:
        await _post(base_url, "/wake_up?tags=weights")
        await _post(base_url, "/collective_rpc", RELOAD_WEIGHTS)
        await _post(base_url, "/wake_up?tags=kv_cache")
    else:
        await _post(base_url, "/wake_up")
    async with (
        aiohttp.ClientSession() as session,
        session.get(base_url + "/is_sleeping", timeout=TIMEOUT) as resp,
    ):
        body = await resp.json(content_type=None)
        if resp.status != 200 or body.get("is_sleeping"):
            raise RuntimeError(f"engine still asleep after waking: {body}")
