"""``--served-model-name A [B ...]``: the echo engine answers only to those model names.

Like vLLM (``OpenAIServing._check_model``), a request whose JSON body names another ``model``
gets 404 ``The model `X` does not exist.`` (type ``NotFoundError``), and ``GET /v1/models``
lists the names; a body without ``model`` goes through. Tests use it to prove that what swapd
forwards is a name the engine serves (``useModelName``, recipes' served names).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from swapd.echo.base import Receive, Scope, Send

ASGIApp = Any  # an ASGI callable (the EchoApp)


class ServedNames:
    """ASGI wrapper around the echo app that checks the requested model name."""

    def __init__(self, app: ASGIApp, names: Sequence[str]) -> None:
        self.app = app
        self.names = tuple(dict.fromkeys(names))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "GET" and scope["path"] in ("/v1/models", "/models"):
            data = [{"id": n, "object": "model", "owned_by": "echo"} for n in self.names]
            await _json(send, 200, {"object": "list", "data": data})
            return
        messages = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        model = _model_of(body)
        if model is not None and model not in self.names:
            await _json(
                send,
                404,
                {
                    "error": {
                        "message": f"The model `{model}` does not exist.",
                        "type": "NotFoundError",
                        "param": "model",
                        "code": 404,
                    }
                },
            )
            return
        pending: list[Any] = [{"type": "http.request", "body": body, "more_body": False}]
        if messages and messages[-1]["type"] != "http.request":
            pending.append(messages[-1])  # a disconnect seen while reading

        async def replay() -> Any:
            return pending.pop(0) if pending else await receive()

        await self.app(scope, replay, send)


def _model_of(body: bytes) -> str | None:
    try:
        data = json.loads(body) if body else None
    except ValueError:
        return None
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) else None


async def _json(send: Send, status: int, data: Any) -> None:
    raw = json.dumps(data).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})
