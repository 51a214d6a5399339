"""A Ray model whose actor Ray cannot place on the node placement chose ("no capacity on …"):
the scheduler retries once, elsewhere when another node has room, else on the whole of that
node, evicting its idle models by the usual rules; a second refusal fails the requests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from swapd.assignment import Assignment
from swapd.config.model import (
    DEFAULT_GROUP,
    Config,
    GroupConfig,
    ModelConfig,
    PlacementConfig,
    Resources,
)
from swapd.config.options import RayOptions
from swapd.drivers.base import Upstream
from swapd.errors import NoCapacity, StartFailed
from swapd.hardware import Device, Source
from swapd.inventory import NodeReading, Reading
from swapd.scheduler import Scheduler

GiB = 1 << 30


class RayNodes:
    """Ray nodes of one 80 GiB GPU each."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = names

    async def read(self, *, refresh: bool = False) -> Reading:
        gpu = Device(0, "nvidia", "Fake GPU", 80 * GiB, 80 * GiB)
        one = {"GPU": 1.0}
        nodes = tuple(
            NodeReading(
                n, (gpu,), None, (Source("fake", True),), False, cluster="ray", resources=one
            )
            for n in self.names
        )
        return Reading(time.time(), nodes)

    async def usage(self, node: str, pids: Sequence[int]) -> dict[int, int]:
        return {}


class Engines:
    """Ray-like drivers on nodes of one Ray GPU each: a start on a node whose GPU an engine
    holds (or on a node in ``refusing``) is refused as Ray refuses it."""

    def __init__(self, refusing: set[str] | None = None) -> None:
        self.refusing = refusing or set()
        self.holding: dict[str, str] = {}  # node -> the model holding its GPU
        self.attempts: list[tuple[str, str]] = []  # (model, node)
        self.stops: list[str] = []

    def factory(self, model: ModelConfig, sink: Any) -> Any:
        engines = self

        class Driver:
            node = ""

            def assign(self, assignment: Assignment) -> None:
                self.node = assignment.node

            async def serve(self, *, task_status: anyio.abc.TaskStatus[Upstream]) -> None:
                engines.attempts.append((model.id, self.node))
                if self.node in engines.refusing or self.node in engines.holding:
                    raise NoCapacity(model.id, f"no capacity on node {self.node}: GPU taken")
                engines.holding[self.node] = model.id
                task_status.started(Upstream(f"http://{model.id}"))
                try:
                    await anyio.sleep_forever()
                finally:
                    del engines.holding[self.node]
                    engines.stops.append(model.id)

        return Driver()


def ray_model(id: str) -> ModelConfig:
    return ModelConfig(
        id=id,
        cmd=("engine", id),
        driver="ray",
        options=RayOptions(resources={"GPU": 1}),
        resources=Resources(memory=10 * GiB),
    )


@asynccontextmanager
async def running(nodes: Sequence[str], engines: Engines) -> AsyncIterator[Scheduler]:
    models = {m: ray_model(m) for m in ("resident", "new")}
    config = Config(
        models=models,
        groups={DEFAULT_GROUP: GroupConfig(DEFAULT_GROUP, members=tuple(models))},
        placement=PlacementConfig(headroom=0),
    )
    sched = Scheduler(
        config, driver_factory=engines.factory, batch_window=0.0, inventory=RayNodes(nodes)
    )
    async with anyio.create_task_group() as tg:
        await tg.start(sched.run)
        yield sched
        await sched.shutdown()
        tg.cancel_scope.cancel()


async def use(sched: Scheduler, model_id: str) -> None:
    with anyio.fail_after(10):
        async with sched.lease(model_id):
            pass


def node_of(sched: Scheduler, model_id: str) -> str | None:
    a = sched.slots[model_id].assignment
    return a.node if a else None


@pytest.mark.anyio
async def test_a_refused_start_goes_to_another_node_with_room_evicting_nothing() -> None:
    engines = Engines()
    async with running(["n1", "n2"], engines) as sched:
        await use(sched, "resident")
        first = node_of(sched, "resident")
        await use(sched, "new")  # best fit picks the resident's node; Ray says its GPU is taken
        other = "n2" if first == "n1" else "n1"
        assert engines.attempts[1:] == [("new", first), ("new", other)]
        assert node_of(sched, "new") == other and engines.stops == []


@pytest.mark.anyio
async def test_a_refused_start_on_the_only_node_evicts_its_idle_models_and_retries_once() -> None:
    engines = Engines()
    async with running(["n1"], engines) as sched:
        await use(sched, "resident")
        await use(sched, "new")
        assert engines.attempts == [("resident", "n1"), ("new", "n1"), ("new", "n1")]
        assert engines.stops == ["resident"] and node_of(sched, "new") == "n1"


@pytest.mark.anyio
async def test_a_second_refusal_fails_the_queued_requests_with_rays_reason() -> None:
    engines = Engines(refusing={"n1"})
    async with running(["n1"], engines) as sched:
        with pytest.raises(StartFailed, match="no capacity on node n1"):
            await use(sched, "new")
        assert engines.attempts == [("new", "n1"), ("new", "n1")]
