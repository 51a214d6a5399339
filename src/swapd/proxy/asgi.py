"""Minimal ASGI helpers: typed aliases, whole-response senders, body reading with a cap."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
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
