"""``sendLoadingState``: progress as ``reasoning_content`` frames while a model starts.

The 200 SSE headers go out at once; frames report the model's state, queue position and
elapsed time every ``TICK`` seconds; ``Done!`` ends the progress and the engine's own SSE bytes
follow on the same response. Once the 200 is out, a failure (the start, the engine's error
status, an unreachable engine) is one ``data: {"error": …}`` frame that ends the stream.
"""

from __future__ import annotations

import json
import time

import anyio

from swapd.lease import Lease
from swapd.proxy.asgi import Send

TICK = 0.75
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def frame(model: str, text: str) -> bytes:
    chunk = {
        "id": "swapd-loading",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": {"reasoning_content": text}, "finish_reason": None}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


async def send_frame(send: Send, model: str, text: str) -> None:
    await send({"type": "http.response.body", "body": frame(model, text), "more_body": True})


async def begin(send: Send, model: str) -> None:
    """Answer 200 as an SSE stream, with the first progress frame."""
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    await send_frame(send, model, f"swapd: loading model {model}\n")


async def report(send: Send, lease: Lease) -> None:
    """Send progress frames until cancelled (the caller cancels once the lease resolves)."""
    start = anyio.current_time()
    said = ("", 0)
    while True:
        await anyio.sleep(TICK)
        progress = lease.progress()  # llama-server: its load phase
        position = lease.position
        now = (str(progress["phase"]) if progress else lease.state(), position)
        if now != said:
            where = f", queue position #{position}" if position else ""
            text = f"\n{now[0]}{where} ({anyio.current_time() - start:.1f}s) "
            said = now
        else:
            text = "."
        await send_frame(send, lease.model, text)


async def finish(send: Send, model: str, elapsed: float) -> None:
    await send_frame(send, model, f"\nDone! ({elapsed:.2f}s)\n")


async def send_error(send: Send, error: bytes) -> None:
    """End the stream with an error frame ``data: {"error": …}`` (the 200 is already out)."""
    await send({"type": "http.response.body", "body": b"data: " + error + b"\n\n"})
