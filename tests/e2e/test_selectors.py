"""Selectors end to end: virtual model ids resolved per request to real echo engines."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from swapd.testing import SwapdProcess, echo_cmd, free_port_range, run_swapd

pytestmark = pytest.mark.timeout(120)


def config() -> str:
    return f"""
startPort: {free_port_range(8)}
healthCheckTimeout: 20
models:
  a:
    cmd: {echo_cmd()}
  b:
    cmd: {echo_cmd()}
    aliases: [bee]
groups:
  pool:
    swap: false
    members: [a, b]
selectors:
  pinned:
    strategy: pin
    targets: [bee, a]
    name: Pinned
  warm:
    strategy: warm
    targets: [a, b]
  spill:
    strategy: spillover
    targets: [a, b]
  hidden:
    strategy: pin
    targets: [a]
    unlisted: true
"""


@pytest.fixture(scope="module")
def swapd() -> Iterator[SwapdProcess]:
    with run_swapd(config()) as proc:
        yield proc


def chat(swapd: SwapdProcess, model: str, **kw: Any) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **kw}
    reply = httpx.post(f"{swapd.url}/v1/chat/completions", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()
    return data


def answered_by(reply: dict[str, Any]) -> str:
    text: str = reply["choices"][0]["message"]["content"]
    return text.removeprefix("echo ").split(":")[0]


def running(swapd: SwapdProcess) -> dict[str, str]:
    data = httpx.get(f"{swapd.url}/running", timeout=10).json()["running"]
    return {r["model"]: r["state"] for r in data}


def unload_all(swapd: SwapdProcess) -> None:
    httpx.post(f"{swapd.url}/api/models/unload", timeout=30).raise_for_status()
    deadline = time.monotonic() + 20
    while running(swapd) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running(swapd) == {}


def test_pin_selector_sends_to_its_first_target_named_as_written(swapd: SwapdProcess) -> None:
    reply = chat(swapd, "pinned")
    assert answered_by(reply) == "b"
    assert reply["request"]["model"] == "bee"  # the engine sees the target, not the selector


def test_warm_selector_prefers_a_running_target(swapd: SwapdProcess) -> None:
    unload_all(swapd)
    assert answered_by(chat(swapd, "warm")) == "a"  # nothing runs: the first target, cold
    unload_all(swapd)
    chat(swapd, "b")
    assert answered_by(chat(swapd, "warm")) == "b"  # b is ready, a is not
    assert set(running(swapd)) == {"b"}


def test_spillover_selector_spills_to_the_next_target_while_the_first_is_busy(
    swapd: SwapdProcess,
) -> None:
    unload_all(swapd)
    body = {
        "model": "spill",
        "messages": [{"role": "user", "content": "one two three"}],
        "stream": True,
        "chunk_delay": 1.0,
    }
    with httpx.stream("POST", f"{swapd.url}/v1/chat/completions", json=body, timeout=30) as held:
        lines = held.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert '"echo"' in first  # a's reply is streaming: a is busy
        assert answered_by(chat(swapd, "spill")) == "b"  # a is at its spillover limit (1)
    # both idle and running now: the least busy, round-robin between the tied
    seen = {answered_by(chat(swapd, "spill")) for _ in range(4)}
    assert seen == {"a", "b"}


def test_selectors_are_listed_with_their_strategy_and_status(swapd: SwapdProcess) -> None:
    unload_all(swapd)
    chat(swapd, "b")
    data = httpx.get(f"{swapd.url}/v1/models", timeout=10).json()["data"]
    records = {r["id"]: r for r in data}
    assert "hidden" not in records
    assert records["pinned"]["name"] == "Pinned"
    assert records["pinned"]["meta"]["llamaswap"] == {
        "type": "selector",
        "strategy": "pin",
        "targets": ["bee", "a"],
    }
    assert records["pinned"]["status"]["value"] == "loaded"  # its first target, b, runs
    assert records["warm"]["status"]["value"] == "loaded"  # any target
    assert records["spill"]["meta"]["llamaswap"]["spillover"] == 1


def test_a_selector_is_not_a_name_under_upstream(swapd: SwapdProcess) -> None:
    reply = httpx.get(f"{swapd.url}/upstream/pinned/health", timeout=10)
    assert reply.status_code == 404


def test_activity_records_the_selector_and_fifo_priority(swapd: SwapdProcess) -> None:
    chat(swapd, "pinned")
    records = httpx.get(f"{swapd.url}/api/activity", timeout=10).json()["activity"]
    latest = records[0]
    assert latest["model"] == "b"
    assert latest["metadata"] == {"fifo_priority": 0, "selector": "pinned"}
