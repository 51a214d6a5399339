"""FIFO priorities: a queued request goes before every queued request of a lower priority."""

from __future__ import annotations

import dataclasses

import anyio
import pytest

from swapd.drivers.base import Upstream
from swapd.lease import Lease
from swapd.testing import FakeEngines

from .kit import config, hold, running, until

pytestmark = pytest.mark.anyio


async def test_higher_priorities_are_served_first_and_equal_ones_in_arrival_order() -> None:
    engines = FakeEngines()
    cfg = dataclasses.replace(config("x", "a", "b", "c", "d"), priorities={"b": 5, "c": 5})
    async with running(cfg, engines) as sched, anyio.create_task_group() as tg:
        release_x = anyio.Event()
        got: list[Upstream] = []
        tg.start_soon(hold, sched, "x", release_x, got.append)
        await until(lambda: bool(got))
        # x is busy: every request below waits for it, one model at a time
        leases = {m: sched.lease(m) for m in "abcd"}
        assert {m: lease.position for m, lease in leases.items()} == {
            "b": 1,
            "c": 2,
            "a": 3,
            "d": 4,
        }
        served: list[str] = []

        async def serve(model: str, lease: Lease) -> None:
            async with lease:
                served.append(model)

        for model, lease in leases.items():
            tg.start_soon(serve, model, lease)
        release_x.set()
        await until(lambda: len(served) == 4)
        assert served == ["b", "c", "a", "d"]
        assert engines.starts == ["x", "b", "c", "a", "d"]


async def test_a_priority_does_not_overtake_a_ready_models_fast_path() -> None:
    # llama-swap's fast path: a request for the ready model is served at once even while a
    # higher-priority request waits to evict it (until the batching window runs out)
    engines = FakeEngines()
    cfg = dataclasses.replace(config("a", "b"), priorities={"b": 9})
    async with running(cfg, engines, batch_window=30.0) as sched, anyio.create_task_group() as tg:
        release_a = anyio.Event()
        got: list[Upstream] = []
        tg.start_soon(hold, sched, "a", release_a, got.append)
        await until(lambda: bool(got))
        b = sched.lease("b")
        assert b.position == 1
        second_a = sched.lease("a")
        assert second_a.done and second_a.position == 0
        second_a.release()
        release_a.set()
        async with b:
            assert engines.running == {"b"}


async def test_the_batching_window_still_holds_back_a_model_wanted_by_a_starved_request() -> None:
    engines = FakeEngines()
    cfg = dataclasses.replace(config("a", "b"), priorities={"b": 9})
    async with running(cfg, engines, batch_window=0.0) as sched, anyio.create_task_group() as tg:
        release_a = anyio.Event()
        got: list[Upstream] = []
        tg.start_soon(hold, sched, "a", release_a, got.append)
        await until(lambda: bool(got))
        b = sched.lease("b")  # starved at once (window 0): a takes no new requests
        later_a = sched.lease("a")
        assert not later_a.done and later_a.position == 2
        release_a.set()
        async with b:
            assert engines.running == {"b"}
        async with later_a:
            assert engines.starts == ["a", "b", "a"]


async def test_a_starved_request_of_lower_priority_does_not_hold_back_a_higher_one() -> None:
    # the new request for a would queue ahead of b anyway: it is served by the ready a
    engines = FakeEngines()
    cfg = dataclasses.replace(config("a", "b"), priorities={"a": 9})
    async with running(cfg, engines, batch_window=0.0) as sched, anyio.create_task_group() as tg:
        release_a = anyio.Event()
        got: list[Upstream] = []
        tg.start_soon(hold, sched, "a", release_a, got.append)
        await until(lambda: bool(got))
        b = sched.lease("b")
        later_a = sched.lease("a")
        assert later_a.done and later_a.position == 0
        later_a.release()
        release_a.set()
        async with b:
            assert engines.starts == ["a", "b"]
