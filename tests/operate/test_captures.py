"""Request/response captures: the store and tee on their own, then through a real `swapd serve`."""

from __future__ import annotations

import base64
import gzip
import json
import os
import pickle
import time
from typing import Any

import anyio
import httpx
import pytest

from swapd.observe.captures import (
    REDACTED,
    Batch,
    Capture,
    CaptureStore,
    Part,
    Tee,
    header_map,
    mask_for,
)
from swapd.testing import run_swapd

from .helpers import config

pytestmark = pytest.mark.timeout(120)

KEY = "sk-capture-test"
AUTH = {"Authorization": f"Bearer {KEY}"}


def capture(request_id: str, size: int, *, random: bool = False) -> Capture:
    body = os.urandom(size) if random else b"a" * size
    return Capture(request_id, "/v1/chat/completions", {}, body, {}, b"")


# ── the store and the tee ───────────────────────────────────────────────────────────────────


def test_store_evicts_oldest_first_within_the_budget() -> None:
    one = capture("req-1", 20_000, random=True).held
    store = CaptureStore(budget=int(one * 2.5))
    for n in (1, 2, 3):
        assert store.add(capture(f"req-{n}", 20_000, random=True))
    assert "req-1" not in store and "req-2" in store and "req-3" in store
    assert store.size <= store.budget


def test_store_skips_one_item_over_the_whole_budget_and_keeps_the_rest() -> None:
    store = CaptureStore(budget=4096)
    assert store.add(capture("req-1", 10))
    assert not store.add(capture("req-2", 64 * 1024, random=True))
    assert "req-1" in store and "req-2" not in store


def test_store_resize_keeps_what_still_fits_and_zero_empties_it() -> None:
    store = CaptureStore(budget=1 << 20)
    for n in range(1, 5):
        store.add(capture(f"req-{n}", 5000, random=True))
    store.resize(store.size - 1)
    assert "req-1" not in store and "req-4" in store
    store.resize(0)
    assert len(store) == 0 and store.size == 0


def test_packed_captures_round_trip_bodies_byte_for_byte() -> None:
    original = Capture(
        "req-9", "/v1/x?y=1", {"A": "b"}, b"\x00\xffreq", {"C": "d"}, b"resp\n", True, False
    )
    other = capture("req-10", 100)
    batch = Batch.pack([original, other])
    assert batch.get("req-9") == original and batch.get("req-10") == other


@pytest.mark.anyio
async def test_store_packs_a_batch_of_raw_captures_off_the_loop_and_still_reads_them() -> None:
    store = CaptureStore(budget=1 << 20)  # a batch: an eighth, 128 KiB
    sent = [capture(f"req-{n}", 20_000 + n) for n in range(1, 8)]  # ~147 KB raw, repetitive
    for one in sent:
        assert store.add(one)
    raw = sum(c.held for c in sent)
    for _ in range(200):  # the worker thread packs them
        if store.size < raw:
            break
        await anyio.sleep(0.01)
    assert store.size < raw // 10  # compressed together
    assert [store.get(c.id) for c in sent] == sent and len(store) == len(sent)


def test_headers_are_redacted_and_named_as_go_does() -> None:
    headers = header_map(
        [
            (b"authorization", b"Bearer secret"),
            (b"x-api-key", b"secret"),
            (b"cookie", b"session=secret"),
            (b"proxy-authorization", b"Basic secret"),
            (b"set-cookie", b"a=secret"),
            (b"set-cookie", b"b=secret"),
            (b"content-type", b"application/json"),
            (b"x-many", b"1"),
            (b"x-many", b"2"),
        ]
    )
    assert "secret" not in json.dumps(headers)
    assert headers["Authorization"] == headers["X-Api-Key"] == headers["Set-Cookie"] == REDACTED
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Many"] == "1, 2"


