"""Reloads through the scheduler: nothing in flight is cut, nothing wedges, nothing vanishes."""

from __future__ import annotations

import dataclasses

import anyio
import pytest

from swapd.config.model import DEFAULT_GROUP, Config, GroupConfig
from swapd.errors import NotFound
from swapd.testing import FakeEngines
from swapd.views import State

from .kit import config, hold, running

pytestmark = pytest.mark.anyio


def edited(cfg: Config, model: str, cmd: tuple[str, ...]) -> Config:
    models = dict(cfg.models)
    models[model] = dataclasses.replace(models[model], cmd=cmd)
    return dataclasses.replace(cfg, models=models)


def without(cfg: Config, *ids: str) -> Config:
    return dataclasses.replace(cfg, models={k: v for k, v in cfg.models.items() if k not in ids})


async def test_reload_lets_requests_in_flight_finish_before_restarting() -> None:
    engines = FakeEngines()
    cfg = config("a")
    async with running(cfg, engines) as sched, anyio.create_task_group() as tg:
        done = anyio.Event()
        tg.start_soon(hold, sched, "a", done, lambda u: None)
        await anyio.sleep(0.05)
        assert sched.update(edited(cfg, "a", ("y",)))["restarted"] == ["a"]
        queued = sched.admit("a")  # a new request queues for the new engine
        await anyio.sleep(0.1)
        assert engines.stops == [] and not queued.done, "the request in flight is not cut"
        done.set()
        with anyio.fail_after(2):
            await sched.wait(queued)
        assert engines.stops == ["a"] and engines.configs["a"].cmd == ("y",)
        sched.release(queued)


async def test_removing_a_model_and_its_group_while_it_stops_does_not_wedge() -> None:
    engines = FakeEngines(stop_delay=0.3)
    old = GroupConfig("old", members=("x",))
    cfg = config("x", "y", groups=(old,))
    async with running(cfg, engines) as sched:
        async with sched.lease("x"):
            pass
        new = without(cfg, "x")
        new = dataclasses.replace(new, groups={DEFAULT_GROUP: new.groups[DEFAULT_GROUP]})
        new = dataclasses.replace(
            new, models={"y": dataclasses.replace(new.models["y"], group=DEFAULT_GROUP)}
        )
        sched.update(new)  # x is stopping; its group is gone
        with anyio.fail_after(3):
            async with sched.lease("y"):
                pass
            async with sched.lease("y"):
                pass
        assert "x" not in sched.slots
        assert sched.slots["y"].reserved == 0 and sched.slots["y"].inflight == 0
        assert engines.running == {"y"}


async def test_a_model_removed_and_added_back_while_stopping_stays_available() -> None:
    engines = FakeEngines(stop_delay=0.3)
    cfg = config("a")
    async with running(cfg, engines) as sched:
        async with sched.lease("a"):
            pass
        sched.update(without(cfg, "a"))
        with pytest.raises(NotFound):
            sched.admit("a")
        sched.update(cfg)  # back before the engine finished stopping
        await anyio.sleep(0.5)
        with anyio.fail_after(2):
            async with sched.lease("a"):
                assert sched.slots["a"].state is State.READY


async def test_an_edit_reverted_while_stopping_keeps_the_original_config() -> None:
    engines = FakeEngines(stop_delay=0.3)
    cfg = config("a")
    async with running(cfg, engines) as sched:
        async with sched.lease("a"):
            pass
        sched.update(edited(cfg, "a", ("intermediate",)))
        sched.update(cfg)
        await anyio.sleep(0.5)
        async with sched.lease("a"):
            pass
        assert sched.slots["a"].config.cmd == ("x",)
        assert [c for c in (engines.configs["a"].cmd,)] == [("x",)]


async def test_requests_queued_during_a_reload_restart_are_served_by_the_new_engine() -> None:
    engines = FakeEngines(delay=0.2)
    cfg = config("a")
    async with running(cfg, engines) as sched:
        ticket = sched.admit("a")  # the engine is starting
        await anyio.sleep(0.05)
        sched.update(edited(cfg, "a", ("y",)))  # restarts it: the queued request waits
        with anyio.fail_after(3):
            await sched.wait(ticket)
        assert engines.configs["a"].cmd == ("y",)
        sched.release(ticket)
