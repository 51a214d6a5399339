"""The echo engine: a fast, fake OpenAI/Anthropic/llama.cpp-compatible inference server.

It answers every inference route with ``"echo <model>: <last user text>"`` in the right shape
(streaming or not), so the demo (``swapd serve`` with no config) and the tests have an engine that
starts in a fraction of a second, and the benchmarks have an upstream whose own cost is small.

Run it as ``python -m swapd.echo --port P [--model NAME] ...`` (see ``--help``), or embed the ASGI
app: ``create_app(model="m")`` returns an :class:`EchoApp`.

Routes (every response carries ``x-engine-pid`` and ``x-engine-model``):

- ``GET /health``: 503 ``{"status":"loading"}`` during ``--health-delay``, then 200
  ``{"status":"ok"}``
- ``GET /v1/models``
- ``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/responses``, ``/v1/embeddings``,
  ``/v1/rerank`` ``/rerank`` ``/v1/reranking``, ``/v1/messages``, ``/v1/messages/count_tokens``,
  ``/v1/audio/transcriptions`` (multipart), ``/v1/images/generations``, ``/completion``, ``/infill``
- ``POST /crash``: the process exits at once with status 3 (only when crashing is allowed)
- ``POST /slow``: sleeps ``delay`` seconds (body field or query, default 2) then echoes
- ``GET /_echo/stats``: request counters (requests, in_flight, disconnects)
- with ``--sleep-mode``, vLLM's sleep API: ``POST /sleep?level=N``, ``POST /wake_up``,
  ``GET /is_sleeping`` (``{"is_sleeping": bool}``); while asleep, inference routes answer 503.
  ``--fail-wake`` makes ``/wake_up`` answer 500 (to test recovery)
- anything else: 200 JSON echo of method, path, query, headers and body

Body fields understood on inference routes: ``stream``, ``stream_options.include_usage``,
``chunks`` (number of streamed pieces; the reply is extended by repeating its words when more
pieces than words are asked for), ``chunk_delay`` (seconds between pieces) and ``delay`` (seconds
before answering). Token counts are deterministic: prompt tokens = whitespace words of the input,
completion tokens = pieces of the reply.

Only the standard library is imported at module level; uvicorn is imported by :func:`main`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any
from urllib.parse import parse_qs

__all__ = ["EchoApp", "app", "create_app", "main"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

_JSON = b"application/json"
_SSE = b"text/event-stream"
# A 1x1 transparent PNG, for image generation replies.
_PNG_1X1 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class _BadRequest(Exception):
    pass


class _Disconnected(Exception):
    pass


def _words(text: str) -> int:
    return len(text.split())


def _text_of(content: Any) -> str:
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


def _last_user_text(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            return _text_of(msg.get("content"))
    return ""


def _prompt_words(messages: Any) -> int:
    if not isinstance(messages, list):
        return 0
    return sum(_words(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))


def _vector(text: str, dim: int = 8) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 127.5 - 1.0, 6) for b in digest[:dim]]


class EchoApp:
    """The echo engine as a pure ASGI application."""

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
        self._routes: dict[str, Callable[[Scope, bytes, Send], Awaitable[None]]] = {
            "/v1/chat/completions": self._chat,
            "/chat/completions": self._chat,
            "/v1/completions": self._completions,
            "/v1/responses": self._responses,
            "/v1/embeddings": self._embeddings,
            "/embeddings": self._embeddings,
            "/v1/rerank": self._rerank,
            "/rerank": self._rerank,
            "/v1/reranking": self._rerank,
            "/v1/messages": self._messages,
            "/v1/messages/count_tokens": self._count_tokens,
            "/v1/audio/transcriptions": self._transcriptions,
            "/v1/images/generations": self._images,
            "/completion": self._completion_native,
            "/infill": self._infill,
            "/crash": self._crash,
            "/slow": self._slow,
        }

    # -- ASGI entry -------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.requests += 1
        self.in_flight += 1
        try:
            path: str = scope["path"]
            method: str = scope["method"]
            if path == "/health":
                await self._health(send)
                return
            if self.sleep_mode and path in ("/sleep", "/wake_up", "/is_sleeping"):
                await self._sleep_api(scope, method, path, send)
                return
            if self.sleeping and path.startswith("/v1/") and method == "POST":
                await self._json(send, {"error": "engine is sleeping"}, status=503)
                return
            if method == "GET":
                if path in ("/v1/models", "/models"):
                    await self._models(send)
                    return
                if path == "/_echo/stats":
                    await self._json(send, self._stats())
                    return
            body = await _read_body(receive)
            scope["echo.receive"] = receive
            handler = self._routes.get(path) if method == "POST" else None
            if handler is None:
                await self._echo(scope, body, send)
                return
            try:
                await handler(scope, body, send)
            except _BadRequest as exc:
                await self._json(
                    send,
                    {"error": {"message": str(exc), "type": "invalid_request_error", "code": 400}},
                    status=400,
                )
            except _Disconnected as exc:
                self.disconnects += 1
                print(
                    f"echo engine {self.model}: client disconnected after {exc} frames", flush=True
                )
        finally:
            self.in_flight -= 1

    async def _sleep_api(self, scope: Scope, method: str, path: str, send: Send) -> None:
        """vLLM's dev-mode sleep endpoints (``--enable-sleep-mode``)."""
        if path == "/is_sleeping" and method == "GET":
            await self._json(send, {"is_sleeping": bool(self.sleeping)})
        elif path == "/sleep" and method == "POST":
            query = parse_qs(scope.get("query_string", b"").decode())
            level = int(query.get("level", ["1"])[0])
            self.sleeping = level
            print(f"echo engine {self.model}: sleeping (level {level})", flush=True)
            await self._json(send, {})
        elif path == "/wake_up" and method == "POST":
            if self.fail_wake:
                await self._json(send, {"error": "wake_up failed"}, status=500)
                return
            self.sleeping = 0
            print(f"echo engine {self.model}: awake", flush=True)
            await self._json(send, {})
        else:
            await self._json(send, {"error": "method not allowed"}, status=405)

    # -- helpers ----------------------------------------------------------------------------

    async def _json(self, send: Send, data: Any, status: int = 200) -> None:
        payload = _dumps(data).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*self._json_headers, (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _start_sse(self, scope: Scope, send: Send) -> Send:
        """Start an SSE response; the returned ``send`` raises ``_Disconnected`` once the client
        has gone away (a watcher task reads ``http.disconnect``)."""
        await send({"type": "http.response.start", "status": 200, "headers": self._sse_headers})
        receive: Receive = scope["echo.receive"]
        watcher = asyncio.ensure_future(_wait_disconnect(receive))
        sent = 0

        async def stream_send(message: Message) -> None:
            nonlocal sent
            if watcher.done():
                raise _Disconnected(sent)
            await send(message)
            sent += 1
            if not message.get("more_body", False):
                watcher.cancel()

        return stream_send

    async def _chunk(self, send: Send, data: bytes) -> None:
        await send({"type": "http.response.body", "body": data, "more_body": True})

    def _stats(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "pid": self.pid,
            "requests": self.requests,
            "in_flight": self.in_flight,
            "disconnects": self.disconnects,
        }

    @staticmethod
    def _parse(body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body) if body else {}
        except ValueError as exc:
            raise _BadRequest(f"invalid JSON body: {exc}") from exc
        if not isinstance(data, dict):
            raise _BadRequest("JSON body must be an object")
        return data

    async def _maybe_delay(self, req: dict[str, Any]) -> None:
        delay = req.get("delay")
        if isinstance(delay, int | float) and delay > 0:
            await asyncio.sleep(delay)

    def _pieces(self, reply: str, req: dict[str, Any]) -> list[str]:
        """The reply split into streamed pieces: one per word, or exactly ``chunks`` pieces."""
        words = reply.split(" ")
        pieces = [words[0], *(" " + w for w in words[1:])]
        wanted = req.get("chunks", self.chunks)
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
        }

    @staticmethod
    def _usage(prompt: int, completion: int) -> dict[str, int]:
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    # -- simple routes ----------------------------------------------------------------------

    async def _health(self, send: Send) -> None:
        if time.monotonic() - self.started_at < self.health_delay:
            await self._json(send, {"status": "loading"}, status=503)
        else:
            await self._json(send, {"status": "ok"})

    async def _models(self, send: Send) -> None:
        model = {"id": self.model, "object": "model", "created": self.created, "owned_by": "echo"}
        await self._json(send, {"object": "list", "data": [model]})

    async def _echo(self, scope: Scope, body: bytes, send: Send) -> None:
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        await self._json(
            send,
            {
                "method": scope["method"],
                "path": scope["path"],
                "query": scope["query_string"].decode("latin-1"),
                "headers": headers,
                "body": body.decode("utf-8", errors="replace"),
                "pid": self.pid,
                "model": self.model,
            },
        )

    async def _crash(self, scope: Scope, body: bytes, send: Send) -> None:
        if not self.allow_crash:
            await self._json(send, {"error": {"message": "crash switch disabled"}}, status=403)
            return
        sys.stdout.flush()
        os._exit(3)

    async def _slow(self, scope: Scope, body: bytes, send: Send) -> None:
        delay = 2.0
        query = parse_qs(scope["query_string"].decode("latin-1"))
        if "delay" in query:
            delay = float(query["delay"][0])
        else:
            try:
                value = json.loads(body).get("delay") if body else None
            except (ValueError, AttributeError):
                value = None
            if isinstance(value, int | float):
                delay = float(value)
        await asyncio.sleep(delay)
        await self._echo(scope, body, send)

    # -- OpenAI -----------------------------------------------------------------------------

    async def _chat(self, scope: Scope, body: bytes, send: Send) -> None:
        req = self._parse(body)
        await self._maybe_delay(req)
        model = str(req.get("model") or self.model)
        messages = req.get("messages")
        reply = f"echo {self.model}: {_last_user_text(messages)}"
        pieces = self._pieces(reply, req)
        prompt_n, completion_n = _prompt_words(messages), len(pieces)
        delay = self._chunk_delay(req)
        cid = f"chatcmpl-echo{self.requests}"
        created = int(time.time())
        if not req.get("stream"):
            await self._json(
                send,
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "echo",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "".join(pieces)},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": self._usage(prompt_n, completion_n),
                    "timings": self._timings(prompt_n, completion_n, delay),
                    "request": req,
                },
            )
            return
        head = _dumps(
            {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
        )[:-1].encode()  # without the closing brace
        send = await self._start_sse(scope, send)
        for i, piece in enumerate(pieces):
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
            await self._chunk(
                send, b"data: " + head + b',"choices":[' + _dumps(choice).encode() + b"]}\n\n"
            )
            if delay:
                await asyncio.sleep(delay)
        final = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
        timings = _dumps(self._timings(prompt_n, completion_n, delay)).encode()
        await self._chunk(
            send,
            b"data: "
            + head
            + b',"choices":['
            + _dumps(final).encode()
            + b'],"timings":'
            + timings
            + b"}\n\n",
        )
        options = req.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            usage = _dumps(self._usage(prompt_n, completion_n)).encode()
            await self._chunk(send, b"data: " + head + b',"choices":[],"usage":' + usage + b"}\n\n")
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    async def _completions(self, scope: Scope, body: bytes, send: Send) -> None:
        req = self._parse(body)
        await self._maybe_delay(req)
        model = str(req.get("model") or self.model)
        prompt = req.get("prompt", "")
        text = prompt[-1] if isinstance(prompt, list) and prompt else prompt
        text = text if isinstance(text, str) else str(text)
        pieces = self._pieces(f"echo {self.model}: {text}", req)
        prompt_n, completion_n = _words(text), len(pieces)
        delay = self._chunk_delay(req)
        cid, created = f"cmpl-echo{self.requests}", int(time.time())
        if not req.get("stream"):
            choice = {
                "index": 0,
                "text": "".join(pieces),
                "logprobs": None,
                "finish_reason": "stop",
            }
            await self._json(
                send,
                {
                    "id": cid,
                    "object": "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [choice],
                    "usage": self._usage(prompt_n, completion_n),
                    "timings": self._timings(prompt_n, completion_n, delay),
                    "request": req,
                },
            )
            return
        send = await self._start_sse(scope, send)
        base = {"id": cid, "object": "text_completion", "created": created, "model": model}
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            choice = {
                "index": 0,
                "text": piece,
                "logprobs": None,
                "finish_reason": "stop" if last else None,
            }
            await self._chunk(
                send, b"data: " + _dumps({**base, "choices": [choice]}).encode() + b"\n\n"
            )
            if delay and not last:
                await asyncio.sleep(delay)
        options = req.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            frame = {**base, "choices": [], "usage": self._usage(prompt_n, completion_n)}
            await self._chunk(send, b"data: " + _dumps(frame).encode() + b"\n\n")
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    async def _responses(self, scope: Scope, body: bytes, send: Send) -> None:
        req = self._parse(body)
        await self._maybe_delay(req)
        inp = req.get("input", "")
        if isinstance(inp, list):
            text = _last_user_text([m for m in inp if isinstance(m, dict)] or [])
            prompt_n = _prompt_words(inp)
        else:
            text, prompt_n = str(inp), _words(str(inp))
        reply = f"echo {self.model}: {text}"
        out_n = len(self._pieces(reply, {}))
        rid = f"resp_echo{self.requests}"
        await self._json(
            send,
            {
                "id": rid,
                "object": "response",
                "created_at": int(time.time()),
                "status": "completed",
                "model": str(req.get("model") or self.model),
                "output": [
                    {
                        "type": "message",
                        "id": f"msg_echo{self.requests}",
                        "status": "completed",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": reply, "annotations": []}],
                    }
                ],
                "parallel_tool_calls": True,
                "tool_choice": "auto",
                "tools": [],
                "usage": {
                    "input_tokens": prompt_n,
                    "output_tokens": out_n,
                    "total_tokens": prompt_n + out_n,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens_details": {"reasoning_tokens": 0},
                },
                "request": req,
            },
        )

    async def _embeddings(self, scope: Scope, body: bytes, send: Send) -> None:
        req = self._parse(body)
        inp = req.get("input", "")
        items = inp if isinstance(inp, list) and inp and not isinstance(inp[0], int) else [inp]
        texts = [i if isinstance(i, str) else _dumps(i) for i in items]
        data = [
            {"object": "embedding", "index": i, "embedding": _vector(t)}
            for i, t in enumerate(texts)
        ]
        tokens = sum(_words(t) for t in texts)
        await self._json(
            send,
            {
                "object": "list",
                "data": data,
                "model": str(req.get("model") or self.model),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    async def _rerank(self, scope: Scope, body: bytes, send: Send) -> None:
        req = self._parse(body)
        query = set(str(req.get("query", "")).lower().split())
        docs = req.get("documents", [])
        if not isinstance(docs, list):
            raise _BadRequest("documents must be a list")
        results = []
        for i, doc in enumerate(docs):
            text = doc.get("text", "") if isinstance(doc, dict) else str(doc)
            words = text.lower().split()
            overlap = sum(1 for w in words if w in query)
            score = round(overlap / (len(words) + 1) + _vector(text, 1)[0] * 1e-3, 6)
            results.append({"index": i, "relevance_score": score})
        results.sort(key=lambda r: -float(r["relevance_score"]))
        top_n = req.get("top_n")
        if isinstance(top_n, int) and top_n > 0:
            results = results[:top_n]
        tokens = len(query) + sum(_words(str(d)) for d in docs)
        await self._json(
            send,
            {
                "id": f"rerank-echo{self.requests}",
                "model": str(req.get("model") or self.model),
                "object": "list",
                "results": results,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    async def _transcriptions(self, scope: Scope, body: bytes, send: Send) -> None:
        ctype = ""
        for name, value in scope["headers"]:
            if name.lower() == b"content-type":
                ctype = value.decode("latin-1")
        fields = _multipart_fields(ctype, body)
        form_model = fields.get("model", "")
        await self._json(send, {"text": f"echo {self.model}: model={form_model}"})

    async def _images(self, scope: Scope, body: bytes, send: Send) -> None:
        req = self._parse(body)
        n = req.get("n", 1)
        n = n if isinstance(n, int) and 0 < n <= 10 else 1
        prompt = f"echo {self.model}: {req.get('prompt', '')}"
        await self._json(
            send,
            {
                "created": int(time.time()),
                "data": [{"b64_json": _PNG_1X1, "revised_prompt": prompt} for _ in range(n)],
            },
        )

    # -- llama.cpp native -------------------------------------------------------------------

    async def _completion_native(self, scope: Scope, body: bytes, send: Send) -> None:
        req = self._parse(body)
        prompt = req.get("prompt", "")
        await self._native(scope, req, prompt if isinstance(prompt, str) else _dumps(prompt), send)

    async def _infill(self, scope: Scope, body: bytes, send: Send) -> None:
        req = self._parse(body)
        text = f"{req.get('input_prefix', '')}{req.get('prompt', '')}{req.get('input_suffix', '')}"
        await self._native(scope, req, text, send)

    async def _native(self, scope: Scope, req: dict[str, Any], text: str, send: Send) -> None:
        await self._maybe_delay(req)
        pieces = self._pieces(f"echo {self.model}: {text}", req)
        prompt_n, completion_n = _words(text), len(pieces)
        delay = self._chunk_delay(req)
        timings = self._timings(prompt_n, completion_n, delay)
        if not req.get("stream"):
            await self._json(
                send,
                {
                    "content": "".join(pieces),
                    "model": self.model,
                    "stop": True,
                    "stop_type": "eos",
                    "tokens_predicted": completion_n,
                    "tokens_evaluated": prompt_n,
                    "timings": timings,
                },
            )
            return
        send = await self._start_sse(scope, send)
        for piece in pieces:
            await self._chunk(
                send, b"data: " + _dumps({"content": piece, "stop": False}).encode() + b"\n\n"
            )
            if delay:
                await asyncio.sleep(delay)
        final = {"content": "", "stop": True, "model": self.model, "timings": timings}
        await send(
            {"type": "http.response.body", "body": b"data: " + _dumps(final).encode() + b"\n\n"}
        )

    # -- Anthropic --------------------------------------------------------------------------

    @staticmethod
    def _anthropic_prompt_words(req: dict[str, Any]) -> int:
        return _words(_text_of(req.get("system"))) + _prompt_words(req.get("messages"))

    async def _count_tokens(self, scope: Scope, body: bytes, send: Send) -> None:
        req = self._parse(body)
        await self._json(send, {"input_tokens": self._anthropic_prompt_words(req)})

    async def _messages(self, scope: Scope, body: bytes, send: Send) -> None:
        req = self._parse(body)
        await self._maybe_delay(req)
        model = str(req.get("model") or self.model)
        reply = f"echo {self.model}: {_last_user_text(req.get('messages'))}"
        pieces = self._pieces(reply, req)
        input_n, output_n = self._anthropic_prompt_words(req), len(pieces)
        delay = self._chunk_delay(req)
        mid = f"msg_echo{self.requests}"
        if not req.get("stream"):
            await self._json(
                send,
                {
                    "id": mid,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": "".join(pieces)}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": input_n, "output_tokens": output_n},
                    "request": req,
                },
            )
            return

        def event(name: str, data: dict[str, Any]) -> bytes:
            return b"event: " + name.encode() + b"\ndata: " + _dumps(data).encode() + b"\n\n"

        send = await self._start_sse(scope, send)
        message: dict[str, Any] = {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_n, "output_tokens": 0},
        }
        await self._chunk(
            send, event("message_start", {"type": "message_start", "message": message})
        )
        block = {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        }
        await self._chunk(send, event("content_block_start", block))
        for piece in pieces:
            delta = {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            }
            await self._chunk(send, event("content_block_delta", delta))
            if delay:
                await asyncio.sleep(delay)
        await self._chunk(
            send, event("content_block_stop", {"type": "content_block_stop", "index": 0})
        )
        done = {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": output_n},
        }
        await self._chunk(send, event("message_delta", done))
        await send(
            {
                "type": "http.response.body",
                "body": event("message_stop", {"type": "message_stop"}),
                "more_body": False,
            }
        )


async def _read_body(receive: Receive) -> bytes:
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


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _multipart_fields(content_type: str, body: bytes) -> dict[str, str]:
    """The plain (non-file) fields of a multipart/form-data body."""
    boundary = ""
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        return {}
    fields: dict[str, str] = {}
    for part in body.split(b"--" + boundary.encode()):
        head, sep, raw = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        disposition = head.decode("latin-1")
        if "filename=" in disposition or 'name="' not in disposition:
            continue
        name = disposition.split('name="', 1)[1].split('"', 1)[0]
        fields[name] = raw.removesuffix(b"\r\n").decode("utf-8", errors="replace")
    return fields


def create_app(
    model: str = "echo",
    *,
    health_delay: float = 0.0,
    chunks: int | None = None,
    chunk_delay: float = 0.0,
    allow_crash: bool = False,
    sleep_mode: bool = False,
    fail_wake: bool = False,
) -> EchoApp:
    """A new echo engine app (a factory, e.g. for the ``inproc`` driver)."""
    return EchoApp(
        model,
        health_delay=health_delay,
        chunks=chunks,
        chunk_delay=chunk_delay,
        allow_crash=allow_crash,
        sleep_mode=sleep_mode,
        fail_wake=fail_wake,
    )


app = EchoApp()  # a ready instance for "swapd.echo:app"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m swapd.echo", description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True, help="TCP port (0: pick a free one)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--model", default="echo", help="model name used in replies and headers")
    p.add_argument("--health-delay", type=float, default=0.0, help="GET /health is 503 this long")
    p.add_argument("--start-delay", type=float, default=0.0, help="sleep before binding")
    p.add_argument("--exit-after", type=float, default=None, help="exit after S seconds")
    p.add_argument("--exit-code", type=int, default=1, help="status for --exit-after")
    p.add_argument("--chunks", type=int, default=None, help="streamed pieces per reply")
    p.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between pieces")
    p.add_argument("--ignore-sigterm", action="store_true", help="only SIGKILL stops it")
    p.add_argument("--sleep-mode", action="store_true", help="serve vLLM's /sleep /wake_up API")
    p.add_argument("--fail-wake", action="store_true", help="/wake_up answers 500")
    return p


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    import signal
    import threading

    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, _exit_now)
    signal.signal(signal.SIGINT, _exit_now)
    if args.exit_after is not None:
        if args.exit_after <= 0:
            sys.stdout.flush()
            os._exit(args.exit_code)
        timer = threading.Timer(args.exit_after, _hard_exit, (args.exit_code,))
        timer.daemon = True
        timer.start()
    if args.start_delay > 0:
        time.sleep(args.start_delay)

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        print(f"echo engine: cannot bind {args.host}:{args.port}: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    port = sock.getsockname()[1]

    echo = create_app(
        args.model,
        health_delay=args.health_delay,
        chunks=args.chunks,
        chunk_delay=args.chunk_delay,
        allow_crash=True,
        sleep_mode=args.sleep_mode,
        fail_wake=args.fail_wake,
    )
    _serve(echo, sock, f"echo engine {args.model} listening on http://{args.host}:{port}")


def _exit_now(signum: int, frame: object) -> None:
    sys.stdout.flush()
    os._exit(0)


def _hard_exit(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _serve(echo: EchoApp, sock: socket.socket, banner: str) -> None:
    import contextlib
    import importlib.util

    import uvicorn

    has_uvloop = importlib.util.find_spec("uvloop") is not None
    has_httptools = importlib.util.find_spec("httptools") is not None
    config = uvicorn.Config(
        echo,
        loop="uvloop" if has_uvloop else "asyncio",
        http="httptools" if has_httptools else "h11",
        lifespan="off",
        log_level="warning",
        access_log=False,
        server_header=False,
        date_header=False,
        backlog=2048,
    )

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # our own handlers exit at once
            yield

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                echo.started_at = time.monotonic()
                print(banner, flush=True)

    server = _Server(config)

    if has_uvloop:
        import uvloop

        uvloop.run(server.serve(sockets=[sock]))
    else:
        asyncio.run(server.serve(sockets=[sock]))


if __name__ == "__main__":
    main()
