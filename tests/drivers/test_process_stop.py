"""Stopping an engine: graceful, then SIGKILL, and never an endless wait."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import anyio
import pytest

from swapd.config.model import ModelConfig
from swapd.drivers import child
from swapd.drivers.process import ProcessDriver
from swapd.testing import pids_alive

from .conftest import Lines

pytestmark = pytest.mark.anyio

IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('up', flush=True); time.sleep(60)"
)


def records(state_dir: Path) -> list[str]:
    return sorted(p.name for p in (state_dir / "engines").iterdir())


def kill_and_reap(pid: int) -> None:
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while child.reap_stragglers() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert child.reap_stragglers() == 0


async def test_an_engine_that_outlives_sigkill_is_logged_and_given_up_on(
    lines: Lines, monkeypatch: pytest.MonkeyPatch, state_dir: Path
) -> None:
    # A process in uninterruptible sleep ignores SIGKILL until it wakes; no test can put one
    # there, so the kernel's refusal is simulated: SIGKILL to the group is not delivered.
    held: list[int] = []

    def kill_group(pid: int, sig: int) -> None:
        if sig == signal.SIGKILL:
            held.append(pid)
        else:
            os.killpg(pid, sig)

    monkeypatch.setattr(child, "kill_group", kill_group)
    monkeypatch.setattr(child, "KILL_WAIT", 0.2)
    model = ModelConfig(
        id="stuck",
        cmd=(sys.executable, "-c", IGNORES_SIGTERM),
        proxy="http://127.0.0.1:9",
        check_endpoint=None,
        unload_timeout=0.2,
    )
    with anyio.fail_after(20):  # the stop must not wait for the process
        async with anyio.create_task_group() as tg:
            upstream = await tg.start(ProcessDriver(model, lines).serve)
            await lines.wait_for("up")
            tg.cancel_scope.cancel()
    pid = upstream.pid
    try:
        assert held == [pid]
        assert f"[swapd] stuck (pid {pid}) did not exit after SIGKILL (0.2s); giving up" in (
            lines.lines
        )
        assert pids_alive([pid]) == [pid]
        # Its pid file stays, so that the next swapd kills it if it ever can.
        assert records(state_dir) == [f"{pid}.json"]
    finally:
        await anyio.to_thread.run_sync(kill_and_reap, pid)
