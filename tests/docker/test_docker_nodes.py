"""Nodes: placement by free GPU memory and pinning across two real Docker daemons."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from dockerlab import Daemon, echo_block
from test_docker_driver import chat, nodes_yaml, running

from swapd.drivers.docker import RUNTIME
from swapd.errors import StartFailed

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


async def test_placement_and_pinning_across_two_daemons(
    node_a: Daemon, node_b: Daemon, start_port: int
) -> None:
    models = "\n".join(
        f"  {m}:\n    driver: docker\n    docker: {echo_block(m)}\n{extra}"
        for m, extra in [
            ("m1", "    resources: {gpu_memory: 8GiB}"),
            ("m2", "    resources: {gpu_memory: 8GiB}"),
            ("m3", "    resources: {gpu_memory: 8GiB}"),
            ("pinned", "    node: a"),
            ("toobig", "    resources: {gpu_memory: 30GiB}"),
        ]
    )
    text = f"""
startPort: {start_port}
{nodes_yaml(a=(node_a.endpoint, "10GiB"), b=(node_b.endpoint, "24GiB"))}
groups:
  all: {{swap: false, exclusive: false, members: [m1, m2, m3, pinned, toobig]}}
models:
{models}
"""
    async with running(text) as scheduler:
        placed = {}
        for m in ("m1", "m2", "m3", "pinned"):
            async with scheduler.lease(m) as upstream:
                placed[m] = upstream.node
                assert await chat(upstream.base_url, m) == f"echo {m}: {m}"
        # a has 10GiB: m1 fits; m2 and m3 go to b (24GiB); the pin wins over memory
        assert placed == {"m1": "a", "m2": "b", "m3": "b", "pinned": "a"}
        assert sorted(c.name for c in node_a.containers()) == [
            f"swapd-m1-{start_port}",
            f"swapd-pinned-{start_port + 3}",
        ]
        assert sorted(c.labels["swapd.model"] for c in node_b.containers()) == ["m2", "m3"]
        with pytest.raises(StartFailed) as info:
            async with scheduler.lease("toobig"):
                pass
        assert "no node has 30.0GiB of free GPU memory" in info.value.message
        assert "a: 2.0GiB free" in info.value.message and "b: 8.0GiB free" in info.value.message
        running_on = {i["id"]: i["node"] for i in scheduler.snapshot() if i["state"] == "ready"}
        assert running_on == placed
        await scheduler.unload(None)
        await anyio.lowlevel.checkpoint()
    assert node_a.containers() == [] and node_b.containers() == []
    assert not [p for p in RUNTIME.placements.snapshot() if p.model in placed]
