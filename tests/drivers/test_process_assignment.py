"""The process driver runs an engine where placement put it: devices, node and macros."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from swapd.assignment import Assignment
from swapd.config.model import ModelConfig, Resources
from swapd.drivers.process import ProcessDriver

from .conftest import Lines

pytestmark = pytest.mark.anyio

# prints its arguments and the placement variables as one JSON line, then waits to be stopped
REPORT = (
    "import json, os, sys, time\n"
    "keys = ('CUDA_VISIBLE_DEVICES', 'HIP_VISIBLE_DEVICES', 'SWAPD_NODE', 'COUNT')\n"
    "env = {k: os.environ[k] for k in keys if k in os.environ}\n"
    "print('REPORT ' + json.dumps({'argv': sys.argv[1:], 'env': env}), flush=True)\n"
    "time.sleep(60)\n"
)


def engine(**fields: Any) -> ModelConfig:
    base = ModelConfig(
        id="placed",
        cmd=(sys.executable, "-c", REPORT, "${GPU}", "${GPUS}", "${GPU_MEMORY_FRACTION}"),
        env={"COUNT": "${GPU_COUNT}"},
        proxy="http://127.0.0.1:9",
        check_endpoint=None,
        unload_timeout=5.0,
    )
    return dataclasses.replace(base, **fields)


async def report(driver: ProcessDriver, lines: Lines) -> dict[str, object]:
    """What the engine saw, read from its output; the engine is stopped afterwards."""
    async with anyio.create_task_group() as tg:
        await tg.start(driver.serve)
        with anyio.fail_after(20):
            line = await lines.wait_for("REPORT ")
        tg.cancel_scope.cancel()
    seen: dict[str, object] = json.loads(line.removeprefix("REPORT "))
    return seen


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "SWAPD_NODE"):
        monkeypatch.delenv(key, raising=False)


async def test_an_assigned_engine_sees_its_devices_node_and_macros(lines: Lines) -> None:
    driver = ProcessDriver(engine(), lines)
    driver.assign(Assignment("b", (2, 3), device_totals=(80 << 30, 80 << 30), per_device=8 << 30))
    seen = await report(driver, lines)
    assert seen == {
        "argv": ["2", "2,3", "0.10"],
        "env": {"CUDA_VISIBLE_DEVICES": "2,3", "SWAPD_NODE": "b", "COUNT": "2"},
    }


async def test_an_amd_assignment_exports_hip_devices(lines: Lines) -> None:
    driver = ProcessDriver(engine(), lines)
    driver.assign(Assignment("a", (1,), vendor="amd"))
    seen = await report(driver, lines)
    assert seen["env"] == {"HIP_VISIBLE_DEVICES": "1", "SWAPD_NODE": "a", "COUNT": "1"}


async def test_a_cpu_assignment_leaves_the_inherited_devices_alone(
    lines: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    driver = ProcessDriver(engine(), lines)
    driver.assign(Assignment("local", ()))
    seen = await report(driver, lines)
    assert seen["env"] == {"CUDA_VISIBLE_DEVICES": "5", "SWAPD_NODE": "local", "COUNT": "0"}


async def test_without_an_assignment_the_environment_is_unchanged(
    lines: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    seen = await report(ProcessDriver(engine(), lines), lines)
    assert seen == {
        "argv": ["0", "0", "${GPU_MEMORY_FRACTION}"],
        "env": {"CUDA_VISIBLE_DEVICES": "7", "COUNT": "1"},
    }


async def test_without_an_assignment_declared_devices_are_exported(lines: Lines) -> None:
    model = engine(resources=Resources(devices=(1, 3)))
    seen = await report(ProcessDriver(model, lines), lines)
    assert seen["argv"] == ["1", "1,3", "${GPU_MEMORY_FRACTION}"]
    assert seen["env"] == {"CUDA_VISIBLE_DEVICES": "1,3", "COUNT": "2"}


async def test_a_configured_cuda_visible_devices_wins_and_is_logged(lines: Lines) -> None:
    model = engine(env={"CUDA_VISIBLE_DEVICES": "0", "COUNT": "${GPU_COUNT}"})
    driver = ProcessDriver(model, lines)
    driver.assign(Assignment("a", (1,)))
    seen = await report(driver, lines)
    assert seen["env"] == {"CUDA_VISIBLE_DEVICES": "0", "SWAPD_NODE": "a", "COUNT": "1"}
    assert any("CUDA_VISIBLE_DEVICES=0 set in the config wins" in line for line in lines.lines)


async def test_cmd_stop_gets_the_macros_and_the_pid(lines: Lines, tmp_path: Path) -> None:
    out = tmp_path / "stop.json"
    stop = (
        "import json, os, signal, sys\n"
        f"open({str(out)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
        "os.kill(int(sys.argv[2]), signal.SIGTERM)\n"
    )
    model = engine(cmd_stop=(sys.executable, "-c", stop, "${GPUS}", "${PID}"))
    driver = ProcessDriver(model, lines)
    driver.assign(Assignment("a", (4, 6)))
    async with anyio.create_task_group() as tg:
        upstream = await tg.start(driver.serve)
        with anyio.fail_after(20):
            await lines.wait_for("REPORT ")
        tg.cancel_scope.cancel()
    assert json.loads(out.read_text()) == ["4,6", str(upstream.pid)]
