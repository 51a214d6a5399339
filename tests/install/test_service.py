"""swapd as a service: contrib/systemd/swapd.service is a valid user unit whose ExecStart runs
swapd and whose ExecReload (SIGHUP) reloads the config; ``serve --state-dir`` and its XDG
default decide where engine records go."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from swapd.testing import echo_cmd, free_port, run_swapd, wait_http

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib" / "systemd" / "swapd.service"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def _config(start_port: int, *models: str) -> str:
    lines = [f"startPort: {start_port}", "models:"]
    for model in models:
        lines += [f"  {model}:", f"    cmd: {echo_cmd()}"]
    return "\n".join(lines) + "\n"


def _home(tmp_path: Path) -> Path:
    """A home whose ``~/.local/bin/swapd`` (where pipx puts it) runs this checkout's swapd."""
    home = tmp_path / "home"
    launcher = home / ".local" / "bin" / "swapd"
    launcher.parent.mkdir(parents=True)
    launcher.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m swapd "$@"\n')
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR)
    (home / ".config" / "swapd").mkdir(parents=True)
    return home


def _expand(command: str, home: Path, state: Path, pid: int = 0) -> list[str]:
    """A unit's command line with the specifiers and $MAINPID it uses filled in as systemd does
    for a user unit (%h home, %S $XDG_STATE_HOME)."""
    filled = command.replace("%h", str(home)).replace("%S", str(state))
    return [word.replace("$MAINPID", str(pid)) for word in shlex.split(filled)]


@contextmanager
def _running(argv: list[str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            try:
                wait_http(f"http://127.0.0.1:{port}/health", 30, proc=proc)
            except (TimeoutError, RuntimeError) as exc:
                raise AssertionError(f"{exc}\n{log.read_text(errors='replace')}") from exc
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _model_ids(url: str) -> set[str]:
    return {m["id"] for m in httpx.get(f"{url}/v1/models", timeout=10).json()["data"]}


def _chat(url: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)


def test_unit_is_a_user_service_that_reloads_with_sighup_and_restarts_on_failure() -> None:
    unit = _unit()
    service = unit["Service"]
    assert service["ExecStart"].startswith("%h/.local/bin/swapd serve --config ")
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "on-failure"
    assert service["StandardOutput"] == "journal"
    assert unit["Install"]["WantedBy"] == "default.target"  # user units: not multi-user.target


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (the INI test above still ran)")
    home = _home(tmp_path)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
    done = subprocess.run(
        [analyze, "--user", "verify", str(UNIT)], env=env, capture_output=True, text=True
    )
    # Unknown keys and bad values are warnings on stderr with exit status 0: both must be clean.
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "")


def test_unit_exec_start_serves_and_exec_reload_loads_the_changed_config(
    tmp_path: Path, start_port: int
) -> None:
    home, state = _home(tmp_path), tmp_path / "state"
    config = home / ".config" / "swapd" / "config.yaml"
    config.write_text(_config(start_port, "alpha"))
    port = free_port()
    argv = [*_expand(_unit()["Service"]["ExecStart"], home, state), "--listen", f"127.0.0.1:{port}"]
    url = f"http://127.0.0.1:{port}"
    with _running(argv, port, tmp_path / "swapd.log") as proc:
        assert _model_ids(url) == {"alpha"}
        engine = _chat(url, "alpha").headers["x-engine-pid"]
        # --state-dir %S/swapd: the engine's record is in the user's state dir.
        assert (state / "swapd" / "engines" / f"{engine}.json").is_file()

        config.write_text(_config(start_port, "alpha", "beta"))
        reload = _expand(_unit()["Service"]["ExecReload"], home, state, pid=proc.pid)
        subprocess.run(reload, check=True)
        deadline = time.monotonic() + 15
        while _model_ids(url) != {"alpha", "beta"}:
            assert time.monotonic() < deadline, f"not reloaded: {_model_ids(url)}"
            time.sleep(0.1)
        assert _chat(url, "beta").status_code == 200
        assert proc.poll() is None


def test_state_dir_flag_overrides_the_environment(tmp_path: Path, start_port: int) -> None:
    chosen, ignored = tmp_path / "chosen", tmp_path / "ignored"
    env = {"SWAPD_STATE_DIR": str(ignored), "XDG_STATE_HOME": str(ignored)}
    cfg = _config(start_port, "alpha")
    with run_swapd(cfg, extra_args=["--state-dir", str(chosen)], env=env) as swapd:
        engine = _chat(swapd.url, "alpha").headers["x-engine-pid"]
        assert (chosen / "engines" / f"{engine}.json").is_file()
    assert not ignored.exists()


def test_state_dir_defaults_to_the_xdg_state_home(
    tmp_path: Path, start_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    xdg = tmp_path / "xdg"
    monkeypatch.delenv("SWAPD_STATE_DIR", raising=False)
    cfg = _config(start_port, "alpha")
    with run_swapd(cfg, env={"XDG_STATE_HOME": str(xdg)}) as swapd:
        engine = _chat(swapd.url, "alpha").headers["x-engine-pid"]
        assert (xdg / "swapd" / "engines" / f"{engine}.json").is_file()


def test_serve_help_names_the_state_dir_default() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "swapd", "serve", "--help"], capture_output=True, text=True
    )
    assert "--state-dir" in done.stdout and "XDG_STATE_HOME" in done.stdout
