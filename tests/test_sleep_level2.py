"""vLLM's sleep level 2 wakes through weights → reload_weights → KV cache, level 1 plainly.

The echo engine models vLLM's memory tags: a plain ``/wake_up`` after level 2 leaves the weights
garbage (vllm#29341), so a wrong wake sequence is visible in the answers.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from swapd.config.model import ModelConfig
from swapd.drivers.process import ProcessDriver
from swapd.echo import create_app
from swapd.echo.app import GARBAGE
from swapd.testing import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

CHAT = {"model": "v", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def engine() -> AsyncIterator[httpx.AsyncClient]:
    """The echo engine's ASGI app with its vLLM sleep API, in process."""
    transport = httpx.ASGITransport(app=create_app("v", sleep_mode=True))
    async with httpx.AsyncClient(transport=transport, base_url="http://engine") as client:
        yield client


async def answer(client: httpx.AsyncClient) -> str:
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200, r.text
    return str(r.json()["choices"][0]["message"]["content"])


async def asleep(client: httpx.AsyncClient) -> bool:
    return bool((await client.get("/is_sleeping")).json()["is_sleeping"])


# ── the echo engine's surface ───────────────────────────────────────────────────────────────


async def test_a_plain_wake_after_level_2_serves_garbage(engine: httpx.AsyncClient) -> None:
    assert (await engine.post("/sleep?level=2")).status_code == 200
    assert (await engine.post("/v1/chat/completions", json=CHAT)).status_code == 503
    assert (await engine.post("/wake_up")).status_code == 200
    assert not await asleep(engine)
    assert await answer(engine) == GARBAGE


async def test_level_2_wakes_through_weights_reload_and_kv_cache(
    engine: httpx.AsyncClient,
) -> None:
    await engine.post("/sleep?level=2")
    await engine.post("/wake_up?tags=weights")
    assert await asleep(engine)  # the KV cache still sleeps
    r = await engine.post("/collective_rpc", json={"method": "reload_weights"})
    assert r.status_code == 200 and r.json() == {"results": [None]}
    await engine.post("/wake_up?tags=kv_cache")
    assert not await asleep(engine)
    assert await answer(engine) == "echo v: hi"


async def test_weights_woken_without_reload_stay_garbage(engine: httpx.AsyncClient) -> None:
    await engine.post("/sleep?level=2")
    await engine.post("/wake_up?tags=weights")
    await engine.post("/wake_up?tags=kv_cache")
    assert not await asleep(engine)
    assert await answer(engine) == GARBAGE


async def test_reload_before_the_weights_are_mapped_fails(engine: httpx.AsyncClient) -> None:
    await engine.post("/sleep?level=2")
    r = await engine.post("/collective_rpc", json={"method": "reload_weights"})
    assert r.status_code == 500
    missing = await engine.post("/collective_rpc", json={"args": []})
    assert missing.status_code == 400 and "Missing 'method'" in missing.text


async def test_a_plain_wake_after_level_1_restores_the_weights(
    engine: httpx.AsyncClient,
) -> None:
    await engine.post("/sleep?level=1")
    await engine.post("/wake_up")
    assert not await asleep(engine)
    assert await answer(engine) == "echo v: hi"


# ── the process driver against a real echo engine ───────────────────────────────────────────


class Sink:
    """The engine's log; ``wait_for`` waits for a line (bound it with ``anyio.fail_after``)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._new = anyio.Event()

    def write(self, line: str) -> None:
        self.lines.append(line)
        self._new.set()
        self._new = anyio.Event()

    async def wait_for(self, text: str) -> None:
        while not any(text in line for line in self.lines):
            await self._new.wait()


def vllm_like(level: int) -> tuple[ModelConfig, str]:
    port = free_port()
    cmd = (sys.executable, "-m", "swapd.echo", "--port", str(port), "--model", "v", "--sleep-mode")
    url = f"http://127.0.0.1:{port}"
    model = ModelConfig(
        id="v", cmd=cmd, proxy=url, check_endpoint="/health", sleep_level=level, unload_timeout=5
    )
    return model, url


async def sleep_wake_answer(level: int) -> tuple[str, list[str]]:
    """Start the engine, sleep it at ``level``, wake it; its answer and its log."""
    model, url = vllm_like(level)
    sink = Sink()
    driver = ProcessDriver(model, sink)
    async with anyio.create_task_group() as tg:
        await tg.start(driver.serve)
        async with httpx.AsyncClient(base_url=url) as client:
            await driver.sleep(level)
            assert await asleep(client)
            await driver.wake()
            assert not await asleep(client)
            text = await answer(client)
        with anyio.fail_after(10):  # the engine's last line may still be in the pipe
            await sink.wait_for("woke kv_cache")
        tg.cancel_scope.cancel()
    return text, sink.lines


async def test_the_process_driver_wakes_level_2_with_the_reload_sequence() -> None:
    text, log = await sleep_wake_answer(2)
    assert text == "echo v: hi"
    engine = [line for line in log if line.startswith("echo engine v:")]
    assert engine[-4:] == [
        "echo engine v: sleeping (level 2)",
        "echo engine v: woke weights",
        "echo engine v: weights reloaded",
        "echo engine v: woke kv_cache",
    ]


async def test_the_process_driver_wakes_level_1_with_a_plain_wake_up() -> None:
    text, log = await sleep_wake_answer(1)
    assert text == "echo v: hi"
    engine = [line for line in log if line.startswith("echo engine v:")]
    assert engine[-2:] == [
        "echo engine v: sleeping (level 1)",
        "echo engine v: woke kv_cache,weights",
    ]
