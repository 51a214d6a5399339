"""An engine that fails mid-stream: the NDJSON stream ends with an ``{"error": …}`` line, which
the ``ollama`` client raises, and activity records the failure."""

from __future__ import annotations

import httpx
import ollama
import pytest

from fakes import raw_engine_cmd
from swapd.testing import run_swapd

pytestmark = pytest.mark.timeout(60)


def config(start_port: int) -> str:
    cmd = raw_engine_cmd()
    return f"""
startPort: {start_port}
healthCheckTimeout: 20
ollama: {{enabled: true}}
models:
  raw:
    cmd: {cmd}
    timeouts: {{idleRead: 1}}
"""


def statuses(url: str) -> list[int]:
    records = httpx.get(f"{url}/api/activity", timeout=10).json()["activity"]
    return [r["status"] for r in records[::-1]]


@pytest.mark.parametrize(
    ("act", "said", "status"),
    [
        ("act:stall", "timeouts.idleRead", 504),
        ("act:cut", "engine stopped mid-response", 502),
    ],
)
def test_a_failure_mid_stream_is_an_error_line_the_client_raises(
    start_port: int, act: str, said: str, status: int
) -> None:
    with (
        run_swapd(config(start_port)) as swapd,
        ollama.Client(host=swapd.url, timeout=30) as client,
    ):
        seen: list[str] = []
        with pytest.raises(ollama.ResponseError) as err:
            for part in client.chat(
                model="raw", messages=[{"role": "user", "content": act}], stream=True
            ):
                seen.append(part.message.content or "")
        assert seen == ["half"]  # what came before the failure was delivered
        assert said in err.value.error
        assert statuses(swapd.url) == [status]


def test_an_engine_stalling_a_whole_answer_is_a_504_with_a_string_error(start_port: int) -> None:
    with (
        run_swapd(config(start_port)) as swapd,
        ollama.Client(host=swapd.url, timeout=30) as client,
    ):
        with pytest.raises(ollama.ResponseError) as err:
            client.chat(model="raw", messages=[{"role": "user", "content": "act:stall"}])
        assert err.value.status_code == 504 and "timeouts.idleRead" in err.value.error
        assert statuses(swapd.url) == [504]
