"""The process driver's pre-flight check: starts bound to fail are refused before anything runs."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import anyio
import pytest

from swapd.config.model import ModelConfig
from swapd.drivers import process
from swapd.drivers.base import Preflight
from swapd.drivers.process import ProcessDriver
from swapd.errors import StartFailed
from swapd.testing import free_port

from .conftest import Lines

pytestmark = pytest.mark.anyio


def model(*cmd: str, port: int | None = None) -> ModelConfig:
    return ModelConfig(
        id="m",
        cmd=cmd,
        proxy=f"http://127.0.0.1:{port or 9}",
        port=port,
        check_endpoint=None,
    )


async def refused(driver: Preflight) -> str:
    with pytest.raises(StartFailed) as caught:
        await driver.preflight()
    assert caught.value.permanent
    return caught.value.message


def script(path: Path, text: str, mode: int = 0o755) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


async def test_a_runnable_command_passes(lines: Lines) -> None:
    driver = ProcessDriver(model(sys.executable, "-c", "pass"), lines)
    assert isinstance(driver, Preflight)
    await driver.preflight()


async def test_an_empty_command_is_refused(lines: Lines) -> None:
    assert await refused(ProcessDriver(model(), lines)) == "model m: empty command"


async def test_a_program_not_on_path_is_refused_by_name(lines: Lines) -> None:
    message = await refused(ProcessDriver(model("no-such-engine-xyz", "--port", "1"), lines))
    assert message == "model m: program 'no-such-engine-xyz' not found on PATH"


async def test_a_missing_or_non_executable_program_path_is_refused(
    lines: Lines, tmp_path: Path
) -> None:
    missing = tmp_path / "gone"
    assert await refused(ProcessDriver(model(str(missing)), lines)) == (
        f"model m: program '{missing}' does not exist"
    )
    plain = script(tmp_path / "engine.sh", "#!/bin/sh\n", mode=0o644)
    assert await refused(ProcessDriver(model(str(plain)), lines)) == (
        f"model m: program '{plain}' is not an executable file"
    )


async def test_the_models_port_held_by_another_program_is_refused(lines: Lines) -> None:
    port = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        message = await refused(ProcessDriver(model(sys.executable, port=port), lines))
    assert message == f"port {port} of model m is already in use by another program"


async def test_a_llama_server_whose_gguf_file_is_missing_is_refused(
    lines: Lines, tmp_path: Path
) -> None:
    server = script(tmp_path / "llama-server", "#!/bin/sh\nexit 0\n")
    gguf = tmp_path / "nope.gguf"
    driver = process.create(model(str(server), "-m", str(gguf), "--port", "9"), lines)
    assert await refused(driver) == f"model m: GGUF file {gguf} does not exist"


async def test_serve_refuses_before_spawning(lines: Lines, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    cmd = model("no-such-engine-xyz", "-c", f"open({str(marker)!r}, 'w')")
    with pytest.raises(StartFailed) as caught:
        await ProcessDriver(cmd, lines).serve(task_status=anyio.TASK_STATUS_IGNORED)
    assert caught.value.permanent
    assert not marker.exists()


async def test_a_program_that_cannot_be_executed_fails_permanently(
    lines: Lines, tmp_path: Path
) -> None:
    # Passes the pre-flight check (an executable file) but exec() fails: no such interpreter.
    broken = script(tmp_path / "engine", "#!/nonexistent/interpreter\n")
    with pytest.raises(StartFailed) as caught:
        await ProcessDriver(model(str(broken)), lines).serve(task_status=anyio.TASK_STATUS_IGNORED)
    assert caught.value.permanent
    assert caught.value.message.startswith(f"failed to start command '{broken}'")
