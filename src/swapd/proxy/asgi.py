"""Minimal ASGI helpers: typed aliases, the reply side of a request, whole-response senders,
body reading with a cap, and the client-disconnect guard."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from email.utils import formatdate
from types import TracebackType
from typing import Any, Protocol

from swapd.errors import BodyTooLarge, SwapdError
from swapd.proxy.envelope import error_body, error_headers, is_anthropic

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


class Reply:
    """The sending half of one request: ``send`` that remembers whether the response started.

    swapd's own responses go through ``reply(message)``, which stamps a ``date`` header (uvicorn
    adds none: a relayed response keeps the engine's own ``date`` and ``server``). A relayed
    engine response calls :meth:`relay_start` and then ``reply.send`` directly, so nothing is
    added per body chunk.
    """

    __slots__ = ("send", "started")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            message["headers"] = [*message.get("headers", ()), (b"date", http_date())]
        await self.send(message)

    async def relay_start(self, status: int, headers: Headers) -> None:
        self.started = True
        await self.send({"type": "http.response.start", "status": status, "headers": headers})


class Aborted(Exception):
    """The response started and cannot be completed: the client connection is dropped.

    Raised out of the ASGI app, so the server closes the connection without the terminating
    chunk (uvicorn does), and a client sees a truncated response as truncated, never as a
    clean end. ``status`` is what activity and metrics record for the request.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def drop_abort_tracebacks(record: logging.LogRecord) -> bool:
    """A logging filter for the server's logger: an :class:`Aborted` is logged by swapd itself."""
    return not (record.exc_info and isinstance(record.exc_info[1], Aborted))


_date: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """The current time as an HTTP ``date`` value (formatted once per second)."""
    global _date
    now = int(time.time())
    if now != _date[0]:
        _date = (now, formatdate(now, usegmt=True).encode())
    return _date[1]


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


class Watched(Protocol):
    """A client connection that reports its own loss (swapd.proxy.relay.Client)."""

    @property
    def disconnected(self) -> bool: ...

    def watch(self, guard: DisconnectGuard) -> None: ...

    def unwatch(self, guard: DisconnectGuard) -> None: ...


class DisconnectGuard:
    """Cancel the request's task when its client disconnects; the block then raises ClientGone.

    A client that leaves while its request waits for a model, for the engine's first byte or
    mid-stream stops the work (and closes the upstream connection). With swapd's edge the
    connection says so itself (``client``: :meth:`client_lost` is called from its
    ``connection_lost``): no task per request. Otherwise a helper task watches ``receive()``
    for the duration of the block: a plain asyncio task, not an anyio task group (an anyio task
    group plus cancel scope per request cost about a quarter of swapd's CPU under load).
    """

    __slots__ = ("_client", "_closed", "_gone", "_receive", "_task", "_watcher")

    def __init__(self, receive: Receive, client: Watched | None = None) -> None:
        self._receive = receive
        self._client = client
        self._gone = False
        self._closed = False
        self._watcher: asyncio.Task[None] | None = None

    async def __aenter__(self) -> DisconnectGuard:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        client = self._client
        if client is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
        elif client.disconnected:
            self.client_lost()
        else:
            client.watch(self)
        return self

    def client_lost(self) -> None:
        if not self._closed and not self._gone:
            self._gone = True
            self._task.cancel()

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
        if self._watcher is not None:
            self._watcher.cancel()
        if self._client is not None:
            self._client.unwatch(self)
        if self._gone and exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
            self._task.uncancel()
            raise ClientGone from None
