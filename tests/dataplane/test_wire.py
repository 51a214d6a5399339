"""What a worker sends besides plain values: errors, engine addresses, and the request bytes of a
connection handed to the owner."""

from __future__ import annotations

import pickle

import httptools

from swapd.dataplane.wire import freeze, freeze_upstream, thaw, upstream_of
from swapd.dataplane.worker import request_bytes
from swapd.errors import NotFound, SwapdError, TooManyRequests, UpstreamGone
from swapd.upstream import Upstream


def test_an_error_crosses_with_its_class_status_and_attributes() -> None:
    for error in (
        NotFound("model 'x' not found"),
        TooManyRequests("too many requests for model 'm'"),
        UpstreamGone("m", "engine for model 'm' is unreachable"),  # takes more than a message
    ):
        again = thaw(pickle.loads(pickle.dumps(freeze(error))))
        assert type(again) is type(error)
        assert again.http_status == error.http_status and again.code == error.code
        assert again.message == error.message and str(again) == str(error)
        assert vars(again) == vars(error)


def test_an_unknown_error_class_arrives_as_a_plain_swapd_error() -> None:
    again = thaw(("NotAnError", "something odd", {}))
    assert type(again) is SwapdError and again.message == "something odd"


def test_an_engine_address_crosses_as_its_fields() -> None:
    upstream = Upstream("http://127.0.0.1:5800", pid=42, container=None, node="box")
    assert upstream_of(pickle.loads(pickle.dumps(freeze_upstream(upstream)))) == upstream


class _Parsed:
    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.url = b""
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done = True


def parse(data: bytes) -> _Parsed:
    parsed = _Parsed()
    parser = httptools.HttpRequestParser(parsed)
    parser.feed_data(data)
    return parsed


def test_a_request_read_whole_is_framed_by_its_length_and_loses_its_expect() -> None:
    headers = [
        (b"host", b"x"),
        (b"transfer-encoding", b"chunked"),
        (b"expect", b"100-continue"),
        (b"authorization", b"Bearer k"),
    ]
    body = b'{"name": null}'
    data = request_bytes("PUT", b"/api/profiles/active?a=1", headers, body) + body
    parsed = parse(data)
    assert parsed.done and parsed.body == body and parsed.url == b"/api/profiles/active?a=1"
    assert (b"content-length", b"14") in parsed.headers
    names = [n for n, _ in parsed.headers]
    assert b"transfer-encoding" not in names and b"expect" not in names
    assert (b"authorization", b"Bearer k") in parsed.headers


def test_an_upgrade_keeps_its_headers_as_received() -> None:
    headers = [(b"host", b"x"), (b"upgrade", b"websocket"), (b"connection", b"Upgrade")]
    data = request_bytes("GET", b"/upstream/m/ws", headers, None, "1.1")
    assert data.startswith(b"GET /upstream/m/ws HTTP/1.1\r\n")
    assert b"upgrade: websocket\r\n" in data and data.endswith(b"\r\n\r\n")
    assert b"content-length" not in data
