"""The CLI against a real `swapd serve` with echo engines: output and exit codes."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from swapd import __version__
from swapd.cli.listen import Listen
from swapd.cli.listen import parse as parse_listen
from swapd.testing import echo_cmd, free_port, run_swapd, wait_http

from .helpers import chat, config, swapd_cli

pytestmark = pytest.mark.timeout(120)


def test_start_ps_models_logs_stop(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        url = swapd.url
        started = swapd_cli("start", "alpha", url=url)
        assert started.returncode == 0, started.stderr
        assert "alpha ready in" in started.stdout

        ps = swapd_cli("ps", "--json", url=url)
        assert ps.returncode == 0
        rows = json.loads(ps.stdout)
        assert [(r["id"], r["state"], r["node"], r["port"]) for r in rows] == [
            ("alpha", "ready", "local", start_port)
        ]
        table = swapd_cli("ps", url=url)
        assert "alpha" in table.stdout and "ready" in table.stdout

        models = swapd_cli("models", "--json", url=url)
        listed = {m["id"]: m for m in json.loads(models.stdout)}
        assert set(listed) == {"alpha", "beta", "broken"}
        assert listed["alpha"]["aliases"] == ["a"]
        assert listed["beta"]["state"] == "stopped"
        assert "beta" in swapd_cli("models", url=url).stdout

        logs = swapd_cli("logs", "alpha", "-n", "5", url=url)
        assert logs.returncode == 0
        assert "ready in" in logs.stdout
        assert len(logs.stdout.splitlines()) <= 5

        stopped = swapd_cli("stop", "alpha", "beta", url=url)
        assert stopped.returncode == 0
        assert "alpha stopped" in stopped.stdout
        assert "model beta is not running" in stopped.stdout
        assert json.loads(swapd_cli("ps", "--json", url=url).stdout) == []

        chat(url, "beta")
        everything = swapd_cli("stop", "--all", url=url)
        assert everything.returncode == 0 and "beta stopped" in everything.stdout


def test_start_failures_and_unknown_models(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        failed = swapd_cli("start", "broken", url=swapd.url)
        assert failed.returncode == 1
        assert "broken" in failed.stderr
        unknown = swapd_cli("start", "nope", url=swapd.url)
        assert unknown.returncode == 4
        assert "alpha, beta, broken" in unknown.stderr
        assert swapd_cli("stop", "nope", url=swapd.url).returncode == 4
        assert swapd_cli("logs", "nope", url=swapd.url).returncode == 4
        assert swapd_cli("stop", url=swapd.url).returncode == 2  # usage


def test_server_down_is_one_clear_line() -> None:
    down = swapd_cli("ps", url=f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 3
    assert down.stderr.count("\n") == 1
    assert "cannot reach swapd" in down.stderr
    assert "Traceback" not in down.stderr


def test_api_key_missing_or_wrong(start_port: int) -> None:
    with run_swapd(config(start_port, top="apiKeys: [sekret]")) as swapd:
        missing = swapd_cli("ps", url=swapd.url)
        assert missing.returncode == 5 and "missing API key" in missing.stderr
        wrong = swapd_cli("ps", url=swapd.url, key="nope")
        assert wrong.returncode == 5 and "invalid API key" in wrong.stderr
        ok = swapd_cli("ps", "--json", url=swapd.url, key="sekret")
        assert ok.returncode == 0 and json.loads(ok.stdout) == []


# ── defaults a llama-swap user expects: ./config.yaml, Go-style --listen, single-dash flags ──


@contextlib.contextmanager
def serve_in(cwd: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``swapd serve ARGS`` run from ``cwd`` with stdout and stderr apart; yields its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "swapd", "serve", "--listen", f"127.0.0.1:{port}", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{url}/health", 30, proc=proc)
        except (TimeoutError, RuntimeError) as exc:
            proc.kill()
            out, err = proc.communicate()
            raise RuntimeError(f"swapd did not come up: {exc}\n{out}\n{err}") from exc
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def in_dir(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swapd", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_without_config_uses_config_yaml_in_the_current_directory(
    tmp_path: Path, start_port: int
) -> None:
    (tmp_path / "config.yaml").write_text(
        f"startPort: {start_port}\nmodels:\n  from-cwd:\n    cmd: {echo_cmd()}\n"
    )
    with serve_in(tmp_path) as (url, proc):
        ids = [m["id"] for m in httpx.get(f"{url}/v1/models", timeout=10).json()["data"]]
        assert ids == ["from-cwd"]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert out.splitlines()[0] == "swapd: using ./config.yaml"


def test_check_without_file_uses_config_yaml_else_says_demo(tmp_path: Path) -> None:
    demo = in_dir(tmp_path, "check")
    assert demo.returncode == 0, demo.stderr
    first = demo.stdout.splitlines()[0]
    assert "no ./config.yaml here" in first and "embedded demo" in first
    (tmp_path / "config.yaml").write_text(f"models:\n  here:\n    cmd: {echo_cmd()}\n")
    found = in_dir(tmp_path, "check")
    assert found.returncode == 0, found.stderr
    assert found.stdout.splitlines()[0] == "swapd: using ./config.yaml"
    assert "here" in found.stdout.splitlines() and "echo-a" not in found.stdout
    other = tmp_path / "other.yaml"
    other.write_text(f"models:\n  explicit:\n    cmd: {echo_cmd()}\n")
    for args in (("check", str(other)), ("check", "-config", str(other))):
        named = in_dir(tmp_path, *args)  # an explicit config wins over ./config.yaml
        assert named.returncode == 0, named.stderr
        assert "using ./config.yaml" not in named.stdout
        assert "explicit" in named.stdout.splitlines() and "here" not in named.stdout.splitlines()


def test_check_warns_about_a_program_not_on_path(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models:\n  m:\n    cmd: no-such-engine-xyz --port ${PORT}\n")
    out = in_dir(tmp_path, "check", str(cfg))
    assert out.returncode == 0, out.stderr
    assert "warning: model m: program 'no-such-engine-xyz' not found on PATH" in out.stderr


def test_listen_on_every_interface_reaches_loopback_and_warns_without_api_keys(
    start_port: int,
) -> None:
    port = free_port()
    with run_swapd(
        config(start_port), listen_port=port, extra_args=["-listen", f":{port}"]
    ) as swapd:
        assert swapd.url == f"http://127.0.0.1:{port}"  # reached through loopback
        models = httpx.get(f"{swapd.url}/v1/models", timeout=10).json()["data"]
        assert {m["id"] for m in models} == {"alpha", "beta", "broken"}
        swapd.wait_for_log("swapd: warning: listening on 0.0.0.0 without apiKeys")  # stderr
        logged = httpx.get(f"{swapd.url}/logs", timeout=10).text
        assert "WARNING listening on 0.0.0.0 without apiKeys" in logged  # swapd's own log


def test_listen_addresses_in_go_spelling() -> None:
    assert parse_listen(":8080") == Listen("0.0.0.0", 8080)
    assert parse_listen("[::]:8080") == Listen("::", 8080)
    assert str(parse_listen("[::1]:9")) == "[::1]:9"
    assert parse_listen("localhost:80") == Listen("localhost", 80)
    for bad in ("8080", "::1:80", "host:", "host:99999", "[::1:80"):
        with pytest.raises(ValueError):
            parse_listen(bad)
    usage = in_dir(Path.cwd(), "serve", "--listen", "nope")
    assert usage.returncode == 2 and "HOST:PORT" in usage.stderr


def test_version_in_every_spelling() -> None:
    outputs = {
        in_dir(Path.cwd(), *args).stdout for args in (["--version"], ["-version"], ["version"])
    }
    assert outputs == {f"swapd {__version__}\n"}
