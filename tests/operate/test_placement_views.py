"""Placement made visible: `/api/hardware`'s placement block, each model's `placement` in
`/running` and `/api/models`, `swapd ps`'s GPU and MEM columns, `swapd hardware`, and the
Prometheus memory gauges, through a real `swapd serve` on fake GPUs whose memory real echo
engines allocate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from swapd.cli.remote import gpus, memory
from swapd.observe.metrics import Metrics
from swapd.testing import FakeGpus, echo_cmd, run_swapd

from .helpers import chat, swapd_cli
from .test_telemetry import samples, value

pytestmark = pytest.mark.timeout(120)

GIB = 2**30


def _view(node: str, index: int, used: int, reserved: int, total: int) -> dict[str, Any]:
    return {
        "active": True,
        "headroom": 0,
        "captured_at": 1.0,
        "nodes": [
            {
                "node": node,
                "local": True,
                "driver_version": None,
                "sources": [{"name": "fake", "ok": True, "error": None}],
                "devices": [
                    {
                        "index": index,
                        "kind": "gpu",
                        "name": "Fake H100",
                        "total": total,
                        "used": used,
                        "reserved": reserved,
                        "free": total - used,
                        "models": [{"model": "m", "bytes": reserved, "state": "ready"}],
                    },
                    {
                        "index": -1,
                        "kind": "ram",
                        "name": "system RAM",
                        "total": 64 * GIB,
                        "used": GIB,
                        "reserved": 0,
                        "free": 63 * GIB,
                        "models": [],
                    },
                ],
            }
        ],
    }


def _info(model: str, placement: dict[str, Any] | None) -> dict[str, Any]:
    return {"id": model, "state": "ready", "queued": 0, "inflight": 0, "placement": placement}


def _placement(need: int, source: str = "declared") -> dict[str, Any]:
    return {
        "node": "b",
        "devices": [0, 1],
        "need_bytes": need,
        "held_bytes": need // 2,
        "measured_bytes": 0,
        "source": source,
        "detail": "resources.memory",
        "blocked_by": [],
    }


def _text(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_gpu_gauges_read_the_placement_view_at_scrape_time_and_leave_ram_out() -> None:
    view = _view("a", 1, used=30 * GIB, reserved=20 * GIB, total=80 * GIB)
    waiting = {**_placement(GIB), "node": None, "devices": [], "source": None}  # not placed yet
    infos = [_info("m", _placement(14 * GIB, "learned")), _info("x", None), _info("w", waiting)]
    metrics = Metrics(lambda: infos)
    assert not [k for k in _text(metrics) if k[0] == "swapd_gpu_memory_bytes"]
    metrics.watch_devices(lambda: view)
    data = _text(metrics)
    gauge = "swapd_gpu_memory_bytes"
    assert value(data, gauge, node="a", gpu="1", kind="total") == 80 * GIB
    assert value(data, gauge, node="a", gpu="1", kind="used") == 30 * GIB
    assert value(data, gauge, node="a", gpu="1", kind="reserved") == 20 * GIB
    assert [k for k in data if k[0] == gauge and ("gpu", "-1") in k[1]] == []
    # 14 GiB on each of its two devices
    assert value(data, "swapd_model_memory_bytes", model="m", source="learned") == 28 * GIB
    assert [k for k in data if k[0] == "swapd_model_memory_bytes" and ("model", "x") in k[1]] == []
    assert value(data, "swapd_model_memory_bytes", model="w", source="unknown") == GIB
    view["nodes"][0]["devices"][0]["used"] = 40 * GIB  # read again at the next scrape
    assert value(_text(metrics), gauge, node="a", gpu="1", kind="used") == 40 * GIB


def test_ps_columns_name_node_and_devices_and_held_over_needed() -> None:
    assert gpus(_placement(14 * GIB)) == "b:0,1"
    assert memory(_placement(14 * GIB)) == "7.0/14.0GiB"
    assert gpus(None) == memory(None) == "-"
    assert gpus({**_placement(GIB), "devices": []}) == "b:RAM"  # a CPU engine
    assert gpus({**_placement(GIB), "devices": [-1]}) == "b:RAM"
    assert gpus({**_placement(GIB), "node": None, "devices": []}) == "-"  # waiting
    assert memory({**_placement(0), "held_bytes": 0}) == "-"


def _config(start_port: int) -> str:
    alloc = echo_cmd("--allocate 10GiB")
    return f"""
startPort: {start_port}
healthCheckTimeout: 20
models:
  small:
    cmd: {alloc}
    resources: {{memory: 10GiB}}
  other:
    cmd: {alloc}
    resources: {{memory: 10GiB}}
"""


def _fake_gpus(tmp_path: Path) -> FakeGpus:
    return FakeGpus(tmp_path, nodes={"a": [16 * GIB, 16 * GIB]})


def _device(hardware: dict[str, Any], node: str, index: int) -> dict[str, Any]:
    for n in hardware["placement"]["nodes"]:
        for d in n["devices"]:
            if n["node"] == node and d["index"] == index:
                return dict(d)
    raise AssertionError(f"no device {node}:{index} in {hardware['placement']}")


def test_placement_shows_in_hardware_running_ps_metrics(start_port: int, tmp_path: Path) -> None:
    fake = _fake_gpus(tmp_path)
    with run_swapd(_config(start_port), env=fake.env()) as swapd:
        url = swapd.url
        assert chat(url, "small").status_code == 200

        hardware = httpx.get(f"{url}/api/hardware", params={"refresh": "1"}).json()
        assert "devices" in hardware and "sources" in hardware  # the probes' snapshot stays
        assert hardware["placement"]["active"] is True
        running = httpx.get(f"{url}/running").json()["running"]
        (small,) = [m for m in running if m["model"] == "small"]
        where = small["placement"]
        assert where["node"] == "a" and len(where["devices"]) == 1
        assert small["node"] == "a"  # the model's node is where placement put it
        assert where["need_bytes"] == 10 * GIB and where["source"] == "declared"
        device = _device(hardware, "a", where["devices"][0])
        assert device["kind"] == "gpu" and device["total"] == 16 * GIB
        assert device["reserved"] >= 10 * GIB
        assert [m["model"] for m in device["models"]] == ["small"]
        listed = {m["id"]: m for m in httpx.get(f"{url}/api/models").json()["models"]}
        assert listed["small"]["placement"]["devices"] == where["devices"]

        gpu = f"a:{where['devices'][0]}"
        ps = swapd_cli("ps", url=url)
        assert ps.returncode == 0, ps.stderr
        header, row = ps.stdout.splitlines()[:2]
        assert "GPU" in header and "MEM" in header
        assert gpu in row and "/10.0GiB" in row

        table = swapd_cli("hardware", url=url)
        assert table.returncode == 0, table.stderr
        assert "node a" in table.stdout and "Fake H100" in table.stdout
        assert "small 10.0 (ready)" in table.stdout
        assert json.loads(swapd_cli("hardware", "--json", url=url).stdout)["placement"]["nodes"]

        data = samples(url)
        index = str(where["devices"][0])
        gauge = "swapd_gpu_memory_bytes"
        assert value(data, gauge, node="a", gpu=index, kind="total") == 16 * GIB
        assert value(data, gauge, node="a", gpu=index, kind="reserved") >= 10 * GIB
        assert value(data, gauge, node="a", gpu=index, kind="used") >= 10 * GIB
        model_gauge = "swapd_model_memory_bytes"
        assert value(data, model_gauge, model="small", source="declared") == 10 * GIB
