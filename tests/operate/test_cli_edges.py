"""The CLI's rough edges a new user hit (#15): ``swapd run`` without --config, SWAPD_URL
spellings, the missing-key hint, and what ``swapd ps`` says about failed and fixed-port models."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from swapd.testing import echo_cmd

pytestmark = pytest.mark.timeout(120)


@contextlib.contextmanager
def running(cwd: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """``swapd ARGS`` from ``cwd``, stopped with SIGINT at the end."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWAPD_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "swapd", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def first_lines_until(proc: subprocess.Popen[str], marker: str) -> list[str]:
    """stdout lines up to the one containing ``marker`` (fails if the process ends first)."""
    assert proc.stdout is not None
    seen: list[str] = []
    for line in proc.stdout:
        seen.append(line.rstrip("\n"))
        if marker in line:
            return seen
    raise AssertionError(f"{marker!r} never printed; output: {seen}")


def test_run_without_config_uses_the_demo(tmp_path: Path) -> None:
    with running(tmp_path, "run", "echo-a") as proc:
        lines = first_lines_until(proc, "ready at")
        assert "embedded demo" in lines[0]
        assert "swapd: echo-a ready at http://127.0.0.1:" in lines[-1]
    assert proc.returncode == 0


def test_run_without_config_uses_config_yaml_in_the_current_directory(
    tmp_path: Path, start_port: int
) -> None:
    (tmp_path / "config.yaml").write_text(
        f"startPort: {start_port}\nmodels:\n  mine:\n    cmd: {echo_cmd()}\n"
    )
    with running(tmp_path, "run", "mine") as proc:
        lines = first_lines_until(proc, "ready at")
        assert lines[0] == "swapd: using ./config.yaml"
        assert f"swapd: mine ready at http://127.0.0.1:{start_port}" in lines[-1]
