"""The docker driver wakes a level-2 sleep with vLLM's reload sequence (echo engine in Docker)."""

from __future__ import annotations

import httpx
import pytest
from dockerlab import Daemon
from test_docker_assignment import Sink, model, serving
from test_docker_driver import chat, nodes_yaml

from swapd.drivers.docker import DockerRuntime

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


async def test_a_level_2_container_answers_correctly_after_waking(
    node_a: Daemon, start_port: int
) -> None:
    config = model(nodes_yaml(a=(node_a.endpoint, None)), start_port, "--sleep-mode")
    driver = DockerRuntime().create(config, Sink())
    async with serving(driver) as upstream:
        await driver.sleep(2)
        async with httpx.AsyncClient() as client:
            r = await client.get(f"{upstream.base_url}/is_sleeping")
            assert r.json() == {"is_sleeping": True}
        await driver.wake()
        assert await chat(upstream.base_url) == "echo m: hi"  # not the garbage of a plain wake
