"""Load progress as an optional driver capability: llama-server's phases from its own log."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

from swapd.config.model import ModelConfig
from swapd.drivers import process
from swapd.drivers.base import LoadProgress

from .conftest import Lines

pytestmark = pytest.mark.anyio

LOADING = "0.00.008.100 I llama_model_loader: loaded meta data with 22 key-value pairs"


def fake_llama_server(tmp_path: Path) -> Path:
    """An executable named llama-server that logs like one starting to load, then waits."""
    path = tmp_path / "llama-server"
    path.write_text(
        f"#!{sys.executable}\n"
        "import time\n"
        "print('0.00.006.307 I srv    load_model: loading model tiny.gguf', flush=True)\n"
        f"print({LOADING!r}, flush=True)\n"
        "time.sleep(60)\n"
    )
    path.chmod(0o755)
    return path


def model(*cmd: str) -> ModelConfig:
    return ModelConfig(id="m", cmd=cmd, proxy="http://127.0.0.1:9", check_endpoint=None)


async def test_a_llama_server_reports_its_load_phase_and_latest_line(
    lines: Lines, tmp_path: Path
) -> None:
    driver = process.create(model(str(fake_llama_server(tmp_path)), "--port", "9"), lines)
    assert isinstance(driver, LoadProgress)
    assert driver.load_progress() == ("spawned", None)
    async with anyio.create_task_group() as tg:
        await tg.start(driver.serve)
        with anyio.fail_after(20):
            await lines.wait_for("llama_model_loader")
        assert driver.load_progress() == ("loading", LOADING)
        tg.cancel_scope.cancel()


async def test_other_engines_report_no_load_progress(lines: Lines) -> None:
    driver = process.create(model(sys.executable, "-c", "pass"), lines)
    assert isinstance(driver, LoadProgress)
    assert driver.load_progress() is None
