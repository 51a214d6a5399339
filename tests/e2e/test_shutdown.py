"""Shutdown while an engine is starting: waiting clients hear at once, swapd exits at once."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from swapd.testing import echo_cmd, run_swapd

pytestmark = pytest.mark.timeout(60)


def one_model(start_port: int, name: str, cmd: str) -> str:
    return f"startPort: {start_port}\nmodels:\n  {name}:\n    cmd: {cmd}\n"


def test_sigterm_answers_requests_waiting_for_a_start_with_503_at_once(start_port: int) -> None:
    # The engine would take 60 s to pass its health check (healthCheckTimeout 120 s): SIGTERM
    # must not wait that out.
    with run_swapd(one_model(start_port, "slow", echo_cmd("--health-delay 60"))) as swapd:
        answers: list[httpx.Response] = []

        def ask() -> None:
            body = {"model": "slow", "messages": [{"role": "user", "content": "hi"}]}
            answers.append(httpx.post(f"{swapd.url}/v1/chat/completions", json=body, timeout=30))

        waiter = threading.Thread(target=ask)
        waiter.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the request is waiting for the start
            models = httpx.get(f"{swapd.url}/api/models", timeout=5).json()["models"]
            if models[0]["state"] == "starting" and models[0]["queued"] == 1:
                break
            time.sleep(0.05)
        began = time.monotonic()
        swapd.proc.send_signal(signal.SIGTERM)
        waiter.join(20)
        assert answers and answers[0].status_code == 503
        assert "shutting down" in answers[0].json()["error"]["message"]
        assert swapd.exit_status(20) == 0
        assert time.monotonic() - began < 15  # not the 60 s health delay, nor 120 s timeout


def test_a_long_shutdown_says_which_requests_it_waits_for(start_port: int) -> None:
    with run_swapd(one_model(start_port, "alpha", echo_cmd())) as swapd:
        body = {"model": "alpha", "messages": [{"role": "user", "content": "slow"}], "delay": 6}
        answers: list[httpx.Response] = []

        def ask() -> None:
            answers.append(httpx.post(f"{swapd.url}/v1/chat/completions", json=body, timeout=30))

        waiter = threading.Thread(target=ask)
        waiter.start()
        swapd.wait_for_log("alpha ready")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the request is in flight
            if httpx.get(f"{swapd.url}/api/models", timeout=5).json()["models"][0]["inflight"]:
                break
            time.sleep(0.05)
        swapd.proc.send_signal(signal.SIGTERM)
        line = swapd.wait_for_log("still shutting down", timeout=15)
        assert "requests" in line  # requests in flight (or, with workers, their draining)
        assert line.endswith(": alpha (1)")
        waiter.join(20)
        assert answers and answers[0].status_code == 200  # drained, not cut
        assert swapd.exit_status(20) == 0
