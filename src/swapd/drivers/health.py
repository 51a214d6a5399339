"""Readiness probing shared by drivers: fast first poll, then backoff, exactly HTTP 200 = ready."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import anyio
import anyio.abc

FIRST_POLL = 0.005  # seconds; the first probe goes out within a few milliseconds
MAX_POLL = 0.2
BACKOFF = 1.5


async def probe(url: str, *, limit: float = 2.0) -> int | None:
    """GET ``url`` over a fresh connection; the status code, or None if nothing answered."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: swapd-health\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        with anyio.fail_after(limit):
            stream: anyio.abc.ByteStream
            if parts.scheme == "https":
                stream = await anyio.connect_tcp(
                    host, port, tls=True, tls_standard_compatible=False
                )
            else:
                stream = await anyio.connect_tcp(host, port)
            async with stream as s:
                await s.send(request)
                head = b""
                while b"\r\n" not in head:
                    chunk = await s.receive(1024)
                    head += chunk
        status_line = head.split(b"\r\n", 1)[0].split()
        return int(status_line[1]) if len(status_line) > 1 else None
    except (OSError, TimeoutError, ValueError, anyio.EndOfStream, anyio.BrokenResourceError):
        return None


async def wait_healthy(
    url: str,
    *,
    deadline: float,
    exited: Callable[[], bool],
    on_exit: Callable[[], Awaitable[None]],
) -> bool:
    """Poll ``url`` until it answers 200 (True) or the deadline passes (False).

    ``exited`` is checked between polls; when it reports the engine gone, ``on_exit`` is awaited
    (it is expected to raise the start error).
    """
    interval = FIRST_POLL
    while True:
        if exited():
            await on_exit()
        if await probe(url, limit=max(0.1, min(2.0, deadline - anyio.current_time()))) == 200:
            return True
        if anyio.current_time() >= deadline:
            return False
        await anyio.sleep(interval)
        interval = min(MAX_POLL, interval * BACKOFF)
