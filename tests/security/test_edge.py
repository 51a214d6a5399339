"""swapd's own HTTP edge: the ``server:`` limits, enforced on real ``swapd serve`` processes
and checked with raw sockets (a header block too big, too slow, idle connections, a connection
cap under a low fd limit)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from swapd.config import Config, load_text
from swapd.edge import derived_cap, fd_budget
from swapd.errors import ConfigError
from swapd.testing import SwapdProcess, echo_cmd, free_port, run_swapd, wait_http

pytestmark = pytest.mark.timeout(120)

MODELS = "models: {a: {cmd: 'x ${PORT}'}}\n"
SLACK = 5.0  # seconds a timed close may come late on a loaded machine


def load(text: str) -> Config:
    return load_text(text, "c.yaml", env={})


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text)
    return [str(i) for i in info.value.issues]


def test_server_block_defaults_when_absent() -> None:
    server = load(MODELS).server
    assert (server.max_header_bytes, server.header_timeout, server.keepalive_timeout) == (
        64 * 1024,
        10.0,
        5.0,
    )
    assert (server.max_connections, server.max_json_depth) == (0, 128)
    assert server.allowed_hosts == () and server.trusted_proxies == ()


def test_server_block_reads_sizes_hosts_and_networks() -> None:
    server = load(
        MODELS
        + """
server:
  maxHeaderBytes: 32KiB
  headerTimeout: 2.5
  keepAliveTimeout: 1
  maxConnections: 50
  maxJsonDepth: 16
  allowedHosts: [Swapd.Example.com, "*"]
  trustedProxies: [10.0.0.1, 192.168.0.0/16, "::1", "*"]
"""
    ).server
    assert server.max_header_bytes == 32 * 1024
    assert (server.header_timeout, server.keepalive_timeout) == (2.5, 1.0)
    assert (server.max_connections, server.max_json_depth) == (50, 16)
    assert server.allowed_hosts == ("swapd.example.com", "*")
    assert server.trusted_proxies == ("10.0.0.1/32", "192.168.0.0/16", "::1/128", "*")


def test_server_block_bad_values_point_at_their_line() -> None:
    found = errors(
        MODELS
        + """server:
  maxHeaderBytes: lots
  headerTimeout: 0
  maxConnections: -3
  maxJsonDepth: 0
  trustedProxies: [10.0.0.300]
  allowedHosts: ["http://x/"]
  maxHeaders: 1
"""
    )
    assert found[0].startswith("c.yaml:3:19: server.maxHeaderBytes: expected a size")
    assert any(e.startswith("c.yaml:4:18: server.headerTimeout") for e in found)
    assert any(e.startswith("c.yaml:5:19: server.maxConnections") for e in found)
    assert any(e.startswith("c.yaml:6:17: server.maxJsonDepth") for e in found)
    assert any("c.yaml:7:20: server.trustedProxies[0]: expected an IP address" in e for e in found)
    assert any("c.yaml:8:18: server.allowedHosts[0]: expected a host name" in e for e in found)
    assert any("server.maxHeaders: unknown key" in e and "maxHeaderBytes" in e for e in found)


# -- on a real swapd -------------------------------------------------------------------------


def serve_config(start_port: int, server: str) -> str:
    echo = json.dumps(echo_cmd())
    return f"startPort: {start_port}\nmodels:\n  echo:\n    cmd: {echo}\nserver:\n{server}"


def connect(port: int, timeout: float = 30.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset ends it too)."""
    out = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            out += chunk
    return out


