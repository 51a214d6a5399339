"""The CLI against a real `swapd serve` with echo engines: output and exit codes."""

from __future__ import annotations

import json

import pytest

from swapd.testing import free_port, run_swapd

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
