"""Bounded batching end to end: real swapd, real engines that take 2.5 s to become healthy."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from swapd.testing import echo_cmd, run_swapd

pytestmark = pytest.mark.timeout(120)


def starts(metrics: str) -> dict[str, float]:
    found = re.findall(r'^swapd_swaps_total\{model="([^"]+)"\} ([0-9.]+)$', metrics, re.M)
    return {model: float(n) for model, n in found}


def test_alternating_clients_with_slow_engines_start_each_model_once(start_port: int) -> None:
    # The reproduction: 12 concurrent clients alternating between two models of one
    # swap group whose engines take 2.5 s to start. The requests that queued for b while a was
    # starting must not swap a away the moment it is ready.
    config = f"""
startPort: {start_port}
healthCheckTimeout: 30
models:
  a:
    cmd: {echo_cmd("--health-delay 2.5")}
  b:
    cmd: {echo_cmd("--health-delay 2.5")}
"""
    with run_swapd(config) as swapd, httpx.Client(base_url=swapd.url, timeout=60) as http:

        def ask(model: str) -> int:
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            return http.post("/v1/chat/completions", json=body).status_code

        with ThreadPoolExecutor(12) as pool:
            codes = list(pool.map(ask, ["a", "b"] * 6))
        assert codes == [200] * 12
        assert starts(http.get("/metrics").text) == {"a": 1.0, "b": 1.0}