def read_response(sock: socket.socket) -> bytes:
    """One response with a ``content-length`` from a kept-alive connection."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += sock.recv(65536)
    length = int(parse(raw)[1]["content-length"])
    while len(raw.partition(b"\r\n\r\n")[2]) < length:
        raw += sock.recv(65536)
    return raw


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def request(
    port: int, path: str = "/health", body: bytes = b"", extra: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    """One ``connection: close`` request on a fresh connection (GET, or POST with ``body``)."""
    method = b"POST" if body else b"GET"
    head = b"%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n" % (
        method,
        path.encode(),
        port,
    )
    if body:
        head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
    with connect(port) as sock:
        sock.sendall(head + extra + b"\r\n" + body)
        return parse(read_all(sock))


def chat(port: int) -> int:
    body = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
    return request(port, "/v1/chat/completions", body.encode())[0]


def closed_after(sock: socket.socket) -> tuple[float, bytes]:
    """Seconds until the server closes ``sock``, and what it sent before."""
    began = time.monotonic()
    out = read_all(sock)
    return time.monotonic() - began, out


@pytest.fixture(scope="module")
def edge_swapd() -> Iterator[SwapdProcess]:
    server = "  maxHeaderBytes: 16KiB\n  headerTimeout: 1\n  keepAliveTimeout: 1\n"
    with run_swapd(serve_config(free_port(), server)) as swapd:
        yield swapd


def test_header_block_over_the_limit_gets_431_envelope(edge_swapd: SwapdProcess) -> None:
    port = edge_swapd.port
    big = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
    with connect(port) as sock:
        sender = threading.Thread(target=lambda: _send_quietly(sock, big))
        sender.start()
        status, headers, body = parse(read_all(sock))
        sender.join()
    assert status == 431
    assert headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert error["code"] == "request_header_too_large"
    assert "16384 bytes (server.maxHeaderBytes)" in error["message"]
    assert request(port)[0] == 200  # and swapd serves the next one


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # swapd stops reading past its linger budget
        sock.sendall(data)


def test_header_block_under_the_limit_is_served(edge_swapd: SwapdProcess) -> None:
    status, _, body = request(edge_swapd.port, extra=b"X-Fill: " + b"a" * 15000 + b"\r\n")
    assert (status, body) == (200, b"OK")


def test_slow_headers_get_408_within_the_header_timeout(edge_swapd: SwapdProcess) -> None:
    with connect(edge_swapd.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the rest
        waited, raw = closed_after(sock)
    status, _, body = parse(raw)
    assert status == 408
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert 0.8 <= waited <= 1 + SLACK


def test_a_slow_second_request_on_a_kept_alive_connection_gets_its_own_full_time(
    edge_swapd: SwapdProcess,
) -> None:
    with connect(edge_swapd.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert parse(read_response(sock))[0] == 200
        sock.sendall(b"GET /health HTTP/1.1\r\n")  # the second one stalls
        waited, raw = closed_after(sock)
    assert parse(raw)[0] == 408
    assert 0.8 <= waited <= 1 + SLACK


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    edge_swapd: SwapdProcess,
) -> None:
    with connect(edge_swapd.port) as sock:
        waited, raw = closed_after(sock)
    assert raw == b""
    assert 0.8 <= waited <= 1 + SLACK


def test_an_idle_keep_alive_connection_is_closed(edge_swapd: SwapdProcess) -> None:
    with connect(edge_swapd.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = parse(read_response(sock))
        waited, rest = closed_after(sock)
    assert first[0] == 200
    assert rest == b""
    assert 0.8 <= waited <= 1 + SLACK


# -- a connection cap under a low fd limit ---------------------------------------------------

FD_LIMIT = 200


@contextlib.contextmanager
def swapd_with_fd_limit(config: str, fds: int) -> Iterator[tuple[int, Path]]:
    """``swapd serve`` with soft and hard ``RLIMIT_NOFILE`` set to ``fds``; (port, log path)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="swapd-test-") as tmp:
        path = Path(tmp) / "swapd.yaml"
        path.write_text(config, encoding="utf-8")
        log = Path(tmp) / "swapd.log"
        launch = (
            "import os, resource, sys; "
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({fds}, {fds})); "
            "os.execv(sys.executable, [sys.executable, '-m', 'swapd', *sys.argv[1:]])"
        )
        argv = [sys.executable, "-c", launch, "serve", "--config", str(path)]
        argv += ["--listen", f"127.0.0.1:{port}"]
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            try:
                wait_http(f"http://127.0.0.1:{port}/health", 30, proc=proc)  # type: ignore[arg-type]
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}:\n{log.read_text(errors='replace')}") from exc
            yield port, log
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_derived_cap_leaves_fds_for_upstream_sockets_and_engines() -> None:
    for fds in (200, 1024, 1 << 20):
        cap = derived_cap(fds)
        assert cap * 2 + cap // 4 <= fd_budget(fds) < fds - 64


def test_connection_cap_keeps_swapd_answering_under_a_low_fd_limit(start_port: int) -> None:
    cap = derived_cap(FD_LIMIT)
    config = serve_config(start_port, "  headerTimeout: 60\n")
    with swapd_with_fd_limit(config, FD_LIMIT) as (port, log):
        idle = [connect(port) for _ in range(cap - 1)]
        try:
            wait_http(f"http://127.0.0.1:{port}/health", 10)  # all accepted: one slot left
            assert chat(port) == 200  # an engine starts: pipes and an upstream socket
            idle += [connect(port) for _ in range(220)]
            status, headers, body = request(port)  # clean refusals past the cap
            assert status == 503
            assert headers["retry-after"] == "1"
            assert json.loads(body)["error"]["code"] == "too_many_connections"
        finally:
            for sock in idle:
                sock.close()
        wait_http(f"http://127.0.0.1:{port}/health", 10)  # requests work again
        assert chat(port) == 200
        text = log.read_text(errors="replace")
    assert "connection cap reached" in text
    assert "Traceback" not in text
