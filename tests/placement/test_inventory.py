"""The placement inventory and its hardware sources: recorded ``nvidia-smi`` / ``rocm-smi`` /
NVML outputs (tests/data/gpus), failing sources reported rather than raised, remote nodes over
``ssh``, declared GPUs, caching, and the memory a pid tree uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from swapd import hardware
from swapd.config.model import Config, GpuConfig, ModelConfig, NodeConfig, PlacementConfig
from swapd.hardware import (
    MIB,
    Device,
    Memory,
    ProbeError,
    Source,
    gpu_processes,
    nvml_processes,
    parse_compute_apps,
    parse_driver_version,
    parse_nvidia_smi,
    parse_rocm_smi,
    pid_tree,
    probe_nvidia_smi,
    probe_nvml,
    rss_bytes,
)
from swapd.inventory import HostInventory, Joined, NodeReading, Reading, from_config, reads
from swapd.placement import RAM

DATA = Path(__file__).parents[1] / "data" / "gpus"
GIB = 1024**3

pytestmark = pytest.mark.timeout(60)


def fixture(name: str) -> str:
    return (DATA / name).read_text()


def recorded(machine: str, calls: list[list[str]] | None = None) -> hardware.Runner:
    """A runner answering ``nvidia-smi`` queries with ``machine``'s recorded outputs."""

    def run(argv: list[str]) -> str:
        if calls is not None:
            calls.append(argv)
        tool = argv.index("nvidia-smi") if "nvidia-smi" in argv else -1
        query = argv[tool + 1] if tool >= 0 else ""
        if query == "--query-gpu=driver_version":
            return fixture(f"nvidia-smi-{machine}-driver.csv")
        if query.startswith("--query-gpu="):
            return fixture(f"nvidia-smi-{machine}.csv")
        if query.startswith("--query-compute-apps="):
            return fixture(f"nvidia-smi-{machine}-apps.csv")
        raise ProbeError(f"{argv[0]} not found on PATH")

    return run


def broken(argv: list[str]) -> str:
    raise ProbeError(f"{argv[0]} not found on PATH")


