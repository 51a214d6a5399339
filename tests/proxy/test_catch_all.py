"""The proxy's one catch-all: whatever escapes a route is a JSON 500 or a dropped connection."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any, cast

import pytest

from swapd.config.model import Config
from swapd.observe.logs import LogRing
from swapd.proxy.app import Proxy
from swapd.proxy.asgi import Aborted, Message, Receive, Scope, Send
from swapd.proxy.forward import UpstreamClient
from swapd.scheduler import Scheduler

pytestmark = pytest.mark.anyio


def proxy(admin: Any) -> Proxy:
    scheduler = cast(Scheduler, SimpleNamespace(config=Config()))
    return Proxy(scheduler, cast(UpstreamClient, None), LogRing("swapd"), admin=admin)


def scope(path: str) -> Scope:
    return {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}


async def call(app: Proxy, path: str) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope(path), receive, send)
    return sent


async def test_a_bug_in_a_route_is_a_json_500_with_the_traceback_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise KeyError("oops")

    with caplog.at_level(logging.ERROR, logger="swapd.proxy"):
        sent = await call(proxy(broken), "/api/broken")
    assert sent[0]["status"] == 500
    error = json.loads(sent[1]["body"])["error"]
    assert error["code"] == "internal_error" and "oops" not in error["message"]
    assert any(r.exc_info and "KeyError" in r.exc_text for r in caplog.records if r.exc_text)


async def test_a_bug_after_the_response_started_aborts_the_connection() -> None:
    async def half(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise RuntimeError("mid-body")

    with pytest.raises(Aborted) as caught:
        await call(proxy(half), "/api/half")
    assert caught.value.status == 500


def test_uvicorn_does_not_log_a_traceback_for_an_aborted_response() -> None:
    proxy(None)
    record = logging.LogRecord(
        "uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application", None, None
    )
    record.exc_info = (Aborted, Aborted(502, "cut"), None)
    assert not logging.getLogger("uvicorn.error").filter(record)
