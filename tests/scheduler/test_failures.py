"""Honest failures: retries for what may pass, at once for what will repeat, and shutdown."""

from __future__ import annotations

import anyio
import pytest

from swapd.errors import ShuttingDown, StartFailed
from swapd.testing import FakeEngines
from swapd.views import State

from .kit import config, hold, running

pytestmark = pytest.mark.anyio


async def test_queued_requests_survive_an_engine_crash_while_starting() -> None:
    engines = FakeEngines(flaky={"a": 1})
    async with running(config("a"), engines) as sched:
        with anyio.fail_after(5):
            async with sched.lease("a"):
                assert sched.slots["a"].state is State.READY
        assert engines.starts == ["a", "a"]


async def test_a_start_that_will_fail_again_fails_queued_requests_at_once() -> None:
    engines = FakeEngines(missing={"b"})
    async with running(config("b"), engines) as sched:
        with anyio.fail_after(2), pytest.raises(StartFailed, match="model file missing"):
            async with sched.lease("b"):
                pass
        assert engines.starts == []  # the pre-flight check refused it: nothing was spawned
        assert sched.slots["b"].state is State.FAILED


async def test_a_start_bound_to_fail_does_not_evict_the_serving_model() -> None:
    engines = FakeEngines(missing={"b"})
    async with running(config("a", "b"), engines) as sched:
        async with sched.lease("a"):
            pass
        with pytest.raises(StartFailed):
            async with sched.lease("b"):
                pass
        assert sched.slots["a"].state is State.READY
        assert engines.stops == [] and engines.running == {"a"}


async def test_shutdown_interrupts_a_pending_start_at_once() -> None:
    engines = FakeEngines(delay=60)
    async with running(config("a"), engines) as sched:
        ticket = sched.admit("a")
        await anyio.sleep(0.05)
        with anyio.fail_after(2):
            await sched.shutdown()
            with pytest.raises(ShuttingDown):
                await sched.wait(ticket)
        sched.release(ticket)
        assert sched.slots["a"].state is State.STOPPED


async def test_unload_lets_requests_in_flight_finish_first() -> None:
    engines = FakeEngines()
    async with running(config("a"), engines) as sched, anyio.create_task_group() as tg:
        done = anyio.Event()
        tg.start_soon(hold, sched, "a", done, lambda u: None)
        await anyio.sleep(0.05)
        unloaded: list[list[str]] = []
        finished = anyio.Event()

        async def unload() -> None:
            unloaded.append(await sched.unload(["a"]))
            finished.set()

        tg.start_soon(unload)
        await anyio.sleep(0.2)
        assert engines.running == {"a"} and not unloaded, "the request in flight is not cut"
        done.set()
        with anyio.fail_after(2):
            await finished.wait()
        assert unloaded == [["a"]] and engines.stops == ["a"]
