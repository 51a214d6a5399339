"""Memory-aware placement end to end: a real swapd, real echo engines that take fake GPU
memory (``--allocate``), and a fake inventory of 2 nodes x 2 GPUs (``swapd.testing.FakeGpus``).

Every engine really allocates on the node and devices swapd chose (``SWAPD_NODE``,
``CUDA_VISIBLE_DEVICES``), so the fake inventory's used memory is what the engines hold, and an
engine that is given too little room fails like CUDA does.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from swapd.testing import FakeGpus, SwapdProcess, echo_cmd, run_swapd

pytestmark = pytest.mark.timeout(120)

GiB = 1 << 30
GPU = 80 * GiB
NODES = {"a": [GPU, GPU], "b": [GPU, GPU]}


def engine(
    allocate: str,
    memory: str | None = None,
    *,
    gpus: int | None = None,
    devices: Sequence[int] = (),
    flags: str = "",
    more: str = "",
) -> str:
    """One model's settings: an echo engine taking ``allocate`` of fake GPU memory, and the
    ``resources`` it declares."""
    lines = [f"cmd: {echo_cmd(f'--allocate {allocate} {flags}')}"]
    declared = [f"memory: {memory}"] if memory else []
    if gpus is not None:
        declared.append(f"gpus: {gpus}")
    if devices:
        declared.append(f"devices: [{', '.join(map(str, devices))}]")
    if declared:
        lines.append(f"resources: {{{', '.join(declared)}}}")
    if more:
        lines.append(more)
    return "\n".join(lines)


def config(start_port: int, models: Mapping[str, str], extra: str = "") -> str:
    body = "\n".join(f"  {name}:\n{textwrap.indent(spec, '    ')}" for name, spec in models.items())
    top = f"startPort: {start_port}\nplacement: {{headroom: 0, refresh: 1}}\n{extra}"
    return f"{top}\nmodels:\n{body}\n"


def swapd_env(fake: FakeGpus, tmp_path: Path) -> dict[str, str]:
    return {**fake.env(), "SWAPD_STATE_DIR": str(tmp_path / "state")}


def chat(swapd: SwapdProcess, model: str, *, timeout: float = 60) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{swapd.url}/v1/chat/completions", json=body, timeout=timeout)


def models(swapd: SwapdProcess) -> dict[str, dict[str, Any]]:
    listed = httpx.get(f"{swapd.url}/api/models", timeout=10).json()["models"]
    return {m["id"]: m for m in listed}


def where(swapd: SwapdProcess, model: str) -> tuple[str, list[int]] | None:
    placed = models(swapd)[model]["placement"]
    return (placed["node"], placed["devices"]) if placed and placed["node"] else None


def states(swapd: SwapdProcess) -> dict[str, str]:
    return {m: info["state"] for m, info in models(swapd).items()}


def allocation_of(fake: FakeGpus, pid: int) -> tuple[str, list[int], int]:
    (found,) = [a for a in fake.allocations() if a["pid"] == pid]
    return found["node"], found["devices"], found["bytes_per_device"]


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    pairs = (item.decode().partition("=") for item in raw if item)
    return {key: value for key, _, value in pairs}


def hardware_device(swapd: SwapdProcess, node: str, index: int) -> dict[str, Any]:
    view = httpx.get(f"{swapd.url}/api/hardware", timeout=10).json()["placement"]
    (found,) = [n for n in view["nodes"] if n["node"] == node]
    (device,) = [d for d in found["devices"] if d["index"] == index]
    return dict(device)


def test_models_land_where_they_fit_and_run_on_the_devices_they_were_given(
    tmp_path: Path, start_port: int
) -> None:
    fake = FakeGpus(tmp_path, NODES)
    cfg = config(
        start_port,
        {
            "m1": engine("60GiB", "60GiB"),
            "m2": engine("60GiB", "60GiB"),
            "pair": engine("100GiB", "100GiB", gpus=2),
            "small": engine("10GiB", "10GiB", flags="--model gpu-${GPU}-of-${GPUS}"),
        },
    )
    with run_swapd(cfg, env=swapd_env(fake, tmp_path)) as swapd:
        for model in ("m1", "m2", "pair", "small"):
            assert chat(swapd, model).status_code == 200, model
        assert set(states(swapd).values()) == {"ready"}  # side by side: nothing was evicted
        assert where(swapd, "m1") == ("a", [0])
        assert where(swapd, "m2") == ("a", [1])
        assert where(swapd, "pair") == ("b", [0, 1])  # two GPUs of one node
        assert where(swapd, "small") == ("a", [0])  # best fit: the least room left
        info = models(swapd)
        # each engine took its memory exactly where swapd placed it
        assert allocation_of(fake, info["m1"]["pid"]) == ("a", [0], 60 * GiB)
        assert allocation_of(fake, info["pair"]["pid"]) == ("b", [0, 1], 50 * GiB)
        pid = info["small"]["pid"]
        env = environ(pid)
        assert (env["CUDA_VISIBLE_DEVICES"], env["SWAPD_NODE"]) == ("0", "a")
        assert b"gpu-0-of-0" in Path(f"/proc/{pid}/cmdline").read_bytes()  # ${GPU}, ${GPUS}
        placement = info["pair"]["placement"]
        assert placement["need_bytes"] == 50 * GiB and placement["source"] == "declared"
        gpu = hardware_device(swapd, "a", 0)
        assert gpu["reserved"] == 70 * GiB and gpu["total"] == GPU
        assert {m["model"] for m in gpu["models"]} == {"m1", "small"}


def test_a_request_that_needs_room_evicts_the_cheapest_idle_model_on_the_right_gpu(
    tmp_path: Path, start_port: int
) -> None:
    # a:0 x (50, cheapest) + y (20); a:1 z; b:0 w; b:1 v (60 each, dearer). "new" (45) fits
    # on a:0 once x goes (y's 20 stays), or on any other GPU once its model goes.
    fake = FakeGpus(tmp_path, NODES)
    priorities = "{x: 0, y: 3, z: 3, w: 3, v: 1}"
    cfg = config(
        start_port,
        {
            "x": engine("50GiB", "50GiB"),
            "y": engine("20GiB", "20GiB"),
            "z": engine("60GiB", "60GiB"),
            "w": engine("60GiB", "60GiB"),
            "v": engine("60GiB", "60GiB"),
            "new": engine("45GiB", "45GiB"),
        },
        extra=f"routing:\n  scheduler:\n    settings: {{fifo: {{priority: {priorities}}}}}\n",
    )
    with run_swapd(cfg, env=swapd_env(fake, tmp_path)) as swapd:
        for model in ("x", "y", "z", "w", "v"):
            assert chat(swapd, model).status_code == 200, model
        assert where(swapd, "x") == where(swapd, "y") == ("a", [0])
        assert chat(swapd, "new").status_code == 200
        assert states(swapd) == {
            "x": "stopped",
            "y": "ready",
            "z": "ready",
            "w": "ready",
            "v": "ready",
            "new": "ready",
        }
        assert where(swapd, "new") == ("a", [0])
        assert allocation_of(fake, models(swapd)["new"]["pid"]) == ("a", [0], 45 * GiB)
        assert "evicting x to start new" in swapd.output()


def test_a_busy_model_is_waited_for_not_evicted(tmp_path: Path, start_port: int) -> None:
    # only GPU 0 is allowed, and b:0 is full of someone else's memory: both need a:0
    fake = FakeGpus(tmp_path, NODES, external={("b", 0): GPU})
    cfg = config(
        start_port,
        {
            "serving": engine("60GiB", "60GiB", devices=[0], flags="--chunks 20 --chunk-delay 0.1"),
            "next": engine("60GiB", "60GiB", devices=[0]),
        },
    )
    with run_swapd(cfg, env=swapd_env(fake, tmp_path)) as swapd:
        assert chat(swapd, "serving").status_code == 200
        outcome: dict[str, Any] = {}

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=60) as client, anyio.create_task_group() as tg:
                body = {"model": "serving", "stream": True, "messages": [{"role": "user"}]}
                url = f"{swapd.url}/v1/chat/completions"
                async with client.stream("POST", url, json=body) as stream:
                    tg.start_soon(_request, client, swapd, "next", outcome)
                    await anyio.to_thread.run_sync(blocked, swapd, "next")
                    outcome["blocked"] = models(swapd)["next"]["placement"]["blocked_by"]
                    outcome["serving_then"] = states(swapd)["serving"]
                    outcome["stream"] = b"".join([part async for part in stream.aiter_bytes()])

        anyio.run(scenario)
        assert outcome["blocked"] == ["serving"]
        assert outcome["serving_then"] == "ready"
        assert outcome["stream"].rstrip().endswith(b"data: [DONE]")  # served to the end
        assert outcome["next"] == 200
        assert states(swapd) == {"serving": "stopped", "next": "ready"}
        assert where(swapd, "next") == ("a", [0])


def blocked(swapd: SwapdProcess, model: str, limit: float = 10.0) -> None:
    """Wait until ``model``'s start waits for a busy model (polled: no event announces it)."""
    deadline = time.monotonic() + limit
    while not (models(swapd)[model]["placement"] or {}).get("blocked_by"):
        assert time.monotonic() < deadline, f"{model} never waited: {models(swapd)[model]}"
        time.sleep(0.05)


