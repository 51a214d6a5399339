"""Unit tests of the token parser (no processes): every usage shape swapd understands."""

from __future__ import annotations

import json
import re
from pathlib import Path

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from swapd import native
from swapd.observe import activity
from swapd.observe.activity import Meter, parse_usage
from swapd.observe.events import Event, EventBus
from swapd.observe.outbox import CHUNK_OVERHEAD


def parse(*chunks: bytes) -> tuple[int | None, int | None, int | None, float | None]:
    meter = Meter(0.0)
    for chunk in chunks:
        meter.feed(chunk)
    u = parse_usage(meter)
    return u.prompt_tokens, u.completion_tokens, u.cached_tokens, u.tokens_per_second


def test_openai_plain_and_cached() -> None:
    body = {"usage": {"prompt_tokens": 7, "completion_tokens": 3,
                      "prompt_tokens_details": {"cached_tokens": 5}}}  # fmt: skip
    assert parse(json.dumps(body).encode()) == (7, 3, 5, None)


def test_llamacpp_timings_and_vllm_cached() -> None:
    body = {"timings": {"prompt_n": 4, "predicted_n": 9, "cache_n": 2,
                        "predicted_per_second": 55.5}}  # fmt: skip
    assert parse(json.dumps(body).encode()) == (4, 9, 2, 55.5)
    vllm = {"usage": {"prompt_tokens": 1, "completion_tokens": 2}, "num_cached_tokens": 1}
    assert parse(json.dumps(vllm).encode()) == (1, 2, 1, None)


def test_anthropic_stream_split_over_start_and_delta() -> None:
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 12,
             "cache_read_input_tokens": 8, "output_tokens": 0}}}  # fmt: skip
    delta = {"type": "message_delta", "usage": {"output_tokens": 5}}
    filler = b"event: content_block_delta\ndata: " + b'{"x":"' + b"y" * 40000 + b'"}\n\n'
    frames = [
        b"event: message_start\ndata: " + json.dumps(start).encode() + b"\n\n",
        filler,
        b"event: message_delta\ndata: " + json.dumps(delta).encode() + b"\n\n",
    ]
    assert parse(*frames) == (12, 5, 8, None)


def test_big_json_body_keeps_usage_at_its_end() -> None:
    body = b'{"data": "' + b"z" * 50000 + b'", "usage": {"prompt_tokens": 3, "total_tokens": 3}}'
    assert parse(body[:1000], body[1000:]) == (3, None, None, None)


def test_plain_body_reads_the_usage_key_not_the_word_in_the_text() -> None:
    text = 'say "usage": {"prompt_tokens": 99} and "timings"'  # escaped inside the JSON
    body = {"choices": [{"message": {"content": text}}], "model": "usage",
            "usage": {"input_tokens": 4, "output_tokens": 6}}  # fmt: skip
    assert parse(json.dumps(body, indent=1).encode()) == (4, 6, None, None)
    assert parse(json.dumps({"choices": [], "usage": None}).encode()) == (None, None, None, None)


# Pieces a window is made of: the names whole, cut and run together, their quotes and first
# letters (where the native scan looks twice), and filler.
_PIECES = [b'"usage"', b'"timings"', b'"num_cached_tokens"', b'"usage', b'usage"', b'"t', b'"n',
           b'"u', b'"', b"u", b"t", b"n", b"x" * 15, b'{"a":1}', b"\n"]  # fmt: skip
_scan = native.name_scan()
needs_scan = pytest.mark.skipif(_scan is None, reason="the native library is not built here")


@needs_scan
@given(st.lists(st.sampled_from(_PIECES), max_size=80), st.integers(0, 20))
def test_native_name_scan_finds_what_bytes_find_finds(pieces: list[bytes], cut: int) -> None:
    window = b"".join(pieces)[cut:]
    assert _scan is not None
    assert _scan(window) == activity._find_names(window)


@needs_scan
def test_native_name_scan_returns_every_place_past_its_first_buffer() -> None:
    frame = b'data: {"choices":[],"usage":{"completion_tokens":1}}\n\n'
    window = frame * (3 * native.NAMES_AT_ONCE)
    assert _scan is not None
    places = _scan(window)
    assert len(places) == 3 * native.NAMES_AT_ONCE
    assert places == activity._find_names(window)


def test_bus_drops_a_full_subscriber_only() -> None:
    async def main() -> None:
        frame = len(Event(1, "model", {"n": 0}).sse()) + CHUNK_OVERHEAD
        bus = EventBus(budget=2 * frame)  # room for two frames
        slow = bus.subscribe("slow")
        fast = bus.subscribe("fast")
        for n in range(3):
            bus.publish("model", {"n": n})
            fast.outbox.get_nowait()
        assert slow.dropped and slow.cut.cancel_called and not fast.dropped
        assert bus.subscribers == 1 and slow.outbox.size == 0  # what it held is let go
        bus.unsubscribe(fast)

    anyio.run(main)


def test_an_event_told_to_one_subscriber_waits_behind_published_ones() -> None:
    async def main() -> None:
        frame = len(Event(1, "model", {"n": 0}).sse()) + CHUNK_OVERHEAD
        bus = EventBus(budget=3 * frame)
        one, other = bus.subscribe("one"), bus.subscribe("other")
        bus.publish("model", {"n": 0})
        told = bus.tell(one, "model", {"n": 1})
        bus.publish("model", {"n": 2})
        sent = one.outbox.get_nowait().decode()
        ids = [int(line[4:]) for line in sent.splitlines() if line.startswith("id: ")]
        assert ids == [1, 2, 3] and told.id == 2
        assert 'n":1' not in other.outbox.get_nowait().decode()  # told to one only
        for n in range(3, 6):  # three frames fit
            bus.tell(one, "model", {"n": n})
        assert not one.dropped
        bus.tell(one, "model", {"n": 6})  # a fourth does not: dropped, as by publish
        assert one.dropped and one.cut.cancel_called and not other.dropped
        bus.unsubscribe(other)

    anyio.run(main)


def test_dashboard_uses_only_exported_metrics() -> None:
    docs = Path(__file__).parents[2] / "docs"
    text = (docs / "grafana-dashboard.json").read_text()
    used = set(re.findall(r"swapd_[a-z_]+", text))
    exported = set(re.findall(r"`(swapd_[a-z_]+)`", (docs / "api.md").read_text()))
    assert used, "no metrics in the dashboard"
    assert {re.sub(r"_bucket$", "", m) for m in used} <= exported
