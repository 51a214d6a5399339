"""The in-flight table: `GET /api/inflight`, `POST /api/inflight/{id}/cancel`, inflight events."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from swapd.testing import echo_cmd, run_swapd, wait_for

from .helpers import config

pytestmark = pytest.mark.timeout(120)


def in_background(call: Callable[[], Any]) -> tuple[threading.Thread, queue.Queue[Any]]:
    out: queue.Queue[Any] = queue.Queue()

    def run() -> None:
        try:
            out.put(call())
        except Exception as exc:
            out.put(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def inflight(url: str) -> list[dict[str, Any]]:
    requests: list[dict[str, Any]] = httpx.get(f"{url}/api/inflight").json()["requests"]
    return requests


def test_a_slow_request_is_listed_and_cancelled(start_port: int) -> None:
    # X-Forwarded-For is believed from trusted proxies only (server.trustedProxies)
    top = "apiKeys: [k1]\nserver: {trustedProxies: [127.0.0.1, 10.0.0.0/8]}"
    with run_swapd(config(start_port, top=top)) as swapd:
        auth = {"Authorization": "Bearer k1"}
        thread, out = in_background(
            lambda: httpx.post(
                f"{swapd.url}/upstream/alpha/slow?delay=60",
                json={"hello": 1},
                headers={**auth, "X-Forwarded-For": "203.0.113.9, 10.0.0.1"},
                timeout=90,
            )
        )

        def listed() -> list[dict[str, Any]]:
            got = httpx.get(f"{swapd.url}/api/inflight", headers=auth).json()["requests"]
            return [r for r in got if r["status"] is None and r["elapsed_ms"] > 0]

        [entry] = wait_for(listed)
        assert entry["model"] == "alpha" and entry["method"] == "POST"
        assert entry["req_path"] == "/slow?delay=60"
        assert entry["remote_ip"] == "203.0.113.9"
        assert entry["req_headers"]["Authorization"] == "[REDACTED]"
        assert entry["resp_bytes"] == 0 and entry["id"].startswith("req-")

        cancelled = httpx.post(f"{swapd.url}/api/inflight/{entry['id']}/cancel", headers=auth)
        assert cancelled.status_code == 200 and cancelled.json() == {"msg": "ok"}
        thread.join(30)
        reply = out.get_nowait()
        assert isinstance(reply, httpx.Response), reply
        assert reply.status_code == 503
        assert reply.json()["error"]["code"] == "request_cancelled"
        assert httpx.get(f"{swapd.url}/api/inflight", headers=auth).json()["requests"] == []
        records = httpx.get(f"{swapd.url}/api/activity", headers=auth).json()["activity"]
        assert records[0]["id"] == entry["id"] and records[0]["status"] == 503

        again = httpx.post(f"{swapd.url}/api/inflight/{entry['id']}/cancel", headers=auth)
        assert again.status_code == 404
        assert again.json()["error"]["message"] == "inflight request not found"


def test_cancelling_a_stream_cuts_it_and_the_engines_request(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        body = {
            "model": "alpha",
            "messages": [{"role": "user", "content": "a long answer"}],
            "stream": True,
            "chunks": 500,
            "chunk_delay": 0.05,
        }
        with httpx.stream(
            "POST", f"{swapd.url}/v1/chat/completions", json=body, timeout=60
        ) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            assert next(lines).startswith("data:")
            [entry] = inflight(swapd.url)
            assert entry["status"] == 200 and entry["resp_bytes"] > 0
            assert entry["resp_headers"]["Content-Type"].startswith("text/event-stream")
            assert httpx.post(f"{swapd.url}/api/inflight/{entry['id']}/cancel").is_success
            with pytest.raises(httpx.RemoteProtocolError):
                for _ in lines:  # the rest of the stream, until the cut
                    pass

        def engine_saw_the_cut() -> bool:  # the engine's request ended too
            stats = httpx.get(f"{swapd.url}/upstream/alpha/_echo/stats", timeout=10).json()
            return bool(stats["disconnects"] == 1)

        wait_for(engine_saw_the_cut)
        assert inflight(swapd.url) == []


def test_inflight_upserts_and_removes_reach_the_event_stream(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        events: queue.Queue[tuple[str, Any]] = queue.Queue()

        def consume() -> None:
            with httpx.stream("GET", f"{swapd.url}/api/events", timeout=60) as response:
                kind = ""
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        events.put((kind, json.loads(line[5:])))
                        if kind == "inflight" and json.loads(line[5:])["operation"] == "remove":
                            return

        reader = threading.Thread(target=consume, daemon=True)
        reader.start()
        kind, first = events.get(timeout=10)
        assert kind == "snapshot" and first["inflight"] == []
        body = {"model": "alpha", "messages": [{"role": "user", "content": "x"}]}
        assert httpx.post(f"{swapd.url}/v1/chat/completions", json=body, timeout=30).is_success
        reader.join(20)
        seen = []
        while not events.empty():
            seen.append(events.get_nowait())
        ops = [d for k, d in seen if k == "inflight"]
        assert [d["operation"] for d in ops[:2]] == ["upsert", "upsert"]
        assert ops[0]["request"]["status"] is None and ops[1]["request"]["status"] == 200
        assert ops[-1] == {"operation": "remove", "id": ops[0]["request"]["id"]}


def test_a_growing_stream_gets_throttled_byte_count_upserts(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        assert httpx.post(f"{swapd.url}/api/models/alpha/start?wait=true", timeout=30).is_success
        events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()

        def consume() -> None:
            with httpx.stream("GET", f"{swapd.url}/api/events", timeout=60) as response:
                kind = ""
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:") and kind in ("snapshot", "inflight"):
                        data = json.loads(line[5:])
                        events.put((kind, data))
                        if data.get("operation") == "remove":
                            return

        reader = threading.Thread(target=consume, daemon=True)
        reader.start()
        assert events.get(timeout=10)[0] == "snapshot"  # subscribed
        chunks = 40
        body = {
            "model": "alpha",
            "messages": [{"role": "user", "content": "count slowly"}],
            "stream": True,
            "chunks": chunks,
            "chunk_delay": 0.05,
        }
        with httpx.stream("POST", f"{swapd.url}/v1/chat/completions", json=body, timeout=60) as r:
            assert sum(1 for line in r.iter_lines() if line.startswith("data:")) > chunks
        reader.join(20)
        seen = []
        while not events.empty():
            seen.append(events.get_nowait()[1])
        assert seen[-1]["operation"] == "remove"
        sizes = [d["request"]["resp_bytes"] for d in seen if d["operation"] == "upsert"]
        growing = [n for n in sizes if n > 0]
        assert growing == sorted(growing) and len(set(growing)) == len(growing), sizes
        # 2 s of streaming: several updates, far fewer than one per chunk (250 ms apart)
        assert 3 <= len(growing) < chunks // 2, sizes


def test_a_request_waiting_for_its_model_to_start_can_be_cancelled(start_port: int) -> None:
    extra = f"""
  slowstart:
    cmd: {echo_cmd("--health-delay 30")}
"""
    with run_swapd(config(start_port) + extra) as swapd:
        body = {"model": "slowstart", "messages": [{"role": "user", "content": "x"}]}
        thread, out = in_background(
            lambda: httpx.post(f"{swapd.url}/v1/chat/completions", json=body, timeout=60)
        )
        [entry] = wait_for(lambda: inflight(swapd.url))
        assert entry["model"] == "slowstart" and entry["status"] is None
        assert httpx.post(f"{swapd.url}/api/inflight/{entry['id']}/cancel").is_success
        thread.join(30)
        reply = out.get_nowait()
        assert isinstance(reply, httpx.Response) and reply.status_code == 503, reply
        assert reply.json()["error"]["code"] == "request_cancelled"

        def released() -> bool:  # the lease went back: nothing counted against the model
            models = httpx.get(f"{swapd.url}/api/models").json()["models"]
            [info] = [m for m in models if m["id"] == "slowstart"]
            return bool(info["inflight"] == 0 and info["queued"] == 0)

        wait_for(released)
        assert inflight(swapd.url) == []
