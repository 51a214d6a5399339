"""`swapd.hardware` with recorded tool outputs and fake tools on PATH; `/api/hardware` and
`/api/version` through a real `swapd serve`."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from swapd import __version__
from swapd.hardware import (
    MIB,
    Inventory,
    ProbeError,
    cgroup_memory,
    parse_meminfo,
    parse_nvidia_smi,
    parse_rocm_smi,
    probe_memory,
    run_tool,
)
from swapd.testing import run_swapd

from .helpers import config

pytestmark = pytest.mark.timeout(120)

# `nvidia-smi --query-gpu=index,name,uuid,memory.total,memory.free --format=csv,noheader,nounits`
NVIDIA_SMI_CSV = """\
0, NVIDIA H100 80GB HBM3, GPU-5b8f3a2e-1c4d-4e8a-9f31-0a6c2d7e9b11, 81559, 80986
1, NVIDIA GeForce RTX 4090, GPU-0d2c9e7f-8a1b-4c3d-b5e6-7f8091a2b3c4, 24564, [N/A]
"""

# `rocm-smi --showmeminfo vram --showproductname --json` (ROCm 6)
ROCM_SMI_JSON = """\
{"card0": {"VRAM Total Memory (B)": "68702699520", "VRAM Total Used Memory (B)": "10960896",
 "Card Series": "AMD Instinct MI210", "Card Model": "0x740f",
 "Card Vendor": "Advanced Micro Devices, Inc. [AMD/ATI]", "Card SKU": "D67301"},
 "card1": {"VRAM Total Memory (B)": "17163091968", "VRAM Total Used Memory (B)": "1073741824",
 "Card series": "Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]"},
 "system": {"Driver version": "6.7.0"}}
"""

MEMINFO = """\
MemTotal:       32768000 kB
MemFree:         1000000 kB
MemAvailable:   16384000 kB
HugePages_Total:       0
"""


def fake_tool(folder: Path, name: str, stdout: str, code: int = 0, stderr: str = "") -> Path:
    """An executable ``name`` in ``folder`` that prints ``stdout`` (and logs its argv)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / name
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"open({str(folder / (name + '.argv'))!r}, 'w').write(' '.join(sys.argv[1:]))\n"
        f"sys.stdout.write({stdout!r})\n"
        f"sys.stderr.write({stderr!r})\n"
        f"sys.exit({code})\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_nvidia_smi_csv_gives_devices_in_bytes_and_none_for_na() -> None:
    h100, rtx = parse_nvidia_smi(NVIDIA_SMI_CSV)
    assert (h100.index, h100.name, h100.vendor) == (0, "NVIDIA H100 80GB HBM3", "nvidia")
    assert h100.total_bytes == 81559 * MIB and h100.free_bytes == 80986 * MIB
    assert h100.uuid == "GPU-5b8f3a2e-1c4d-4e8a-9f31-0a6c2d7e9b11"
    assert rtx.total_bytes == 24564 * MIB and rtx.free_bytes is None


def test_nvidia_smi_garbage_is_a_probe_error() -> None:
    with pytest.raises(ProbeError, match="expected 5 fields"):
        parse_nvidia_smi("No devices were found\n")


def test_rocm_smi_json_gives_devices_with_free_memory() -> None:
    mi210, navi = parse_rocm_smi(ROCM_SMI_JSON)
    assert (mi210.index, mi210.name, mi210.vendor) == (0, "AMD Instinct MI210", "amd")
    assert mi210.total_bytes == 68702699520
    assert mi210.free_bytes == 68702699520 - 10960896
    assert navi.index == 1 and navi.name.startswith("Navi 21")
    with pytest.raises(ProbeError):
        parse_rocm_smi("WARNING: No AMD GPUs specified")


