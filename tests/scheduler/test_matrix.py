"""The matrix router in the scheduler: co-running sets, cheapest evictions, one log per swap."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

import anyio
import pytest

from swapd.config.matrix import build_matrix
from swapd.config.model import Config
from swapd.drivers.base import Upstream
from swapd.testing import FakeEngines

from .kit import config, hold, running, until

pytestmark = pytest.mark.anyio

SETS = {"with-pricey": "llm & pricey", "with-cheap": "llm & cheap", "pair": "cheap & pricey"}


def matrix_config(sets: Mapping[str, str], costs: Mapping[str, int], *ids: str) -> Config:
    def fail(path: object, message: str) -> None:
        raise AssertionError(message)

    cfg = config(*ids)
    matrix = build_matrix({}, costs, sets, set(ids), {}, fail, ("matrix",))
    return dataclasses.replace(cfg, router="matrix", matrix=matrix)


async def test_models_in_one_set_run_together_and_the_cheap_one_is_evicted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="swapd.scheduler")
    engines = FakeEngines()
    cfg = matrix_config(SETS, {"pricey": 10}, "llm", "cheap", "pricey", "loner")
    async with running(cfg, engines) as sched:
        async with sched.lease("cheap"), sched.lease("pricey"):
            assert engines.running == {"cheap", "pricey"}
        async with sched.lease("llm"):
            assert engines.running == {"llm", "pricey"}
            assert engines.stops == ["cheap"]
        matrix_lines = [r.getMessage() for r in caplog.records if "matrix:" in r.getMessage()]
        assert matrix_lines[-1] == "matrix: model=llm set=with-pricey evict=[cheap] cost=1"
        assert len([line for line in matrix_lines if "model=llm" in line]) == 1


async def test_a_model_in_no_set_runs_alone() -> None:
    engines = FakeEngines()
    cfg = matrix_config(SETS, {}, "llm", "cheap", "pricey", "loner")
    async with running(cfg, engines) as sched:
        async with sched.lease("cheap"), sched.lease("pricey"):
            pass
        async with sched.lease("loner"):
            assert engines.running == {"loner"}
            assert sorted(engines.stops) == ["cheap", "pricey"]


async def test_a_busy_model_is_not_evicted_even_when_cheapest() -> None:
    engines = FakeEngines()
    cfg = matrix_config(SETS, {"pricey": 10}, "llm", "cheap", "pricey")
    async with running(cfg, engines) as sched, anyio.create_task_group() as tg:
        release_cheap = anyio.Event()
        got: list[Upstream] = []
        tg.start_soon(hold, sched, "cheap", release_cheap, got.append)
        await until(lambda: bool(got))
        async with sched.lease("pricey"):
            pass
        llm = sched.lease("llm")
        assert not llm.done and engines.running == {"cheap", "pricey"}
        release_cheap.set()
        async with llm:
            assert engines.running == {"llm", "pricey"}
