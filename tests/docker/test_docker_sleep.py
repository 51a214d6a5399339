"""Sleep/wake through the scheduler with the echo engine speaking vLLM's sleep API in Docker."""

from __future__ import annotations

import httpx
import pytest
from dockerlab import Daemon, echo_block
from test_docker_driver import chat, nodes_yaml, running

from swapd.views import State

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


def sleep_config(node: Daemon, start_port: int, *flags: str) -> str:
    return f"""
startPort: {start_port}
{nodes_yaml(a=(node.endpoint, "10GiB"))}
models:
  s:
    driver: docker
    docker: {echo_block("s", "--sleep-mode", *flags)}
    sleep: {{level: 1}}
    resources: {{gpu_memory: 8GiB}}
  t:
    driver: docker
    docker: {echo_block("t")}
    resources: {{gpu_memory: 8GiB}}
"""


async def test_evict_sleeps_and_next_request_wakes(node_a: Daemon, start_port: int) -> None:
    async with running(sleep_config(node_a, start_port)) as scheduler:
        async with scheduler.lease("s") as up:
            assert await chat(up.base_url) == "echo s: hi"
            s_url = up.base_url
        [container] = node_a.containers()
        # t evicts s (one at a time): s sleeps, and its 8GiB count as free, so t fits next to it
        async with scheduler.lease("t") as up:
            assert await chat(up.base_url) == "echo t: hi"
            assert scheduler.slots["s"].state is State.SLEEPING
            states = {i["id"]: i["state"] for i in scheduler.snapshot()}
            assert states == {"s": "sleeping", "t": "ready"}
            async with httpx.AsyncClient() as client:
                r = await client.get(f"{s_url}/is_sleeping")
                assert r.json() == {"is_sleeping": True}
        # the next request for s stops t and wakes s: the same container, awake
        async with scheduler.lease("s") as up:
            assert await chat(up.base_url, "again") == "echo s: again"
        assert [c.id for c in node_a.containers()] == [container.id]
        ring = scheduler.ring("s")
        assert ring is not None
        assert any("waking s" in line for line in ring.tail(100))
        await scheduler.unload(None)
        assert node_a.containers() == []


async def test_failed_wake_restarts_the_engine(node_a: Daemon, start_port: int) -> None:
    async with running(sleep_config(node_a, start_port, "--fail-wake")) as scheduler:
        async with scheduler.lease("s"):
            pass
        [first] = node_a.containers()
        async with scheduler.lease("t"):
            assert scheduler.slots["s"].state is State.SLEEPING
        async with scheduler.lease("s") as up:
            assert await chat(up.base_url) == "echo s: hi"  # a fresh engine, awake
        [second] = [c for c in node_a.containers() if c.labels["swapd.model"] == "s"]
        assert second.id != first.id
        ring = scheduler.ring("s")
        assert ring is not None
        assert any("wake failed" in line for line in ring.tail(200))
