"""Property test: random interleavings of everything that can happen to the scheduler.

Admit, release, a client leaving while queued, an engine crash, reload (models and groups come
and go, commands change), unload, TTL expiry and time passing, over 5 models in 2 groups. After
every step: counters are never negative, no two members of a swap group are ready at once, and
no model is stopped while it serves. The same run under the matrix router (random fifo
priorities, a fixed matrix): the engines starting or ready always fit one alternative of a set
(or are a lone model), and the queue stays in priority order. At the end every ticket has ended
exactly once (granted or failed), the queue is empty and the counters are back to 0.

With a native front's gates attached (swapd.native), requests also go through gates, as the
front's thread would send them: one gets in only while its model is ready, and no model is
stopped, put to sleep or evicted while one is in flight (a gate is closed and found empty
first); when they have all left, every count is back to 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from swapd import native
from swapd.config.matrix import build_matrix
from swapd.config.model import DEFAULT_GROUP, Config, GroupConfig, MatrixConfig, ModelConfig
from swapd.errors import SwapdError
from swapd.scheduler import Scheduler
from swapd.slot import Ticket
from swapd.testing import FakeEngines
from swapd.views import SlotView, State

MODELS = ("m0", "m1", "m2", "m3", "m4")
GROUPS = {
    "g1": GroupConfig("g1", swap=True, exclusive=True, members=("m0", "m1", "m2")),
    "g2": GroupConfig("g2", swap=True, exclusive=False, members=("m3", "m4")),
}
MATRIX = build_matrix(
    {},
    {"m1": 3, "m4": 2},
    {"s1": "m0 & m1 & m3", "s2": "(m1 | m2) & m4", "s3": "+s1 | m2 & m3"},
    frozenset(MODELS),
    {},
    lambda path, message: pytest.fail(message),
    ("matrix",),
)


def make_config(
    present: frozenset[str],
    variant: dict[str, int],
    ttl: float,
    matrix: MatrixConfig | None = None,
    priorities: dict[str, int] | None = None,
) -> Config:
    if matrix is not None:  # the matrix stays fixed: a reload only changes the models
        models = {
            m: ModelConfig(id=m, cmd=(m, f"v{variant.get(m, 0)}"), ttl=ttl, concurrency_limit=4)
            for m in sorted(present)
        }
        everyone = GroupConfig(DEFAULT_GROUP, members=tuple(models))
        return Config(
            models=models,
            groups={DEFAULT_GROUP: everyone},
            router="matrix",
            matrix=matrix,
            priorities={m: p for m, p in (priorities or {}).items() if m in present},
        )
    groups: dict[str, GroupConfig] = {DEFAULT_GROUP: GroupConfig(DEFAULT_GROUP)}
    models = {}
    for g in GROUPS.values():
        members = tuple(m for m in g.members if m in present)
        if members:
            groups[g.name] = dataclasses.replace(g, members=members)
        for m in members:
            models[m] = ModelConfig(
                id=m, cmd=(m, f"v{variant.get(m, 0)}"), group=g.name, ttl=ttl, concurrency_limit=4
            )
    return Config(models=models, groups=groups)


async def settle() -> None:
    for _ in range(3):
        await anyio.lowlevel.checkpoint()


def check_invariants(sched: Scheduler, config: Config) -> None:
    for slot in sched.slots.values():
        assert slot.inflight >= 0 and slot.reserved >= 0 and slot.inflight <= slot.reserved
    queue = sched._queue
    assert all(a.priority >= b.priority for a, b in itertools.pairwise(queue))
    if config.matrix is not None:
        active = {i for i, s in sched.slots.items() if s.state in (State.STARTING, State.READY)}
        allowed = (alt for s in config.matrix.sets for alt in s.alternatives)
        assert len(active) <= 1 or any(active <= alt for alt in allowed), active
        return
    for group in config.groups.values():
        if group.swap:
            ready = [m for m in group.members if m in sched.slots and sched.state(m) is State.READY]
            assert len(ready) <= 1, f"two models of swap group {group.name} ready: {ready}"


async def scenario(data: st.DataObject, router: str, front: bool) -> None:
    engines = FakeEngines(delay=0.003)
    variant: dict[str, int] = {}
    present = frozenset(MODELS)
    matrix = MATRIX if router == "matrix" else None
    priorities = (
        data.draw(st.dictionaries(st.sampled_from(MODELS), st.integers(-1, 2)), label="prio")
        if matrix
        else None
    )
    config = make_config(present, variant, 0.0, matrix, priorities)
    sched = Scheduler(config, driver_factory=engines.factory, batch_window=0.02)
    gates = native.gates(asyncio.get_running_loop(), 8, sched.front_emptied) if front else None
    if front and gates is None:
        pytest.skip("the native library is not built here")
    if gates is not None:
        sched.attach_gates(gates)
    entered: list[tuple[str, int]] = []  # the front's requests in flight: model, gate
    tickets: list[Ticket] = []
    stopped_while_serving: list[str] = []

    def watch(view: SlotView) -> None:
        if view.state is State.STOPPING and view.info["inflight"] > 0:
            stopped_while_serving.append(view.id)

    sched.listeners.append(watch)
    async with anyio.create_task_group() as tg:
        await tg.start(sched.run)
        for _ in range(data.draw(st.integers(5, 40), label="steps")):
            op = data.draw(
                st.sampled_from(
                    ["admit", "admit", "release", "gone", "crash", "reload", "unload", "wait"]
                    + (["enter", "enter", "leave"] if gates else [])
                ),
                label="op",
            )
            if op == "admit":
                model = data.draw(st.sampled_from(MODELS), label="model")
                with contextlib.suppress(SwapdError):  # 429 or 404: nothing was admitted
                    tickets.append(sched.admit(model))
            elif op in ("release", "gone") and tickets:
                live = [t for t in tickets if not t.released]
                if op == "gone":
                    live = [t for t in live if not t.done]
                pick = data.draw(st.integers(0, 63), label="ticket")  # timing-independent draw
                if live:
                    sched.release(live[pick % len(live)])
            elif op == "enter" and gates is not None:
                model = data.draw(st.sampled_from(MODELS), label="front")
                slot = sched.slots.get(model)
                if slot is not None and slot.gates is not None and gates.enter(slot.gate):
                    assert slot.state is State.READY and not slot.retiring, (model, slot.state)
                    waiting = [t for t in sched._queue if t.slot.state is not State.READY]
                    assert not any(model in sched._evictions(t.slot) for t in waiting), model
                    entered.append((model, slot.gate))
            elif op == "leave":
                pick = data.draw(st.integers(0, 63), label="leaving")  # drawn whatever the timing
                if entered and gates is not None:
                    gates.leave(entered.pop(pick % len(entered))[1])
            elif op == "crash":
                model = data.draw(st.sampled_from(MODELS), label="crash")
                event: Any = engines.kill.get(model)
                if event is not None:
                    event.set()
            elif op == "reload":
                present = frozenset(
                    data.draw(st.sets(st.sampled_from(MODELS), min_size=1), label="present")
                )
                for m in data.draw(st.sets(st.sampled_from(MODELS)), label="edit"):
                    variant[m] = variant.get(m, 0) + 1
                ttl = data.draw(st.sampled_from([0.0, 0.01]), label="ttl")
                config = make_config(present, variant, ttl, matrix, priorities)
                sched.update(config)
            elif op == "unload":
                ids = data.draw(st.sets(st.sampled_from(MODELS)), label="unload")
                tg.start_soon(sched.unload, ids)
            else:
                await anyio.sleep(data.draw(st.sampled_from([0.001, 0.005, 0.02]), label="dt"))
            await settle()
            check_invariants(sched, config)
            assert not stopped_while_serving, stopped_while_serving
        # Everyone leaves once served (or failed): the queue must drain.
        while entered and gates is not None:
            gates.leave(entered.pop()[1])
            await settle()
            assert not stopped_while_serving, stopped_while_serving
        with anyio.fail_after(10):
            while any(not t.released for t in tickets):
                for t in tickets:
                    if t.done and not t.released:
                        sched.release(t)
                await anyio.sleep(0.002)
                check_invariants(sched, config)
        assert not sched._queue
        for t in tickets:  # granted or failed, never both; or left while queued
            assert t.released and (t.granted != (t.error is not None) or not t.done), t
        for slot in sched.slots.values():
            assert slot.inflight == 0 and slot.reserved == 0, slot.id
        assert not stopped_while_serving
        await sched.shutdown()
        tg.cancel_scope.cancel()
    if gates is not None:
        assert all(gates.read(i)[0] == 0 for i in range(gates.size))
        gates.close_all()


@pytest.mark.soak
@pytest.mark.timeout(600)
@settings(
    max_examples=int(os.environ.get("SWAPD_PROPERTY_EXAMPLES", "150")),
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@pytest.mark.parametrize("router", ["group", "matrix"])
@pytest.mark.parametrize("front", [False, True])
@given(data=st.data())
def test_scheduler_invariants_hold_under_random_interleavings(
    router: str, front: bool, data: st.DataObject
) -> None:
    async def bounded() -> None:
        with anyio.fail_after(30):
            await scenario(data, router, front)

    anyio.run(bounded)
