"""The protocol-level relay (swapd.proxy.relay): framing per client, kept-alive connections
both ways, and the header blocks it builds."""

from __future__ import annotations

import http.client
import json
import re
import socket
import time

import pytest

from fakes import raw_engine_cmd
from swapd.proxy.forward import response_headers
from swapd.proxy.relay import request_head
from swapd.testing import echo_cmd, run_swapd

FRAME = b'data: {"choices":[{"index":0,"delta":{"content":"half"}}]}\n\n'  # raw_engine's

pytestmark = pytest.mark.timeout(90)


def config(start_port: int) -> str:
    return f"""
startPort: {start_port}
healthCheckTimeout: 20
models:
  alpha:
    cmd: {echo_cmd()}
"""


def chat(stream: bool, text: str = "hello") -> bytes:
    message = {"role": "user", "content": text}
    return json.dumps({"model": "alpha", "stream": stream, "messages": [message]}).encode()


def test_an_http10_client_reads_a_stream_to_the_close_without_chunked_framing(
    start_port: int,
) -> None:
    with run_swapd(config(start_port)) as swapd:
        body = chat(True)
        request = (
            b"POST /v1/chat/completions HTTP/1.0\r\nhost: 127.0.0.1\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
        )
        with socket.create_connection(("127.0.0.1", swapd.port), timeout=30) as sock:
            sock.sendall(request)
            received = b""
            while chunk := sock.recv(65536):  # the end of the body is the close
                received += chunk
    head, _, payload = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"transfer-encoding" not in head.lower()
    assert b"connection: close" in head.lower()
    assert payload.startswith(b"data: {") and payload.endswith(b"data: [DONE]\n\n")
    assert b"hello" in payload


def test_requests_on_one_kept_alive_connection_are_each_answered_in_full(
    start_port: int,
) -> None:
    with run_swapd(config(start_port)) as swapd:
        conn = http.client.HTTPConnection("127.0.0.1", swapd.port, timeout=30)
        answers = []
        for stream in (False, True, False, True):
            headers = {"content-type": "application/json"}
            body = chat(stream, "again")
            conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
            sock = conn.sock
            response = conn.getresponse()
            answers.append((response.status, response.read(), response.getheader("date")))
            assert conn.sock is sock  # the same client connection throughout
        conn.close()
    for status, payload, date in answers:
        assert status == 200 and date
        assert b"again" in payload
    assert answers[1][1].endswith(b"data: [DONE]\n\n")
    assert json.loads(answers[2][1])["choices"][0]["message"]["content"].startswith("echo alpha")


def test_the_request_head_drops_hop_by_hop_headers_and_credentials_and_appends_the_peer() -> None:
    scope = {
        "client": ("10.0.0.7", 5000),
        "headers": [
            (b"host", b"swapd:8080"),
            (b"connection", b"keep-alive, x-private"),
            (b"x-private", b"secret"),
            (b"authorization", b"Bearer k"),
            (b"x-forwarded-for", b"1.2.3.4"),
            (b"content-length", b"999"),
            (b"content-type", b"application/json"),
        ],
    }
    head = request_head(scope, "POST", "/v1/x?a=1", b"127.0.0.1:5800", 12, drop_credentials=True)
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/x?a=1 HTTP/1.1"
    assert lines[1] == b"host: 127.0.0.1:5800"
    assert b"content-type: application/json" in lines
    assert b"x-forwarded-for: 1.2.3.4, 10.0.0.7" in lines
    assert b"content-length: 12" in lines
    assert head.endswith(b"\r\n\r\n")
    for gone in (b"x-private", b"authorization", b"connection", b"999"):
        assert gone not in head


def test_response_headers_mark_sse_unbuffered_and_say_how_the_body_is_framed() -> None:
    raw = [
        (b"content-type", b"text/event-stream"),
        (b"transfer-encoding", b"chunked"),
        (b"connection", b"x-hop"),
        (b"x-hop", b"1"),
        (b"x-accel-buffering", b"yes"),
    ]
    headers, length, chunked = response_headers(raw)
    names = [name for name, _ in headers]
    assert chunked and not length
    assert (b"x-accel-buffering", b"no") in headers and names.count(b"x-accel-buffering") == 1
    assert b"date" in names
    assert not {b"transfer-encoding", b"connection", b"x-hop"} & set(names)


def test_a_client_that_stops_reading_gets_every_frame_and_its_connection_serves_again(
    start_port: int,
) -> None:
    with run_swapd(config(start_port)) as swapd:
        conn = http.client.HTTPConnection("127.0.0.1", swapd.port, timeout=60)
        conn.connect()
        assert conn.sock is not None
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)  # fills soon
        body = json.loads(chat(True))
        body["chunks"] = 30000  # ~6 MB: more than the socket buffers hold
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body).encode())
        response = conn.getresponse()
        time.sleep(1.0)  # meanwhile swapd pauses reading the engine (flow control)
        streamed = response.read()
        conn.request("POST", "/v1/chat/completions", body=chat(False, "after"))
        again = conn.getresponse()
        answer = again.read()
        conn.close()
    assert streamed.count(b"data: {") >= 30000
    assert streamed.endswith(b"data: [DONE]\n\n")
    assert again.status == 200 and b"after" in answer


def _read_chunked(sock: socket.socket) -> tuple[bytes, bytes]:
    """One response's head and its body as framed on the wire (up to its terminating chunk)."""
    received = b""
    while b"\r\n0\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize("act", ["act:chunks", "act:whole"])
def test_whole_chunks_in_the_heads_packet_reach_the_client_as_the_engine_framed_them(
    start_port: int, act: str
) -> None:
    cfg = f"""
startPort: {start_port}
healthCheckTimeout: 20
models:
  raw:
    cmd: {raw_engine_cmd()}
"""
    with run_swapd(cfg) as swapd:
        payload = json.dumps({"model": "raw", "stream": True, "prompt": act}).encode()
        request = (
            b"POST /v1/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (len(payload), payload)
        )
        with socket.create_connection(("127.0.0.1", swapd.port), timeout=30) as sock:
            answers = []
            for _ in range(2):  # the connection serves again after each
                sock.sendall(request)
                answers.append(_read_chunked(sock))
    count = 4 if act == "act:chunks" else 3
    for head, body in answers:
        assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head
        assert body.startswith(b"%x;ext=1\r\n" % len(FRAME.replace(b"half", b"part0")))
        assert body.endswith(b"\r\n0\r\n\r\n")
        assert [m.group(1) for m in re.finditer(rb'"content":"(part\d)"', body)] == [
            b"part%d" % n for n in range(count)
        ]
