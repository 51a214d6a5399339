"""Profiles end to end: runtime model-id rewrites switched through the API, reset by a reload."""

from __future__ import annotations

import json
import signal
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
models:
  small:
    cmd: {echo_cmd()}
    filters:
      setParamsByID:
        small-cold: {{temperature: 0}}
  big:
    cmd: {echo_cmd()}
selectors:
  any:
    strategy: pin
    targets: [big]
profiles:
  coding:
    description: the big model for code
    pins:
      chat: big
      small: big
      image: ~
  cheap:
    pins:
      chat: small-cold
      helper: any
"""


@pytest.fixture(scope="module")
def swapd() -> Iterator[SwapdProcess]:
    with run_swapd(config()) as proc:
        yield proc


def chat(swapd: SwapdProcess, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{swapd.url}/v1/chat/completions", json=body, timeout=30)


def activate(swapd: SwapdProcess, body: Any) -> httpx.Response:
    return httpx.put(f"{swapd.url}/api/profiles/active", json=body, timeout=10)


def profiles(swapd: SwapdProcess) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{swapd.url}/api/profiles", timeout=10).json()
    return data


def listed(swapd: SwapdProcess) -> dict[str, Any]:
    data = httpx.get(f"{swapd.url}/v1/models", timeout=10).json()["data"]
    return {r["id"]: r for r in data}


def test_profiles_are_listed_sorted_and_none_is_active_at_start(swapd: SwapdProcess) -> None:
    assert activate(swapd, {"name": None}).json() == {"active": None}
    assert profiles(swapd) == {
        "active": None,
        "profiles": [
            {"id": "cheap", "description": "", "pins": {"chat": "small-cold", "helper": "any"}},
            {
                "id": "coding",
                "description": "the big model for code",
                "pins": {"chat": "big", "small": "big", "image": ""},
            },
        ],
    }
    assert chat(swapd, "chat").status_code == 404
    assert "chat" not in listed(swapd)


def test_an_active_profile_rewrites_names_and_disables_empty_pins(swapd: SwapdProcess) -> None:
    assert activate(swapd, {"name": "coding"}).json() == {"active": "coding"}
    try:
        reply = chat(swapd, "chat")
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"] == "echo big: hi"
        assert reply.json()["request"]["model"] == "big"  # the engine sees the target
        reply = chat(swapd, "small")  # a pin shadows the local model of that name
        assert reply.json()["choices"][0]["message"]["content"] == "echo big: hi"
        disabled = chat(swapd, "image")
        assert disabled.status_code == 404
        assert "disabled by the active profile 'coding'" in disabled.json()["error"]["message"]
        records = listed(swapd)
        assert records["chat"]["meta"]["llamaswap"]["type"] == "profile"
        assert "image" not in records
        assert records["small"]["meta"]["llamaswap"]["type"] == "model"  # not shadowed
    finally:
        activate(swapd, {"name": ""})
    assert chat(swapd, "small").json()["choices"][0]["message"]["content"] == "echo small: hi"


def test_pins_reach_aliases_with_their_params_and_selectors(swapd: SwapdProcess) -> None:
    assert activate(swapd, {"name": "cheap"}).status_code == 200
    try:
        sent = chat(swapd, "chat").json()["request"]
        assert sent["model"] == "small-cold" and sent["temperature"] == 0  # setParamsByID
        reply = chat(swapd, "helper")  # pinned to the selector "any" → big
        assert reply.json()["choices"][0]["message"]["content"] == "echo big: hi"
    finally:
        activate(swapd, {"name": None})


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ("not json", 400, "invalid profile request"),
        ({}, 400, "profile name is required"),
        ({"name": 3}, 400, "profile name must be a string or null"),
        ({"name": "nope"}, 404, 'profile "nope" not found'),
    ],
)
def test_bad_profile_requests_get_llama_swaps_errors(
    swapd: SwapdProcess, body: Any, status: int, message: str
) -> None:
    if isinstance(body, str):
        reply = httpx.put(f"{swapd.url}/api/profiles/active", content=body, timeout=10)
    else:
        reply = activate(swapd, body)
    assert reply.status_code == status
    assert reply.json()["error"]["message"] == message


def test_a_reload_resets_the_active_profile(swapd: SwapdProcess) -> None:
    assert activate(swapd, {"name": "coding"}).json() == {"active": "coding"}
    swapd.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while profiles(swapd)["active"] is not None:
        assert time.monotonic() < deadline, swapd.output()
        time.sleep(0.05)
    assert chat(swapd, "chat").status_code == 404


def first_event(swapd: SwapdProcess) -> tuple[str, Any]:
    """The first SSE event of /api/events: its type and data."""
    with httpx.stream("GET", f"{swapd.url}/api/events", timeout=10) as reply:
        kind = ""
        for line in reply.iter_lines():
            if line.startswith("event:"):
                kind = line.partition(":")[2].strip()
            elif line.startswith("data:"):
                return kind, json.loads(line.partition(":")[2])
    raise AssertionError("the event stream ended before its first event")


def test_the_event_snapshot_names_the_active_profile(swapd: SwapdProcess) -> None:
    assert activate(swapd, {"name": "coding"}).status_code == 200
    try:
        kind, data = first_event(swapd)
        assert kind == "snapshot"
        assert data["profile"] == {"active": "coding"}
    finally:
        activate(swapd, {"name": None})
    assert first_event(swapd)[1]["profile"] == {"active": None}
