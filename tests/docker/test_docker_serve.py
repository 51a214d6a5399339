"""`swapd serve` with Docker engines: nothing left after exit; adoption/cleanup after SIGKILL."""

from __future__ import annotations

import time

import httpx
import pytest
from dockerlab import Daemon, echo_block
from test_docker_driver import nodes_yaml

from swapd.testing import run_swapd

pytestmark = pytest.mark.timeout(180)


def serve_config(a: Daemon, b: Daemon, start_port: int, tag: str = "one") -> str:
    return f"""
healthCheckTimeout: 30
startPort: {start_port}
unloadTimeout: 3
{nodes_yaml(a=(a.endpoint, None), b=(b.endpoint, None))}
groups:
  both: {{swap: false, members: [x, y]}}
models:
  x:
    driver: docker
    node: a
    docker: {echo_block("x")}
  y:
    driver: docker
    node: b
    docker: {echo_block("y")}
    env: ["TAG={tag}"]
"""


def chat(url: str, model: str) -> str:
    r = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["choices"][0]["message"]["content"])


def wait_ready(url: str, models: set[str], timeout: float = 30) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while True:
        running = httpx.get(f"{url}/running").json()["running"]
        if {r["id"] for r in running if r["state"] == "ready"} >= models:
            return list(running)
        assert time.monotonic() < deadline, running
        time.sleep(0.1)


def test_serve_exit_removes_containers(node_a: Daemon, node_b: Daemon, start_port: int) -> None:
    with run_swapd(serve_config(node_a, node_b, start_port)) as swapd:
        assert chat(swapd.url, "x") == "echo x: hi"
        assert chat(swapd.url, "y") == "echo y: hi"
        nodes = {r["id"]: r["node"] for r in wait_ready(swapd.url, {"x", "y"})}
        assert nodes == {"x": "a", "y": "b"}
        assert len(node_a.containers()) == 1 and len(node_b.containers()) == 1
    assert swapd.returncode == 0, swapd.output()
    assert node_a.containers() == [] and node_b.containers() == []


def test_sigkill_then_restart_adopts_or_cleans(
    node_a: Daemon, node_b: Daemon, start_port: int
) -> None:
    config = serve_config(node_a, node_b, start_port)
    with run_swapd(config) as first:
        chat(first.url, "x")
        chat(first.url, "y")
        first.proc.kill()  # SIGKILL: no cleanup at all
        first.proc.wait()
    [x_before] = node_a.containers()
    [y_before] = node_b.containers()
    assert x_before.status == "running" and y_before.status == "running"

    # y's config changed (its env), x's did not: x is adopted (same container), y's is removed
    changed = serve_config(node_a, node_b, start_port, tag="two")
    with run_swapd(changed) as second:
        running = wait_ready(second.url, {"x"})
        assert {r["id"] for r in running} == {"x"}
        assert [c.id for c in node_a.containers()] == [x_before.id]
        deadline = time.monotonic() + 20
        while node_b.containers() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert node_b.containers() == []
        assert chat(second.url, "x") == "echo x: hi"
        assert chat(second.url, "y") == "echo y: hi"  # a new container for the new config
        assert "adopting container swapd-x-" in second.output()
    assert second.returncode == 0, second.output()
    assert node_a.containers() == [] and node_b.containers() == []