@pytest.fixture
def no_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """NVML absent, whatever this machine has."""
    monkeypatch.setitem(sys.modules, "pynvml", None)


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A ``pynvml`` module answering from the recorded NVML-style JSON."""
    data: dict[str, Any] = json.loads(fixture("nvml-h100x8.json"))
    module = types.ModuleType("pynvml")
    devices = data["devices"]

    def attach(name: str, fn: Callable[..., Any]) -> None:
        setattr(module, name, fn)

    attach("nvmlInit", lambda: None)
    attach("nvmlShutdown", lambda: None)
    attach("nvmlSystemGetDriverVersion", lambda: data["driver_version"])
    attach("nvmlDeviceGetCount", lambda: len(devices))
    attach("nvmlDeviceGetHandleByIndex", lambda i: devices[i])
    attach("nvmlDeviceGetName", lambda h: h["name"].encode())  # older bindings: bytes
    attach("nvmlDeviceGetUUID", lambda h: h["uuid"])
    attach("nvmlDeviceGetMemoryInfo", lambda h: types.SimpleNamespace(**h["memory"]))
    attach(
        "nvmlDeviceGetComputeRunningProcesses",
        lambda h: [types.SimpleNamespace(**p) for p in h["processes"]],
    )
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return data


# ── recorded outputs ────────────────────────────────────────────────────────────────────────


def test_eight_h100s_from_nvidia_smi_with_their_free_memory() -> None:
    devices = parse_nvidia_smi(fixture("nvidia-smi-h100x8.csv"))
    assert [d.index for d in devices] == list(range(8))
    assert {d.name for d in devices} == {"NVIDIA H100 80GB HBM3"}
    assert {d.total_bytes for d in devices} == {81559 * MIB}
    assert devices[2].free_bytes == 7442 * MIB  # a tensor-parallel engine on GPUs 2 and 3
    assert len({d.uuid for d in devices}) == 8
    assert parse_driver_version(fixture("nvidia-smi-h100x8-driver.csv")) == "570.86.15"


def test_two_rtx_4090s_from_nvidia_smi() -> None:
    first, second = parse_nvidia_smi(fixture("nvidia-smi-rtx4090x2.csv"))
    assert first.name == second.name == "NVIDIA GeForce RTX 4090"
    assert first.total_bytes == 24564 * MIB and second.free_bytes == 2151 * MIB
    assert parse_driver_version(fixture("nvidia-smi-rtx4090x2-driver.csv")) == "550.120"


def test_gb10_unified_memory_has_no_size_and_stays_out_of_gpu_placement() -> None:
    (gb10,) = parse_nvidia_smi(fixture("nvidia-smi-gb10.csv"))
    assert gb10.name == "NVIDIA GB10" and gb10.total_bytes is None and gb10.free_bytes is None
    memory = Memory(128 * GIB, 100 * GIB)
    spark = NodeReading("spark", (gb10,), memory, (Source("nvidia-smi", True),))
    states = Reading(0.0, (spark,)).device_states()
    assert [(s.key, s.total, s.external) for s in states] == [
        (("spark", RAM), 128 * GIB, 28 * GIB)  # the unified memory is placed as RAM
    ]


def test_eight_mi300x_from_rocm_smi_json() -> None:
    devices = parse_rocm_smi(fixture("rocm-smi-mi300x.json"))
    assert [d.index for d in devices] == list(range(8))
    assert {(d.vendor, d.name, d.total_bytes) for d in devices} == {
        ("amd", "AMD Instinct MI300X", 206141652992)
    }
    assert devices[0].free_bytes == 206141652992 - 283140096 - 150 * GIB
    assert devices[7].free_bytes == 206141652992 - 283140096


def test_a_driver_version_that_is_not_one_is_unknown() -> None:
    assert parse_driver_version("") is None
    assert parse_driver_version(fixture("nvidia-smi-h100x8.csv")) is None


def test_compute_apps_map_each_process_to_its_gpu_index() -> None:
    devices = parse_nvidia_smi(fixture("nvidia-smi-h100x8.csv"))
    apps = parse_compute_apps(fixture("nvidia-smi-h100x8-apps.csv"), devices)
    assert [(p.pid, p.index, p.used_bytes) for p in apps] == [
        (48213, 2, 74112 * MIB),
        (48213, 3, 74112 * MIB),
        (51877, 0, 530 * MIB),
    ]
    unknown = parse_compute_apps("GPU-00000000-0000-0000-0000-000000000000, 7, [N/A]\n", devices)
    assert [(p.pid, p.index, p.used_bytes) for p in unknown] == [(7, None, None)]
    assert parse_compute_apps("No running processes found\n", devices) == []
    with pytest.raises(ProbeError, match="compute-apps line 1"):
        parse_compute_apps("pid, used_memory\n", devices)


def test_nvidia_smi_probe_asks_the_driver_version_and_the_devices() -> None:
    calls: list[list[str]] = []
    answer = probe_nvidia_smi(recorded("rtx4090x2", calls))
    assert answer.driver_version == "550.120" and len(answer.devices) == 2
    assert calls == [
        ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
        [
            "nvidia-smi",
            "--query-gpu=index,name,uuid,memory.total,memory.free",
            "--format=csv,noheader,nounits",
        ],
    ]


def test_nvml_gives_devices_driver_version_and_per_process_memory(
    fake_nvml: dict[str, Any],
) -> None:
    answer = probe_nvml()
    assert answer.driver_version == "570.86.15"
    assert len(answer.devices) == 8 and answer.devices[0].name == "NVIDIA H100 80GB HBM3"
    assert answer.devices[2].free_bytes == fake_nvml["devices"][2]["memory"]["free"]
    processes = nvml_processes()
    assert [(p.pid, p.index, p.used_bytes) for p in processes] == [
        (51877, 0, 530 * MIB),
        (48213, 2, 74112 * MIB),
        (48213, 3, 74112 * MIB),
        (60001, 5, None),  # NVML_VALUE_NOT_AVAILABLE
    ]
    assert gpu_processes(answer.devices, broken) == processes  # NVML first
    snap = hardware.Inventory(run=broken).detect()
    assert snap.driver_version == "570.86.15" and snap.devices[0].source == "nvml"
    assert snap.as_dict()["driver_version"] == "570.86.15"


def test_per_process_memory_falls_back_to_nvidia_smi_and_names_both_failures(
    no_nvml: None,
) -> None:
    devices = parse_nvidia_smi(fixture("nvidia-smi-h100x8.csv"))
    assert len(gpu_processes(devices, recorded("h100x8"))) == 3
    with pytest.raises(ProbeError, match=r"pynvml is not installed.*nvidia-smi not found"):
        gpu_processes(devices, broken)


# ── pid trees ───────────────────────────────────────────────────────────────────────────────


def fake_proc(root: Path, processes: dict[int, tuple[int, str, int]]) -> Path:
    """A /proc with ``pid: (ppid, comm, rss_kib)`` entries."""
    for pid, (ppid, comm, rss) in processes.items():
        folder = root / str(pid)
        folder.mkdir(parents=True)
        (folder / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560\n")
        (folder / "status").write_text(f"Name:\t{comm}\nVmRSS:\t{rss} kB\nThreads:\t1\n")
    (root / "self").mkdir(exist_ok=True)
    return root


def test_a_pid_tree_holds_the_descendants_and_sums_their_rss(tmp_path: Path) -> None:
    proc = fake_proc(
        tmp_path / "proc",
        {
            1: (0, "init", 100),
            1000: (1, "sh", 1000),
            48213: (1000, "python3 -m vllm (x) y", 2_000_000),  # spaces, parentheses
            48214: (48213, "worker", 500_000),
            2000: (1, "other", 7),
        },
    )
    assert pid_tree([1000], proc) == {1000, 48213, 48214}
    assert pid_tree([99999], proc) == {99999}
    assert rss_bytes(pid_tree([1000], proc), proc) == 2_501_000 * 1024
    assert rss_bytes([99999], proc) == 0


def test_a_real_pid_tree_is_found_with_its_resident_memory() -> None:
    shell = subprocess.Popen(["sh", "-c", "sleep 30; true"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(tree := pid_tree([shell.pid])) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(tree) == 2  # the shell and its sleep
        assert rss_bytes(tree) > rss_bytes([shell.pid]) > 0
    finally:
        os.killpg(shell.pid, 9)
        shell.wait()


# ── the inventory ───────────────────────────────────────────────────────────────────────────


def inventory(
    tmp_path: Path,
    run: hardware.Runner,
    remotes: tuple[NodeConfig, ...] = (),
    **kwargs: Any,
) -> HostInventory:
    """This machine's sources answered by ``run`` (no meminfo, unless ``meminfo`` is given)."""
    meminfo = kwargs.pop("meminfo", tmp_path / "no-meminfo")
    probes = hardware.Inventory(run=run, meminfo=meminfo, cgroup=tmp_path, cpuinfo=tmp_path)
    return HostInventory(probes=probes, run=run, remotes=remotes, **kwargs)


