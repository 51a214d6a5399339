"""Placement policies on one trace, replayed through the real scheduler on a virtual clock.

    .venv/bin/python bench/placement_sim.py [--quick] [--requests 2000] [--seed 1] [--gpu-gib 80]

Twelve models of mixed sizes (4 to 70 GiB, 287 GiB in all; the 70 GiB one split over two GPUs
as tensor parallelism would), Zipf popularity (s = 1.1, ranks shuffled by the seed so
popularity is not tied to size), bursty arrivals (on/off Poisson bursts), 2 nodes x 2 GPUs of
80 GiB (``--gpu-gib`` less for memory pressure). The same trace runs through
``swapd.scheduler.Scheduler`` with ``swapd.testing.FakeEngines`` (an engine takes 0.5 s +
0.05 s per GiB to start; a request holds its model for an exponential time of mean 2 s scaled
by size) under four policies, each a scheduler config and knobs:

- ``llama-swap``: one group, one model at a time (placement off, the default group);
- ``llama-router``: LRU by count, ``--models-max 4`` (placement on a fake inventory of one
  device of 4 units, every model needing 1 unit; eviction cost = recency only). It never looks
  at memory, so it is optimistic: four models that would not fit one GPU each still "run";
- ``ollama``: fit by memory on the 2 x 2 GPUs, evict the shortest keep-alive left (5 min
  default, LRU among the expired; reload cost ignored), idle models unloaded after 5 min;
- ``swapd``: memory-aware placement on the 2 x 2 GPUs with the default eviction cost.

The event loop runs on a virtual clock (time jumps to the next timer whenever nothing is
ready), so every figure is in simulated seconds and a run takes seconds of real time. Per
policy: swaps (engine starts), total load time, p50/p99 queue wait (admit → granted), mean
GPU-memory utilisation (time-weighted share of all GPU memory held by running models), failed
requests and the span from the first arrival to the last release. The last line compares the
four across releases. Figures only, never assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import random
import selectors
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from swapd.config.loader import load_text
from swapd.config.model import Config, PlacementConfig
from swapd.errors import SwapdError
from swapd.hardware import Device
from swapd.inventory import NodeReading, Reading
from swapd.scheduler import Scheduler
from swapd.slot import Slot
from swapd.testing import FakeEngines
from swapd.views import ALIVE, RUNNING, SlotView

GIB = 1024**3
SIZES_GIB = (4, 5, 8, 8, 14, 16, 20, 24, 30, 40, 48, 70)
SPLIT = {70: 2}  # GPUs a model of that size spans (tensor parallel); others: 1 if it fits
NODES, GPUS_PER_NODE, GPU_GIB = ("a", "b"), 2, 80
ZIPF_S = 1.1
KEEP_ALIVE = 300.0  # Ollama's default keep_alive (seconds)
MODELS_MAX = 4  # llama.cpp router's --models-max
UNIT = GIB  # the llama-router inventory counts models: one "unit" each
EPOCH = 1000.0  # the virtual clock's start (a recency of 0 means "never used")


# ── the trace ───────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    gib: int
    weight: float  # Zipf popularity
    gpus: int = 1  # devices it spans, its memory split evenly over them

    @property
    def load_seconds(self) -> float:
        return 0.5 + 0.05 * self.gib

    @property
    def service_mean(self) -> float:
        """Mean seconds a request holds the model: 2 s for a model of the mean size."""
        mean_gib = sum(SIZES_GIB) / len(SIZES_GIB)
        return 2.0 * (0.5 + 0.5 * self.gib / mean_gib)


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float  # seconds after the trace begins
    model: str
    service: float  # seconds it holds the model once granted


def models(seed: int, gpu_gib: int = GPU_GIB) -> list[Model]:
    """The twelve models; Zipf weights over ranks shuffled by ``seed``. A model spans the
    GPUs ``SPLIT`` gives it, or as many as its size needs on ``gpu_gib`` GPUs if more."""
    ranks = list(range(1, len(SIZES_GIB) + 1))
    random.Random(seed).shuffle(ranks)
    return [
        Model(
            f"m{i:02d}-{gib}g",
            gib,
            1.0 / rank**ZIPF_S,
            max(SPLIT.get(gib, 1), math.ceil(gib / gpu_gib)),
        )
        for i, (gib, rank) in enumerate(zip(SIZES_GIB, ranks, strict=True))
    ]


def trace(catalog: Sequence[Model], requests: int, seed: int) -> list[Arrival]:
    """On/off bursts: ON periods (mean 30 s) at 1 request/s, OFF periods (mean 60 s) at 0.05
    requests/s; every request picks a model by popularity and an exponential service time."""
    rng = random.Random(seed * 7919 + 1)
    weights = [m.weight for m in catalog]
    out: list[Arrival] = []
    at, on = 0.0, True
    while len(out) < requests:
        period_end = at + rng.expovariate(1 / (30.0 if on else 60.0))
        rate = 1.0 if on else 0.05
        while len(out) < requests:
            at += rng.expovariate(rate)
            if at >= period_end:
                at = period_end
                break
            model = rng.choices(catalog, weights)[0]
            out.append(Arrival(at, model.name, rng.expovariate(1 / model.service_mean)))
        on = not on
    return out


# ── a virtual clock for asyncio ─────────────────────────────────────────────────────────────


class _Clock:
    now = EPOCH


class _VirtualSelector(selectors.DefaultSelector):
    """Never sleeps on a timer: when nothing is ready it moves the clock to the next one."""

    def __init__(self, clock: _Clock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[Any]:
        ready: list[Any] = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # nothing scheduled at all: only I/O can wake the loop
            return list(super().select(None))
        self._clock.now += timeout
        return []


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._clock = _Clock()
        super().__init__(_VirtualSelector(self._clock))

    def time(self) -> float:
        return self._clock.now


def loop_time() -> float:
    return asyncio.get_running_loop().time()


def _use_clock() -> None:
    """Point swapd's module clocks (``_now = time.monotonic``) at the running loop's time."""
    for name, module in list(sys.modules.items()):
        if name.startswith("swapd.") and getattr(module, "_now", None) is time.monotonic:
            module._now = loop_time  # type: ignore[attr-defined]


# ── the inventories ─────────────────────────────────────────────────────────────────────────


class FakeInventory:
    """Fixed devices whose used memory is what the scheduler's live engines were assigned."""

    def __init__(self, devices: dict[str, int], total: int) -> None:
        self.devices = devices  # node -> GPU count
        self.total = total  # bytes per GPU
        self.scheduler: Scheduler | None = None

    def _used(self, node: str, index: int) -> int:
        slots = self.scheduler.slots.values() if self.scheduler else ()
        return sum(
            s.assignment.per_device
            for s in slots
            if s.state in ALIVE
            and s.assignment is not None
            and s.assignment.node == node
            and index in s.assignment.devices
        )

    async def read(self, *, refresh: bool = False) -> Reading:
        nodes = tuple(
            NodeReading(
                node=node,
                devices=tuple(
                    Device(
                        index=i,
                        vendor="nvidia",
                        name="Fake H100 80GB",
                        total_bytes=self.total,
                        free_bytes=self.total - self._used(node, i),
                        source="fake",
                    )
                    for i in range(count)
                ),
                memory=None,
                sources=(),
            )
            for node, count in self.devices.items()
        )
        return Reading(captured_at=time.time(), nodes=nodes)

    async def usage(self, node: str, pids: Sequence[int]) -> dict[int, int]:
        return {}


