"""JSON nested too deep is a 400 envelope, never a RecursionError, a 500 or a traceback in the
log: checked on the depth scan itself and on a real ``swapd serve``."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from swapd.errors import RequestError
from swapd.proxy.body import check_depth, extract, json_depth, loads
from swapd.testing import SwapdProcess, echo_cmd, run_swapd

pytestmark = pytest.mark.timeout(120)


def nested(depth: int) -> bytes:
    return b'{"model": "echo", "x": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"", 0),
        (b'"plain"', 0),
        (b"{}", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'["[[[", "]]]]]]"]', 1),  # brackets in strings do not count
        (b'["\\"[[[", "\\\\", [[]]]', 3),  # nor after escaped quotes; an escaped backslash ends
        (b'[[["unterminated [[[[', 3),  # the parser stops at an unterminated string: so do we
        (b"[" * 5000, 5000),
    ],
)
def test_json_depth_counts_nesting_outside_strings(text: bytes, depth: int) -> None:
    assert json_depth(text) == depth


def test_depth_at_the_limit_passes_and_one_more_is_refused() -> None:
    check_depth(nested(127), 128)  # 127 brackets + the object
    with pytest.raises(RequestError, match="deeper than 128 levels"):
        check_depth(nested(128), 128)


def test_many_brackets_side_by_side_are_not_depth() -> None:
    flat = json.dumps({"messages": [{"role": "user", "content": "[{"}] * 500}).encode()
    check_depth(flat, 4)
    assert loads(flat, 4)["messages"][0]["content"] == "[{"


def test_deep_json_is_a_request_error_not_a_recursion_error() -> None:
    for depth in (1000, 100_000):
        with pytest.raises(RequestError):
            extract("POST", b"", b"application/json", nested(depth))
    with pytest.raises(RequestError, match="too deeply"):
        loads(b"[" * 100_000, limit=10**9)  # a limit the interpreter cannot honour


@pytest.fixture(scope="module")
def swapd() -> Iterator[SwapdProcess]:
    echo = json.dumps(echo_cmd())
    with run_swapd(f"models:\n  echo:\n    cmd: {echo}\nserver:\n  maxJsonDepth: 16\n") as s:
        yield s


@pytest.mark.parametrize("depth", [16, 1000, 200_000])
def test_deep_json_gets_a_400_envelope_and_no_traceback(swapd: SwapdProcess, depth: int) -> None:
    with httpx.Client(base_url=swapd.url, timeout=30) as api:
        body = nested(depth)
        openai = api.post("/v1/chat/completions", content=body, headers=JSON)
        anthropic = api.post("/v1/messages", content=body, headers=JSON)
        profile = api.put("/api/profiles/active", content=b"[" * 60_000, headers=JSON)
    assert openai.status_code == 400
    assert "deeper than 16 levels (server.maxJsonDepth)" in openai.json()["error"]["message"]
    assert anthropic.status_code == 400
    assert anthropic.json()["error"]["type"] == "invalid_request_error"
    assert profile.status_code == 400
    assert "Traceback" not in swapd.output() and "unhandled error" not in swapd.output()


def test_json_within_the_limit_reaches_the_engine(swapd: SwapdProcess) -> None:
    with httpx.Client(base_url=swapd.url, timeout=30) as api:
        answer = api.post("/v1/chat/completions", content=nested(15), headers=JSON)
    assert answer.status_code == 200, answer.text


JSON = {"content-type": "application/json"}
