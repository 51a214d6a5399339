"""vLLM's sleep mode over HTTP, for any driver whose engine speaks it.

``POST /sleep?level=N`` frees the GPU memory (level 1 keeps weights in CPU memory, level 2
drops them), ``POST /wake_up`` restores it and ``GET /is_sleeping`` confirms. The scheduler
calls a driver's ``sleep(level)`` / ``wake()`` for models configured with ``sleep: {level: N}``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp

TIMEOUT = aiohttp.ClientTimeout(total=300)


async def _post(base_url: str, path: str) -> None:
    url = base_url + path
    async with aiohttp.ClientSession() as session, session.post(url, timeout=TIMEOUT) as resp:
        if resp.status >= 300:
            text = (await resp.text())[:200]
            raise RuntimeError(f"POST {urlsplit(url).path} answered {resp.status}: {text}")


async def sleep(base_url: str, level: int) -> None:
    """Put the engine to sleep; raises on failure."""
    await _post(base_url, f"/sleep?level={level}")


async def wake(base_url: str) -> None:
    """Wake the engine and check that it reports awake; raises on failure."""
    await _post(base_url, "/wake_up")
    async with (
        aiohttp.ClientSession() as session,
        session.get(base_url + "/is_sleeping", timeout=TIMEOUT) as resp,
    ):
        body = await resp.json(content_type=None)
        if resp.status != 200 or body.get("is_sleeping"):
            raise RuntimeError(f"engine still asleep after /wake_up: {body}")
