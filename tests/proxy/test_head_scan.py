"""The native scan of a request head (relay.c's scan_head, for a native front): wherever it
vouches for a head, llhttp (uvicorn's parser, through httptools) takes the same bytes as a
whole head and reads the same method, target, content-length, connection and fields; while it
asks for more bytes, llhttp has found nothing wrong either; the rest it leaves to Python."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swapd import native

from . import llhttp

scan = native.head_scan()
pytestmark = pytest.mark.skipif(scan is None, reason="the native library is not built here")

TCHAR = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
TARGET = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "#")
VALUE = "".join(chr(c) for c in range(0x20, 0x7F)) + "\t"
WHITE = " \t"
LEFT_TO_PYTHON = {"transfer-encoding", "expect", "upgrade", "content-length", "connection"}


def assert_read_alike(data: bytes, head: native.Head) -> None:
    """llhttp takes ``data[:head.size]`` as a whole head and reads it as ``head`` says."""
    reading = llhttp.read(data[: head.size])
    assert reading.error is None and reading.complete, reading
    assert reading.method.decode() == head.method and reading.version == "1.1"
    assert reading.url == data[slice(*head.target)]
    assert reading.keep_alive is not head.close
    fields = {}
    for name, value in reading.headers:
        fields[name.decode()] = value.strip(b" \t")
    assert {k: data[slice(*v)] for k, v in head.fields.items()} == {
        k: v for k, v in fields.items() if k in native.NOTED
    }
    length = fields.get("content-length")
    assert head.length == (None if length is None else int(length))


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    """A request head as clients write it: a method, an origin-form target, any fields (the
    noted ones at most once each, any case), spaces around values."""
    method = draw(st.sampled_from(native.METHODS))
    target = "/" + draw(st.text(TARGET, max_size=30))
    names = st.text(TCHAR, min_size=1, max_size=12).filter(
        lambda n: n.lower() not in LEFT_TO_PYTHON and n.lower() not in native.NOTED
    )
    fields = draw(st.lists(st.tuples(names, st.text(VALUE, max_size=20)), max_size=6))
    for name in native.NOTED:
        if draw(st.booleans()):
            fields.append((draw(st.sampled_from([name, name.title(), name.upper()])), "v x"))
    if draw(st.booleans()):
        fields.append(("Content-Length", str(draw(st.integers(0, 10**15 - 1)))))
    if draw(st.booleans()):
        fields.append(("Connection", draw(st.sampled_from(["close", "Close", "keep-alive"]))))
    fields = draw(st.permutations(fields))
    pad = st.sampled_from(["", " ", "\t", "  "])
    lines = [f"{method} {target} HTTP/1.1"]
    lines += [f"{n}:{draw(pad)}{v.strip(WHITE)}{draw(pad)}" for n, v in fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@settings(max_examples=300)
@given(heads(), st.binary(max_size=20))
def test_a_head_clients_write_is_vouched_for_and_read_as_llhttp_reads_it(
    head: bytes, body: bytes
) -> None:
    assert scan is not None
    found = scan(head + body)
    assert isinstance(found, native.Head), (head, found)
    assert found.size == len(head)
    assert_read_alike(head, found)


@settings(max_examples=100)
@given(heads())
def test_every_prefix_of_a_head_asks_for_more(head: bytes) -> None:
    assert scan is not None
    assert all(scan(head[:k]) == 0 for k in range(len(head)))


SPECIAL = [b"\r", b"\n", b"\r\n", b" ", b"\t", b":", b"#", b"\x00", b"\x7f", b"\x80", b"\xff"]


@settings(max_examples=600)
@given(heads(), st.data())
def test_edited_heads_are_vouched_for_only_as_llhttp_reads_them(
    head: bytes, data: st.DataObject
) -> None:
    assert scan is not None
    edited = llhttp.edited(head, data, SPECIAL)
    found = scan(edited)
    if isinstance(found, native.Head):
        assert_read_alike(edited, found)
    elif found == 0:  # "read more": llhttp has seen nothing wrong so far
        reading = llhttp.read(edited)
        assert reading.error is None and not reading.complete, (edited, reading)


@pytest.mark.parametrize(
    "head",
    [
        b"POST /v1/chat HTTP/1.0\r\n\r\n",
        b"POST /v1/chat HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /v1/chat HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        b"GET /v1/chat HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"POST /v1/chat HTTP/1.1\r\nConnection: close, te\r\n\r\n",
        b"POST /v1/chat HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"POST /v1/chat HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\n",
        b"POST /v1/chat HTTP/1.1\r\nContent-Length: 1234567890123456\r\n\r\n",
        b"POST /v1/chat HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
        b"POST /v1/chat HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n",
        b"POST /v1/chat HTTP/1.1\nHost: a\n\n",
        b"POST /v1/chat HTTP/1.1\r\nX-A: caf\xc3\xa9\r\n\r\n",
        b"POST /v1/chat#part HTTP/1.1\r\n\r\n",
        b"POST http://host/v1/chat HTTP/1.1\r\n\r\n",
        b"post /v1/chat HTTP/1.1\r\n\r\n",
        b"PROPFIND /v1/chat HTTP/1.1\r\n\r\n",
        b"\r\nPOST /v1/chat HTTP/1.1\r\n\r\n",
        b"POST /v1/chat HTTP/1.1\r\nX-A: " + b"a" * 20000 + b"\r\n\r\n",
        b"POST /v1/chat HTTP/1.1\r\nX-A: " + b"a" * 20000,  # too long to wait for its end
        b"POST /v1/chat HTTP/1.1\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n",
    ],
)
def test_what_a_front_leaves_to_python(head: bytes) -> None:
    assert scan is not None
    assert scan(head) == -1


def test_a_chat_request_read_by_a_front() -> None:
    assert scan is not None
    data = (
        b"POST /v1/chat/completions?x=1 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n"
        b"Authorization:  Bearer sk-1 \r\nContent-Type: application/json\r\n"
        b"Content-Length: 16\r\nConnection: Keep-Alive\r\n\r\n"
    )
    found = scan(data + b'{"model":"a-1"}\n')
    assert isinstance(found, native.Head)
    assert found.size == len(data) and found.method == "POST" and found.length == 16
    assert data[slice(*found.target)] == b"/v1/chat/completions?x=1" and not found.close
    assert {k: data[slice(*v)] for k, v in found.fields.items()} == {
        "host": b"127.0.0.1:8080",
        "authorization": b"Bearer sk-1",
        "content-type": b"application/json",
    }
    closing = scan(b"GET /v1/models HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert isinstance(closing, native.Head) and closing.close and closing.length is None
