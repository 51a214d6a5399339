"""Scheduler behaviour with an in-memory fake driver (no processes, no HTTP)."""

from __future__ import annotations

import anyio
import pytest

from swapd.config.model import Config, GroupConfig, ModelConfig
from swapd.drivers.base import Upstream
from swapd.errors import StartFailed, TooManyRequests
from swapd.lifecycle import START_ATTEMPTS
from swapd.testing import FakeEngines
from swapd.views import State

from .kit import config, hold, running, until

pytestmark = pytest.mark.anyio


async def test_concurrent_requests_for_one_model_join_one_start() -> None:
    engines = FakeEngines(delay=0.05)
    async with running(config("a"), engines) as sched, anyio.create_task_group() as tg:
        seen: list[Upstream] = []
        for _ in range(5):
            tg.start_soon(hold, sched, "a", anyio.Event(), seen.append)
        await until(lambda: len(seen) == 5)
        assert engines.starts == ["a"]
        assert len(seen) == 5
        tg.cancel_scope.cancel()


async def test_default_group_swaps_one_model_at_a_time() -> None:
    engines = FakeEngines()
    async with running(config("a", "b"), engines) as sched:
        async with sched.lease("a"):
            pass
        async with sched.lease("b"):
            assert engines.running == {"b"}
        assert engines.stops == ["a"]


async def test_scheduler_waits_for_inflight_before_evicting() -> None:
    engines = FakeEngines()
    async with running(config("a", "b"), engines) as sched, anyio.create_task_group() as tg:
        release_a = anyio.Event()
        got: list[Upstream] = []
        tg.start_soon(hold, sched, "a", release_a, got.append)
        await until(lambda: bool(got))
        b_done = anyio.Event()

        async def want_b() -> None:
            async with sched.lease("b"):
                b_done.set()

        tg.start_soon(want_b)
        await anyio.sleep(0.3)
        assert not b_done.is_set(), "b must wait while a serves a request"
        assert engines.running == {"a"}
        release_a.set()
        with anyio.fail_after(2):
            await b_done.wait()
        assert engines.stops == ["a"]


async def test_concurrency_limit_answers_429_at_admission() -> None:
    engines = FakeEngines()
    async with running(config("a", concurrency_limit=2), engines) as sched:
        t1, t2 = sched.admit("a"), sched.admit("a")
        with pytest.raises(TooManyRequests):
            sched.admit("a")
        sched.release(t1)
        t3 = sched.admit("a")
        for t in (t2, t3):
            sched.release(t)


async def test_client_leaving_while_queued_releases_its_place() -> None:
    engines = FakeEngines(delay=0.3)
    async with running(config("a", concurrency_limit=1), engines) as sched:
        with anyio.move_on_after(0.05):
            async with sched.lease("a"):
                pass
        slot = sched.slots["a"]
        assert slot.reserved == 0 and slot.inflight == 0
        async with sched.lease("a"):  # the place is free again
            pass


async def test_failed_start_is_retried_then_reaches_every_waiter_and_next_request_retries() -> None:
    engines = FakeEngines(fail={"a"})
    async with running(config("a"), engines) as sched:
        errors: list[BaseException] = []

        async def one() -> None:
            try:
                async with sched.lease("a"):
                    pass
            except StartFailed as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(one)
        assert len(errors) == 3 and "exploded" in str(errors[0])
        assert engines.starts == ["a"] * START_ATTEMPTS
        assert sched.slots["a"].state is State.FAILED
        engines.fail.clear()
        async with sched.lease("a"):
            assert sched.slots["a"].state is State.READY
        assert engines.starts == ["a"] * (START_ATTEMPTS + 1)


async def test_engine_that_dies_is_started_again_by_the_next_request() -> None:
    engines = FakeEngines()
    async with running(config("a"), engines) as sched:
        async with sched.lease("a"):
            pass
        engines.kill["a"].set()
        await until(lambda: sched.slots["a"].state is State.STOPPED)
        assert sched.slots["a"].error == "engine exited unexpectedly"
        async with sched.lease("a"):
            pass
        assert engines.starts == ["a", "a"]


async def test_ttl_counts_from_the_end_of_the_last_request() -> None:
    engines = FakeEngines()
    async with running(config("a", ttl=0.6), engines) as sched:
        async with sched.lease("a"):
            await anyio.sleep(1.0)  # longer than the TTL, but in flight: never unloaded
            assert sched.slots["a"].state is State.READY
        await anyio.sleep(0.3)
        assert sched.slots["a"].state is State.READY
        await anyio.sleep(1.0)
        assert sched.slots["a"].state is State.STOPPED


async def test_unload_stops_a_starting_engine_and_queued_requests_start_it_again() -> None:
    engines = FakeEngines(delay=0.3)
    async with running(config("a"), engines) as sched:
        ticket = sched.admit("a")
        await until(lambda: engines.starts == ["a"])
        assert await sched.unload(None) == ["a"]
        assert engines.starts == ["a"] and not ticket.done
        with anyio.fail_after(5):
            await sched.wait(ticket)
        assert engines.starts == ["a", "a"]
        sched.release(ticket)


async def test_requests_for_loaded_model_are_batched_before_swapping_away() -> None:
    engines = FakeEngines()
    async with running(config("a", "b"), engines) as sched, anyio.create_task_group() as tg:
        order: list[str] = []
        gate = anyio.Event()
        tg.start_soon(hold, sched, "a", gate, lambda u: order.append("a"))
        await until(lambda: order == ["a"])

        async def req(model: str) -> None:
            async with sched.lease(model):
                order.append(model)
                await anyio.sleep(0.01)

        for model in ("b", "a", "b", "a"):
            tg.start_soon(req, model)
            await anyio.sleep(0.01)
        gate.set()
        await until(lambda: len(order) == 5 and sched.slots["b"].inflight == 0)
        assert order == ["a", "a", "a", "b", "b"]
        assert engines.starts == ["a", "b"]


async def test_reload_keeps_unchanged_models_running_and_restarts_changed_ones() -> None:
    engines = FakeEngines()
    groups = (GroupConfig("g", swap=False, exclusive=False, members=("a", "b")),)
    async with running(config("a", "b", groups=groups), engines) as sched:
        async with sched.lease("a"), sched.lease("b"):
            pass
        new = config("a", "b", groups=groups)
        changed = dict(new.models)
        changed["b"] = ModelConfig(id="b", cmd=("y",), group="g")
        new = Config(models=changed, groups=new.groups)
        result = sched.update(new)
        assert result["kept"] == ["a"] and result["restarted"] == ["b"]
        await until(lambda: engines.stops == ["b"])
        async with sched.lease("b"):
            assert sched.slots["b"].config.cmd == ("y",)
