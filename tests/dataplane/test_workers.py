"""Data-plane workers (``server.workers``, swapd.dataplane): workers accept and relay, the owner
keeps the scheduler, the records and everything that is not a model request."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from swapd.testing import echo_cmd, pids_alive, run_swapd, wait_for, worker_pids

pytestmark = pytest.mark.timeout(120)


def config(start_port: int, extra: str = "", top: str = "", workers: int = 2) -> str:
    return f"""
startPort: {start_port}
healthCheckTimeout: 20
server:
  workers: {workers}
{top}
models:
  alpha:
    cmd: {echo_cmd()}
  slow:
    cmd: {echo_cmd()}
    concurrencyLimit: 1
{extra}
"""


def chat(model: str = "alpha", text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def holders_of_connections_to(port: int, pids: list[int]) -> list[int]:
    """Which of ``pids`` hold an established TCP connection to 127.0.0.1:``port``."""
    remote = f"0100007F:{port:04X}"
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2] == remote and fields[3] == "01":  # ESTABLISHED
            inodes.add(fields[9])
    return [pid for pid in pids if _socket_inodes(pid) & inodes]


def engine_port(url: str, model: str) -> int:
    running = httpx.get(f"{url}/running").json()["running"]
    [entry] = [r for r in running if r["model"] == model]
    return int(entry["proxy"].rsplit(":", 1)[1])


def test_workers_relay_model_requests_and_the_owner_keeps_the_records(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        workers = wait_for(lambda: len(w := worker_pids(swapd.proc.pid)) == 2 and w)
        with httpx.Client(base_url=swapd.url, timeout=30) as client:
            for i in range(6):
                reply = client.post("/v1/chat/completions", json=chat(text=f"n{i}"))
                assert reply.status_code == 200, reply.text
                assert f"n{i}" in reply.json()["choices"][0]["message"]["content"]
            with client.stream(
                "POST", "/v1/chat/completions", json=chat(text="streamed", stream=True)
            ) as response:
                body = b"".join(response.iter_bytes())
            assert response.status_code == 200 and body.endswith(b"data: [DONE]\n\n")
            # the engine's connections are the workers': the owner relays nothing
            port = engine_port(swapd.url, "alpha")
            holders = holders_of_connections_to(port, [swapd.proc.pid, *workers])
            assert holders and swapd.proc.pid not in holders, holders

            records = client.get("/api/activity").json()["activity"]
            assert [r["status"] for r in records] == [200] * 7
            ids = [r["id"] for r in records]
            assert len(set(ids)) == 7 and all(i.startswith("req-") for i in ids)
            assert records[1]["completion_tokens"] is not None  # usage read in the worker
            capture = client.get(f"/api/captures/{records[1]['id']}").json()
            assert capture["id"] == records[1]["id"]
            assert b"n5" in base64.b64decode(capture["req_body"])
            metrics = client.get("/metrics").text
            assert 'swapd_requests_total{model="alpha",status="200"} 7.0' in metrics


def test_cold_routes_and_model_requests_share_one_kept_alive_connection(
    start_port: int,
) -> None:
    with run_swapd(config(start_port)) as swapd:
        conn = http.client.HTTPConnection("127.0.0.1", swapd.port, timeout=30)
        seen = []
        for method, path, body in (
            ("POST", "/v1/chat/completions", chat(text="first")),  # a worker relays
            ("GET", "/v1/models", None),  # handed over to the owner with the connection
            ("POST", "/v1/chat/completions", chat(text="then")),  # the owner now
            ("GET", "/api/activity", None),
        ):
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"content-type": "application/json"} if body is not None else {}
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            seen.append((response.status, response.read()))
        conn.close()
        assert [status for status, _ in seen] == [200, 200, 200, 200]
        assert b"first" in seen[0][1] and b"then" in seen[2][1]
        assert {m["id"] for m in json.loads(seen[1][1])["data"]} >= {"alpha", "slow"}
        assert len(json.loads(seen[3][1])["activity"]) == 2


def test_a_chunked_request_body_is_relayed_and_handed_over_whole(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        body = json.dumps(chat(text="chunked body")).encode()

        def chunks() -> Any:
            yield body[:10]
            yield body[10:]

        reply = httpx.post(f"{swapd.url}/v1/chat/completions", content=chunks(), timeout=30)
        assert reply.status_code == 200 and "chunked body" in reply.text
        profile = httpx.put(  # a cold route with a chunked body: the owner reads it whole
            f"{swapd.url}/api/profiles/active",
            content=(p for p in (b'{"name"', b": null}")),
            timeout=30,
        )
        assert profile.status_code == 200 and profile.json() == {"active": None}


def test_errors_before_the_response_are_the_owners_decisions(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        missing = httpx.post(f"{swapd.url}/v1/chat/completions", json=chat("nope"), timeout=30)
        assert missing.status_code == 404
        assert "available models: alpha, slow" in missing.json()["error"]["message"]
        # concurrencyLimit 1 counts the requests of every worker: the second is refused
        slow = chat("slow", "a long answer", stream=True, chunks=500, chunk_delay=0.05)

        def serving() -> bool:
            models = httpx.get(f"{swapd.url}/api/models").json()["models"]
            return any(m["id"] == "slow" and m["inflight"] == 1 for m in models)

        with httpx.stream(
            "POST", f"{swapd.url}/v1/chat/completions", json=slow, timeout=30
        ) as first:
            assert first.status_code == 200
            lines = first.iter_lines()  # kept: a dropped iterator closes the response
            next(lines)
            wait_for(serving)
            for _ in range(4):  # new connections: spread over the workers by the kernel
                second = httpx.post(f"{swapd.url}/v1/chat/completions", json=slow, timeout=30)
                assert second.status_code == 429, second.text
                assert "concurrencyLimit 1" in second.json()["error"]["message"]
        after = httpx.post(f"{swapd.url}/v1/chat/completions", json=chat("slow"), timeout=30)
        assert after.status_code == 200


def test_an_operators_cancel_reaches_the_worker_relaying_the_request(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        body = chat(text="a long answer", stream=True, chunks=500, chunk_delay=0.05)
        with httpx.stream(
            "POST", f"{swapd.url}/v1/chat/completions", json=body, timeout=60
        ) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data:")
            [entry] = wait_for(lambda: httpx.get(f"{swapd.url}/api/inflight").json()["requests"])
            assert entry["model"] == "alpha" and entry["id"].startswith("req-")
            assert httpx.post(f"{swapd.url}/api/inflight/{entry['id']}/cancel").is_success
            with pytest.raises(httpx.RemoteProtocolError):
                for _ in lines:
                    pass
        wait_for(lambda: httpx.get(f"{swapd.url}/api/inflight").json()["requests"] == [])
        [record] = httpx.get(f"{swapd.url}/api/activity").json()["activity"]
        assert record["id"] == entry["id"] and record["status"] == 503  # as in one process


def test_a_killed_worker_is_replaced_and_gives_back_what_it_held(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        workers = wait_for(lambda: len(w := worker_pids(swapd.proc.pid)) == 2 and w)
        body = chat(text="a long answer", stream=True, chunks=500, chunk_delay=0.05)
        got: list[BaseException] = []

        def stream() -> None:
            try:
                with httpx.stream(
                    "POST", f"{swapd.url}/v1/chat/completions", json=body, timeout=60
                ) as response:
                    for _ in response.iter_lines():
                        pass
            except httpx.HTTPError as exc:
                got.append(exc)

        thread = threading.Thread(target=stream, daemon=True)
        thread.start()
        wait_for(lambda: httpx.get(f"{swapd.url}/api/inflight").json()["requests"])
        port = engine_port(swapd.url, "alpha")
        [relaying] = wait_for(lambda: holders_of_connections_to(port, workers))
        os.kill(relaying, signal.SIGKILL)
        thread.join(30)
        assert got and isinstance(got[0], httpx.RemoteProtocolError)
        wait_for(lambda: httpx.get(f"{swapd.url}/api/inflight").json()["requests"] == [])
        [record] = httpx.get(f"{swapd.url}/api/activity").json()["activity"]
        assert record["status"] == 502
        # its lease went back: the model is idle, and unloads at once
        models = httpx.get(f"{swapd.url}/api/models").json()["models"]
        [alpha] = [m for m in models if m["id"] == "alpha"]
        assert alpha["inflight"] == 0
        assert httpx.post(f"{swapd.url}/api/models/unload", timeout=30).is_success
        again = wait_for(lambda: len(w := worker_pids(swapd.proc.pid)) == 2 and w)
        assert relaying not in again
        assert "data-plane worker" in swapd.output() and "exited" in swapd.output()
        reply = httpx.post(f"{swapd.url}/v1/chat/completions", json=chat(), timeout=30)
        assert reply.status_code == 200


def test_a_reload_reaches_the_workers_and_a_stop_ends_them(start_port: int, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config(start_port), encoding="utf-8")
    with run_swapd(path) as swapd:
        workers = wait_for(lambda: len(w := worker_pids(swapd.proc.pid)) == 2 and w)
        added = f"""
  gamma:
    cmd: {echo_cmd()}
"""
        path.write_text(config(start_port, extra=added), encoding="utf-8")
        swapd.proc.send_signal(signal.SIGHUP)

        def gamma_served() -> bool:
            reply = httpx.post(f"{swapd.url}/v1/chat/completions", json=chat("gamma"), timeout=30)
            return reply.status_code == 200

        wait_for(gamma_served)
        for _ in range(6):  # every worker has the new config (new connections spread)
            reply = httpx.post(f"{swapd.url}/v1/chat/completions", json=chat("gamma"), timeout=30)
            assert reply.status_code == 200, reply.text
        swapd.proc.send_signal(signal.SIGTERM)
        assert swapd.exit_status(30) == 0
        assert pids_alive(workers) == []
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", swapd.port), timeout=5).close()