@pytest.mark.anyio
async def test_failing_sources_are_reported_in_the_reading_never_raised(
    tmp_path: Path, no_nvml: None
) -> None:
    remotes = (
        NodeConfig("far", "ssh://me@far.example"),
        NodeConfig("declared", "tcp://10.0.0.2:2375", (GpuConfig(0, 24 * GIB),)),
        NodeConfig("blind", "tcp://10.0.0.3:2375"),
    )
    reading = await inventory(tmp_path, broken, remotes).read()
    local, far, declared, blind = reading.nodes
    assert (local.node, local.local, local.devices, local.memory) == ("local", True, (), None)
    assert {s.name: s.ok for s in local.sources} == {
        "nvml": False,
        "nvidia-smi": False,
        "rocm-smi": False,
        "meminfo": False,
        "cpu": True,
    }
    assert not far.local and far.devices == ()
    assert far.sources == (Source("nvidia-smi", False, "ssh not found on PATH"),)
    assert [(d.index, d.total_bytes, d.source) for d in declared.devices] == [
        (0, 24 * GIB, "declared")
    ]
    assert declared.sources == (Source("declared", True),)
    assert blind.devices == () and not blind.sources[0].ok
    assert "declare nodes.blind.gpus" in (blind.sources[0].error or "")
    assert [s.key for s in reading.device_states()] == [("declared", 0)]


