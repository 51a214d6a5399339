"""A paced stream reaches the client frame by frame through swapd, never coalesced at the end."""

from __future__ import annotations

import json
import socket
import time

import pytest

from swapd.testing import echo_cmd, run_swapd

pytestmark = pytest.mark.timeout(90)

FRAMES = 200
DELAY = 0.005  # seconds between the engine's frames: the whole stream takes >= 1 s


def paced_stream_reads(url: str) -> list[tuple[float, bytes]]:
    """POST one streamed chat completion over a raw socket; every recv() with its time."""
    host, _, port = url.removeprefix("http://").partition(":")
    body = json.dumps(
        {
            "model": "paced",
            "stream": True,
            "messages": [{"role": "user", "content": "count"}],
            "chunks": FRAMES,
            "chunk_delay": DELAY,
        }
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    reads: list[tuple[float, bytes]] = []
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + body)
        while data := sock.recv(65536):
            reads.append((time.monotonic(), data))
    return reads


def dechunk(body: bytes) -> bytes:
    """The payload of an HTTP/1.1 chunked body."""
    out = b""
    while True:
        size, _, rest = body.partition(b"\r\n")
        n = int(size.split(b";")[0], 16)
        if n == 0:
            return out
        out += rest[:n]
        body = rest[n + 2 :]


def test_a_paced_200_frame_stream_arrives_frame_by_frame_at_c1(start_port: int) -> None:
    config = f"""
startPort: {start_port}
healthCheckTimeout: 20
models:
  paced:
    cmd: {echo_cmd()}
"""
    with run_swapd(config) as swapd:
        paced_stream_reads(swapd.url)  # starts the engine; the measured stream runs warm
        reads = paced_stream_reads(swapd.url)

    head, _, body = b"".join(data for _, data in reads).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    events = dechunk(body).split(b"\n\n")
    assert events[-2:] == [b"data: [DONE]", b""], events[-3:]
    # the engine's frames, then one with finish_reason and usage, then [DONE]
    assert len(events) - 1 == FRAMES + 2, events[:3]
    carrying = [t for t, data in reads if b"data: " in data]
    # A relay that buffers the body gives a handful of reads; one that writes each frame as it
    # comes gives ~200. The margin leaves room for a loaded machine merging a few in the socket.
    assert len(carrying) >= 150, f"{len(carrying)} reads carried the {FRAMES} frames"
    spread = carrying[-1] - carrying[0]
    assert spread >= 0.5 * FRAMES * DELAY, f"frames came within {spread:.3f}s"
