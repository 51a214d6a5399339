"""``child.spawn(die_with_parent=True)``: the child goes when the process that spawned it dies
(how a Ray actor killed by Ray takes its engine along), and still runs the command unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import anyio
import pytest

from swapd.drivers import child
from swapd.testing import pids_alive

PARENT = """
import os, sys, time
from swapd.drivers import child
proc = child.spawn([sys.executable, "-c", "import time; time.sleep(60)"], os.environ,
                   capture=False, die_with_parent=True)
print(proc.pid, flush=True)
time.sleep(60)
"""


def test_a_child_tied_to_its_parent_is_killed_when_the_parent_is() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        time.sleep(0.3)  # past the wrapper's exec
        assert pids_alive([pid]) == [pid]
        parent.kill()  # SIGKILL: no cleanup of its own runs
        parent.wait()
        deadline = time.monotonic() + 10
        while pids_alive([pid]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pids_alive([pid]) == []
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


@pytest.mark.anyio
async def test_a_child_tied_to_its_parent_runs_its_command_with_its_output() -> None:
    proc = child.spawn(
        [sys.executable, "-c", "import os; print('hello', os.getppid())"],
        os.environ,
        die_with_parent=True,
    )
    with anyio.fail_after(20):
        out = b"".join([chunk async for chunk in proc.chunks()])
        assert await proc.wait() == 0
    proc.close()
    assert out.decode().split() == ["hello", str(os.getpid())]  # exec'd in place: no wrapper
