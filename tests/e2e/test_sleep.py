"""Sleep mode (vLLM's /sleep, /wake_up) for process-driver engines, through a real swapd."""

from __future__ import annotations

import httpx
import pytest

from swapd.testing import echo_cmd, pids_alive, run_swapd

pytestmark = pytest.mark.timeout(90)


def config(start_port: int) -> str:
    return f"""
startPort: {start_port}
models:
  big:
    cmd: {echo_cmd("--sleep-mode")}
    sleep: {{level: 1}}
  other:
    cmd: {echo_cmd()}
"""


def chat(url: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)


def state(url: str, model: str) -> str:
    models = httpx.get(f"{url}/api/models", timeout=10).json()["models"]
    return str(next(m["state"] for m in models if m["id"] == model))


def test_eviction_puts_a_sleep_mode_engine_to_sleep_and_the_next_request_wakes_it(
    start_port: int,
) -> None:
    with run_swapd(config(start_port)) as swapd:
        pid = int(chat(swapd.url, "big").headers["x-engine-pid"])
        assert chat(swapd.url, "other").status_code == 200
        assert state(swapd.url, "big") == "sleeping"
        assert pids_alive([pid]) == [pid]  # asleep, not stopped
        again = chat(swapd.url, "big")
        assert again.status_code == 200 and int(again.headers["x-engine-pid"]) == pid
        assert state(swapd.url, "other") == "stopped"


def test_admin_api_sleeps_and_wakes_a_model(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        pid = int(chat(swapd.url, "big").headers["x-engine-pid"])
        slept = httpx.post(f"{swapd.url}/api/models/big/sleep", timeout=30)
        assert slept.status_code == 200 and slept.json()["state"] == "sleeping"
        # asked directly: a request through swapd would wake it ("big" got startPort)
        engine = httpx.get(f"http://127.0.0.1:{start_port}/is_sleeping", timeout=10)
        assert engine.json()["is_sleeping"] is True
        woke = httpx.post(f"{swapd.url}/api/models/big/wake", timeout=30)
        assert woke.status_code == 200 and woke.json()["state"] == "ready"
        assert woke.json()["pid"] == pid
        not_sleeping = httpx.post(f"{swapd.url}/api/models/big/wake", timeout=30)
        assert not_sleeping.status_code == 409
        no_sleep_mode = httpx.post(f"{swapd.url}/api/models/other/sleep", timeout=30)
        assert no_sleep_mode.status_code == 409
        assert "does not support sleep" in no_sleep_mode.json()["error"]["message"]
