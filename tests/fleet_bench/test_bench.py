"""``swapd bench`` against a real ``swapd serve`` with echo engines: the table, stored results,
cancelling (from the API and by Ctrl-C in the CLI) and a model that cannot start."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from swapd.errors import RequestError
from swapd.fleet.benchmark import Level, Params, Reply, Sample, measure, prompt_text
from swapd.observe.activity import Meter
from swapd.proxy import auth
from swapd.testing import echo_cmd, interruptible, run_swapd

pytestmark = pytest.mark.timeout(120)


def config(start_port: int, top: str = "", delay: float = 0.002) -> str:
    return f"""
startPort: {start_port}
healthCheckTimeout: 10
{top}
models:
  echo:
    cmd: {echo_cmd(f"--chunk-delay {delay}")}
  broken:
    cmd: {echo_cmd("--exit-after 0 --exit-code 7")}
"""


def cli(*args: str, url: str, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swapd", "bench", *args],
        env={**os.environ, "SWAPD_URL": url, "SWAPD_STATE_DIR": str(state)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def wait_job(url: str, job_id: str, until: Any, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = httpx.get(f"{url}/api/bench/{job_id}", timeout=5).json()
        if until(job):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def test_cli_prints_a_row_per_level_and_the_run_is_stored_with_the_activity(
    start_port: int, tmp_path: Path
) -> None:
    env = {"SWAPD_STATE_DIR": str(tmp_path)}
    with run_swapd(config(start_port), env=env) as swapd:
        first = cli("echo", "--concurrency", "1,3", "--prompt-tokens", "40", "--gen-tokens", "16",
                    url=swapd.url, state=tmp_path)  # fmt: skip
        assert first.returncode == 0, first.stderr
        assert "echo loaded in" in first.stdout  # started by the bench, and said so
        rows = [line.split() for line in first.stdout.splitlines()[2:]]
        assert [r[:4] for r in rows] == [["1", "1/1", "40", "16"], ["3", "3/3", "40", "16"]]
        assert all(r[-1] == "engine" for r in rows)  # the echo engine's timings

        again = cli(
            "echo", "--concurrency", "2", "--gen-tokens", "8", url=swapd.url, state=tmp_path
        )
        assert again.returncode == 0, again.stderr
        assert "loaded in" not in again.stdout  # ready already: no load time to report

        stored = httpx.get(f"{swapd.url}/api/models/echo/bench").json()
        assert stored["running"] is None
        newest, oldest = stored["results"]
        assert newest["params"] == {"concurrency": [2], "prompt_tokens": 512, "gen_tokens": 8}
        assert newest["load_seconds"] is None and oldest["load_seconds"] > 0
        level = oldest["levels"][1]
        assert (level["concurrency"], level["requests"], level["failed"]) == (3, 3, 0)
        assert level["prompt_tokens"] == 40 and level["gen_tokens"] == 16
        assert level["pp_tps"] > 0 and level["tg_tps"] > 0 and level["total_tps"] > 0
        assert 0 < level["ttft_ms"] <= level["ttft_max_ms"]

        activity = httpx.get(f"{swapd.url}/api/activity").json()["activity"]
        tagged = [a for a in activity if (a.get("metadata") or {}).get("bench") == oldest["id"]]
        assert len(tagged) == 4 and {a["completion_tokens"] for a in tagged} == {16}

        history = cli("echo", "--history", url=swapd.url, state=tmp_path)
        assert history.stdout.count("CONC") == 2 and oldest["id"] in history.stdout
    kept = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert [r["id"] for r in kept] == [oldest["id"], newest["id"]]


def test_results_go_into_the_sqlite_activity_store_and_survive_a_restart(
    start_port: int, tmp_path: Path
) -> None:
    db = tmp_path / "activity.db"
    text = config(start_port, top=f"store:\n  path: {db}")
    with run_swapd(text, env={"SWAPD_STATE_DIR": str(tmp_path)}) as swapd:
        job = httpx.post(
            f"{swapd.url}/api/models/echo/bench",
            json={"concurrency": [2], "prompt_tokens": 8, "gen_tokens": 4},
        ).json()
        assert job["state"] == "running"
        done = wait_job(swapd.url, job["id"], lambda j: j["state"] != "running")
        assert done["state"] == "done", done
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT id, model FROM bench").fetchall() == [(job["id"], "echo")]
    assert not (tmp_path / "bench").exists()  # the store holds them, not the state dir
    with run_swapd(text, env={"SWAPD_STATE_DIR": str(tmp_path)}) as swapd:
        results = httpx.get(f"{swapd.url}/api/models/echo/bench").json()["results"]
        assert [r["id"] for r in results] == [job["id"]]
        assert results[0]["levels"][0]["gen_tokens"] == 4


def test_cancel_ends_the_job_and_its_requests_at_the_engine(
    start_port: int, tmp_path: Path
) -> None:
    with run_swapd(config(start_port, delay=0.02), env={"SWAPD_STATE_DIR": str(tmp_path)}) as swapd:
        url = swapd.url
        job = httpx.post(
            f"{url}/api/models/echo/bench", json={"concurrency": [3], "gen_tokens": 5000}
        ).json()
        wait_job(url, job["id"], lambda j: j["phase"] == "measuring")
        deadline = time.monotonic() + 10
        while len(httpx.get(f"{url}/api/inflight").json()["requests"]) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        again = httpx.post(f"{url}/api/models/echo/bench", json={})
        assert again.status_code == 409 and job["id"] in again.json()["error"]["message"]

        cancelled = httpx.delete(f"{url}/api/bench/{job['id']}", timeout=15).json()
        assert cancelled["state"] == "cancelled" and cancelled["levels"] == []
        assert httpx.get(f"{url}/api/inflight").json()["requests"] == []
        stats = httpx.get(f"{url}/upstream/echo/_echo/stats").json()
        deadline = time.monotonic() + 5
        while stats["in_flight"] > 1:  # the engine saw each stream close (1: this request)
            assert time.monotonic() < deadline, stats
            time.sleep(0.05)
            stats = httpx.get(f"{url}/upstream/echo/_echo/stats").json()
        activity = httpx.get(f"{url}/api/activity").json()["activity"]
        ours = [a["status"] for a in activity if (a.get("metadata") or {}).get("bench")]
        assert ours == [499, 499, 499]
        assert httpx.get(f"{url}/api/models/echo/bench").json()["results"] == []


def test_ctrl_c_in_the_cli_cancels_the_server_job(start_port: int, tmp_path: Path) -> None:
    with run_swapd(config(start_port, delay=0.02), env={"SWAPD_STATE_DIR": str(tmp_path)}) as swapd:
        with subprocess.Popen(
            [sys.executable, "-m", "swapd", "bench", "echo", "--concurrency", "2",
             "--gen-tokens", "5000"],
            env={**os.environ, "SWAPD_URL": swapd.url},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=interruptible,
        ) as proc:  # fmt: skip
            try:
                deadline = time.monotonic() + 20
                while (
                    running := httpx.get(f"{swapd.url}/api/models/echo/bench").json()["running"]
                ) is None or running["phase"] != "measuring":
                    assert time.monotonic() < deadline and proc.poll() is None
                    time.sleep(0.05)
                proc.send_signal(signal.SIGINT)
                _, err = proc.communicate(timeout=20)
            finally:
                if proc.poll() is None:
                    proc.kill()
        assert proc.returncode == 130, err
        assert f"bench {running['id']} cancelled" in err
        job = httpx.get(f"{swapd.url}/api/bench/{running['id']}").json()
        assert job["state"] == "cancelled"


def test_a_model_that_fails_to_start_is_a_clear_error(start_port: int, tmp_path: Path) -> None:
    with run_swapd(config(start_port), env={"SWAPD_STATE_DIR": str(tmp_path)}) as swapd:
        result = cli("broken", "--concurrency", "1", url=swapd.url, state=tmp_path)
        assert result.returncode == 1
        assert result.stderr.startswith("swapd: broken failed to start: ")
        assert "exit" in result.stderr  # the engine's own reason follows

        too_many = cli("echo", "--concurrency", "1,64", url=swapd.url, state=tmp_path)
        assert too_many.returncode == 1
        assert "concurrency 64 is more than echo's concurrencyLimit 10" in too_many.stderr
        unknown = cli("nope", url=swapd.url, state=tmp_path)
        assert unknown.returncode == 4 and "available models: broken, echo" in unknown.stderr
        assert httpx.get(f"{swapd.url}/api/models/echo/bench").json()["results"] == []


# ── the figures, without a server ─────────────────────────────────────────────────────────────


def test_params_are_checked_and_default_per_key() -> None:
    assert Params.parse({"concurrency": 4}) == Params((4,), 512, 128)
    too_many = {"concurrency": [1] * 17}
    for bad in ({"concurrency": [0]}, {"gen_tokens": "8"}, {"prompt": 1}, [], too_many):
        with pytest.raises(RequestError):
            Params.parse(bad)


def test_the_prompt_has_the_words_asked_for_and_a_unique_opening() -> None:
    assert len(prompt_text(100, "Benchmark run 1:").split()) == 100
    assert prompt_text(100, "a:") != prompt_text(100, "b:")


def test_an_engine_without_timings_is_measured_by_the_clock() -> None:
    meter, reply = Meter(0.0), Reply()
    frames = [{"choices": [{"delta": {"content": "x"}}]}] * 5
    frames.append({"choices": [], "usage": {"prompt_tokens": 200, "completion_tokens": 5}})
    body = "".join(f"data: {json.dumps(f)}\n\n" for f in frames).encode() + b"data: [DONE]\n\n"
    for cut in (7, 60, len(body)):  # frames split across chunks
        chunk, body = body[:cut], body[cut:]
        meter.feed(chunk)
        reply.feed(chunk)
    assert reply.frames == 5 and reply.first is not None
    sample = measure(meter, reply, reply.first - 0.5, reply.first + 2.0)
    assert sample.timing == "clock" and sample.prompt_tokens == 200 and sample.gen_tokens == 5
    assert sample.pp_rate == 400.0 and sample.tg_rate == 2.0  # 200 / 0.5 s; 4 after the first / 2 s
    assert sample.ttft == pytest.approx(0.5)


def test_a_level_averages_request_rates_and_totals_tokens_over_its_wall_time() -> None:
    ok = Sample(100, 10, 0.2, 500.0, 20.0, "engine")
    slow = Sample(100, 10, 0.6, 300.0, 10.0, "engine")
    level = Level.of(3, [ok, slow, Sample(error="engine answered 500")], wall=2.0)
    assert (level.requests, level.failed, level.error) == (3, 1, "engine answered 500")
    assert (level.pp_tps, level.tg_tps, level.total_tps) == (400.0, 15.0, 10.0)
    assert (level.ttft_ms, level.ttft_max_ms, level.timing) == (400.0, 600.0, "engine")


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("POST", "/api/models/m/bench", "admin"),
        ("GET", "/api/models/m/bench", "read"),
        ("GET", "/api/bench/bench-1-1", "read"),
        ("DELETE", "/api/bench/bench-1-1", "admin"),
        ("POST", "/api/bench/bench-1-1/cancel", "admin"),
    ],
)
def test_starting_and_cancelling_need_admin_and_reading_needs_read(
    method: str, path: str, scope: str
) -> None:
    assert auth.request_scope(method, path) == scope
