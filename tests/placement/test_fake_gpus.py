"""Fake GPUs: real echo processes allocate fake memory (``--allocate``), the fake inventory and
``FakeGpus`` see it while they live and free it when they die."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest

from swapd.config.model import Config
from swapd.echo.gpu import Spec
from swapd.hardware import Device
from swapd.inventory import FakeInventory, Reading, from_config
from swapd.placement import RAM
from swapd.testing import GIB, FakeGpus, free_port, run_echo, wait_http

pytestmark = pytest.mark.timeout(60)


def gpus(
    tmp_path: Path,
    external: Mapping[tuple[str, int], int] | None = None,
    ram: Mapping[str, int] | None = None,
) -> FakeGpus:
    """Node a: 2 GPUs of 80 GiB, node b: 2 of 24 GiB."""
    nodes = {"a": [80 * GIB, 80 * GIB], "b": [24 * GIB, 24 * GIB]}
    return FakeGpus(tmp_path, nodes, external=external, ram=ram)


def device(reading: Reading, node: str, index: int) -> Device:
    found = reading.node(node)
    assert found is not None
    return next(d for d in found.devices if d.index == index)


def engine_env(fake: FakeGpus, node: str, devices: str | None) -> dict[str, str]:
    env = {**fake.env(), "SWAPD_NODE": node}
    if devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = devices
    return env


def allocate(size: str, env: Mapping[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    """Run a fake engine that is expected to fail before it binds its port."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "swapd.echo",
            "--port",
            str(free_port()),
            "--allocate",
            size,
            *extra,
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def first_allocations(fake: FakeGpus, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The live allocations once there are any."""
    deadline = time.monotonic() + timeout
    while not (found := fake.allocations()):
        assert time.monotonic() < deadline, "no fake engine allocated in time"
        time.sleep(0.05)
    return found


def inventory(fake: FakeGpus) -> FakeInventory:
    found = from_config(Config(), fake.env())
    assert isinstance(found, FakeInventory)
    return found


def test_spec_file_has_the_documented_shape(tmp_path: Path) -> None:
    fake = gpus(tmp_path, external={("b", 0): GIB})
    spec = json.loads(fake.path.read_text())
    assert spec["nodes"]["a"]["gpus"][1] == {
        "index": 1,
        "name": "Fake H100",
        "memory": 80 * GIB,
        "external": 0,
    }
    assert spec["nodes"]["b"]["gpus"][0]["external"] == GIB
    assert Path(spec["allocations"]).is_dir()
    assert fake.env() == {"SWAPD_FAKE_GPUS": str(fake.path)}


@pytest.mark.anyio
async def test_an_echo_engine_holds_its_memory_while_alive_and_frees_it_at_exit(
    tmp_path: Path,
) -> None:
    fake = gpus(tmp_path)
    inv = inventory(fake)
    with run_echo("--allocate", "10GiB", env=engine_env(fake, "b", "1")) as engine:
        engine.wait_for_log("fake GPU: allocated 10.00 GiB on each of b:1")
        assert fake.used("b", 1) == 10 * GIB
        assert fake.used("b", 0) == fake.used("a", 1) == 0
        assert fake.allocations() == [
            {"pid": engine.pid, "node": "b", "devices": [1], "bytes_per_device": 10 * GIB}
        ]
        reading = await inv.read(refresh=True)
        b1 = device(reading, "b", 1)
        assert (b1.total_bytes, b1.free_bytes) == (24 * GIB, 14 * GIB)
        states = {s.key: s for s in reading.device_states()}
        assert states["b", 1].external == 10 * GIB and states["b", 0].external == 0
        assert all(n.local for n in reading.nodes)
        assert await inv.usage("b", [engine.pid]) == {1: 10 * GIB}
        assert await inv.usage("a", [engine.pid]) == {}
        assert engine.stop() == 0  # SIGTERM: the handler drops the allocation
    assert fake.used("b", 1) == 0
    assert list(fake.spec.allocations.glob("*.json")) == []
    assert device(await inv.read(refresh=True), "b", 1).free_bytes == 24 * GIB


def test_a_killed_engine_leaves_a_file_that_counts_for_nothing(tmp_path: Path) -> None:
    fake = gpus(tmp_path)
    with run_echo("--allocate", "4GiB", env=engine_env(fake, "a", None)) as engine:
        assert fake.used("a", 0) == 4 * GIB  # CUDA_VISIBLE_DEVICES unset: device 0
        os.kill(engine.pid, signal.SIGKILL)
        engine.proc.wait(10)
        leftover = fake.spec.allocations / f"{engine.pid}.json"
        assert leftover.exists()
        assert fake.used("a", 0) == 0
        assert not leftover.exists()  # the reader removed it


def test_an_engine_that_does_not_fit_exits_with_a_cuda_like_error(tmp_path: Path) -> None:
    fake = gpus(tmp_path, external={("b", 1): 20 * GIB})
    done = allocate("8GiB", engine_env(fake, "b", "1"))
    assert done.returncode == 1
    assert (
        "CUDA error: out of memory (fake GPU b:1: tried to allocate 8.00 GiB, free 4.00 GiB)"
        in done.stderr
    )
    assert fake.allocations() == []
    assert "listening" not in done.stdout  # it never bound its port


def test_memory_is_split_over_the_visible_devices_and_each_share_must_fit(
    tmp_path: Path,
) -> None:
    fake = gpus(tmp_path)
    with run_echo("--allocate", "40GiB", env=engine_env(fake, "b", "0,1")):
        assert fake.used("b", 0) == fake.used("b", 1) == 20 * GIB
        done = allocate("10GiB", engine_env(fake, "b", "0,1"))
        assert done.returncode == 1 and "fake GPU b:0: tried to allocate 5.00 GiB" in done.stderr
        with run_echo("--allocate", "4GiB", env=engine_env(fake, "b", "0,1")):
            assert fake.used("b", 0) == fake.used("b", 1) == 22 * GIB


def test_two_engines_starting_at_once_cannot_both_take_the_last_memory(tmp_path: Path) -> None:
    fake = gpus(tmp_path)
    argv = [sys.executable, "-m", "swapd.echo", "--allocate", "15GiB", "--port"]
    env = {**os.environ, **engine_env(fake, "b", "0")}
    procs = [
        subprocess.Popen(
            [*argv, str(free_port())], env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE
        )
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 30
        while all(p.poll() is None for p in procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        failed = [p for p in procs if p.poll() is not None]
        assert len(failed) == 1 and failed[0].returncode == 1
        assert fake.used("b", 0) == 15 * GIB
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
            p.communicate(timeout=10)


def test_memory_is_taken_before_the_port_is_bound(tmp_path: Path) -> None:
    fake = gpus(tmp_path)
    port = free_port()
    argv = [sys.executable, "-m", "swapd.echo", "--port", str(port)]
    argv += ["--allocate", "2GiB", "--allocate-delay", "0.5"]
    proc = subprocess.Popen(
        argv, env={**os.environ, **fake.env()}, stdout=subprocess.DEVNULL, text=True
    )
    try:
        assert fake.used("a", 0) == 0  # still "loading"
        wait_http(f"http://127.0.0.1:{port}/health", 30, proc=proc)
        assert fake.used("a", 0) == 2 * GIB
    finally:
        proc.terminate()
        proc.wait(10)
    assert fake.used("a", 0) == 0


def test_an_engine_without_visible_gpus_takes_the_nodes_ram(tmp_path: Path) -> None:
    fake = gpus(tmp_path, ram={"a": 64 * GIB})
    with run_echo("--allocate", "6GiB", env=engine_env(fake, "a", "")) as engine:
        assert fake.used("a", RAM) == 6 * GIB
        assert fake.used("a", 0) == 0
        engine.wait_for_log("on each of a:RAM")
    done = allocate("1GiB", engine_env(fake, "b", ""))  # b has no RAM in the spec
    assert done.returncode == 2 and "node b has no RAM" in done.stderr


@pytest.mark.anyio
async def test_fake_nodes_have_ram_only_when_the_spec_gives_it(tmp_path: Path) -> None:
    fake = gpus(tmp_path, ram={"a": 64 * GIB})
    reading = await inventory(fake).read()
    a, b = reading.nodes
    assert a.memory is not None and a.memory.total_bytes == 64 * GIB
    assert b.memory is None
    keys = [s.key for s in reading.device_states()]
    assert keys == [("a", 0), ("a", 1), ("a", RAM), ("b", 0), ("b", 1)]


@pytest.mark.anyio
async def test_external_memory_in_the_spec_counts_as_used(tmp_path: Path) -> None:
    fake = gpus(tmp_path)
    inv = inventory(fake)
    assert {s.key: s.external for s in (await inv.read()).device_states()}["a", 1] == 0
    fake.set_external("a", 1, 30 * GIB)
    cached = {s.key: s.external for s in (await inv.read()).device_states()}
    assert cached["a", 1] == 0  # within placement.refresh: the cached reading
    fresh = {s.key: s.external for s in (await inv.read(refresh=True)).device_states()}
    assert fresh["a", 1] == 30 * GIB


@pytest.mark.anyio
async def test_usage_counts_fake_engines_among_the_descendants(tmp_path: Path) -> None:
    fake = gpus(tmp_path)
    inner = f"{sys.executable} -m swapd.echo --port {free_port()} --allocate 3GiB; true"
    async with await anyio.open_process(
        ["sh", "-c", inner],
        env={**os.environ, **engine_env(fake, "a", "1")},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    ) as shell:
        try:
            (allocation,) = await anyio.to_thread.run_sync(first_allocations, fake)
            assert allocation["pid"] != shell.pid  # the engine is the shell's child
            assert await inventory(fake).usage("a", [shell.pid]) == {1: 3 * GIB}
            assert await inventory(fake).usage("a", [os.getpid() + 10**6]) == {}
        finally:
            os.killpg(shell.pid, signal.SIGTERM)
            await shell.wait()


@pytest.mark.anyio
async def test_a_broken_spec_is_reported_not_raised(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text("{not json")
    reading = await from_config(Config(), {"SWAPD_FAKE_GPUS": str(spec)}).read()
    (node,) = reading.nodes
    assert node.devices == () and not node.sources[0].ok
    assert "fake GPU spec" in (node.sources[0].error or "")
    assert reading.device_states() == []


def test_a_dead_pids_allocation_file_is_ignored_and_removed(tmp_path: Path) -> None:
    fake = gpus(tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = fake.spec.allocations / f"{dead.pid}.json"
    stale.write_text(json.dumps({"node": "a", "devices": [0], "bytes_per_device": GIB}))
    assert Spec.load(fake.path).free("a", 0) == 80 * GIB
    assert not stale.exists()
