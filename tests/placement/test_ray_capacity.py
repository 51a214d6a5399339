"""A Ray model whose actor Ray cannot place on the node placement chose ("no capacity on …"):
the scheduler retries once, elsewhere when another node has room, else on the whole of that
node, evicting its idle models by the usual rules; a second refusal fails the requests."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import pytest

from swapd.assignment import Assignment
from swapd.config.model import ModelConfig, Resources
from swapd.config.options import RayOptions
from swapd.drivers.base import Upstream
from swapd.errors import NoCapacity, StartFailed
from swapd.hardware import Device, Source
from swapd.inventory import NodeReading, Reading
from swapd.scheduler import Scheduler
from swapd.testing import FakeEngines

from .test_scheduler_placement import config, running, use

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


def cluster(nodes: Sequence[str], engines: Engines) -> AbstractAsyncContextManager[Scheduler]:
    """A scheduler over Ray nodes ``nodes`` with two Ray models, resident and new."""
    cfg = config(ray_model("resident"), ray_model("new"))
    inventory: Any = RayNodes(nodes)
    return running(cfg, FakeEngines(), inventory, factory=engines.factory)


def node_of(sched: Scheduler, model_id: str) -> str | None:
    a = sched.slots[model_id].assignment
    return a.node if a else None


@pytest.mark.anyio
async def test_a_refused_start_goes_to_another_node_with_room_evicting_nothing() -> None:
    engines = Engines()
    async with cluster(["n1", "n2"], engines) as sched:
        await use(sched, "resident")
        first = node_of(sched, "resident")
        await use(sched, "new")  # best fit picks the resident's node; Ray says its GPU is taken
        other = "n2" if first == "n1" else "n1"
        assert engines.attempts[1:] == [("new", first), ("new", other)]
        assert node_of(sched, "new") == other and engines.stops == []


@pytest.mark.anyio
async def test_a_refused_start_on_the_only_node_evicts_its_idle_models_and_retries_once() -> None:
    engines = Engines()
    async with cluster(["n1"], engines) as sched:
        await use(sched, "resident")
        await use(sched, "new")
        assert engines.attempts == [("resident", "n1"), ("new", "n1"), ("new", "n1")]
        assert engines.stops == ["resident"] and node_of(sched, "new") == "n1"


@pytest.mark.anyio
async def test_a_second_refusal_fails_the_queued_requests_with_rays_reason() -> None:
    engines = Engines(refusing={"n1"})
    async with cluster(["n1"], engines) as sched:
        with pytest.raises(StartFailed, match="no capacity on node n1"):
            await use(sched, "new")
        assert engines.attempts == [("new", "n1"), ("new", "n1")]
