"""`GET /api/events` (SSE) and the log streams, against a real `swapd serve`."""

from __future__ import annotations

import itertools
import json
import queue
import socket
import sys
import threading
import time
from typing import Any

import httpx
import pytest

from swapd.testing import run_swapd

from .helpers import chat, config

pytestmark = pytest.mark.timeout(120)


def consume(url: str, out: queue.Queue[tuple[int, str, Any]], stop: threading.Event) -> None:
    with httpx.stream("GET", f"{url}/api/events?logs=true", timeout=30) as response:
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["content-type"].startswith("text/event-stream")
        event_id, kind = 0, ""
        for line in response.iter_lines():
            if stop.is_set():
                return
            if line.startswith("id:"):
                event_id = int(line[3:])
            elif line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                out.put((event_id, kind, json.loads(line[5:])))


def collect_until(
    events: queue.Queue[tuple[int, str, Any]], done: Any, timeout: float = 20
) -> list[tuple[int, str, Any]]:
    seen: list[tuple[int, str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(events.get(timeout=0.5))
        except queue.Empty:
            continue
        if done(seen):
            return seen
    raise AssertionError(f"condition not met; saw {[(k, d) for _, k, d in seen]}")


def test_sse_shows_starting_ready_stopped_requests_and_logs(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        events: queue.Queue[tuple[int, str, Any]] = queue.Queue()
        stop = threading.Event()
        reader = threading.Thread(target=consume, args=(swapd.url, events, stop), daemon=True)
        reader.start()
        first = events.get(timeout=10)
        assert first[1] == "snapshot"
        assert [m["id"] for m in first[2]["models"]] == ["alpha", "beta", "broken"]

        started = httpx.post(f"{swapd.url}/api/models/alpha/start?wait=true", timeout=30)
        assert started.json()["state"] == "ready"
        chat(swapd.url, "alpha")
        httpx.post(f"{swapd.url}/api/models/alpha/stop", timeout=30)

        def stopped(seen: list[tuple[int, str, Any]]) -> bool:
            return any(k == "model" and d["state"] == "stopped" for _, k, d in seen)

        seen = [first, *collect_until(events, stopped)]
        stop.set()
        ids = [i for i, _, _ in seen]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        states = [d["state"] for _, k, d in seen if k == "model" and d["id"] == "alpha"]
        assert states[0] == "starting" and states[-1] == "stopped"
        assert "ready" in states and states.index("ready") < states.index("stopped")
        requests = [d for _, k, d in seen if k == "request"]
        assert [r["phase"] for r in requests] == ["start", "end"]
        assert requests[1]["status"] == 200 and requests[1]["completion_tokens"] > 0
        assert any(k == "queue" and d["model"] == "alpha" for _, k, d in seen)
        logs = [d for _, k, d in seen if k == "log"]
        assert any(d["source"] == "alpha" and "listening" in d["line"] for d in logs)


def test_an_sse_client_that_never_reads_is_dropped(start_port: int) -> None:
    # An engine that prints ~20 MB of log lines: with ?logs=true each line is an event.
    chatty = f"{sys.executable} -c \"[print('x' * 1000) for _ in range(20000)]\""
    extra = f"""
  chatty:
    cmd: {chatty}
    checkEndpoint: none
    proxy: http://127.0.0.1:9
"""
    with run_swapd(config(start_port) + extra) as swapd:
        lazy = socket.socket()
        try:
            lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            lazy.connect(("127.0.0.1", swapd.port))
            lazy.sendall(b"GET /api/events?logs=true HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            httpx.post(f"{swapd.url}/api/models/chatty/start", timeout=30)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if any("dropped client" in line for line in swapd.log):
                    break
                time.sleep(0.2)
            assert any("dropped client" in line for line in swapd.log), swapd.log[-5:]
            # The server is unaffected.
            assert chat(swapd.url, "alpha").status_code == 200
            assert httpx.get(f"{swapd.url}/api/models").status_code == 200
        finally:
            lazy.close()


def test_log_streams_history_first_then_live(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        chat(swapd.url, "alpha")
        with httpx.stream("GET", f"{swapd.url}/logs/stream/alpha", timeout=10) as response:
            assert response.headers["content-type"].startswith("text/plain")
            lines = response.iter_lines()
            assert "starting alpha" in next(lines)
        with httpx.stream("GET", f"{swapd.url}/logs/stream?no-history", timeout=10) as response:
            httpx.post(f"{swapd.url}/api/models/beta/start", timeout=30)
            live = response.iter_lines()
            lines = [next(live) for _ in range(2)]
            assert "INFO evicting alpha to start beta" in lines[0]  # swapd's own log
            assert lines[1].startswith("[beta] [swapd] starting beta")  # beta's engine log
        missing = httpx.get(f"{swapd.url}/logs/stream/nope")
        assert missing.status_code == 400
        message = missing.json()["error"]["message"]
        assert message == "invalid logger. Use 'proxy', 'upstream' or a model's ID"


def test_queue_event_drops_to_zero_after_a_failed_start(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        events: queue.Queue[tuple[int, str, Any]] = queue.Queue()
        stop = threading.Event()
        reader = threading.Thread(target=consume, args=(swapd.url, events, stop), daemon=True)
        reader.start()
        assert events.get(timeout=10)[1] == "snapshot"
        failed = httpx.post(f"{swapd.url}/api/models/broken/start?wait=true", timeout=30)
        assert failed.status_code == 503

        def drained(seen: list[tuple[int, str, Any]]) -> bool:
            queues = [d["queued"] for _, k, d in seen if k == "queue" and d["model"] == "broken"]
            return bool(queues) and queues[-1] == 0 and max(queues) == 1

        collect_until(events, drained)
        stop.set()


def test_event_ids_stay_in_order_while_inflight_upserts_meet_a_flood_of_events(
    start_port: int,
) -> None:
    # An engine that logs thousands of lines a second (each one an event) while a slow stream's
    # byte-count upserts are made every INFLIGHT_INTERVAL: an upsert made while published
    # events wait in the client's buffer must not overtake them.
    flood = "[print('x' * 50, flush=True) or time.sleep(0.0002) for _ in iter(int, 1)]"
    chatty = f'{sys.executable} -c "import time; {flood}"'
    extra = f"""
  chatty:
    cmd: {chatty}
    checkEndpoint: none
    proxy: http://127.0.0.1:9
"""
    together = "groups: {together: {swap: false, members: [alpha, chatty]}}"
    with run_swapd(config(start_port, top=together) + extra) as swapd:
        assert httpx.post(f"{swapd.url}/api/models/alpha/start?wait=true", timeout=30).is_success
        assert httpx.post(f"{swapd.url}/api/models/chatty/start", timeout=30).is_success
        events: queue.Queue[tuple[int, str, Any]] = queue.Queue()
        stop = threading.Event()
        reader = threading.Thread(target=consume, args=(swapd.url, events, stop), daemon=True)
        reader.start()
        assert events.get(timeout=10)[1] == "snapshot"
        body = {
            "model": "alpha",
            "messages": [{"role": "user", "content": "count slowly"}],
            "stream": True,
            "chunks": 80,
            "chunk_delay": 0.05,
        }
        with httpx.stream("POST", f"{swapd.url}/v1/chat/completions", json=body, timeout=60) as r:
            assert sum(1 for line in r.iter_lines() if line.startswith("data:")) > 80
        stop.set()
        seen = []
        while not events.empty():
            seen.append(events.get_nowait())
        upserts = [i for i, k, d in seen if k == "inflight" and d["operation"] == "upsert"]
        assert len(upserts) >= 5 and sum(k == "log" for _, k, _ in seen) > 1000
        ids = [i for i, _, _ in seen]
        out_of_order = [(a, b) for a, b in itertools.pairwise(ids) if b <= a]
        assert not out_of_order, out_of_order[:10]