def test_masks_leave_out_binary_bodies() -> None:
    assert mask_for("/v1/chat/completions?x=1") == Part.ALL
    assert mask_for("/v1/audio/speech") == Part.REQ | Part.RESP_HEADERS
    assert mask_for("/v1/images/edits") == Part.REQ_HEADERS | Part.RESP_HEADERS
    tee = Tee("req-1", "/v1/audio/speech", [], b"{}", mask_for("/v1/audio/speech"), 1000)
    tee.start([(b"content-type", b"audio/mpeg")])
    tee.feed(b"\xff" * 100)
    kept = tee.finish()
    assert kept.resp_body == b"" and kept.resp_headers == {"Content-Type": "audio/mpeg"}
    assert kept.req_body == b"{}" and not kept.resp_truncated


def test_tee_stores_a_gzip_response_decompressed_without_content_encoding() -> None:
    text = b'{"choices": []}' * 50
    tee = Tee("req-1", "/v1/chat/completions", [], b"", Part.ALL, 1 << 20)
    tee.start([(b"content-encoding", b"gzip"), (b"content-type", b"application/json")])
    packed = gzip.compress(text)
    for at in range(0, len(packed), 7):
        tee.feed(packed[at : at + 7])
    kept = tee.finish()
    assert kept.resp_body == text
    assert kept.resp_headers == {"Content-Type": "application/json"}


def test_tee_stops_at_half_the_budget_per_body_and_says_so() -> None:
    tee = Tee("req-1", "/p", [], b"r" * 3000, Part.ALL, 2000)
    for _ in range(10):
        tee.feed(b"s" * 300)
    kept = tee.finish()
    assert kept.req_body == b"r" * 1000 and kept.req_truncated
    assert kept.resp_body == b"s" * 1000 and kept.resp_truncated


def test_concurrent_tees_share_one_budget_and_give_it_back() -> None:
    store = CaptureStore(budget=2000)
    first = Tee("req-1", "/p", [], b"", Part.ALL, 2000, store.pending)
    second = Tee("req-2", "/p", [], b"q" * 600, Part.ALL, 2000, store.pending)
    first.feed(b"a" * 5000)  # takes its half: 1000
    second.feed(b"b" * 5000)  # 600 held by its request: 400 left in the pool
    kept = second.finish()
    assert (len(kept.req_body), len(kept.resp_body)) == (600, 400) and kept.resp_truncated
    assert len(first.finish().resp_body) == 1000
    assert store.pending.left == 2000  # all given back
    store.resize(500)
    assert store.pending.left == 500
    third = Tee("req-3", "/p", [], b"r" * 400, Part.ALL, 500, store.pending)
    assert len(third.req_body) == 250 and third.req_truncated  # half of the new budget


# ── through swapd ───────────────────────────────────────────────────────────────────────────