@pytest.mark.anyio
async def test_a_remote_node_is_asked_over_ssh(tmp_path: Path, no_nvml: None) -> None:
    calls: list[list[str]] = []
    far = NodeConfig("far", "ssh://me@far.example:22", (GpuConfig(0, 1),))
    reading = await inventory(tmp_path, recorded("h100x8", calls), (far,)).read()
    node = reading.node("far")
    assert node is not None and not node.local and node.driver_version == "570.86.15"
    assert len(node.devices) == 8 and node.devices[0].source == "nvidia-smi"  # not declared
    ssh = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "me@far.example"]
    assert [c[:7] for c in calls if c[0] == "ssh"] == [[*ssh, "nvidia-smi"]] * 2
    states = {s.key: s for s in reading.device_states()}
    assert states["far", 2].external == (81559 - 7442) * MIB
    assert ("far", RAM) not in states  # a remote node's RAM is unknown


@pytest.mark.anyio
async def test_declared_gpus_stand_in_when_no_probe_answers(tmp_path: Path, no_nvml: None) -> None:
    here = NodeConfig("box", "unix:///var/run/docker.sock", (GpuConfig(0, 48 * GIB),))
    far = NodeConfig(
        "far", "ssh://me@far.example", (GpuConfig(0, 80 * GIB), GpuConfig(1, 80 * GIB))
    )
    inv = HostInventory.for_nodes([far, here])
    assert (inv.local_name, inv.remotes) == ("box", (far,))
    inv.probes, inv.run = hardware.Inventory(run=broken), broken
    reading = await inv.read()
    box, far_reading = reading.nodes
    assert box.node == "box" and box.local and box.devices[0].total_bytes == 48 * GIB
    assert box.sources[-1] == Source("declared", True)
    assert [s.ok for s in far_reading.sources] == [False, True]  # nvidia-smi, then declared
    assert [d.total_bytes for d in far_reading.devices] == [80 * GIB, 80 * GIB]


@pytest.mark.anyio
async def test_readings_are_reused_for_the_refresh_period(tmp_path: Path, no_nvml: None) -> None:
    calls: list[list[str]] = []
    inv = inventory(tmp_path, recorded("rtx4090x2", calls), refresh=60.0)
    first = await inv.read()
    asked = len(calls)
    assert asked > 0 and await inv.read() is first and len(calls) == asked
    assert await inv.read(refresh=True) is not first and len(calls) == 2 * asked
    inv.refresh = 0.0
    assert await inv.read() is not first


@pytest.mark.anyio
async def test_concurrent_readers_share_a_reading(tmp_path: Path, no_nvml: None) -> None:
    calls: list[list[str]] = []
    inv = inventory(tmp_path, recorded("gb10", calls))
    readings: list[Reading] = []

    async def read() -> None:
        readings.append(await inv.read())

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(read)
    assert len({id(r) for r in readings}) == 1
    asked = len(calls)

    async def refresh() -> None:
        readings.append(await inv.read(refresh=True))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(refresh)
    assert len({id(r) for r in readings[5:]}) <= 2  # the first, and one for all who waited
    assert len(calls) <= 3 * asked
    assert readings[0].nodes[0].driver_version == "580.95.05"


