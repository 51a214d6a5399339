"""Forwarding headers: a client cannot make up its address. ``X-Forwarded-For`` (and
``X-Real-IP``, ``Forwarded``) are believed only from ``server.trustedProxies``; the engine
always gets the real peer appended. Checked on real ``swapd serve`` processes through the
echo engine, which answers with the headers it received."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from swapd.config.model import ServerConfig
from swapd.edge import Edge, ForwardingScreen
from swapd.proxy.asgi import Message, Receive, Scope, Send
from swapd.testing import echo_cmd, run_swapd

pytestmark = [pytest.mark.timeout(120), pytest.mark.anyio]

SPOOF = {"x-forwarded-for": "6.6.6.6, 1.2.3.4", "x-real-ip": "6.6.6.6", "forwarded": "for=6.6.6.6"}


@contextmanager
def engine_headers(start_port: int, proxies: str | None) -> Iterator[httpx.Client]:
    server = f"server:\n  trustedProxies: {proxies}\n" if proxies is not None else ""
    echo = json.dumps(echo_cmd())
    config = f"startPort: {start_port}\n{server}models:\n  echo:\n    cmd: {echo}\n"
    with run_swapd(config) as swapd, httpx.Client(base_url=swapd.url, timeout=30) as api:
        yield api


def seen(api: httpx.Client, headers: dict[str, str]) -> dict[str, str]:
    """The headers the engine received for a request sent with ``headers``."""
    answer = api.get("/upstream/echo/headers", headers=headers)
    assert answer.status_code == 200, answer.text
    received: dict[str, str] = answer.json()["headers"]
    return received


def test_forwarding_headers_from_an_untrusted_peer_are_dropped(start_port: int) -> None:
    with engine_headers(start_port, None) as api:
        received = seen(api, SPOOF)
        assert received["x-forwarded-for"] == "127.0.0.1"  # the real peer, nothing made up
        assert "x-real-ip" not in received and "forwarded" not in received
        assert seen(api, {})["x-forwarded-for"] == "127.0.0.1"


def test_a_trusted_proxy_keeps_the_chain_from_the_first_untrusted_hop(start_port: int) -> None:
    with engine_headers(start_port, "[127.0.0.0/8, '::1']") as api:
        received = seen(api, SPOOF)
        # 1.2.3.4 is the client the trusted proxy saw; what it claimed before is unverifiable
        assert received["x-forwarded-for"] == "1.2.3.4, 127.0.0.1"
        assert received["x-real-ip"] == "6.6.6.6"


def test_trusting_every_peer_keeps_the_whole_chain(start_port: int) -> None:
    with engine_headers(start_port, "['*']") as api:
        received = seen(api, SPOOF)
        assert received["x-forwarded-for"] == "6.6.6.6, 1.2.3.4, 127.0.0.1"
        assert received["forwarded"] == "for=6.6.6.6"


async def test_the_asgi_screen_for_h11_drops_untrusted_forwarding_headers() -> None:
    seen_scopes: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen_scopes.append(scope)

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        pass

    settings = ServerConfig(trusted_proxies=("10.0.0.0/8",))
    screen = ForwardingScreen(app, Edge(lambda: settings, 1024))
    sent = [(k.encode(), v.encode()) for k, v in SPOOF.items()] + [(b"accept", b"*/*")]
    for peer in ("127.0.0.1", "10.1.2.3"):
        scope = {"type": "http", "client": (peer, 5000), "headers": list(sent)}
        await screen(scope, receive, send)
        assert scope["headers"] == sent  # the client's scope itself is left alone
    untrusted, trusted = (dict(s["headers"]) for s in seen_scopes)
    assert untrusted == {b"accept": b"*/*"}
    assert trusted[b"x-forwarded-for"] == b"1.2.3.4"
