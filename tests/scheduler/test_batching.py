"""Bounded batching with slow engines: a swap is won once, not thrashed away."""

from __future__ import annotations

import random

import anyio
import anyio.lowlevel
import pytest

from swapd.testing import FakeEngines

from .kit import config, running

pytestmark = pytest.mark.anyio


async def test_alternating_clients_with_slow_engines_cost_two_starts_not_twelve() -> None:
    # 2.5 s engines, 12 concurrent clients alternating a b a b …: the requests that queued for
    # b while a was starting must not count as starved the moment a is ready.
    engines = FakeEngines(delay=2.5)
    async with running(config("a", "b"), engines) as sched:
        served: list[str] = []

        async def client(model: str) -> None:
            async with sched.lease(model):
                served.append(model)
                await anyio.sleep(0.05)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(12):
                    tg.start_soon(client, "ab"[i % 2])
                    await anyio.lowlevel.checkpoint()
        assert engines.starts == ["a", "b"]
        assert served == ["a"] * 6 + ["b"] * 6


async def test_a_model_busy_past_the_window_yields_to_a_starved_one() -> None:
    # a is ready and serves a steady stream; b waits. After the batch window (counted from a
    # being ready) new a requests are held back, a drains and b gets its turn.
    engines = FakeEngines(delay=0.01)
    async with running(config("a", "b"), engines, batch_window=0.3) as sched:
        order: list[str] = []
        stop = anyio.Event()

        async def stream_of_a() -> None:
            while not stop.is_set():
                async with sched.lease("a"):
                    order.append("a")
                    await anyio.sleep(0.02)

        async with anyio.create_task_group() as tg:
            tg.start_soon(stream_of_a)
            tg.start_soon(stream_of_a)
            await anyio.sleep(0.1)
            with anyio.fail_after(5):
                async with sched.lease("b"):
                    order.append("b")
            stop.set()
        assert "b" in order
        assert engines.starts[:2] == ["a", "b"]


@pytest.mark.soak
async def test_request_storm_over_three_models_batches_into_few_starts() -> None:
    # 200 requests over 3 models of one swap group, 0.5 s engines, arriving in random order
    # over ~1 s: each swap serves a batch, so starts stay a small multiple of the models.
    engines = FakeEngines(delay=0.5)
    rng = random.Random(7)
    async with running(config("a", "b", "c", concurrency_limit=200), engines) as sched:

        async def one(model: str) -> None:
            async with sched.lease(model):
                await anyio.sleep(0.01)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for _ in range(200):
                    tg.start_soon(one, rng.choice("abc"))
                    await anyio.sleep(0.005)
    assert len(engines.starts) <= 9, engines.starts
