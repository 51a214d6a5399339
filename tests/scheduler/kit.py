"""Shared pieces of the scheduler tests: configs, a running scheduler, a held lease."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio

from swapd.config.model import DEFAULT_GROUP, Config, GroupConfig, ModelConfig
from swapd.drivers.base import Upstream
from swapd.scheduler import Scheduler
from swapd.testing import FakeEngines


def config(*ids: str, groups: tuple[GroupConfig, ...] = (), **per_model: object) -> Config:
    membership = {m: g.name for g in groups for m in g.members}
    models = {
        i: ModelConfig(id=i, cmd=("x",), group=membership.get(i, DEFAULT_GROUP), **per_model)  # type: ignore[arg-type]
        for i in ids
    }
    all_groups = {DEFAULT_GROUP: GroupConfig(DEFAULT_GROUP), **{g.name: g for g in groups}}
    return Config(models=models, groups=all_groups)


@asynccontextmanager
async def running(
    cfg: Config, engines: FakeEngines, *, batch_window: float = 2.0
) -> AsyncIterator[Scheduler]:
    sched = Scheduler(cfg, driver_factory=engines.factory, batch_window=batch_window)
    async with anyio.create_task_group() as tg:
        await tg.start(sched.run)
        yield sched
        await sched.shutdown()
        tg.cancel_scope.cancel()


async def hold(
    sched: Scheduler, model: str, until: anyio.Event, got: Callable[[Upstream], None]
) -> None:
    async with sched.lease(model) as upstream:
        got(upstream)
        await until.wait()


async def until(condition: Callable[[], bool], limit: float = 5.0) -> None:
    """Wait until ``condition()`` holds, re-checked every few ms; fails after ``limit`` s.

    For conditions on the test's own records (what clients saw, what engines did), which no
    single event announces; never a fixed sleep standing in for "long enough"."""
    with anyio.fail_after(limit):
        while not condition():  # noqa: ASYNC110 (any condition, bounded polling)
            await anyio.sleep(0.005)
