"""Engines that fail: crash on a prompt, die mid-body, answer errors, hang. Real swapd, real
raw engines (tests/fakes/raw_engine.py), real HTTP clients."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from fakes import raw_engine_cmd
from swapd.testing import run_swapd

pytestmark = pytest.mark.timeout(90)


def raw_model(name: str, flags: str = "", extra: str = "") -> str:
    cmd = raw_engine_cmd(flags)
    return f"  {name}:\n    cmd: {cmd}\n{extra}"


def config(start_port: int, *models: str, top: str = "") -> str:
    return f"startPort: {start_port}\nhealthCheckTimeout: 20\n{top}\nmodels:\n" + "".join(models)


def chat_body(model: str, text: str, **kw: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **kw}


def activity(url: str) -> list[dict[str, object]]:
    """Activity records, oldest first."""
    records: list[dict[str, object]] = httpx.get(f"{url}/api/activity").json()["activity"]
    return records[::-1]


def sse_data(raw: bytes) -> list[str]:
    """The ``data:`` payloads of an SSE stream; fails on any line that is not SSE."""
    payloads = []
    for line in raw.decode().split("\n"):
        if line:
            assert line.startswith(("data: ", ":")), f"not an SSE line: {line!r}"
            if line.startswith("data: "):
                payloads.append(line[len("data: ") :])
    return payloads


def test_engine_dying_mid_body_drops_the_client_connection_and_records_502(
    start_port: int,
) -> None:
    with run_swapd(config(start_port, raw_model("m"))) as swapd:
        got = b""
        url = f"{swapd.url}/v1/chat/completions"
        with (
            pytest.raises(httpx.RemoteProtocolError),  # no terminating chunk: truncated
            httpx.stream("POST", url, json=chat_body("m", "act:cut"), timeout=30) as r,
        ):
            assert r.status_code == 200
            for chunk in r.iter_raw():
                got += chunk
        assert b'"half"' in got
        assert activity(swapd.url)[-1]["status"] == 502
        metrics = httpx.get(f"{swapd.url}/metrics").text
        assert 'swapd_requests_total{model="m",status="502"} 1.0' in metrics
        assert "stopped mid-response" in swapd.output()
        assert "Traceback" not in swapd.output()


def test_a_prompt_that_crashes_its_engine_is_answered_502_and_never_replayed(
    start_port: int, tmp_path: Path
) -> None:
    seen = tmp_path / "seen.log"
    with run_swapd(config(start_port, raw_model("m", f"--log {seen}"))) as swapd:
        chat = f"{swapd.url}/v1/chat/completions"
        # On a brand-new connection to a new engine, then on a kept-alive one.
        first = httpx.post(chat, json=chat_body("m", "act:die"), timeout=30)
        assert first.status_code == 502, first.text
        assert httpx.post(chat, json=chat_body("m", "fine"), timeout=30).status_code == 200
        second = httpx.post(chat, json=chat_body("m", "act:die"), timeout=30)
        assert second.status_code == 502, second.text
        assert second.json()["error"]["code"] == "bad_gateway"
        assert httpx.post(chat, json=chat_body("m", "fine"), timeout=30).status_code == 200
        posts = [line for line in seen.read_text().splitlines() if line.startswith("POST")]
        # Each crashing prompt reached exactly one engine once (a replay would crash another).
        assert len(posts) == 4, posts
        assert [r["status"] for r in activity(swapd.url)] == [502, 200, 502, 200]


def test_a_crash_on_the_messages_route_is_answered_in_anthropics_error_shape(
    start_port: int,
) -> None:
    """The 502 names the engine and has the Anthropic error shape on /v1/messages, whoever
    relayed the request (the native front serves a ready model's: Python writes its errors)."""
    with run_swapd(config(start_port, raw_model("m"))) as swapd:
        url = f"{swapd.url}/v1/messages"
        body = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(url, json=body, timeout=30).status_code == 200  # m starts
        body["messages"] = [{"role": "user", "content": "act:die"}]
        crashed = httpx.post(url, json=body, timeout=30)
    assert crashed.status_code == 502, crashed.text
    error = crashed.json()
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    assert error["error"]["message"].startswith("engine for model 'm'")
    assert "date" in crashed.headers


def test_request_to_a_just_died_engine_still_gets_a_fresh_engine(start_port: int) -> None:
    with run_swapd(config(start_port, raw_model("m"))) as swapd:
        chat = f"{swapd.url}/v1/chat/completions"
        first = httpx.post(chat, json=chat_body("m", "hi"), timeout=30)
        httpx.post(f"{swapd.url}/upstream/m/close", timeout=10)
        # Refused before anything was written: that one is sent to a fresh engine.
        r = httpx.post(chat, json=chat_body("m", "hi"), timeout=30)
        assert r.status_code == 200, r.text
        assert r.headers["x-engine-pid"] != first.headers["x-engine-pid"]


def test_loading_state_sends_an_engine_error_status_as_one_sse_error_frame(
    start_port: int,
) -> None:
    cfg = config(start_port, raw_model("m", "--start-delay 1"), top="sendLoadingState: true")
    with run_swapd(cfg) as swapd:
        r = httpx.post(
            f"{swapd.url}/v1/chat/completions",
            json=chat_body("m", "act:error", stream=True),
            timeout=30,
        )
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        frames = [json.loads(d) for d in sse_data(r.content)]
        assert "loading model m" in frames[0]["choices"][0]["delta"]["reasoning_content"]
        assert frames[-1] == {"error": {"message": "engine exploded", "type": "server_error"}}
        assert all("error" not in f for f in frames[:-1])
        assert activity(swapd.url)[-1]["status"] == 500


def test_loading_state_sends_an_engine_crash_as_one_sse_error_frame(start_port: int) -> None:
    cfg = config(start_port, raw_model("m", "--start-delay 1"), top="sendLoadingState: true")
    with run_swapd(cfg) as swapd:
        r = httpx.post(
            f"{swapd.url}/v1/chat/completions",
            json=chat_body("m", "act:die", stream=True),
            timeout=30,
        )
        assert r.status_code == 200
        frames = [json.loads(d) for d in sse_data(r.content)]
        assert frames[-1]["error"]["code"] == "bad_gateway"
        assert "Done!" in frames[-2]["choices"][0]["delta"]["reasoning_content"]
        assert activity(swapd.url)[-1]["status"] == 502


def test_engine_without_response_headers_in_time_gets_504_and_frees_its_lease(
    start_port: int,
) -> None:
    extra = "    concurrencyLimit: 1\n    timeouts:\n      responseHeader: 1\n"
    with run_swapd(config(start_port, raw_model("m", extra=extra))) as swapd:
        chat = f"{swapd.url}/v1/chat/completions"
        r = httpx.post(chat, json=chat_body("m", "act:hang"), timeout=30)
        assert r.status_code == 504, r.text
        assert "timeouts.responseHeader" in r.json()["error"]["message"]
        assert r.json()["error"]["code"] == "upstream_timeout"
        # concurrencyLimit 1: this would be 429 if the hung request still held its lease.
        assert httpx.post(chat, json=chat_body("m", "fine"), timeout=30).status_code == 200
        assert [rec["status"] for rec in activity(swapd.url)] == [504, 200]


def test_engine_stalling_mid_body_is_cut_after_idle_read(start_port: int) -> None:
    extra = "    timeouts:\n      idleRead: 1\n"
    with run_swapd(config(start_port, raw_model("m", extra=extra))) as swapd:
        got = b""
        url = f"{swapd.url}/v1/chat/completions"
        with (
            pytest.raises(httpx.RemoteProtocolError),
            httpx.stream("POST", url, json=chat_body("m", "act:stall"), timeout=30) as r,
        ):
            assert r.status_code == 200
            for chunk in r.iter_raw():
                got += chunk
        assert b'"half"' in got
        assert activity(swapd.url)[-1]["status"] == 504
        assert "timeouts.idleRead" in swapd.output()
