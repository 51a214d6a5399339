"""The docker driver runs an engine where placement put it: node, exact devices, macros."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from dockerlab import IMAGE, Daemon, echo_block
from test_docker_driver import chat, nodes_yaml

from swapd.assignment import Assignment
from swapd.config import load_text
from swapd.config.model import ModelConfig, NodeConfig
from swapd.drivers.base import Upstream
from swapd.drivers.docker import DockerDriver, DockerRuntime
from swapd.drivers.docker.container import run_kwargs, spec_of
from swapd.errors import StartFailed
from swapd.extensions import standard

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


class Sink:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, line: str) -> None:
        self.lines.append(line)


def model(
    nodes: str, start_port: int, *args: str, extra: str = "", gpus: object = None
) -> ModelConfig:
    block = json.loads(echo_block("m", *args))
    if gpus is not None:
        block["gpus"] = gpus
    text = f"""
healthCheckTimeout: 30
startPort: {start_port}
unloadTimeout: 5
{nodes}
models:
  m:
    driver: docker
    docker: {json.dumps(block)}
{extra}
"""
    return load_text(text, extensions=standard()).models["m"]


@asynccontextmanager
async def serving(driver: DockerDriver) -> AsyncIterator[Upstream]:
    async with anyio.create_task_group() as tg:
        upstream: Upstream = await tg.start(driver.serve)
        try:
            yield upstream
        finally:
            tg.cancel_scope.cancel()


async def test_the_assigned_node_wins_over_the_drivers_own_placement(
    node_a: Daemon, node_b: Daemon, start_port: int
) -> None:
    # a is first and fits: without the assignment the driver would pick it
    nodes = nodes_yaml(a=(node_a.endpoint, "80GiB"), b=(node_b.endpoint, "80GiB"))
    config = model(
        nodes,
        start_port,
        "--model",
        "m-${GPU_MEMORY_MIB}-${GPU_COUNT}",
        extra='    env: ["SEEN=${GPU_MEMORY_BYTES}"]',
    )
    driver = DockerRuntime().create(config, Sink())
    driver.assign(Assignment("b", (), per_device=3 * 1024 * 1024))
    async with serving(driver) as upstream:
        assert upstream.node == "b"
        assert node_a.containers() == []
        [c] = node_b.containers()
        assert await chat(upstream.base_url) == "echo m-3-0: hi"
        assert f"SEEN={3 * 1024 * 1024}" in c.attrs["Config"]["Env"]
        assert c.attrs["HostConfig"].get("DeviceRequests") in (None, [])  # a CPU engine
        assert c.labels["swapd.devices"] == ""
    assert node_b.containers() == []


async def test_a_node_placement_did_not_offer_fails_the_start(
    node_a: Daemon, start_port: int
) -> None:
    config = model(nodes_yaml(a=(node_a.endpoint, None)), start_port)
    driver = DockerRuntime().create(config, Sink())
    driver.assign(Assignment("zz", (0,)))
    with pytest.raises(StartFailed) as info:
        await driver.serve(task_status=anyio.TASK_STATUS_IGNORED)
    assert "placement chose node 'zz', not one of its nodes (a)" in info.value.message
    assert node_a.containers() == []


async def test_a_gpu_assignment_requests_exactly_its_device_ids(
    node_a: Daemon, start_port: int
) -> None:
    """The create-time spec on a real daemon: a created (not started) container's devices."""
    config = model(nodes_yaml(a=(node_a.endpoint, None)), start_port, gpus=1)
    spec = spec_of(config)
    assignment = Assignment("a", (2, 3), device_totals=(80 << 30, 80 << 30), per_device=36 << 30)
    [node] = config.nodes
    kwargs = run_kwargs(
        config,
        spec,
        name="swapd-devices-test",
        node=node,
        instance="test",
        port=start_port,
        assignment=assignment,
        macros=assignment.values(),
    )
    kwargs.pop("detach")
    client = node_a.client()
    try:
        container = client.containers.create(**kwargs)
        try:
            requests = container.attrs["HostConfig"]["DeviceRequests"]
            labels = container.labels
            env = container.attrs["Config"]["Env"] or []
        finally:
            container.remove(force=True)
    finally:
        client.close()
    # placement's devices replace the spec's count
    assert [(r["DeviceIDs"], r["Count"], r["Capabilities"]) for r in requests] == [
        (["2", "3"], 0, [["gpu"]])
    ]
    assert labels["swapd.devices"] == "2,3"
    assert not any(e.startswith("CUDA_VISIBLE_DEVICES=") for e in env)  # renumbered inside


async def test_the_gpus_all_of_a_spec_becomes_the_assigned_ids(start_port: int) -> None:
    nodes = "nodes:\n  a: {docker: 'unix:///nowhere.sock'}\n"
    block = {"image": IMAGE, "command": ["x", "--gpu-memory-utilization", "${GPU_MEMORY_FRACTION}"]}
    text = f"""
startPort: {start_port}
{nodes}
models:
  m:
    driver: docker
    docker: {json.dumps({**block, "gpus": "all"})}
"""
    config = load_text(text, extensions=standard()).models["m"]
    assignment = Assignment("a", (1,), device_totals=(80 << 30,), per_device=36 << 30)
    kwargs = run_kwargs(
        config,
        spec_of(config),
        name="n",
        node=config.nodes[0],
        instance="i",
        port=start_port,
        assignment=assignment,
        macros=assignment.values(),
    )
    [request] = kwargs["device_requests"]
    assert (request["DeviceIDs"], request["Count"]) == (["1"], 0)
    assert kwargs["command"] == ["x", "--gpu-memory-utilization", "0.45"]
    unassigned = run_kwargs(
        config, spec_of(config), name="n", node=config.nodes[0], instance="i", port=start_port
    )
    assert unassigned["device_requests"][0]["Count"] == -1  # today's `gpus: all`


async def test_an_amd_assignment_sets_hip_visible_devices_and_requests_nothing(
    start_port: int,
) -> None:
    text = f"""
startPort: {start_port}
models:
  m:
    driver: docker
    docker: {json.dumps({"image": IMAGE, "command": ["x"], "gpus": "all"})}
"""
    config = load_text(text, extensions=standard()).models["m"]
    kwargs = run_kwargs(
        config,
        spec_of(config),
        name="n",
        node=NodeConfig("local", ""),
        instance="i",
        port=start_port,
        assignment=Assignment("local", (0, 1), vendor="amd"),
    )
    assert "device_requests" not in kwargs
    assert kwargs["environment"]["HIP_VISIBLE_DEVICES"] == "0,1"


async def test_the_driver_sends_the_assigned_devices_to_the_daemon(
    node_a: Daemon, start_port: int
) -> None:
    """Without NVIDIA's runtime the daemon refuses the device request at start: the failure
    names it, and nothing is left behind."""
    config = model(nodes_yaml(a=(node_a.endpoint, None)), start_port)
    driver = DockerRuntime().create(config, Sink())
    driver.assign(Assignment("a", (1,)))
    with pytest.raises(StartFailed) as info:
        await driver.serve(task_status=anyio.TASK_STATUS_IGNORED)
    assert "cannot start container" in info.value.message
    assert "could not select device driver" in info.value.message
    assert "[[gpu]]" in info.value.message
    assert node_a.containers() == []
