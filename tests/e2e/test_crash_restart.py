"""A swapd killed with SIGKILL (the OOM killer does that) comes back on the same port."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from swapd.testing import echo_cmd, free_port, pids_alive, run_swapd, worker_pids

pytestmark = pytest.mark.timeout(90)


def _chat(url: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)


def test_swapd_killed_with_an_engine_running_restarts_on_its_port_and_serves(
    start_port: int, tmp_path: Path
) -> None:
    env = {**os.environ, "SWAPD_STATE_DIR": str(tmp_path)}
    cfg = f"""
startPort: {start_port}
models:
  alpha:
    cmd: {echo_cmd()}
"""
    port = free_port()
    with run_swapd(cfg, listen_port=port, env=env) as first:
        orphan = int(_chat(first.url, "alpha").headers["x-engine-pid"])
        workers = worker_pids(first.proc.pid)  # with --workers (SWAPD_WORKERS): die with it
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        assert pids_alive([orphan]) == [orphan]  # in its own session, it outlives swapd
        deadline = time.monotonic() + 10
        while pids_alive(workers) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pids_alive(workers) == []
        # Nothing holds swapd's listening socket any more: clients are refused, not left hanging.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        with run_swapd(cfg, listen_port=port, env=env) as second:
            assert pids_alive([orphan]) == []
            assert "left behind by an earlier swapd" in second.output()
            reply = _chat(second.url, "alpha")
            assert reply.status_code == 200, reply.text
            assert int(reply.headers["x-engine-pid"]) != orphan
