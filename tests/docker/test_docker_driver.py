"""The docker driver against real Docker daemons (see conftest.py): lifecycle and bad input."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest
from dockerlab import IMAGE, Daemon, echo_block, mounts

from swapd.config import load_text
from swapd.errors import StartFailed
from swapd.extensions import standard
from swapd.scheduler import Scheduler
from swapd.views import State

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


def nodes_yaml(**nodes: tuple[str, str | None]) -> str:
    lines = ["nodes:"]
    for name, (endpoint, memory) in nodes.items():
        gpus = f", gpus: [{{index: 0, memory: {memory}}}]" if memory else ""
        lines.append(f"  {name}: {{docker: '{endpoint}'{gpus}}}")
    return "\n".join(lines) + "\n"


@asynccontextmanager
async def running(text: str) -> AsyncIterator[Scheduler]:
    scheduler = Scheduler(load_text(text, extensions=standard()))
    async with anyio.create_task_group() as tg:
        await tg.start(scheduler.run)
        try:
            yield scheduler
        finally:
            await scheduler.shutdown()
            tg.cancel_scope.cancel()


async def chat(base_url: str, text: str = "hi") -> str:
    async with httpx.AsyncClient() as client:
        r = await client.post(
            f"{base_url}/v1/chat/completions",
            json={"model": "x", "messages": [{"role": "user", "content": text}]},
        )
        r.raise_for_status()
        return str(r.json()["choices"][0]["message"]["content"])


async def test_start_serve_stop(node_a: Daemon, start_port: int) -> None:
    text = f"""
healthCheckTimeout: 30
startPort: {start_port}
unloadTimeout: 5
{nodes_yaml(a=(node_a.endpoint, None))}
models:
  one:
    driver: docker
    docker: {echo_block("one")}
"""
    async with running(text) as scheduler:
        async with scheduler.lease("one") as upstream:
            assert upstream.container == f"swapd-one-{start_port}"
            assert upstream.node == "a"
            assert await chat(upstream.base_url, "hello") == "echo one: hello"
            [c] = node_a.containers()
            assert c.name == f"swapd-one-{start_port}"
            assert c.labels["swapd.model"] == "one"
            assert c.labels["swapd.node"] == "a"
            assert c.labels["swapd.config-hash"]
            assert c.labels["swapd.instance"]
            info = scheduler.snapshot()[0]
            assert info["node"] == "a" and info["container"] == c.name
        ring = scheduler.ring("one")
        assert ring is not None
        await anyio.sleep(0.2)
        assert any("listening on" in line for line in ring.tail(50)), ring.tail(50)
        assert await scheduler.unload(["one"]) == ["one"]
        assert node_a.containers() == []


async def test_missing_image_names_image_and_node(node_a: Daemon, start_port: int) -> None:
    text = f"""
startPort: {start_port}
{nodes_yaml(a=(node_a.endpoint, None))}
models:
  m:
    driver: docker
    docker: {echo_block("m", image="swapd-test/nope:7")}
"""
    async with running(text) as scheduler:
        with pytest.raises(StartFailed) as info:
            async with scheduler.lease("m"):
                pass
        assert "'swapd-test/nope:7' is not present on node a" in info.value.message
        assert node_a.endpoint in info.value.message
        assert node_a.containers() == []


async def test_container_exiting_while_starting_shows_last_lines(
    node_a: Daemon, start_port: int
) -> None:
    code = "print('loading weights'); print('CUDA error: out of memory'); raise SystemExit(3)"
    block = json.dumps(
        {
            "image": IMAGE,
            "command": [sys.executable, "-c", code],
            "volumes": mounts(),
            "host_port": "${PORT}",
        }
    )
    text = f"""
startPort: {start_port}
{nodes_yaml(a=(node_a.endpoint, None))}
models:
  crash:
    driver: docker
    docker: {block}
"""
    async with running(text) as scheduler:
        with pytest.raises(StartFailed) as info:
            async with scheduler.lease("crash"):
                pass
        message = info.value.message
        assert "exited while starting with code 3" in message
        assert "CUDA error: out of memory" in message
        assert scheduler.slots["crash"].state is State.FAILED
        assert node_a.containers() == []


async def test_port_conflict(node_a: Daemon, start_port: int) -> None:
    text = f"""
startPort: {start_port}
{nodes_yaml(a=(node_a.endpoint, None))}
models:
  p:
    driver: docker
    docker: {echo_block("p")}
"""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", start_port))
        squatter.listen(1)
        async with running(text) as scheduler:
            with pytest.raises(StartFailed) as info:
                async with scheduler.lease("p"):
                    pass
            assert f"port {start_port} of model p" in info.value.message
            assert "already in use" in info.value.message
            assert node_a.containers() == []


async def test_unreachable_daemon_fails_its_models_only(
    node_a: Daemon, start_port: int, tmp_path: object
) -> None:
    dead = "unix:///tmp/swapd-no-such-daemon.sock"
    text = f"""
startPort: {start_port}
{nodes_yaml(a=(node_a.endpoint, None), dead=(dead, None))}
groups:
  all: {{swap: false, members: [lost, fine]}}
models:
  lost:
    driver: docker
    node: dead
    docker: {echo_block("lost")}
  fine:
    driver: docker
    node: a
    docker: {echo_block("fine")}
"""
    async with running(text) as scheduler:
        with pytest.raises(StartFailed) as info:
            async with scheduler.lease("lost"):
                pass
        assert dead in info.value.message
        assert "unreachable" in info.value.message
        async with scheduler.lease("fine") as upstream:
            assert await chat(upstream.base_url) == "echo fine: hi"


async def test_recipe_model_end_to_end(
    node_a: Daemon, start_port: int, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recipe (here: a fake vLLM, the echo engine with its sleep API) → container → requests."""
    from pathlib import Path

    recipes = Path(str(tmp_path)) / "recipes" / "test"
    recipes.mkdir(parents=True)
    (recipes / "fake-vllm.yaml").write_text(
        json.dumps(
            {
                "engine": "vllm",
                "description": "the echo engine speaking vLLM's sleep API",
                "image": IMAGE,
                "model": "org/fake-7b",
                "served_model_name": "fake-7b",
                "entrypoint": [sys.executable, "-m", "swapd.echo"],
                "args": ["--port", "{port}", "--model", "{served_model_name}", "{sleep_flag}"],
                "defaults": {"sleep_flag": "--sleep-mode"},
                "env": {"HOME": "/tmp"},
                "mounts": mounts(),
                "resources": {"gpu_memory": "4GiB"},
                "health": "/health",
                "readiness_timeout": 30,
                "sleep": {"levels": [1]},
            }
        )
    )
    monkeypatch.setenv("SWAPD_RECIPES", str(recipes.parent))
    text = f"""
startPort: {start_port}
{nodes_yaml(a=(node_a.endpoint, "8GiB"))}
models:
  fake:
    recipe: {{name: test/fake-vllm, set: {{served_model_name: my-fake}}}}
    sleep: {{level: 1}}
"""
    async with running(text) as scheduler:
        model = scheduler.config.models["fake"]
        assert model.recipe == "test/fake-vllm" and model.sleep_level == 1
        async with scheduler.lease("fake") as upstream:
            assert await chat(upstream.base_url, "yo") == "echo my-fake: yo"
            [c] = node_a.containers()
            assert c.attrs["Config"]["User"] == f"{os.getuid()}:{os.getgid()}"
            assert c.attrs["HostConfig"]["NetworkMode"] == "host"
            assert c.attrs["Config"]["Env"].count("HOME=/tmp") == 1
        await scheduler.unload(None)
    assert node_a.containers() == []
