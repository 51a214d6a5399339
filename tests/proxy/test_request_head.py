"""The native rewrite of a client's request head for the engine (relay.c's request_head, for a
native front): for every head scan_head vouches for, the head it writes is byte for byte the
one the Python relay writes (swapd.proxy.relay.request_head of the scope uvicorn makes)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swapd import native
from swapd.proxy.relay import request_head

from . import llhttp
from .test_head_scan import heads

scan = native.head_scan()
write = native.request_writer()
pytestmark = pytest.mark.skipif(write is None, reason="the native library is not built here")


def python_head(data: bytes, target: str, host: bytes, ip: str, length: int, drop: bool) -> bytes:
    reading = llhttp.read(data)  # uvicorn's scope: llhttp's fields, names in lower case
    scope: dict[str, Any] = {"headers": reading.headers, "client": (ip, 50000) if ip else None}
    return request_head(scope, reading.method.decode(), target, host, length, drop_credentials=drop)


@st.composite
def extra_fields(draw: st.DrawFn) -> bytes:
    """Fields a proxy rewrites: forwarded-for values, credentials, hop-by-hop ones, and a
    Connection (the ones scan_head vouches for: close or keep-alive) with a field it names."""
    fields = []
    for _ in range(draw(st.integers(0, 2))):
        fields.append(
            f"X-Forwarded-For: {draw(st.sampled_from(['10.0.0.1', '1.2.3.4, 5.6.7.8 ']))}"
        )
    names = ["X-Api-Key", "TE", "Trailer", "Keep-Alive", "Close", "X-A"]
    for name in draw(st.sets(st.sampled_from(names))):
        fields.append(f"{name}: v")
    if draw(st.booleans()):
        fields.append("Connection: " + draw(st.sampled_from(["close", "Keep-Alive"])))
    return "".join(f + "\r\n" for f in draw(st.permutations(fields))).encode()


@settings(max_examples=300)
@given(
    head=heads(),
    extra=extra_fields(),
    ip=st.sampled_from(["127.0.0.1", "::1", ""]),
    length=st.integers(0, 10**9),
    drop=st.booleans(),
)
def test_the_engine_gets_the_head_python_writes(
    head: bytes, extra: bytes, ip: str, length: int, drop: bool
) -> None:
    assert scan is not None and write is not None
    line_end = head.index(b"\r\n") + 2
    data = head[:line_end] + extra + head[line_end:]
    found = scan(data)
    if not isinstance(found, native.Head):  # two Connection fields, say: Python's to serve
        assert found == -1
        return
    target = data[slice(*found.target)].decode()
    host = b"127.0.0.1:5801"
    assert write(data, target, host, ip, length, drop) == python_head(
        data, target, host, ip, length, drop
    )


def test_a_chat_request_as_the_engine_gets_it() -> None:
    assert write is not None
    data = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: swapd:8080\r\nAuthorization: Bearer k\r\n"
        b"Content-Length: 16\r\nX-Forwarded-For: 10.0.0.7\r\nConnection: keep-alive\r\n"
        b"User-Agent: OpenAI/Python\r\n\r\n"
    )
    written = write(data, "/v1/chat/completions", b"127.0.0.1:5801", "127.0.0.1", 16, True)
    assert written == (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:5801\r\n"
        b"user-agent: OpenAI/Python\r\nx-forwarded-for: 10.0.0.7, 127.0.0.1\r\n"
        b"content-length: 16\r\n\r\n"
    )
    assert write(b"GET / HTTP/1.0\r\n\r\n", "/", b"h", "", 0, False) is None