# ── the policies ────────────────────────────────────────────────────────────────────────────


Cost = Callable[[Slot, float], float]


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    config: Config
    inventory: FakeInventory | None = None
    cost: Cost | None = None


def _config(
    catalog: Sequence[Model], *, need: Callable[[Model], tuple[int, int]] | None, ttl: float
) -> Config:
    """The models as YAML (``need``: GPUs and bytes in all, or no resources), placement on
    when a need is given, no headroom."""
    lines = ["models:"]
    for m in catalog:
        lines += [f"  {m.name}:", "    cmd: fake", "    concurrencyLimit: 1000000"]
        if ttl:
            lines.append(f"    ttl: {ttl:g}")
        if need is not None:
            gpus, memory = need(m)
            lines.append(f"    resources: {{gpus: {gpus}, memory: {memory}}}")
    config = load_text("\n".join(lines) + "\n", "placement_sim.yaml")
    placement = PlacementConfig(enabled=need is not None, headroom=0)
    return dataclasses.replace(config, placement=placement)


def recency(slot: Slot, now: float) -> float:
    """LRU: the longer idle, the cheaper to evict."""
    return 1.0 / (1.0 + now - slot.last_use)


def keep_alive_left(slot: Slot, now: float) -> float:
    """Ollama: the keep-alive left (LRU among the expired); what a reload costs is ignored."""
    return max(0.0, KEEP_ALIVE - (now - slot.last_use)) + 1e-3 * recency(slot, now)


def memory(m: Model) -> tuple[int, int]:
    return m.gpus, m.gib * GIB


def one_unit(m: Model) -> tuple[int, int]:
    return 1, UNIT


def policies(catalog: Sequence[Model], gpu_gib: int = GPU_GIB) -> list[Policy]:
    """The four policies in the order of the last line."""
    gpus = {node: GPUS_PER_NODE for node in NODES}
    return [
        Policy("swapd", _config(catalog, need=memory, ttl=0), FakeInventory(gpus, gpu_gib * GIB)),
        Policy("llama-swap", _config(catalog, need=None, ttl=0)),
        Policy("llama-router", _config(catalog, need=one_unit, ttl=0),
               FakeInventory({"router": 1}, MODELS_MAX * UNIT), recency),
        Policy("ollama", _config(catalog, need=memory, ttl=KEEP_ALIVE),
               FakeInventory(gpus, gpu_gib * GIB), keep_alive_left),
    ]  # fmt: skip


# ── one replay ──────────────────────────────────────────────────────────────────────────────


