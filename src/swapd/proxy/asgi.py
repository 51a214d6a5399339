"""Minimal ASGI helpers: typed aliases, whole-response senders, body reading with a cap."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from types import TracebackType
from typing import Any

from swapd.errors import BodyTooLarge, SwapdError
from swapd.proxy.envelope import error_body, error_headers, is_anthropic

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: Headers | None = None,
    content_type: bytes = b"application/json",
) -> None:
    hs = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if headers:
        hs.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": hs})
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send, data: Any, status: int = 200, headers: Headers | None = None
) -> None:
    await send_bytes(send, status, json.dumps(data).encode(), headers)


async def send_error(send: Send, scope: Scope, error: SwapdError) -> None:
    body = error_body(
        error.http_status, error.message, error.code, anthropic=is_anthropic(scope["path"])
    )
    await send(
        {
            "type": "http.response.start",
            "status": error.http_status,
            "headers": error_headers(error, body),
        }
    )
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"request body is larger than the limit of {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class ClientGone(Exception):
    """The client disconnected; nothing more to send."""


class DisconnectGuard:
    """Cancel the request's task when its client disconnects; the block then raises ClientGone.

    It watches ``receive()`` in a helper task for the duration of the block, so a client that
    leaves while its request waits for a model, for the engine's first byte or mid-stream stops
    the work (and closes the upstream connection). This is a plain asyncio task scoped to the
    block, not an anyio task group: on the request path an anyio task group plus cancel scope
    per request cost about a quarter of swapd's CPU under load (py-spy, bench/proxy_overhead.py).
    """

    __slots__ = ("_closed", "_gone", "_receive", "_task", "_watcher")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._gone = False
        self._closed = False

    async def __aenter__(self) -> DisconnectGuard:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._watcher = asyncio.get_running_loop().create_task(self._watch())
        return self

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                if not self._closed:  # after the response completes uvicorn reports this too
                    self._gone = True
                    self._task.cancel()
                return

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed = True
        self._watcher.cancel()
        if self._gone and exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
            self._task.uncancel()
            raise ClientGone from None
