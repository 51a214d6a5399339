"""The example out-of-tree driver (plugins/swapd-driver-inproc): install, discover, serve."""

from __future__ import annotations

import importlib
import importlib.util
import site
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import anyio
import httpx
import pytest

from swapd.config.model import ModelConfig
from swapd.drivers.base import Upstream
from swapd.errors import StartFailed
from swapd.testing import free_port

PLUGIN = Path(__file__).resolve().parent.parent / "plugins" / "swapd-driver-inproc"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def installed() -> None:
    """Install the plugin (editable) into the running venv and make it importable here."""
    if (
        importlib.util.find_spec("hatchling") is None
        or importlib.util.find_spec("editables") is None
    ):
        _pip("hatchling", "editables")
    _pip("--no-deps", "--no-build-isolation", "-e", str(PLUGIN))
    site.addsitedir(sysconfig.get_paths()["purelib"])  # pick up the new .pth file
    importlib.invalidate_caches()


class _Sink:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, line: str) -> None:
        self.lines.append(line)


def _port_closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return True
    return False


def test_registry_finds_entry_point(installed: None) -> None:
    # In a fresh interpreter, as swapd itself would see it.
    code = (
        "from swapd.drivers import registry; spec = registry.load('inproc'); "
        "print(spec.name, type(spec).__name__, 'inproc' in registry.available())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["inproc", "DriverSpec", "True"]


@pytest.mark.anyio
async def test_serve_and_cancel(installed: None) -> None:
    from swapd.drivers import registry

    spec = registry.load("inproc")
    import swapd_driver_inproc

    assert spec is swapd_driver_inproc.SPEC
    port = free_port()
    model = ModelConfig(id="tiny", cmd=(), port=port, driver="inproc")
    sink = _Sink()
    driver = spec.factory(model, sink)

    async with anyio.create_task_group() as tg:
        with anyio.fail_after(10):
            upstream = await tg.start(driver.serve)
        assert isinstance(upstream, Upstream)
        assert upstream.base_url == f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=upstream.base_url) as client:
            health = await client.get("/health")
            assert health.status_code == 200
            chat = await client.post(
                "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
            )
            assert chat.json()["choices"][0]["message"]["content"] == "echo tiny: hi"
            crash = await client.post("/crash")  # must not take swapd down with it
            assert crash.status_code == 403
        tg.cancel_scope.cancel()

    assert _port_closed(port)
    assert any("serving swapd.echo:create_app" in line for line in sink.lines), sink.lines
    assert any("stopped" in line for line in sink.lines), sink.lines


@pytest.mark.anyio
async def test_custom_app_and_free_port(installed: None) -> None:
    from swapd.drivers import registry

    model = ModelConfig(
        id="custom",
        cmd=(),
        driver="inproc",
        options={"app": "swapd.echo:app"},  # a ready ASGI app, not a factory
    )
    driver = registry.load("inproc").factory(model, _Sink())
    async with anyio.create_task_group() as tg:
        upstream: Upstream = await tg.start(driver.serve)
        port = int(upstream.base_url.rsplit(":", 1)[1])
        async with httpx.AsyncClient() as client:
            resp = await client.get(f"{upstream.base_url}/v1/models")
        assert resp.json()["data"][0]["id"] == "echo"
        tg.cancel_scope.cancel()
    assert _port_closed(port)


@pytest.mark.anyio
async def test_start_failures(installed: None) -> None:
    from swapd.drivers import registry

    spec = registry.load("inproc")
    bad = ModelConfig(id="bad", cmd=(), driver="inproc", options={"app": "no.such.module:app"})
    with pytest.raises(StartFailed, match="cannot load"):
        await spec.factory(bad, _Sink()).serve(task_status=anyio.TASK_STATUS_IGNORED)

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = ModelConfig(id="busy", cmd=(), driver="inproc", port=port)
        with pytest.raises(StartFailed, match="cannot listen"):
            await spec.factory(busy, _Sink()).serve(task_status=anyio.TASK_STATUS_IGNORED)


def test_swapd_serve_runs_a_model_on_the_installed_plugin_driver(installed: None) -> None:
    from swapd.testing import run_swapd

    port = free_port()
    config = f"""
models:
  tiny:
    driver: inproc
    proxy: http://127.0.0.1:{port}
    inproc:
      kwargs: {{model: tiny}}
"""
    with run_swapd(config) as swapd:
        body = {"model": "tiny", "messages": [{"role": "user", "content": "plug"}]}
        r = httpx.post(f"{swapd.url}/v1/chat/completions", json=body, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "echo tiny: plug"
        assert int(r.headers["x-engine-pid"]) == swapd.pid  # served inside swapd itself
        httpx.post(f"{swapd.url}/api/models/unload/tiny", timeout=30)
        assert _port_closed(port)
