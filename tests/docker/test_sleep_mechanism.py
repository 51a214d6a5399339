"""The scheduler's generic sleep/wake mechanism with an in-memory driver (no daemon needed)."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
import pytest
from anyio.abc import TaskStatus

from swapd.config.model import Config, GroupConfig, ModelConfig
from swapd.drivers.base import Driver, LogSink, Upstream
from swapd.scheduler import Scheduler
from swapd.views import State

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


@dataclass
class Engines:
    fail_sleep: bool = False
    calls: list[str] = field(default_factory=list)

    def factory(self, model: ModelConfig, sink: LogSink) -> Driver:
        engines = self

        class _Driver:
            async def serve(self, *, task_status: TaskStatus[Upstream]) -> None:
                engines.calls.append(f"start {model.id}")
                try:
                    task_status.started(Upstream(f"http://{model.id}"))
                    await anyio.sleep_forever()
                finally:
                    engines.calls.append(f"stop {model.id}")

            async def sleep(self, level: int) -> None:
                engines.calls.append(f"sleep {model.id} {level}")
                if engines.fail_sleep:
                    raise RuntimeError("no")

            async def wake(self) -> None:
                engines.calls.append(f"wake {model.id}")

        return _Driver()


def config(ttl: float = 0.0) -> Config:
    models = {
        "s": ModelConfig(id="s", cmd=("x",), sleep_level=2, ttl=ttl),
        "t": ModelConfig(id="t", cmd=("x",)),
    }
    return Config(models=models, groups={"(default)": GroupConfig("(default)", members=("s", "t"))})


async def run(scheduler: Scheduler, body: object) -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(scheduler.run)
        await body  # type: ignore[misc]
        await scheduler.shutdown()
        tg.cancel_scope.cancel()


async def test_ttl_sleeps_then_request_wakes_and_unload_stops() -> None:
    engines = Engines()
    scheduler = Scheduler(config(ttl=0.2), driver_factory=engines.factory)

    asleep = anyio.Event()
    scheduler.listeners.append(lambda slot: slot.state is State.SLEEPING and asleep.set())

    async def body() -> None:
        async with scheduler.lease("s"):
            pass
        with anyio.fail_after(5):
            await asleep.wait()  # the TTL (0.2 s) put it to sleep
        async with scheduler.lease("s"):
            assert scheduler.slots["s"].state is State.READY
        assert engines.calls == ["start s", "sleep s 2", "wake s"]
        await scheduler.unload(["s"])
        assert scheduler.slots["s"].state is State.STOPPED
        assert engines.calls[-1] == "stop s"

    await run(scheduler, body())


async def test_failed_sleep_stops_the_engine() -> None:
    engines = Engines(fail_sleep=True)
    scheduler = Scheduler(config(), driver_factory=engines.factory)

    async def body() -> None:
        async with scheduler.lease("s"):
            pass
        async with scheduler.lease("t"):  # evicts s: the sleep fails, so s is stopped
            assert scheduler.slots["s"].state is State.STOPPED
        assert engines.calls[:4] == ["start s", "sleep s 2", "stop s", "start t"]

    await run(scheduler, body())
