"""Placement through Ray on a real loopback Ray cluster: a head (no GPU) and two workers whose
fake GPUs differ (``SWAPD_FAKE_GPUS`` in each node's environment, read there by swapd's probe
actor). The inventory shows every node with its GPUs; a Ray model goes to the node with room,
or where its pin and resources say."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from swapd import raycluster
from swapd.config.model import ModelConfig, RayClusterConfig, Resources
from swapd.config.options import RayOptions
from swapd.inventory import Reading
from swapd.observe.logs import LogRing
from swapd.placement import RAM
from swapd.placer import Placer
from swapd.rayinventory import RayInventory, eligible
from swapd.slot import Slot
from swapd.testing import FakeGpus, echo_cmd, run_swapd

ray = pytest.importorskip("ray") if not os.environ.get("SWAPD_REQUIRE_RAY") else __import__("ray")

GiB = 1 << 30
LOOPBACK = {"RAY_NODE_IP_ADDRESS": "127.0.0.1"}  # every node, and swapd, stay on loopback


@dataclass
class Cluster:
    address: str
    head: str
    small: str  # one 24 GiB GPU, 20 GiB of it used by others
    big: str  # two 80 GiB GPUs, custom resource "a100"
    env: dict[str, dict[str, str]]  # node id -> its environment (its fake GPU spec)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    from ray.cluster_utils import Cluster as RayCluster

    patch = pytest.MonkeyPatch()
    for key, value in LOOPBACK.items():
        patch.setenv(key, value)
    ids = {name: secrets.token_hex(28) for name in ("head", "small", "big")}
    envs: dict[str, dict[str, str]] = {}

    def node_env(name: str, gpus: list[int], external: int = 0) -> dict[str, str]:
        node = ids[name]
        fakes = FakeGpus(
            tmp_path_factory.mktemp(name),
            {node: gpus},
            external={(node, 0): external},
            ram={node: 8 * GiB},
        )
        envs[node] = {**fakes.env(), "RAY_OVERRIDE_NODE_ID_FOR_TESTING": node}
        return envs[node]

    common: dict[str, Any] = {"node_ip_address": "127.0.0.1", "num_cpus": 1}
    rc = RayCluster(
        initialize_head=True,
        head_node_args={**common, "include_dashboard": False, "env_vars": node_env("head", [])},
    )
    try:
        rc.add_node(**common, num_gpus=1, env_vars=node_env("small", [24 * GiB], 20 * GiB))
        rc.add_node(
            **common,
            num_gpus=2,
            resources={"a100": 2},
            labels={"ray.node": "big-box"},
            env_vars=node_env("big", [80 * GiB, 80 * GiB]),
        )
        raycluster.connect(RayClusterConfig(rc.address, "swapd-test-placement"))
        yield Cluster(rc.address, ids["head"], ids["small"], ids["big"], envs)
    finally:
        ray.shutdown()
        rc.shutdown()
        patch.undo()


@pytest.fixture(scope="module")
def reading(cluster: Cluster) -> Reading:
    inventory = RayInventory(nodes=raycluster.nodes)
    try:
        return inventory.read_now()
    finally:
        inventory.close()


def test_inventory_lists_every_ray_node_with_the_gpus_its_probe_saw(
    cluster: Cluster, reading: Reading
) -> None:
    nodes = {n.node: n for n in reading.nodes}
    assert set(nodes) == {cluster.head, cluster.small, cluster.big}
    small, big, head = nodes[cluster.small], nodes[cluster.big], nodes[cluster.head]
    assert [(d.total_bytes, d.free_bytes) for d in small.devices] == [(24 * GiB, 4 * GiB)]
    assert [d.total_bytes for d in big.devices] == [80 * GiB, 80 * GiB]
    assert head.devices == ()
    assert all(n.cluster == "ray" and not n.local for n in nodes.values())
    assert all(n.memory is not None and n.memory.total_bytes == 8 * GiB for n in nodes.values())
    assert big.label == "big-box" and big.resources["a100"] == 2
    assert small.label == "127.0.0.1" and small.resources["GPU"] == 1
    assert all(s.ok for n in nodes.values() for s in n.sources)


def test_usage_measures_an_engine_on_its_node_through_the_probe(cluster: Cluster) -> None:
    """What placement learns a Ray model's need from: its pid tree's use on its node."""
    env = {**os.environ, **cluster.env[cluster.big], "SWAPD_NODE": cluster.big}
    env["CUDA_VISIBLE_DEVICES"] = "1"
    argv = [sys.executable, "-m", "swapd.echo", "--port", "0", "--allocate", "5GiB"]
    inventory = RayInventory(nodes=raycluster.nodes)
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True) as engine:
        try:
            assert engine.stdout is not None and engine.stdout.readline()  # it holds 5 GiB
            big = inventory.read_now().node(cluster.big)
            assert big is not None
            assert [d.free_bytes for d in big.devices] == [80 * GiB, 75 * GiB]
            assert anyio.run(inventory.usage, cluster.big, [engine.pid]) == {1: 5 * GiB}
            assert anyio.run(inventory.usage, cluster.small, [engine.pid]) == {}
        finally:
            engine.terminate()
            inventory.close()


def ray_model(id: str, memory: int, **options: Any) -> ModelConfig:
    return ModelConfig(
        id=id,
        cmd=("python", "-m", "swapd.echo", "--port", "${PORT}"),
        driver="ray",
        options=RayOptions(**options),
        resources=Resources(memory=memory),
    )


def decide(reading: Reading, model: ModelConfig) -> tuple[str, tuple[int, ...]]:
    from swapd.config.model import Config

    config = Config(models={model.id: model})
    slot = Slot(config=model, log=LogRing(model.id))
    placer = Placer(
        {model.id: slot}, lambda: config, lambda s, now: 0.0, inventory=None, learned=None
    )
    placer.reading = reading
    choice = placer.decide(slot, time.monotonic())
    assert choice.decision.placed, choice.decision.reason
    a = placer.assignment(choice)
    return a.node, a.devices


def test_a_ray_model_goes_to_the_node_with_room(cluster: Cluster, reading: Reading) -> None:
    assert decide(reading, ray_model("m", 10 * GiB, resources={"GPU": 1})) == (cluster.big, (0,))


def test_a_model_that_fits_the_small_gpu_takes_it_best_fit(
    cluster: Cluster, reading: Reading
) -> None:
    assert decide(reading, ray_model("m", 2 * GiB, resources={"GPU": 1})) == (cluster.small, (0,))


def test_a_pin_by_label_or_a_custom_resource_narrows_the_nodes(
    cluster: Cluster, reading: Reading
) -> None:
    small = ray_model("m", 2 * GiB, resources={"GPU": 1}, node="big-box")
    assert decide(reading, small)[0] == cluster.big
    assert eligible(ray_model("m", 0, resources={"a100": 1}), reading.nodes) == (cluster.big,)
    two = ray_model("m", 20 * GiB, resources={"GPU": 2})
    assert decide(reading, two) == (cluster.big, (0, 1))


def test_a_ray_model_without_gpus_is_placed_on_a_nodes_ram(
    cluster: Cluster, reading: Reading
) -> None:
    node, devices = decide(reading, ray_model("cpu", 1 * GiB))
    assert devices == () and node in {cluster.head, cluster.small, cluster.big}
    assert RAM == -1


def test_swapd_places_ray_models_by_memory_and_shows_their_nodes(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Through a real swapd: the first model fits the small GPU (best fit), the second finds no
    room left there and goes to the big node; /running and /api/hardware say where."""
    engine = echo_cmd("--host ${NODE_IP} --allocate 3GiB")
    ray_block = "ray: {resources: {GPU: 1}}\n    resources: {memory: 3GiB}"
    models = "".join(
        f"  {m}:\n    driver: ray\n    cmd: {engine}\n    {ray_block}\n" for m in ("one", "two")
    )
    config = (
        f"cluster:\n  ray: {{address: '{cluster.address}', namespace: swapd-test-placement}}\n"
        f"models:\n{models}"
    )
    env = {**os.environ, **LOOPBACK, "SWAPD_STATE_DIR": str(tmp_path)}
    env["RAY_ADDRESS"] = "127.0.0.1:1"  # what `auto` would take: only cluster.ray is used
    with run_swapd(config, env=env) as swapd:
        for model in ("one", "two"):
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            reply = httpx.post(f"{swapd.url}/v1/chat/completions", json=body, timeout=60)
            assert reply.status_code == 200, swapd.output()
        running = {
            m["model"]: m for m in httpx.get(f"{swapd.url}/running", timeout=10).json()["running"]
        }
        assert running["one"]["node"] == cluster.small, swapd.output()
        assert running["two"]["node"] == cluster.big
        assert running["two"]["node_label"] == "big-box"
        assert running["two"]["placement"]["node_label"] == "big-box"
        assert running["one"]["placement"]["devices"] == [0]
        hardware = httpx.get(f"{swapd.url}/api/hardware", timeout=10).json()["placement"]
        nodes = {n["node"]: n for n in hardware["nodes"]}
        assert {cluster.head, cluster.small, cluster.big} <= set(nodes)
        held = [m["model"] for d in nodes[cluster.big]["devices"] for m in d["models"]]
        assert held == ["two"] and nodes[cluster.big]["label"] == "big-box"
        fleet = httpx.get(f"{swapd.url}/api/nodes", timeout=60).json()["nodes"]
        listed = {n["node"]: n for n in fleet}
        assert listed[cluster.big]["label"] == "big-box"  # the Nodes page's name for it
        assert [m["id"] for m in listed[cluster.big]["models"]] == ["two"]
        assert f"node big-box (id {cluster.big})" in cli("nodes", swapd.url)
        ps = cli("ps", swapd.url)
        assert "big-box:0" in ps and "127.0.0.1:0" in ps and cluster.big not in ps
        assert f"node big-box (ray node {cluster.big})" in cli("hardware", swapd.url)


def cli(command: str, url: str) -> str:
    argv = [sys.executable, "-m", "swapd", command, "--url", url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    return done.stdout