async def _request(
    client: httpx.AsyncClient, swapd: SwapdProcess, model: str, outcome: dict[str, Any]
) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    reply = await client.post(f"{swapd.url}/v1/chat/completions", json=body)
    outcome[model] = reply.status_code


def test_an_unswappable_model_is_never_evicted(tmp_path: Path, start_port: int) -> None:
    fake = FakeGpus(tmp_path, NODES, external={("b", 0): GPU})
    cfg = config(
        start_port,
        {
            "keep": engine("50GiB", "50GiB", devices=[0], more="swappable: false"),
            "cheap": engine("20GiB", "20GiB", devices=[0]),
            "new": engine("30GiB", "30GiB", devices=[0]),
            "huge": engine("40GiB", "40GiB", devices=[0]),
        },
        # keep would be the cheapest to evict by priority; swappable: false protects it
        extra="routing:\n  scheduler:\n    settings: {fifo: {priority: {keep: -5, cheap: 5}}}\n",
    )
    with run_swapd(cfg, env=swapd_env(fake, tmp_path)) as swapd:
        for model in ("keep", "cheap", "new"):
            assert chat(swapd, model).status_code == 200, model
        assert states(swapd) == {
            "keep": "ready",
            "cheap": "stopped",
            "new": "ready",
            "huge": "stopped",
        }
        reply = chat(swapd, "huge")  # 40 GiB on a:0 only with keep gone
        assert reply.status_code == 503
        error = reply.json()["error"]
        assert error["code"] == "insufficient_memory"
        assert "huge" in error["message"] and "keep" in error["message"]
        assert states(swapd)["keep"] == "ready"