def _activity(url: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = httpx.get(f"{url}/api/activity", headers=AUTH).json()[
        "activity"
    ]
    return records


def _capture(url: str, request_id: str) -> dict[str, Any]:
    """The capture; big ones are compressed off the event loop, so wait for them a little."""
    deadline = time.monotonic() + 10
    while True:
        got = httpx.get(f"{url}/api/captures/{request_id}", headers=AUTH)
        if got.status_code == 200 or time.monotonic() > deadline:
            assert got.status_code == 200, got.text
            data: dict[str, Any] = got.json()
            return data
        time.sleep(0.05)


def test_capture_round_trip_with_base64_bodies_and_redacted_credentials(start_port: int) -> None:
    top = f"apiKeys: [{KEY}]\ncaptureBuffer: 2"
    with run_swapd(config(start_port, top=top)) as swapd:
        body = {"model": "alpha", "messages": [{"role": "user", "content": "capture me"}]}
        reply = httpx.post(
            f"{swapd.url}/v1/chat/completions",
            json=body,
            headers={**AUTH, "Cookie": "session=abc"},
            timeout=30,
        )
        assert reply.status_code == 200
        [record] = _activity(swapd.url)
        assert record["has_capture"] is True
        got = _capture(swapd.url, record["id"])
        assert got["id"] == record["id"] and got["req_path"] == "/v1/chat/completions"
        assert json.loads(base64.b64decode(got["req_body"])) == body
        assert base64.b64decode(got["resp_body"]) == reply.content
        assert got["req_headers"]["Authorization"] == REDACTED
        assert got["req_headers"]["Cookie"] == REDACTED
        assert KEY not in json.dumps(got)
        assert got["resp_headers"]["Content-Type"] == "application/json"
        number = record["id"].removeprefix("req-")
        assert _capture(swapd.url, number)["id"] == record["id"]  # the bare number works too

        bad = httpx.get(f"{swapd.url}/api/captures/abc", headers=AUTH)
        assert bad.status_code == 400
        assert bad.json()["error"]["message"] == "invalid capture ID"
        missing = httpx.get(f"{swapd.url}/api/captures/req-999", headers=AUTH)
        assert missing.status_code == 404
        assert missing.json()["error"]["message"] == "capture not found"


def test_a_failed_request_is_captured_with_the_engines_error(start_port: int) -> None:
    with run_swapd(config(start_port, top="captureBuffer: 1")) as swapd:
        bad = {"model": "alpha", "query": "q", "documents": "not a list"}
        reply = httpx.post(f"{swapd.url}/v1/rerank", json=bad, timeout=30)
        assert reply.status_code == 400
        [record] = _activity(swapd.url)
        assert record["status"] == 400 and record["has_capture"]
        got = _capture(swapd.url, record["id"])
        assert json.loads(base64.b64decode(got["req_body"])) == bad
        assert b"documents must be a list" in base64.b64decode(got["resp_body"])


def test_a_multi_megabyte_body_is_captured_bounded(start_port: int) -> None:
    with run_swapd(config(start_port, top="captureBuffer: 1")) as swapd:
        big = b"0123456789abcdef" * (3 * 1024 * 1024 // 16)  # 3 MiB; the echo sends it back
        reply = httpx.post(f"{swapd.url}/upstream/alpha/anything", content=big, timeout=60)
        assert reply.status_code == 200 and len(reply.content) > len(big)  # relayed in full
        [record] = _activity(swapd.url)
        got = _capture(swapd.url, record["id"])
        req_body = base64.b64decode(got["req_body"])
        resp_body = base64.b64decode(got["resp_body"])
        assert req_body == big[: 512 * 1024] and got["req_truncated"] is True
        assert len(resp_body) == 512 * 1024 and got["resp_truncated"] is True
        assert resp_body == reply.content[: len(resp_body)]


def test_no_capture_when_the_buffer_is_zero(start_port: int) -> None:
    with run_swapd(config(start_port, top="captureBuffer: 0")) as swapd:
        body = {"model": "alpha", "messages": [{"role": "user", "content": "x"}]}
        assert httpx.post(f"{swapd.url}/v1/chat/completions", json=body, timeout=30).is_success
        [record] = _activity(swapd.url)
        assert record["has_capture"] is False
        gone = httpx.get(f"{swapd.url}/api/captures/{record['id']}", headers=AUTH)
        assert gone.status_code == 404


def test_a_capture_holds_no_credential_even_before_it_is_shown() -> None:
    secret = [(b"authorization", b"Bearer secret"), (b"Cookie", b"a=secret")]
    tee = Tee("req-1", "/v1/chat/completions", [*secret, (b"x-a", b"1")], b"{}", Part.ALL, 4096)
    tee.start([(b"Set-Cookie", b"b=secret"), (b"content-type", b"application/json")])
    tee.feed(b"{}")
    kept = tee.finish()
    assert b"secret" not in pickle.dumps(kept)  # what the store packs and keeps
    shown = kept.as_json()
    assert shown["req_headers"] == {"Authorization": REDACTED, "Cookie": REDACTED, "X-A": "1"}
    assert shown["resp_headers"] == {"Set-Cookie": REDACTED, "Content-Type": "application/json"}
