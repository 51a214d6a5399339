"""The native rewrite of an engine's response head (relay.c's response_head, for a native
front): wherever it takes a head, llhttp takes the same bytes as a whole head, and the client's
head it writes is byte for byte the one the Python relay writes (forward.response_headers,
relay.body_mode and relay.client_head), with the same body mode and connection reuse."""

from __future__ import annotations

import string
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from swapd import native
from swapd.proxy import forward
from swapd.proxy.relay import body_mode, client_head

from . import llhttp

scan = native.response_scan(STATUS_LINE)
pytestmark = pytest.mark.skipif(scan is None, reason="the native library is not built here")

DATE = b"Thu, 03 Dec 2026 07:40:00 GMT"
TCHAR = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
VALUE = "".join(chr(c) for c in range(0x20, 0x7F)) + "\t"


def python_head(reading: llhttp.Reading, keeps: bool, head_only: bool) -> tuple[bytes, int]:
    """The client's head and the body mode, as the Python relay makes them."""
    headers, length, chunked = forward.response_headers(reading.headers)
    mode = body_mode(reading.status, length, chunked, head_only=head_only, http10=False)
    return client_head(reading.status, headers, mode, keeps), mode


def assert_written_alike(data: bytes, found: native.Response, keeps: bool, head_only: bool) -> None:
    reading = llhttp.read(data[: found.size], response=True)
    assert reading.error is None and reading.complete, reading
    with mock.patch.object(forward, "http_date", lambda: DATE):
        head, mode = python_head(reading, keeps, head_only)
    assert found.head == head
    assert (found.status, found.mode) == (reading.status, mode)
    lengths = [int(v) for k, v in reading.headers if k == b"content-length"]
    assert found.length == (lengths[0] if lengths else None)
    if not head_only:  # llhttp does not know the request was a HEAD
        assert found.reuse == reading.keep_alive


HOP = ["Keep-Alive", "TE", "Trailer", "Upgrade", "Host", "Proxy-Connection", "Expect"]


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    """An engine's response head: a status, any fields, the ones swapd rewrites among them in
    any case, a framing, and a Connection naming some of them."""
    status = draw(st.sampled_from([200, 201, 204, 304, 400, 404, 418, 429, 500, 503, 599]))
    reason = draw(st.sampled_from(["OK", "", "Whatever It Says", "x\ty"]))
    names = st.text(TCHAR, min_size=1, max_size=10).filter(
        lambda n: n.lower() not in ("content-length", "transfer-encoding", "connection")
    )
    fields = draw(st.lists(st.tuples(names, st.text(VALUE, max_size=16)), max_size=5))
    fields += [(n, "1") for n in draw(st.lists(st.sampled_from(HOP), max_size=2))]
    kind = draw(st.sampled_from(["text/event-stream", "application/json", "Text/Event-Stream"]))
    fields.append((draw(st.sampled_from(["Content-Type", "content-type"])), kind))
    for name in draw(st.sets(st.sampled_from(["X-Accel-Buffering", "Date", "Server"]))):
        fields.append((name, "yes"))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    if framing == "length":
        fields.append(("Content-Length", str(draw(st.integers(0, 10**12)))))
    elif framing == "chunked":
        fields.append(("Transfer-Encoding", draw(st.sampled_from(["chunked", "Chunked"]))))
    if draw(st.booleans()):
        named = draw(
            st.lists(st.sampled_from([n for n, _ in fields] + ["close", "keep-alive"]), max_size=6)
        )
        fields.append(("Connection", ", ".join(named) or "keep-alive"))
    fields = draw(st.permutations(fields))
    pad = st.sampled_from(["", " ", "\t"])
    lines = [f"HTTP/1.1 {status} {reason}"]
    after = {n: "" for n, _ in fields if n == "Transfer-Encoding"}  # "chunked\t": no framing
    lines += [f"{n}:{draw(pad)}{v.strip()}{after.get(n, draw(pad))}" for n, v in fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


flags = st.tuples(st.booleans(), st.booleans())


@settings(max_examples=300)
@given(head=heads(), flags=flags, body=st.binary(max_size=12))
def test_a_head_engines_send_is_taken_and_rewritten_as_python_does(
    head: bytes, flags: tuple[bool, bool], body: bytes
) -> None:
    assert scan is not None
    found = scan(head + body, DATE, *flags)
    assert isinstance(found, native.Response), (head, found)
    assert found.size == len(head)
    assert_written_alike(head, found, *flags)


@settings(max_examples=60)
@given(heads())
def test_every_prefix_of_a_response_head_asks_for_more(head: bytes) -> None:
    assert scan is not None
    assert all(scan(head[:k], DATE, True, False) == 0 for k in range(len(head)))


SPECIAL = [b"\r", b"\n", b"\r\n", b" ", b"\t", b":", b",", b"\x00", b"\x7f", b"\x80", b"1"]


@settings(max_examples=500)
@given(head=heads(), flags=flags, data=st.data())
def test_edited_response_heads_are_taken_only_as_llhttp_reads_them(
    head: bytes, flags: tuple[bool, bool], data: st.DataObject
) -> None:
    assert scan is not None
    edited = llhttp.edited(head, data, SPECIAL)
    found = scan(edited, DATE, *flags)
    if isinstance(found, native.Response):
        assert_written_alike(edited, found, *flags)
    elif found == 0:
        reading = llhttp.read(edited, response=True)
        assert reading.error is None and not reading.complete, (edited, reading)


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.0 200 OK\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 200\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\t\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: caf\xc3\xa9\r\n\r\n",
        b"HTTP/1.1 200 OK\nX-A: 1\n\n",
        b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n",
    ],
)
def test_what_a_front_leaves_to_python_in_a_response(head: bytes) -> None:
    assert scan is not None
    assert scan(head, DATE, True, False) == -1


def test_an_engines_event_stream_as_the_client_gets_it() -> None:
    assert scan is not None
    data = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Accel-Buffering: yes\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: keep-alive, X-Trace\r\nX-Trace: 1\r\n"
        b"Server: llama.cpp\r\n\r\n"
    )
    found = scan(data + b"5\r\nhello\r\n", DATE, False, False)
    assert isinstance(found, native.Response)
    assert found.size == len(data) and found.reuse and found.length is None
    assert found.head == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nserver: llama.cpp\r\n"
        b"x-accel-buffering: no\r\ndate: " + DATE + b"\r\ntransfer-encoding: chunked\r\n"
        b"connection: close\r\n\r\n"
    )
