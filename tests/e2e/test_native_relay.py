"""A stream through a real swapd with the native relay (swapd.native) and without it: the same
bytes, the same activity record and capture; while it runs, the in-flight table's byte count
grows; and the relay thread runs only where it is on."""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from swapd import native
from swapd.testing import echo_cmd, run_swapd, worker_pids

pytestmark = pytest.mark.timeout(120)


def relay_threads(pid: int) -> int:
    """Native relay threads in swapd ``pid`` and its data-plane workers (one per process that
    handed a body over)."""
    count = 0
    for process in [pid, *worker_pids(pid)]:
        for task in Path(f"/proc/{process}/task").iterdir():
            count += (task / "comm").read_text().strip() == "swapd-relay"
    return count


def stream(url: str, chunks: int, delay: float) -> tuple[bytes, list[int]]:
    """One paced stream; the in-flight table's byte counts read while it runs."""
    body = {
        "model": "alpha",
        "stream": True,
        "messages": [{"role": "user", "content": "native"}],
        "chunks": chunks,
        "chunk_delay": delay,
        "stream_options": {"include_usage": True},
    }
    counts: list[int] = []
    got = b""
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        pieces = response.iter_raw()
        for n, piece in enumerate(pieces):
            got += piece
            if n in (20, 60):
                [entry] = httpx.get(f"{url}/api/inflight", timeout=10).json()["requests"]
                counts.append(entry["resp_bytes"])
    return got, counts


@pytest.mark.parametrize("setting", ["1", "0"])
def test_a_stream_is_the_same_with_and_without_the_native_relay(
    start_port: int, setting: str
) -> None:
    if setting == "1" and native.library() is None:
        pytest.skip("the native relay is not built here")
    config = f"""
startPort: {start_port}
healthCheckTimeout: 20
captureBuffer: 1
models:
  alpha:
    cmd: {echo_cmd()}
"""
    env = {**os.environ, "SWAPD_NATIVE_RELAY": setting, "SWAPD_NATIVE_FRONT": "0"}  # relay's
    with run_swapd(config, env=env) as swapd:
        stream(swapd.url, 3, 0)  # starts the engine
        got, counts = stream(swapd.url, 120, 0.01)
        threads = relay_threads(swapd.proc.pid)
        records: list[dict[str, Any]] = httpx.get(f"{swapd.url}/api/activity").json()["activity"]
        record = records[0]
        deadline = time.monotonic() + 10
        while (capture := httpx.get(f"{swapd.url}/api/captures/{record['id']}")).status_code != 200:
            assert time.monotonic() < deadline, capture.text
            time.sleep(0.05)

    assert (threads > 0) == (setting == "1")
    assert got.endswith(b"data: [DONE]\n\n")
    assert got.count(b"data: ") == 120 + 3  # the frames, finish_reason, usage, [DONE]
    assert counts[0] > 0 and counts[1] > counts[0], counts  # the meter follows the stream
    assert record["status"] == 200 and record["ttfb"] is not None
    assert record["completion_tokens"] == 120  # read from the body's tail
    body = base64.b64decode(capture.json()["resp_body"])
    assert body == got  # the capture has the whole body


def test_clients_that_close_on_the_last_event_have_their_streams_recorded_as_served(
    start_port: int,
) -> None:
    """A client that hangs up as soon as it has read ``[DONE]`` (as the openai SDK does) got the
    whole answer: the request is served (200), not cut by the client (499), with or without the
    native relay in between."""
    config = f"""
startPort: {start_port}
healthCheckTimeout: 20
models:
  alpha:
    cmd: {echo_cmd()}
"""
    body = json.dumps(
        {"model": "alpha", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    ).encode()
    with run_swapd(config) as swapd:
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{swapd.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        for _ in range(40):
            with socket.create_connection(("127.0.0.1", swapd.port), timeout=30) as sock:
                sock.sendall(head + body)
                got = b""
                while b"data: [DONE]" not in got:
                    piece = sock.recv(65536)
                    assert piece, got[-200:]
                    got += piece
        deadline = time.monotonic() + 10
        while True:
            records = httpx.get(f"{swapd.url}/api/activity").json()["activity"]
            if len(records) == 40 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert sorted(r["status"] for r in records) == [200] * 40
