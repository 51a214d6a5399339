"""What every surface of the echo engine shares: its state, response helpers and word counting."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
Route = Callable[[Scope, bytes, Send], Awaitable[None]]

_JSON = b"application/json"
_SSE = b"text/event-stream"
dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class BadRequest(Exception):
    """The request body is not what the route needs (answered with 400)."""


class Disconnected(Exception):
    """The client went away mid-stream (the argument: frames sent)."""


def word_count(text: str) -> int:
    return len(text.split())


def text_of(content: Any) -> str:
    """Text of an OpenAI/Anthropic message content: a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            p.get("text", "") if isinstance(p, dict) else str(p)
            for p in content
            if not isinstance(p, dict) or isinstance(p.get("text"), str)
        ]
        return " ".join(parts)
    return "" if content is None else str(content)


def last_user_text(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            return text_of(msg.get("content"))
    return ""


def prompt_words(messages: Any) -> int:
    if not isinstance(messages, list):
        return 0
    return sum(word_count(text_of(m.get("content"))) for m in messages if isinstance(m, dict))


def vector(text: str, dim: int = 8) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 127.5 - 1.0, 6) for b in digest[:dim]]


class EchoBase:
    """The engine's state and the helpers its route handlers share (see :class:`EchoApp`)."""

    def __init__(
        self,
        model: str = "echo",
        *,
        health_delay: float = 0.0,
        chunks: int | None = None,
        chunk_delay: float = 0.0,
        allow_crash: bool = False,
        sleep_mode: bool = False,
        fail_wake: bool = False,
    ) -> None:
        self.model = model
        self.sleep_mode = sleep_mode
        self.fail_wake = fail_wake
        self.sleeping = 0  # sleep level while asleep, else 0
        self.health_delay = health_delay
        self.chunks = chunks
        self.chunk_delay = chunk_delay
        self.allow_crash = allow_crash
        self.started_at = time.monotonic()
        self.created = int(time.time())
        self.pid = os.getpid()
        self.requests = 0
        self.in_flight = 0
        self.disconnects = 0
        self.websockets_open = 0
        self.websocket_closes: deque[tuple[int, str]] = deque(maxlen=32)  # (code, reason)
        self._base_headers: Headers = [
            (b"x-engine-pid", str(self.pid).encode()),
            (b"x-engine-model", model.encode()),
        ]
        self._json_headers = [(b"content-type", _JSON), *self._base_headers]
        self._sse_headers = [
            (b"content-type", _SSE),
            (b"cache-control", b"no-cache"),
            *self._base_headers,
        ]
        self._routes = self._route_table()

    def _route_table(self) -> dict[str, Route]:
        """The POST routes, path → handler (the app assembles them from its surfaces)."""
        return {}

    # -- helpers ----------------------------------------------------------------------------

    async def _json(self, send: Send, data: Any, status: int = 200) -> None:
        payload = dumps(data).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*self._json_headers, (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _start_sse(self, scope: Scope, send: Send) -> Send:
        """Start an SSE response; the returned ``send`` raises ``Disconnected`` once the client
        has gone away (a watcher task reads ``http.disconnect``)."""
        await send({"type": "http.response.start", "status": 200, "headers": self._sse_headers})
        receive: Receive = scope["echo.receive"]
        watcher = asyncio.ensure_future(wait_disconnect(receive))
        sent = 0

        async def stream_send(message: Message) -> None:
            nonlocal sent
            if watcher.done():
                raise Disconnected(sent)
            await send(message)
            sent += 1
            if not message.get("more_body", False):
                watcher.cancel()

        return stream_send

    async def _chunk(self, send: Send, data: bytes) -> None:
        await send({"type": "http.response.body", "body": data, "more_body": True})

    @staticmethod
    def _parse(body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body) if body else {}
        except ValueError as exc:
            raise BadRequest(f"invalid JSON body: {exc}") from exc
        if not isinstance(data, dict):
            raise BadRequest("JSON body must be an object")
        return data

    async def _maybe_delay(self, req: dict[str, Any]) -> None:
        delay = req.get("delay")
        if isinstance(delay, int | float) and delay > 0:
            await asyncio.sleep(delay)

    def _pieces(self, reply: str, req: dict[str, Any]) -> list[str]:
        """The reply split into streamed pieces: one per word, or exactly ``chunks`` pieces."""
        words = reply.split(" ")
        pieces = [words[0], *(" " + w for w in words[1:])]
        budget = req.get("max_tokens") if req.get("ignore_eos") else None  # as engines do
        wanted = req.get("chunks", budget or self.chunks)
        if not isinstance(wanted, int) or wanted <= 0 or wanted == len(pieces):
            return pieces
        if wanted < len(pieces):  # merge the tail so the text stays the same
            return [*pieces[: wanted - 1], "".join(pieces[wanted - 1 :])]
        extra = [" " + words[i % len(words)] for i in range(wanted - len(pieces))]
        return pieces + extra

    def _chunk_delay(self, req: dict[str, Any]) -> float:
        delay = req.get("chunk_delay", self.chunk_delay)
        return float(delay) if isinstance(delay, int | float) and delay > 0 else 0.0

    def _timings(self, prompt_n: int, predicted_n: int, delay: float) -> dict[str, Any]:
        predicted_ms = max(predicted_n * max(delay * 1000.0, 1.0), 1.0)
        return {
            "prompt_n": prompt_n,
            "predicted_n": predicted_n,
            "cache_n": 0,
            "prompt_ms": round(prompt_n * 0.1, 3),
            "predicted_ms": round(predicted_ms, 3),
            "predicted_per_second": round(predicted_n / (predicted_ms / 1000.0), 3),
            "prompt_per_second": 10000.0 if prompt_n else 0.0,  # prompt_ms: 0.1 ms a token
        }

    @staticmethod
    def _usage(prompt: int, completion: int) -> dict[str, int]:
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }


async def read_body(receive: Receive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    parts = [body]
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        parts.append(message.get("body", b""))
    return b"".join(parts)


async def wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