def test_an_out_of_memory_start_is_learned_and_retried_once(
    tmp_path: Path, start_port: int
) -> None:
    # under declares 25 GiB but takes 36: next to idle's 50 it is placed on a:0 and runs out
    # of memory; its raised need (37.5 GiB) no longer fits beside idle, so idle is evicted
    fake = FakeGpus(tmp_path, NODES, external={("b", 0): GPU})
    cfg = config(
        start_port,
        {
            "idle": engine("50GiB", "50GiB", devices=[0]),
            "under": engine("36GiB", "25GiB", devices=[0]),
        },
    )
    with run_swapd(cfg, env=swapd_env(fake, tmp_path)) as swapd:
        assert chat(swapd, "idle").status_code == 200
        assert chat(swapd, "under").status_code == 200
        assert states(swapd) == {"idle": "stopped", "under": "ready"}
        text = swapd.output()
        assert "under ran out of memory on a:0" in text and "retrying once" in text
        placement = models(swapd)["under"]["placement"]
        assert placement["source"] == "learned"
        assert placement["need_bytes"] > 36 * GiB
        assert allocation_of(fake, models(swapd)["under"]["pid"]) == ("a", [0], 36 * GiB)
    learned = (tmp_path / "state" / "placement" / "learned.json").read_text()
    assert "out-of-memory" in learned


def test_groups_still_win_when_configured(tmp_path: Path, start_port: int) -> None:
    fake = FakeGpus(tmp_path, NODES)
    cfg = config(
        start_port,
        {
            "g1": engine("10GiB", "10GiB"),
            "g2": engine("10GiB", "10GiB"),
            "free": engine("10GiB", "10GiB"),
        },
        extra="groups:\n  pair:\n    swap: true\n    exclusive: false\n    members: [g1, g2]\n",
    )
    with run_swapd(cfg, env=swapd_env(fake, tmp_path)) as swapd:
        for model in ("g1", "free", "g2"):
            assert chat(swapd, model).status_code == 200, model
        # all three fit on one GPU, but g1 and g2 swap within their group
        assert states(swapd) == {"g1": "stopped", "g2": "ready", "free": "ready"}


def test_without_gpus_or_declared_memory_models_still_swap_one_at_a_time(
    tmp_path: Path, start_port: int
) -> None:
    fake = FakeGpus(tmp_path, {"a": []})
    plain = echo_cmd()
    cfg = f"startPort: {start_port}\nmodels:\n  m1:\n    cmd: {plain}\n  m2:\n    cmd: {plain}\n"
    with run_swapd(cfg, env=swapd_env(fake, tmp_path)) as swapd:
        assert chat(swapd, "m1").status_code == 200
        assert chat(swapd, "m2").status_code == 200
        assert states(swapd) == {"m1": "stopped", "m2": "ready"}
        assert models(swapd)["m2"]["placement"] is None
        view = httpx.get(f"{swapd.url}/api/hardware", timeout=10).json()["placement"]
        assert view["active"] is False
