"""`swapd run MODEL --config FILE`: one engine in the foreground; Ctrl-C cleans up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from swapd.testing import pids_alive

from .helpers import config

pytestmark = pytest.mark.timeout(60)


def test_run_serves_until_ctrl_c_and_removes_the_engine(start_port: int, tmp_path: Path) -> None:
    path = tmp_path / "swapd.yaml"
    path.write_text(config(start_port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "swapd", "run", "a", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "ready at" in line:
                break
        assert f"alpha ready at http://127.0.0.1:{start_port}" in lines[-1], lines
        reply = httpx.get(f"http://127.0.0.1:{start_port}/health")
        assert reply.status_code == 200
        pid = int(
            httpx.post(
                f"http://127.0.0.1:{start_port}/v1/chat/completions",
                json={"model": "alpha", "messages": [{"role": "user", "content": "x"}]},
            ).headers["x-engine-pid"]
        )
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, out
        assert "alpha stopped" in out
        assert pids_alive([pid]) == []
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:  # communicate() closes it, but not on a failed assertion
            proc.stdout.close()


def test_run_failures(start_port: int, tmp_path: Path) -> None:
    path = tmp_path / "swapd.yaml"
    path.write_text(config(start_port))
    unknown = subprocess.run(
        [sys.executable, "-m", "swapd", "run", "nope", "--config", str(path)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert unknown.returncode == 4 and "alpha, beta, broken" in unknown.stderr
    broken = subprocess.run(
        [sys.executable, "-m", "swapd", "run", "broken", "--config", str(path)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert broken.returncode == 1 and "exited" in broken.stderr
