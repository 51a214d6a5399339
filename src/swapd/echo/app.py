"""The echo engine's ASGI app: dispatch, health, models, vLLM's sleep API and the plain echo.

The sleep API follows vLLM's memory tags (``weights``, ``kv_cache``): ``/sleep?level=1`` keeps
the weights in CPU memory, ``level=2`` discards them. ``/wake_up`` re-maps the tags named by
``?tags=`` (all without). Weights woken after a level-2 sleep hold garbage until
``POST /collective_rpc {"method": "reload_weights"}``: inference then answers 200 with
:data:`GARBAGE`, as vLLM serves nonsense after a plain ``/wake_up`` (vllm#29341).
``/is_sleeping`` is true until every tag is awake.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any
from urllib.parse import parse_qs

from swapd.echo.anthropic import AnthropicSurface
from swapd.echo.base import (
    BadRequest,
    Disconnected,
    Receive,
    Route,
    Scope,
    Send,
    read_body,
)
from swapd.echo.llamacpp import LlamaCppSurface
from swapd.echo.openai import OpenAISurface
from swapd.echo.websocket import WebSocketSurface

GARBAGE = "<garbage: weights not reloaded>"
TAGS = ("weights", "kv_cache")
SLEEP_PATHS = ("/sleep", "/wake_up", "/is_sleeping", "/collective_rpc")
CONTROL = ("/crash", "/slow")  # test switches, not inference: unaffected by the weights


class EchoApp(OpenAISurface, AnthropicSurface, LlamaCppSurface, WebSocketSurface):
    """The echo engine as a pure ASGI application."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asleep: set[str] = set()  # memory tags released by /sleep and not woken yet
        self.garbage = False  # weights re-mapped after a level-2 sleep, not reloaded yet

    def _route_table(self) -> dict[str, Route]:
        return {
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
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
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
            if self.sleep_mode and path in SLEEP_PATHS:
                await self._sleep_api(scope, receive, method, path, send)
                return
            if self.asleep and path.startswith("/v1/") and method == "POST":
                await self._json(send, {"error": "engine is sleeping"}, status=503)
                return
            if self.garbage and method == "POST" and path in self._routes and path not in CONTROL:
                await read_body(receive)
                await self._garbage(send)
                return
            if method == "GET":
                if path in ("/v1/models", "/models"):
                    await self._models(send)
                    return
                if path == "/_echo/stats":
                    await self._json(send, self._stats())
                    return
            body = await read_body(receive)
            scope["echo.receive"] = receive
            handler = self._routes.get(path) if method == "POST" else None
            if handler is None:
                await self._echo(scope, body, send)
                return
            try:
                await handler(scope, body, send)
            except BadRequest as exc:
                await self._json(
                    send,
                    {"error": {"message": str(exc), "type": "invalid_request_error", "code": 400}},
                    status=400,
                )
            except Disconnected as exc:
                self.disconnects += 1
                print(
                    f"echo engine {self.model}: client disconnected after {exc} frames", flush=True
                )
        finally:
            self.in_flight -= 1

    async def _sleep_api(
        self, scope: Scope, receive: Receive, method: str, path: str, send: Send
    ) -> None:
        """vLLM's dev-mode sleep endpoints (``--enable-sleep-mode``, ``VLLM_SERVER_DEV_MODE``)."""
        query = parse_qs(scope.get("query_string", b"").decode())
        if path == "/is_sleeping" and method == "GET":
            await self._json(send, {"is_sleeping": bool(self.asleep)})
        elif path == "/sleep" and method == "POST":
            level = int(query.get("level", ["1"])[0])
            self.sleeping = level
            self.asleep = set(TAGS)
            print(f"echo engine {self.model}: sleeping (level {level})", flush=True)
            await self._json(send, {})
        elif path == "/wake_up" and method == "POST":
            if self.fail_wake:
                await self._json(send, {"error": "wake_up failed"}, status=500)
                return
            tags = set(query.get("tags", TAGS)) & self.asleep
            if "weights" in tags and self.sleeping == 2:
                self.garbage = True  # re-mapped, but the content was discarded
            self.asleep -= tags
            if not self.asleep:
                self.sleeping = 0
            woke = ",".join(sorted(tags)) or "nothing"
            print(f"echo engine {self.model}: woke {woke}", flush=True)
            await self._json(send, {})
        elif path == "/collective_rpc" and method == "POST":
            await self._collective_rpc(await read_body(receive), send)
        else:
            await self._json(send, {"error": "method not allowed"}, status=405)

    async def _collective_rpc(self, body: bytes, send: Send) -> None:
        """Only ``reload_weights``, vLLM's answer shape (one result per worker)."""
        try:
            method = self._parse(body).get("method")
        except BadRequest as exc:
            await self._json(send, {"detail": str(exc)}, status=400)
            return
        if method is None:
            await self._json(send, {"detail": "Missing 'method' in request body"}, status=400)
        elif method != "reload_weights":
            await self._json(send, {"error": f"method {method!r} not supported"}, status=500)
        elif "weights" in self.asleep:
            await self._json(send, {"error": "weights are not allocated (asleep)"}, status=500)
        else:
            self.garbage = False
            print(f"echo engine {self.model}: weights reloaded", flush=True)
            await self._json(send, {"results": [None]})

    async def _garbage(self, send: Send) -> None:
        """What an engine with unloaded weights answers: 200, and nonsense."""
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": GARBAGE},
            "text": GARBAGE,
            "finish_reason": "length",
        }
        await self._json(send, {"model": self.model, "choices": [choice], "content": GARBAGE})

    def _stats(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "pid": self.pid,
            "requests": self.requests,
            "in_flight": self.in_flight,
            "disconnects": self.disconnects,
            "websockets_open": self.websockets_open,
            "websocket_closes": [list(c) for c in self.websocket_closes],
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
