"""`/metrics` and `/api/activity` checked against the requests made and the echo engine's usage."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from swapd.testing import run_swapd

from .helpers import chat, config

pytestmark = pytest.mark.timeout(120)


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"{url}/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(
    data: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return data.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_requests_tokens_swaps_and_state(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        for _ in range(3):
            assert chat(swapd.url, "alpha", "one two three").status_code == 200
        assert chat(swapd.url, "beta").status_code == 200
        assert chat(swapd.url, "nope").status_code == 404  # never reaches a model
        broken = chat(swapd.url, "broken")
        assert broken.status_code == 503
        data = samples(swapd.url)
        assert value(data, "swapd_requests_total", model="alpha", status="200") == 3
        assert value(data, "swapd_requests_total", model="beta", status="200") == 1
        assert value(data, "swapd_requests_total", model="broken", status="503") == 1
        assert value(data, "swapd_request_duration_seconds_count", model="alpha") == 3
        assert value(data, "swapd_time_to_first_byte_seconds_count", model="alpha") == 3
        usage = chat(swapd.url, "alpha", "one two three").json()["usage"]
        data = samples(swapd.url)
        assert (
            value(data, "swapd_tokens_total", model="alpha", kind="prompt")
            == 4 * usage["prompt_tokens"]
        )
        assert (
            value(data, "swapd_tokens_total", model="alpha", kind="completion")
            == 4 * usage["completion_tokens"]
        )
        # alpha started, was evicted by beta, beta evicted by broken's start, alpha again
        assert value(data, "swapd_swaps_total", model="alpha") == 2
        assert value(data, "swapd_swaps_total", model="beta") == 1
        assert value(data, "swapd_swap_duration_seconds_count", model="alpha") == 2
        assert value(data, "swapd_model_state", model="alpha", state="ready") == 1
        assert value(data, "swapd_model_state", model="alpha", state="stopped") == 0
        assert value(data, "swapd_model_state", model="beta", state="stopped") == 1
        assert value(data, "swapd_model_state", model="broken", state="failed") == 1
        assert value(data, "swapd_queue_length", model="alpha") == 0
        assert value(data, "swapd_inflight_requests", model="alpha") == 0
        assert ("swapd_inflight_requests", frozenset({("model", "beta")})) in data


def test_activity_tokens_for_streaming_and_not(start_port: int, tmp_path: Path) -> None:
    store = tmp_path / "activity.db"
    top = f"metricsMaxInMemory: 3\nstore:\n  path: {store}"
    with run_swapd(config(start_port, top=top)) as swapd:
        client = openai.OpenAI(base_url=f"{swapd.url}/v1", api_key="none")
        reply = client.chat.completions.create(
            model="alpha", messages=[{"role": "user", "content": "hello there friend"}]
        )
        assert reply.usage is not None
        stream = client.chat.completions.create(
            model="a",
            messages=[{"role": "user", "content": "one two three four"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        final = [c.usage for c in stream if c.usage is not None][-1]
        records = httpx.get(f"{swapd.url}/api/activity").json()["activity"]
        assert [r["id"] for r in records] == ["req-2", "req-1"]  # newest first
        streamed, plain = records
        assert (plain["prompt_tokens"], plain["completion_tokens"]) == (
            reply.usage.prompt_tokens,
            reply.usage.completion_tokens,
        )
        assert (streamed["prompt_tokens"], streamed["completion_tokens"]) == (
            final.prompt_tokens,
            final.completion_tokens,
        )
        for r in records:
            assert r["model"] == "alpha" and r["path"] == "/v1/chat/completions"
            assert r["status"] == 200 and r["cached_tokens"] == 0
            assert r["duration"] >= r["ttfb"] > 0
            assert r["tokens_per_second"] > 0

        # Anthropic streaming: input tokens from message_start, output from message_delta.
        with httpx.stream(
            "POST",
            f"{swapd.url}/v1/messages",
            json={
                "model": "alpha",
                "max_tokens": 50,
                "stream": True,
                "messages": [{"role": "user", "content": "a b c"}],
            },
        ) as response:
            body = response.read().decode()
        assert "message_delta" in body
        record = httpx.get(f"{swapd.url}/api/activity?limit=1").json()["activity"]
        assert len(record) == 1 and record[0]["path"] == "/v1/messages"
        assert record[0]["prompt_tokens"] > 0 and record[0]["completion_tokens"] > 0

        for _ in range(3):
            chat(swapd.url, "alpha")
        assert len(httpx.get(f"{swapd.url}/api/activity").json()["activity"]) == 3  # bounded

    # Persisted: a new server on the same store shows the last records.
    with run_swapd(config(start_port, top=top)) as swapd:
        records = httpx.get(f"{swapd.url}/api/activity").json()["activity"]
        assert len(records) == 3 and records[0]["id"] == "req-6"
        chat(swapd.url, "alpha")  # ids go on after the stored ones: no second req-1
        records = httpx.get(f"{swapd.url}/api/activity").json()["activity"]
        assert [r["id"] for r in records] == ["req-7", "req-6", "req-5"]


def collected(url: str) -> float:
    data = samples(url)
    return sum(value(data, "python_gc_objects_collected_total", generation=g) for g in "012")


def test_proxied_requests_leave_nothing_for_the_garbage_collector(start_port: int) -> None:
    """Every object a request makes is freed when its last reference goes: none is left in a
    reference cycle for the collector (whose passes cost ~20 µs a request at full load). One
    cycle per request (a parser and its protocol, a scope and the client in it) would leave
    dozens of objects each."""
    requests = 150
    with run_swapd(config(start_port)) as swapd, httpx.Client(base_url=swapd.url) as client:
        body = {"model": "alpha", "messages": [{"role": "user", "content": "one two three"}]}

        def both() -> None:
            plain = client.post("/v1/chat/completions", json=body, timeout=30)
            assert plain.status_code == 200
            streamed = client.post("/v1/chat/completions", json={**body, "stream": True})
            assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")

        for _ in range(20):  # the model starts; caches and pools fill
            both()
        before = collected(swapd.url)
        for _ in range(requests):
            both()
        after = collected(swapd.url)
    assert after - before < requests, f"{after - before:.0f} objects collected"