@dataclass(slots=True)
class Result:
    policy: str
    swaps: int = 0
    load_seconds: float = 0.0
    waits: list[float] = dataclasses.field(default_factory=list)
    failed: int = 0
    utilisation: float = 0.0
    span: float = 0.0  # simulated seconds from the first arrival to the last release


def _scheduler(policy: Policy, engines: FakeEngines) -> Scheduler:
    extra: dict[str, Any] = {}
    if policy.inventory is not None:
        extra["inventory"] = policy.inventory
    if policy.cost is not None:
        extra["cost"] = policy.cost
    sched = Scheduler(policy.config, driver_factory=engines.factory, **extra)
    if policy.inventory is not None:
        policy.inventory.scheduler = sched
    return sched


async def _replay(
    policy: Policy, catalog: Sequence[Model], arrivals: Sequence[Arrival], total_gib: int
) -> Result:
    loop = asyncio.get_running_loop()
    _use_clock()
    sizes = {m.name: m.gib for m in catalog}
    engines = FakeEngines(delays={m.name: m.load_seconds for m in catalog})
    sched = _scheduler(policy, engines)
    result = Result(policy.name)
    held, since, area = 0, loop.time(), 0.0

    def on_change(view: SlotView | None = None) -> None:
        nonlocal held, since, area
        now = loop.time()
        area += held * (now - since)
        since = now
        held = sum(sizes[s.id] for s in sched.slots.values() if s.state in RUNNING)

    async def request(arrival: Arrival) -> None:
        began = loop.time()
        ticket = sched.admit(arrival.model)
        try:
            await sched.wait(ticket)
            result.waits.append(loop.time() - began)
            await anyio.sleep(arrival.service)
        except SwapdError:
            result.failed += 1
        finally:
            sched.release(ticket)

    sched.listeners.append(on_change)
    async with anyio.create_task_group() as tg:
        await tg.start(sched.run)
        start = loop.time()
        async with anyio.create_task_group() as clients:
            for arrival in arrivals:
                await anyio.sleep(start + arrival.at - loop.time())
                clients.start_soon(request, arrival)
        on_change()  # close the last interval
        result.span = loop.time() - start
        await sched.shutdown()
        tg.cancel_scope.cancel()
    result.swaps = len(engines.starts)
    result.load_seconds = sum(engines.delays[m] for m in engines.starts)
    result.utilisation = area / (total_gib * result.span) if result.span else 0.0
    return result


def replay(
    policy: Policy, catalog: Sequence[Model], arrivals: Sequence[Arrival], total_gib: int
) -> Result:
    """Run ``arrivals`` through a fresh scheduler under ``policy`` on a virtual clock;
    ``total_gib`` is the GPU memory the utilisation is a share of."""

    async def main() -> Result:
        return await _replay(policy, catalog, arrivals, total_gib)

    return anyio.run(main, backend="asyncio", backend_options={"loop_factory": VirtualLoop})


# ── the report ──────────────────────────────────────────────────────────────────────────────


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer requests (400)")
    p.add_argument("--requests", type=int, default=None, help="requests in the trace (2000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--gpu-gib", type=int, default=GPU_GIB, help="memory per GPU (less: memory pressure)"
    )
    a = p.parse_args()
    requests = a.requests or (400 if a.quick else 2000)
    catalog = models(a.seed, a.gpu_gib)
    arrivals = trace(catalog, requests, a.seed)
    total_gib = a.gpu_gib * GPUS_PER_NODE * len(NODES)
    print(
        f"{requests} requests over {arrivals[-1].at:.0f} simulated s (seed {a.seed}), "
        f"{len(catalog)} models ({sum(m.gib for m in catalog)} GiB in all) on "
        f"{len(NODES)} nodes x {GPUS_PER_NODE} GPUs of {a.gpu_gib} GiB ({total_gib} GiB)"
    )
    counts = {m.name: 0 for m in catalog}
    for arrival in arrivals:
        counts[arrival.model] += 1
    print(
        "requests per model: "
        + ", ".join(f"{m.name}{'/' + str(m.gpus) if m.gpus > 1 else ''} {counts[m.name]}"
                    for m in catalog)
    )  # fmt: skip
    print()
    header = (
        f"{'policy':<13} {'swaps':>6} {'load s':>8} {'p50 wait':>9} {'p99 wait':>9} "
        f"{'GPU mem':>8} {'failed':>7} {'span s':>8}"
    )
    print(header)
    print("-" * len(header))
    results: dict[str, Result] = {}
    for policy in policies(catalog, a.gpu_gib):
        r = results[policy.name] = replay(policy, catalog, arrivals, total_gib)
        print(
            f"{r.policy:<13} {r.swaps:>6} {r.load_seconds:>8.1f} "
            f"{percentile(r.waits, 50):>8.1f}s {percentile(r.waits, 99):>8.1f}s "
            f"{r.utilisation:>7.1%} {r.failed:>7} {r.span:>8.0f}"
        )
    print()
    print(
        "placement: "
        + " | ".join(
            f"{name} swaps={r.swaps} p99={percentile(r.waits, 99):.1f}s"
            for name, r in results.items()
        )
    )


if __name__ == "__main__":
    main()
