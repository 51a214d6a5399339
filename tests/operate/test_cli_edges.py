"""The CLI's rough edges a new user hit (#15): ``swapd run`` without --config, SWAPD_URL
spellings, the missing-key hint, and what ``swapd ps`` says about failed and fixed-port models."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from swapd.testing import echo_cmd, free_port, run_swapd

from .helpers import config, swapd_cli

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


def test_swapd_url_without_scheme_works(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        bare = swapd.url.removeprefix("http://")
        listed = swapd_cli("models", "--json", url=bare)
        assert listed.returncode == 0, listed.stderr
        assert {m["id"] for m in json.loads(listed.stdout)} == {"alpha", "beta", "broken"}
        assert listed.stderr == ""


def test_swapd_url_with_v1_is_corrected_with_a_note(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        started = swapd_cli("start", "alpha", url=f"{swapd.url}/v1/")
        assert started.returncode == 0, started.stderr
        assert "alpha ready in" in started.stdout
        assert started.stderr.splitlines()[0] == (
            f"swapd: {swapd.url}/v1 is an OpenAI base URL; using swapd's address {swapd.url}"
        )


def test_missing_api_key_names_the_env_var_and_the_flag(start_port: int) -> None:
    with run_swapd(config(start_port, top="apiKeys: [sekret]")) as swapd:
        missing = swapd_cli("ps", url=swapd.url)
        assert missing.returncode == 5
        assert missing.stderr.strip() == (
            "swapd: unauthorized: missing API key (set SWAPD_API_KEY or pass --api-key)"
        )
        flag = swapd_cli("ps", "--json", "--api-key", "sekret", url=swapd.url)
        assert flag.returncode == 0, flag.stderr
        started = swapd_cli("start", "alpha", "--api-key", "sekret", url=swapd.url)
        assert started.returncode == 0, started.stderr  # the waiting thread has the key too


def test_ps_shows_why_a_model_failed_and_a_fixed_port(start_port: int) -> None:
    fixed = free_port()
    top = f"""
  fixed:
    cmd: {sys.executable} -m swapd.echo --port {fixed} --model fixed
    proxy: http://127.0.0.1:{fixed}
"""
    with run_swapd(config(start_port) + top) as swapd:
        assert swapd_cli("start", "broken", url=swapd.url).returncode == 1
        assert swapd_cli("start", "fixed", url=swapd.url).returncode == 0
        ps = swapd_cli("ps", url=swapd.url)
        assert ps.returncode == 0, ps.stderr
        lines = ps.stdout.splitlines()
        rows = {line.split()[0]: line.split() for line in lines if "failed:" not in line}
        header = rows["MODEL"]
        assert rows["fixed"][header.index("PORT")] == str(fixed)
        assert rows["broken"][header.index("STATE")] == "failed"
        assert lines[-1].startswith("broken failed: ")
        assert "exit" in lines[-1] and "7" in lines[-1]