def test_meminfo_is_capped_by_the_cgroup_limit(tmp_path: Path) -> None:
    assert parse_meminfo(MEMINFO) == (32768000 * 1024, 16384000 * 1024)
    (tmp_path / "meminfo").write_text(MEMINFO)
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text("8589934592\n")
    (v2 / "memory.current").write_text("1073741824\n")
    assert cgroup_memory(v2) == (8589934592, 1073741824)
    memory = probe_memory(tmp_path / "meminfo", v2)
    assert memory.total_bytes == 8589934592 and memory.cgroup_limit_bytes == 8589934592
    assert memory.available_bytes == 8589934592 - 1073741824
    unlimited = tmp_path / "unlimited"
    unlimited.mkdir()
    (unlimited / "memory.max").write_text("max\n")
    assert probe_memory(tmp_path / "meminfo", unlimited).total_bytes == 32768000 * 1024


def test_detect_runs_fake_tools_and_reports_each_source(tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    fake_tool(tools, "nvidia-smi", NVIDIA_SMI_CSV)
    fake_tool(tools, "rocm-smi", "", code=2, stderr="ERROR: ROCm driver not loaded\n")
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"}
    script = (
        "import json; from swapd.hardware import Inventory; "
        "print(json.dumps(Inventory().detect().as_dict()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    snap = json.loads(done.stdout)
    assert [d["name"] for d in snap["devices"]] == [
        "NVIDIA H100 80GB HBM3",
        "NVIDIA GeForce RTX 4090",
    ]
    assert snap["devices"][0]["source"] == "nvidia-smi"
    sources = {s["name"]: s for s in snap["sources"]}
    assert sources["nvidia-smi"]["ok"] is True
    assert sources["rocm-smi"] == {
        "name": "rocm-smi",
        "ok": False,
        "error": "rocm-smi exited with status 2: ERROR: ROCm driver not loaded",
    }
    assert sources["meminfo"]["ok"] and snap["memory"]["total_bytes"] > 0
    argv = (tools / "nvidia-smi.argv").read_text()
    assert argv == (
        "--query-gpu=index,name,uuid,memory.total,memory.free --format=csv,noheader,nounits"
    )


def test_a_missing_tool_is_reported_not_raised() -> None:
    with pytest.raises(ProbeError, match="not found on PATH"):
        run_tool(["swapd-no-such-tool-xyz"])


def test_every_source_failing_leaves_an_unusable_snapshot(tmp_path: Path) -> None:
    def broken(argv: list[str]) -> str:
        raise ProbeError(f"{argv[0]} not found on PATH")

    inventory = Inventory(
        run=broken, meminfo=tmp_path / "none", cpuinfo=tmp_path / "none", cgroup=tmp_path
    )
    snap = inventory.detect()
    assert snap.memory is None and snap.devices == ()
    # The CPU source always has os.cpu_count(); only it answers here.
    assert [s.name for s in snap.sources if s.ok] == ["cpu"]


def test_api_hardware_and_version_through_swapd(start_port: int, tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    fake_tool(tools, "nvidia-smi", NVIDIA_SMI_CSV)
    env = {"PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"}
    with run_swapd(config(start_port), env=env) as swapd:
        hardware = httpx.get(f"{swapd.url}/api/hardware", timeout=30)
        assert hardware.status_code == 200
        data = hardware.json()
        assert [d["index"] for d in data["devices"]] == [0, 1]
        assert data["devices"][0]["total_bytes"] == 81559 * MIB
        assert data["cpu"]["logical_cpus"] >= 1
        assert {s["name"] for s in data["sources"]} >= {"nvml", "nvidia-smi", "rocm-smi"}
        fake_tool(tools, "nvidia-smi", NVIDIA_SMI_CSV.splitlines()[0] + "\n")
        cached = httpx.get(f"{swapd.url}/api/hardware").json()
        assert len(cached["devices"]) == 2  # still the cached snapshot
        fresh = httpx.get(f"{swapd.url}/api/hardware?refresh").json()
        assert len(fresh["devices"]) == 1

        version = httpx.get(f"{swapd.url}/api/version").json()
        assert set(version) == {"version", "commit", "build_date"}
        assert version["version"] == __version__
        known = subprocess.run(  # a commit of this checkout (others may have come since)
            ["git", "cat-file", "-e", f"{version['commit']}^{{commit}}"],
            cwd=Path(__file__).parent,
            capture_output=True,
            check=False,
        )
        assert version["commit"] is None or known.returncode == 0
        assert version["commit"] is not None or not (Path(__file__).parents[2] / ".git").exists()
