"""Model extraction from bodies: multipart scans, and big ones off the event loop."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from swapd.proxy import body

pytestmark = pytest.mark.anyio

BOUNDARY = b"----swapdtestboundary"
CTYPE = b"multipart/form-data; boundary=" + BOUNDARY


def multipart(model: bytes, file: bytes, stream: bytes = b"true") -> bytes:
    def part(name: bytes, value: bytes, extra: bytes = b"") -> bytes:
        head = b'Content-Disposition: form-data; name="' + name + b'"' + extra
        return b"--" + BOUNDARY + b"\r\n" + head + b"\r\n\r\n" + value + b"\r\n"

    return (
        part(b"file", file, b'; filename="a.wav"\r\nContent-Type: audio/wav')
        + part(b"model", model)
        + part(b"stream", stream)
        + b"--"
        + BOUNDARY
        + b"--\r\n"
    )


@pytest.mark.parametrize("window", [1, 7, 16, 64, 1 << 20])
def test_multipart_fields_are_found_across_search_windows(
    window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(body, "WINDOW", window)
    raw = multipart(b"whisper", b"RIFF" + b"\r\n-" * 50 + b"\r\n\r\n")
    parsed = body.extract("POST", b"", CTYPE, raw)
    assert (parsed.model, parsed.stream) == ("whisper", True)


async def test_a_big_multipart_body_is_scanned_off_the_event_loop() -> None:
    raw = multipart(b"whisper", bytes(30 << 20))
    ticks = 0
    stop = anyio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.lowlevel.checkpoint()
        before = ticks
        parsed = await body.extract_async("POST", b"", CTYPE, raw)
        during = ticks - before
        stop.set()
    assert parsed.model == "whisper"
    assert during > 0  # the loop kept running while the body was scanned


async def test_a_small_multipart_body_is_scanned_in_place() -> None:
    raw = multipart(b"whisper", b"RIFF....")
    assert len(raw) < body.OFF_LOOP_BYTES
    parsed = await body.extract_async("POST", b"", CTYPE, raw)
    assert parsed.model == "whisper"
