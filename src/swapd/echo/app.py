"""The echo engine's ASGI app: dispatch, health, models, vLLM's sleep API and the plain echo."""

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


class EchoApp(OpenAISurface, AnthropicSurface, LlamaCppSurface, WebSocketSurface):
    """The echo engine as a pure ASGI application."""

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
