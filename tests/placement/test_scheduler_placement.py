"""The scheduler under memory-aware placement: the real scheduler, in-memory engines
(``FakeEngines``) and a static inventory, so every decision can be checked exactly."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swapd.assignment import Assignment
from swapd.config.model import (
    DEFAULT_GROUP,
    Config,
    GroupConfig,
    ModelConfig,
    PlacementConfig,
    Resources,
)
from swapd.demand import LearnedStore
from swapd.drivers.base import Upstream
from swapd.errors import NoCapacity, StartFailed, TooManyRequests
from swapd.hardware import Device, Memory, Source
from swapd.inventory import NodeReading, Reading
from swapd.placement import RAM
from swapd.scheduler import Scheduler
from swapd.slot import Slot, Ticket
from swapd.testing import FakeEngines
from swapd.views import SlotView, State

GiB = 1 << 30


async def until(condition: Callable[[], bool], limit: float = 5.0) -> None:
    """Wait until ``condition()`` holds (polled every few ms); fails after ``limit`` s."""
    with anyio.fail_after(limit):
        while not condition():  # noqa: ASYNC110 (any condition, bounded polling)
            await anyio.sleep(0.005)


class StaticInventory:
    """Nodes of GPUs with fixed totals; ``external`` is memory used outside swapd, ``usage``
    what a pid is measured to use per device."""

    def __init__(self, nodes: Mapping[str, Sequence[int]]) -> None:
        self.nodes = nodes
        self.external: dict[tuple[str, int], int] = {}
        self.usages: dict[int, dict[int, int]] = {}
        self.reads = 0

    async def read(self, *, refresh: bool = False) -> Reading:
        self.reads += 1
        nodes = []
        for node, totals in self.nodes.items():
            devices = tuple(
                Device(i, "nvidia", f"Fake GPU {i}", t, t - self.external.get((node, i), 0))
                for i, t in enumerate(totals)
            )
            memory = Memory(64 * GiB, 64 * GiB)
            nodes.append(NodeReading(node, devices, memory, (Source("fake", True),)))
        return Reading(time.time(), tuple(nodes))

    async def usage(self, node: str, pids: Sequence[int]) -> dict[int, int]:
        return dict(self.usages.get(pids[0], {})) if pids else {}


def model(
    id: str, memory: int = 0, *, gpus: int | None = 1, group: str = DEFAULT_GROUP, **kw: Any
) -> ModelConfig:
    return ModelConfig(
        id=id, cmd=("x", id), group=group, resources=Resources(gpus=gpus, memory=memory), **kw
    )


def config(*models: ModelConfig, groups: Sequence[GroupConfig] = (), **placement: Any) -> Config:
    grouped = {m for g in groups for m in g.members}
    rest = tuple(m.id for m in models if m.id not in grouped)
    return Config(
        models={m.id: m for m in models},
        groups={
            DEFAULT_GROUP: GroupConfig(DEFAULT_GROUP, members=rest),
            **{g.name: g for g in groups},
        },
        placement=PlacementConfig(**{"headroom": 0, **placement}),
    )


@asynccontextmanager
async def running(
    cfg: Config,
    engines: FakeEngines,
    inventory: StaticInventory | None,
    *,
    factory: Callable[[Any, Any], Any] | None = None,
    cost: Callable[[Slot, float], float] | None = None,
    learned: LearnedStore | None = None,
) -> AsyncIterator[Scheduler]:
    sched = Scheduler(
        cfg,
        driver_factory=factory or engines.factory,
        batch_window=0.0,
        inventory=inventory,
        learned=learned,
        cost=cost,
    )
    async with anyio.create_task_group() as tg:
        await tg.start(sched.run)
        yield sched
        await sched.shutdown()
        tg.cancel_scope.cancel()


async def use(sched: Scheduler, model_id: str) -> None:
    """One request: start (or reuse) the model, then release it."""
    async with sched.lease(model_id):
        pass


def placed(sched: Scheduler, model_id: str) -> tuple[str, tuple[int, ...]] | None:
    a = sched.slots[model_id].assignment
    return (a.node, a.devices) if a else None


def by_name(costs: Mapping[str, float]) -> Callable[[Slot, float], float]:
    return lambda slot, now: costs.get(slot.id, 1.0)


@pytest.mark.anyio
async def test_models_land_where_they_fit_side_by_side() -> None:
    inv = StaticInventory({"a": [80 * GiB, 80 * GiB]})
    cfg = config(model("m1", 40 * GiB), model("m2", 40 * GiB), model("m3", 40 * GiB))
    engines = FakeEngines()
    async with running(cfg, engines, inv) as sched:
        for m in ("m1", "m2", "m3"):
            await use(sched, m)
        assert engines.running == {"m1", "m2", "m3"}  # no one-at-a-time (default) group
        assert engines.stops == []
        # best fit: the second 40 GiB goes next to the first, the third to the other GPU
        assert placed(sched, "m1") == placed(sched, "m2") == ("a", (0,))
        assert placed(sched, "m3") == ("a", (1,))
        info = sched.info("m3")
        assert info is not None
        assert info["placement"] == {
            "node": "a",
            "devices": [1],
            "need_bytes": 40 * GiB,
            "held_bytes": 40 * GiB,
            "measured_bytes": 0,
            "source": "declared",
            "detail": info["placement"]["detail"],
            "blocked_by": [],
        }


@pytest.mark.anyio
async def test_placement_evicts_the_cheapest_idle_model_on_the_right_gpu_and_nothing_else() -> None:
    # GPU 0: big (50) + small (20); GPU 1: other (60). "new" (55) fits on GPU 0 without big or
    # on GPU 1 without other; evicting small alone (the cheapest) frees too little.
    inv = StaticInventory({"a": [80 * GiB, 80 * GiB]})
    cfg = config(
        model("big", 50 * GiB),
        model("small", 20 * GiB),
        model("other", 60 * GiB),
        model("new", 55 * GiB),
    )
    engines = FakeEngines()
    cost = by_name({"small": 0.5, "big": 3.0, "other": 2.0})
    async with running(cfg, engines, inv, cost=cost) as sched:
        for m in ("big", "small", "other"):
            await use(sched, m)
        assert placed(sched, "big") == placed(sched, "small") == ("a", (0,))
        assert placed(sched, "other") == ("a", (1,))
        await use(sched, "new")
        assert engines.stops == ["other"]
        assert placed(sched, "new") == ("a", (1,))
        assert engines.running == {"big", "small", "new"}


@pytest.mark.anyio
async def test_a_busy_model_is_waited_for_not_evicted() -> None:
    inv = StaticInventory({"a": [80 * GiB]})
    cfg = config(model("serving", 60 * GiB), model("next", 60 * GiB))
    engines = FakeEngines()
    async with running(cfg, engines, inv) as sched:
        async with anyio.create_task_group() as tg, sched.lease("serving"):
            tg.start_soon(use, sched, "next")
            await until(lambda: sched.slots["next"].blocked_by == ("serving",))
            info = sched.info("next")
            assert info is not None and info["placement"]["blocked_by"] == ["serving"]
            assert engines.stops == [] and sched.state("serving") is State.READY
        assert engines.stops == ["serving"]
        assert sched.slots["next"].blocked_by == ()


@pytest.mark.anyio
async def test_an_unswappable_model_is_never_evicted_and_a_swappable_one_goes_instead() -> None:
    inv = StaticInventory({"a": [80 * GiB]})
    cfg = config(
        model("pinned", 50 * GiB, swappable=False),
        model("cheap", 20 * GiB),
        model("new", 30 * GiB),
        model("huge", 40 * GiB),
    )
    engines = FakeEngines()
    cost = by_name({"pinned": 0.1, "cheap": 5.0})  # pinned would be the cheaper to evict
    async with running(cfg, engines, inv, cost=cost) as sched:
        await use(sched, "pinned")
        await use(sched, "cheap")
        await use(sched, "new")
        assert engines.stops == ["cheap"]
        with pytest.raises(NoCapacity) as caught:
            await use(sched, "huge")  # 40 GiB: only with pinned gone
        assert "pinned" in caught.value.message and "huge" in caught.value.message
        assert caught.value.code == "insufficient_memory"
        assert sched.state("pinned") is State.READY


@pytest.mark.anyio
async def test_a_model_that_fits_nowhere_fails_its_requests_with_no_capacity() -> None:
    inv = StaticInventory({"a": [80 * GiB, 80 * GiB], "b": [24 * GiB]})
    cfg = config(model("idle", 10 * GiB), model("giant", 100 * GiB))
    engines = FakeEngines()
    async with running(cfg, engines, inv) as sched:
        await use(sched, "idle")
        with pytest.raises(NoCapacity) as caught:
            await use(sched, "giant")
        assert "100.0GiB" in caught.value.message and "80.0GiB" in caught.value.message
        assert engines.stops == []  # nothing was evicted for a start that cannot happen
        assert engines.starts == ["idle"]
        assert sched.slots["giant"].reserved == 0


@pytest.mark.anyio
async def test_groups_still_apply_on_top_of_placement() -> None:
    inv = StaticInventory({"a": [80 * GiB]})
    group = GroupConfig("pair", swap=True, exclusive=False, members=("g1", "g2"))
    cfg = config(
        model("g1", 10 * GiB, group="pair"),
        model("g2", 10 * GiB, group="pair"),
        model("free", 10 * GiB),
        groups=[group],
    )
    engines = FakeEngines()
    async with running(cfg, engines, inv) as sched:
        await use(sched, "g1")
        await use(sched, "free")
        await use(sched, "g2")  # fits, but its group swaps
        assert engines.stops == ["g1"]
        assert engines.running == {"free", "g2"}


@pytest.mark.anyio
@pytest.mark.parametrize("inventory", [True, False], ids=["no-gpu-no-declared", "no-inventory"])
async def test_inactive_placement_keeps_one_model_at_a_time(inventory: bool) -> None:
    inv = StaticInventory({}) if inventory else None
    cfg = config(model("m1", gpus=None), model("m2", gpus=None))
    engines = FakeEngines()
    async with running(cfg, engines, inv) as sched:
        assert not sched.placer.active(sched.config)
        await use(sched, "m1")
        await use(sched, "m2")
        assert engines.stops == ["m1"]
        assert sched.slots["m2"].assignment is None
        assert sched.placement_view()["active"] is False


@pytest.mark.anyio
async def test_the_driver_is_assigned_its_devices_before_it_starts() -> None:
    inv = StaticInventory({"a": [80 * GiB], "b": [80 * GiB, 80 * GiB]})
    cfg = config(model("pair", 100 * GiB, gpus=2), model("pinned", 10 * GiB, node="a"))
    engines = FakeEngines()
    assigned: dict[str, tuple[Assignment, int]] = {}

    def factory(cfg: Any, sink: Any) -> Any:
        driver = engines.factory(cfg, sink)
        driver.assign = lambda a: assigned.__setitem__(cfg.id, (a, len(engines.starts)))
        return driver

    async with running(cfg, engines, inv, factory=factory) as sched:
        await use(sched, "pair")
        await use(sched, "pinned")
        pair, starts_before = assigned["pair"]
        assert starts_before == 0  # assigned before serve ran
        assert (pair.node, pair.devices, pair.per_device) == ("b", (0, 1), 50 * GiB)
        assert pair.device_totals == (80 * GiB, 80 * GiB) and pair.vendor == "nvidia"
        assert assigned["pinned"][0].node == "a"


@pytest.mark.anyio
async def test_memory_used_outside_swapd_counts_and_swapds_own_is_not_counted_twice() -> None:
    inv = StaticInventory({"a": [80 * GiB, 80 * GiB]})
    inv.external[("a", 1)] = 70 * GiB  # another program on GPU 1
    cfg = config(model("m1", 30 * GiB), model("m2", 30 * GiB))
    engines = FakeEngines()
    async with running(cfg, engines, inv) as sched:
        await use(sched, "m1")
        # the engine allocated its 30 GiB: the next reading sees it as used on GPU 0
        inv.external[("a", 0)] = 30 * GiB
        await sched.placer.refresh()
        await use(sched, "m2")  # 80 - 30 (m1, once) leaves room for 30 on GPU 0
        assert placed(sched, "m2") == ("a", (0,))
        assert engines.stops == []
        gpu0 = sched.placement_view()["nodes"][0]["devices"][0]
        assert (gpu0["used"], gpu0["reserved"], gpu0["free"]) == (30 * GiB, 60 * GiB, 20 * GiB)


@pytest.mark.anyio
async def test_placement_view_has_the_documented_shape() -> None:
    inv = StaticInventory({"a": [80 * GiB]})
    cfg = config(model("m1", 30 * GiB))
    engines = FakeEngines()
    async with running(cfg, engines, inv) as sched:
        await use(sched, "m1")
        view = sched.placement_view()
        assert set(view) == {"active", "headroom", "captured_at", "nodes"}
        assert view["active"] is True and view["headroom"] == 0
        assert isinstance(view["captured_at"], float)
        (node,) = view["nodes"]
        assert node["node"] == "a" and node["local"] is True
        assert node["sources"] == [{"name": "fake", "ok": True, "error": None}]
        gpu, ram = node["devices"]
        assert gpu == {
            "index": 0,
            "kind": "gpu",
            "name": "Fake GPU 0",
            "total": 80 * GiB,
            "used": 0,
            "reserved": 30 * GiB,
            "free": 50 * GiB,
            "models": [{"model": "m1", "bytes": 30 * GiB, "state": "ready"}],
        }
        assert (ram["index"], ram["kind"], ram["total"]) == (RAM, "ram", 64 * GiB)


def _oom_factory(engines: FakeEngines, ooms: dict[str, int]) -> Callable[[Any, Any], Any]:
    """Engines that print a CUDA out-of-memory error and exit on their next ``ooms[id]``
    starts."""

    def factory(cfg: Any, sink: Any) -> Any:
        inner = engines.factory(cfg, sink)

        class Driver:
            async def serve(self, *, task_status: Any) -> None:
                if ooms.get(cfg.id, 0) > 0:
                    ooms[cfg.id] -= 1
                    engines.starts.append(cfg.id)
                    sink.write("CUDA error: out of memory")
                    raise StartFailed(cfg.id, "engine exited with code 1")
                await inner.serve(task_status=task_status)

        return Driver()

    return factory


@pytest.mark.anyio
async def test_an_out_of_memory_start_raises_the_learned_need_and_is_retried_once() -> None:
    inv = StaticInventory({"a": [80 * GiB]})
    cfg = config(model("idle", 40 * GiB), model("under", 30 * GiB))
    engines = FakeEngines()
    learned = LearnedStore(None)
    factory = _oom_factory(engines, {"under": 1})
    async with running(cfg, engines, inv, factory=factory, learned=learned) as sched:
        await use(sched, "idle")
        await use(sched, "under")
        assert engines.starts == ["idle", "under", "under"]
        need = learned.get(cfg.models["under"].fingerprint())
        assert need is not None and need.per_device > 30 * GiB
        lines = sched.slots["under"].log.history()
        assert any("ran out of memory on a:0" in line and "retrying once" in line for line in lines)
        assert sched.slots["under"].oom_retried is False  # reset once it was ready
        assert sched.state("under") is State.READY


@pytest.mark.anyio
async def test_a_second_out_of_memory_start_fails_with_a_clear_message() -> None:
    inv = StaticInventory({"a": [80 * GiB]})
    cfg = config(model("under", 30 * GiB))
    engines = FakeEngines()
    factory = _oom_factory(engines, {"under": 2})
    async with running(cfg, engines, inv, factory=factory) as sched:
        with pytest.raises(StartFailed) as caught:
            await use(sched, "under")
        assert "ran out of GPU memory twice on a:0" in caught.value.message
        assert "set resources.memory" in caught.value.message
        assert engines.starts == ["under", "under"]


@pytest.mark.anyio
async def test_a_ready_engines_measured_peak_is_learned_and_held() -> None:
    inv = StaticInventory({"a": [80 * GiB]})
    cfg = config(model("m1", 10 * GiB))
    engines = FakeEngines()
    learned = LearnedStore(None)

    def factory(cfg: Any, sink: Any) -> Any:
        class Driver:
            async def serve(self, *, task_status: Any) -> None:
                task_status.started(Upstream("http://m1", pid=4242))
                await anyio.sleep_forever()

        return Driver()

    inv.usages[4242] = {0: 25 * GiB}
    async with running(cfg, engines, inv, factory=factory, learned=learned) as sched:
        await use(sched, "m1")
        slot = sched.slots["m1"]
        await sched.placer.measure(slot)
        assert slot.measured == 25 * GiB
        need = learned.get(cfg.models["m1"].fingerprint())
        assert need is not None and need.per_device == 25 * GiB and need.source == "learned"
        view = sched.placement_view()["nodes"][0]["devices"][0]
        assert view["reserved"] == 25 * GiB  # max(declared, measured)


@pytest.mark.anyio
async def test_a_model_wanting_all_gpus_spans_every_gpu_of_a_node_sharing_its_total() -> None:
    inv = StaticInventory({"a": [80 * GiB], "b": [80 * GiB, 80 * GiB]})
    everything = ModelConfig(
        id="all", cmd=("x",), resources=Resources(memory=120 * GiB, all_gpus=True)
    )
    cfg = config(everything)
    engines = FakeEngines()
    async with running(cfg, engines, inv) as sched:
        await use(sched, "all")  # 120 GiB on node a's one GPU would not fit
        a = sched.slots["all"].assignment
        assert a is not None
        assert (a.node, a.devices, a.per_device) == ("b", (0, 1), 60 * GiB)


@pytest.mark.anyio
async def test_a_model_of_unknown_need_gets_a_gpu_to_itself_until_measured() -> None:
    inv = StaticInventory({"a": [80 * GiB, 80 * GiB]})
    cfg = config(model("u1"), model("u2"), model("u3"), enabled=True)
    engines = FakeEngines()
    async with running(cfg, engines, inv) as sched:
        await use(sched, "u1")
        await use(sched, "u2")
        assert engines.stops == []  # one per GPU, side by side
        assert {placed(sched, "u1"), placed(sched, "u2")} == {("a", (0,)), ("a", (1,))}
        assert sched.slots["u1"].assignment.per_device == 80 * GiB  # type: ignore[union-attr]
        where = {m: placed(sched, m) for m in ("u1", "u2")}
        await use(sched, "u3")  # no GPU to itself left: one idle model goes
        (gone,) = engines.stops
        assert placed(sched, "u3") == where[gone]


NODES = {"a": [80 * GiB, 80 * GiB], "b": [80 * GiB, 80 * GiB]}


async def placement_scenario(data: st.DataObject) -> None:
    """Random requests, releases and crashes over 6 models of random sizes on 2 nodes x 2
    GPUs. After every step and on every state change: no device holds more than its total,
    no model stops while it serves, an unswappable model is never evicted. At the end every
    request was granted, failed with NoCapacity, or left while queued."""
    ids = [f"m{i}" for i in range(6)]
    models = [
        model(
            i,
            data.draw(st.integers(5, 75), label=f"{i} GiB") * GiB,
            gpus=data.draw(st.sampled_from([1, 1, 2]), label=f"{i} gpus"),
            swappable=data.draw(st.sampled_from([True, True, True, False]), label=f"{i} swap"),
        )
        for i in ids
    ]
    cfg = config(*models)
    unswappable = {m.id for m in models if not m.swappable}
    engines = FakeEngines(delay=0.003)
    inv = StaticInventory(NODES)
    broken: list[str] = []

    def check(view: SlotView | None = None) -> None:
        for key, n in sched.placer.holding().items():
            if n > NODES[key[0]][key[1]]:
                broken.append(f"{key} holds {n / GiB:.1f} GiB")
        if view is not None and view.state is State.STOPPING:
            if view.info["inflight"] > 0:
                broken.append(f"{view.id} stopped while serving")
            if view.id in unswappable and not sched._closing:
                broken.append(f"{view.id} (swappable: false) was evicted")

    tickets: list[Ticket] = []
    async with running(cfg, engines, inv) as sched:
        sched.listeners.append(check)
        for _ in range(data.draw(st.integers(5, 40), label="steps")):
            op = data.draw(st.sampled_from(["admit", "admit", "release", "crash", "wait"]))
            if op == "admit":
                with contextlib.suppress(TooManyRequests):  # 429: nothing was admitted
                    tickets.append(sched.admit(data.draw(st.sampled_from(ids), label="model")))
            elif op == "release":
                live = [t for t in tickets if not t.released]
                pick = data.draw(st.integers(0, 63), label="ticket")
                if live:
                    sched.release(live[pick % len(live)])
            elif op == "crash":
                event: Any = engines.kill.get(data.draw(st.sampled_from(ids), label="crash"))
                if event is not None:
                    event.set()
            else:
                await anyio.sleep(data.draw(st.sampled_from([0.001, 0.005, 0.02]), label="dt"))
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
            check()
            assert not broken, broken
        with anyio.fail_after(10):
            while any(not t.released for t in tickets):
                for t in tickets:
                    if t.done and not t.released:
                        sched.release(t)
                await anyio.sleep(0.002)
        assert not broken, broken
        for t in tickets:  # granted, no room for it, or its client left while it queued
            assert t.granted or isinstance(t.error, NoCapacity) or not t.done, (t.model, t.error)
        sched.listeners.remove(check)


@pytest.mark.timeout(300)
@settings(
    max_examples=int(os.environ.get("SWAPD_PROPERTY_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_placement_never_overcommits_a_device_nor_evicts_a_busy_or_unswappable_model(
    data: st.DataObject,
) -> None:
    async def bounded() -> None:
        with anyio.fail_after(30):
            await placement_scenario(data)

    anyio.run(bounded)


@pytest.mark.anyio
async def test_a_sleeping_model_holds_a_tenth_and_is_stopped_when_that_is_in_the_way() -> None:
    inv = StaticInventory({"a": [80 * GiB]})
    cfg = config(
        model("sleepy", 60 * GiB, sleep_level=1),
        model("other", 60 * GiB),
        model("third", 20 * GiB),
    )
    engines = FakeEngines()
    slept: list[str] = []

    def factory(cfg: Any, sink: Any) -> Any:
        if cfg.id != "sleepy":
            return engines.factory(cfg, sink)

        class Sleepy:
            async def serve(self, *, task_status: Any) -> None:
                task_status.started(Upstream("http://sleepy"))
                await anyio.sleep_forever()

            async def sleep(self, level: int) -> None:
                slept.append("sleep")

            async def wake(self) -> None:
                slept.append("wake")

        return Sleepy()

    cost = by_name({"sleepy": 0.5, "other": 5.0})
    async with running(cfg, engines, inv, factory=factory, cost=cost) as sched:
        await use(sched, "sleepy")
        await use(sched, "other")  # 60 + 60 > 80: sleepy goes to sleep, keeping 6 GiB
        assert slept == ["sleep"] and sched.state("sleepy") is State.SLEEPING
        assert sched.placer.holding() == {("a", 0): 66 * GiB}
        await use(sched, "third")  # 6 + 60 + 20 > 80: stopping the sleeper is enough
        assert sched.state("sleepy") is State.STOPPED
        assert engines.running == {"other", "third"}