@pytest.mark.anyio
async def test_usage_sums_gpu_memory_and_rss_over_the_pid_tree(
    tmp_path: Path, no_nvml: None
) -> None:
    proc = fake_proc(
        tmp_path / "proc",
        {1000: (1, "sh", 1000), 48213: (1000, "vllm", 3_000_000), 51877: (1, "tool", 10)},
    )
    inv = inventory(tmp_path, recorded("h100x8"), (NodeConfig("far", "ssh://far"),), proc=proc)
    assert await inv.usage("local", [1000]) == {
        2: 74112 * MIB,
        3: 74112 * MIB,
        RAM: 3_001_000 * 1024,
    }
    assert await inv.usage("local", [51877]) == {0: 530 * MIB, RAM: 10 * 1024}
    assert await inv.usage("far", [1000]) == {}  # only this machine can be measured


@pytest.mark.anyio
async def test_usage_of_real_processes_on_a_machine_without_gpus(
    tmp_path: Path, no_nvml: None
) -> None:
    inv = inventory(tmp_path, broken, meminfo=Path("/proc/meminfo"))
    reading = await inv.read()
    assert ("local", RAM) in {s.key for s in reading.device_states()}
    used = await inv.usage("local", [os.getpid()])
    assert list(used) == [RAM] and used[RAM] > 10 * MIB  # this test process


def test_from_config_picks_the_fake_inventory_only_with_the_env(tmp_path: Path) -> None:
    config = Config(
        nodes={"far": NodeConfig("far", "ssh://me@far")},
        placement=PlacementConfig(refresh=3.0),
    )
    real = from_config(config, {})
    assert isinstance(real, HostInventory)
    assert (real.local_name, [n.name for n in real.remotes], real.refresh) == (
        "local",
        ["far"],
        3.0,
    )
    fake = from_config(config, {"SWAPD_FAKE_GPUS": str(tmp_path / "spec.json")})
    assert type(fake).__name__ == "FakeInventory"


def test_a_ray_model_joins_the_ray_clusters_nodes_to_the_inventory(tmp_path: Path) -> None:
    ray = ModelConfig(id="r", cmd=("engine",), driver="ray")
    plain = Config(models={"p": ModelConfig(id="p", cmd=("engine",))})
    both = Config(models={**plain.models, "r": ray})
    assert not isinstance(from_config(plain, {}), Joined)
    joined = from_config(both, {"SWAPD_FAKE_GPUS": str(tmp_path / "spec.json")})
    assert isinstance(joined, Joined)
    assert [type(p).__name__ for p in joined.parts] == ["FakeInventory", "RayInventory"]
    assert reads(plain) != reads(both)  # a reload adding the first Ray model rebuilds it


def test_as_dict_is_json_ready_with_used_bytes() -> None:
    h100 = Device(0, "nvidia", "NVIDIA H100 80GB HBM3", 80 * GIB, 30 * GIB, "GPU-1", "nvml")
    gb10 = Device(0, "nvidia", "NVIDIA GB10", None, None, None, "nvidia-smi")
    reading = Reading(
        123.5,
        (
            NodeReading(
                "local", (h100,), Memory(64 * GIB, 32 * GIB), (Source("nvml", True),), True, "570"
            ),
            NodeReading("spark", (gb10,), None, (Source("nvidia-smi", True),), False),
        ),
    )
    data = json.loads(json.dumps(reading.as_dict()))
    assert data["captured_at"] == 123.5
    local, spark = data["nodes"]
    assert local == {
        "node": "local",
        "local": True,
        "driver_version": "570",
        "sources": [{"name": "nvml", "ok": True, "error": None}],
        "devices": [
            {
                "index": 0,
                "name": "NVIDIA H100 80GB HBM3",
                "vendor": "nvidia",
                "uuid": "GPU-1",
                "total_bytes": 80 * GIB,
                "free_bytes": 30 * GIB,
                "used_bytes": 50 * GIB,
                "source": "nvml",
            }
        ],
        "memory": {
            "total_bytes": 64 * GIB,
            "available_bytes": 32 * GIB,
            "cgroup_limit_bytes": None,
        },
    }
    assert spark["local"] is False and spark["memory"] is None
    assert spark["devices"][0]["used_bytes"] is None
