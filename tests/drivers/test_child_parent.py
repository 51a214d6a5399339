"""``child.spawn(die_with_parent=True)``: the child's whole process group goes when the process
that spawned it dies (how a Ray actor killed by Ray takes its engine and the engine's own
children along), and the command still runs as given: its output, its exit status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import anyio
import pytest

from swapd.drivers import child
from swapd.testing import marked_pids

PARENT = """
import os, sys, time
from swapd.drivers import child
proc = child.spawn(sys.argv[1:], os.environ, capture=False, die_with_parent=True)
print(proc.pid, flush=True)
time.sleep(60)
"""
SLEEPER = f"{sys.executable} -c 'import time; time.sleep(600)'"
# an engine that leaves a child of its own behind it (a server's worker, a shell's job)
FAMILY = ["sh", "-c", f"{SLEEPER} & exec {SLEEPER}"]


def _marker() -> dict[str, str]:
    return {**os.environ, "SWAPD_TEST_MARK": uuid.uuid4().hex}


def _family(env: dict[str, str]) -> list[int]:
    return marked_pids("SWAPD_TEST_MARK", env["SWAPD_TEST_MARK"])


def _until(env: dict[str, str], count: int, timeout: float = 10) -> list[int]:
    """The family's pids once there are ``count`` of them (or the timeout passed)."""
    deadline = time.monotonic() + timeout
    while len(family := _family(env)) != count and time.monotonic() < deadline:
        time.sleep(0.05)
    return family


def test_a_tied_engine_and_its_own_children_die_with_the_process_that_spawned_them() -> None:
    env = _marker()
    argv = [sys.executable, "-c", PARENT, *FAMILY]
    parent = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert parent.stdout is not None
        guardian = int(parent.stdout.readline())
        # the parent, the guardian, its watchdog, the engine and the engine's child
        family = _until(env, 5)
        assert guardian in family and len(family) == 5
        parent.kill()  # SIGKILL: no cleanup of its own runs
        parent.wait()
        assert _until(env, 0) == []
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


@pytest.mark.anyio
async def test_a_stop_of_a_tied_engine_ends_its_children_too() -> None:
    env = _marker()
    proc = child.spawn(FAMILY, env, die_with_parent=True)
    # the guardian, its watchdog, the engine and the engine's child
    assert len(await anyio.to_thread.run_sync(_until, env, 4)) == 4
    with anyio.fail_after(20):
        assert await child.stop(proc, grace=5, log=print, label="family")
    assert proc.returncode == -signal.SIGTERM  # as the engine exited
    assert await anyio.to_thread.run_sync(_until, env, 0) == []


@pytest.mark.anyio
async def test_sigterm_to_the_guardian_alone_ends_the_engine_and_its_children() -> None:
    env = _marker()
    proc = child.spawn(FAMILY, env, die_with_parent=True)
    assert len(await anyio.to_thread.run_sync(_until, env, 4)) == 4
    # a user's `kill PID` of the pid swapd shows (not from the parent: that is a stop)
    await anyio.run_process(["kill", "-TERM", str(proc.pid)])
    with anyio.fail_after(20):
        assert await proc.wait() == -signal.SIGTERM
    proc.close()
    assert await anyio.to_thread.run_sync(_until, env, 0) == []


@pytest.mark.anyio
async def test_a_tied_child_runs_its_command_with_its_output_and_exit_status() -> None:
    code = "import os; print('hello', os.getpgid(0) == os.getppid()); raise SystemExit(3)"
    proc = child.spawn([sys.executable, "-c", code], os.environ, die_with_parent=True)
    with anyio.fail_after(20):
        out = b"".join([chunk async for chunk in proc.chunks()])
        assert await proc.wait() == 3
    proc.close()
    assert out.decode().split() == ["hello", "True"]  # in the group its guardian leads


@pytest.mark.anyio
async def test_a_tied_command_that_cannot_run_exits_127_saying_why() -> None:
    proc = child.spawn(["/nonexistent/engine"], os.environ, die_with_parent=True)
    with anyio.fail_after(20):
        out = b"".join([chunk async for chunk in proc.chunks()])
        assert await proc.wait() == 127
    proc.close()
    assert b"cannot run /nonexistent/engine" in out
