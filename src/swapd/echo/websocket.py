"""The WebSocket surface: an echo socket on every path, for testing proxies of WebSockets.

On connect the engine accepts (with the first subprotocol the client offered) and sends one
text message, a JSON object with ``event: "connected"``, the ``path``, ``query``, ``headers``,
``subprotocol``, ``model`` and ``pid`` it saw. Then every text and binary message comes back
as it was sent. The text message ``close <code> [reason]`` makes the engine close with that code
and reason. ``/ws/refuse`` refuses the upgrade with HTTP 403 and a JSON body instead.

How each connection ended (the client's close code and reason) is kept, the last 32, for
``GET /_echo/stats`` (``websocket_closes``, with ``websockets_open``).
"""

from __future__ import annotations

import os

from swapd.echo.base import EchoBase, Receive, Scope, Send, dumps

REFUSE_PATH = "/ws/refuse"


class WebSocketSurface(EchoBase):
    """The echo socket (mixed into :class:`~swapd.echo.app.EchoApp`)."""

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        if scope["path"] == REFUSE_PATH:
            body = dumps({"error": "refused by the echo engine"}).encode()
            headers = [(b"content-type", b"application/json"), *self._base_headers]
            await send({"type": "websocket.http.response.start", "status": 403, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
            return
        offered: list[str] = list(scope.get("subprotocols") or ())
        accept = {"type": "websocket.accept", "headers": self._base_headers}
        if offered:
            accept["subprotocol"] = offered[0]
        await send(accept)
        self.websockets_open += 1
        try:
            await self._echo_frames(scope, receive, send, offered[0] if offered else None)
        finally:
            self.websockets_open -= 1

    async def _echo_frames(
        self, scope: Scope, receive: Receive, send: Send, subprotocol: str | None
    ) -> None:
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        hello = {
            "event": "connected",
            "path": scope["path"],
            "query": scope["query_string"].decode("latin-1"),
            "headers": headers,
            "subprotocol": subprotocol,
            "model": self.model,
            "pid": os.getpid(),
        }
        await send({"type": "websocket.send", "text": dumps(hello)})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.websocket_closes.append((message.get("code", 1005), message.get("reason", "")))
                return
            text = message.get("text")
            if text is not None and text.startswith("close "):
                _, code, *reason = text.split(" ", 2)
                await send(
                    {"type": "websocket.close", "code": int(code), "reason": " ".join(reason)}
                )
                self.websocket_closes.append((int(code), "closed by the engine"))
                return
            if text is not None:
                await send({"type": "websocket.send", "text": text})
            else:
                await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
