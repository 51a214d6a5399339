"""The native front (on by default; swapd.proxy.front, ``front.c``) through a real
swapd and real echo engines: routine requests of a ready model are served by the front, with
the same answers, records and usage as Python's; everything else (a cold model, an alias that
rewrites, an unknown model, a bad body, a browser's request, the other routes) still gets
Python's answer on the same connection; a stream arrives frame by frame; a client that leaves,
an engine that dies, a swap and a shutdown each leave a clean state."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import openai
import pytest

from fakes import raw_engine_cmd
from swapd import native
from swapd.testing import (
    SwapdProcess,
    echo_cmd,
    http_response,
    pids_alive,
    receive,
    run_swapd,
    wait_for,
)

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(native.library() is None, reason="the native library is not built here"),
]

FRONT = {"SWAPD_NATIVE_FRONT": "1"}


def config(start_port: int, extra: str = "", captures: int = 0) -> str:
    return f"""
startPort: {start_port}
healthCheckTimeout: 20
captureBuffer: {captures}
models:
  alpha:
    cmd: {echo_cmd()}
    aliases: [first]
    useModelName: alpha-served
  beta:
    cmd: {echo_cmd()}
    aliases: [second]
{extra}"""


@contextmanager
def fronted(start_port: int, extra: str = "", captures: int = 0) -> Iterator[SwapdProcess]:
    with run_swapd(config(start_port, extra, captures), env={**os.environ, **FRONT}) as swapd:
        yield swapd


def chat(model: str = "beta", **more: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "one two three"}], **more}


def request(port: int, body: bytes, *, extra: str = "") -> bytes:
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


def start(url: str) -> None:
    """beta started (Python serves that request; the front serves beta's from then on)."""
    assert httpx.post(f"{url}/v1/chat/completions", json=chat(), timeout=30).status_code == 200


def frames(sock: socket.socket, count: int) -> bytes:
    """A stream's bytes read until ``count`` data frames came."""
    got = b""
    while got.count(b"data: ") < count:
        got += receive(sock)
    return got


def activity(url: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = httpx.get(f"{url}/api/activity", timeout=10).json()["activity"]
    return records


def served_by_front(record: dict[str, Any]) -> bool:
    return bool((record.get("metadata") or {}).get("front"))


def test_routine_requests_are_served_by_the_front_with_pythons_answers_and_records(
    start_port: int,
) -> None:
    with fronted(start_port) as swapd:
        cold = httpx.post(f"{swapd.url}/v1/chat/completions", json=chat(), timeout=30)
        assert cold.status_code == 200  # the model started: Python served it
        with httpx.Client(base_url=swapd.url, timeout=30) as client:
            plain = client.post("/v1/chat/completions", json=chat())
            streamed = client.post("/v1/chat/completions", json=chat(stream=True, chunks=7))
            usage = chat(stream=True, chunks=5, stream_options={"include_usage": True})
            counted = client.post("/v1/chat/completions", json=usage)
            embedded = client.post("/v1/embeddings", json={"model": "beta", "input": "a b c"})
        records = activity(swapd.url)

    assert plain.status_code == 200 and plain.json()["choices"][0]["message"]["content"]
    assert plain.headers["content-type"] == "application/json"
    assert "date" in plain.headers and plain.headers["x-engine-pid"]
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.headers["x-accel-buffering"] == "no"
    assert streamed.text.count("data: ") == 7 + 2  # the pieces, the finish, [DONE]
    assert streamed.text.endswith("data: [DONE]\n\n")
    assert counted.status_code == embedded.status_code == 200
    assert len(records) == 5
    by_path = sorted((r["path"], served_by_front(r), r["status"]) for r in records)
    assert by_path == [
        ("/v1/chat/completions", False, 200),  # the cold one
        ("/v1/chat/completions", True, 200),
        ("/v1/chat/completions", True, 200),
        ("/v1/chat/completions", True, 200),
        ("/v1/embeddings", True, 200),
    ]
    assert all(r["model"] == "beta" and r["ttfb"] is not None for r in records)
    with_usage = [r for r in records if r["completion_tokens"] == 5]
    assert with_usage and served_by_front(with_usage[0])  # read from the front's body tail


def test_the_fronts_requests_are_captured_as_pythons(start_port: int) -> None:
    with fronted(start_port, captures=1) as swapd:
        start(swapd.url)
        sent = chat(stream=True, chunks=30)
        with httpx.Client(base_url=swapd.url, timeout=30) as client:
            got = client.post("/v1/chat/completions", json=sent, headers={"x-trace": "t1"})
            record = activity(swapd.url)[0]
            deadline = time.monotonic() + 10
            while (capture := client.get(f"/api/captures/{record['id']}")).status_code != 200:
                assert time.monotonic() < deadline, capture.text
                time.sleep(0.05)
    shown = capture.json()
    assert served_by_front(record)
    assert base64.b64decode(shown["resp_body"]) == got.content
    assert json.loads(base64.b64decode(shown["req_body"])) == sent
    assert shown["req_headers"]["X-Trace"] == "t1"
    assert shown["resp_headers"]["Content-Type"].startswith("text/event-stream")
    assert not shown["resp_truncated"]


def test_what_the_front_leaves_to_python_is_answered_on_the_same_connection(
    start_port: int,
) -> None:
    """Requests the front does not serve go to Python with the bytes read, and the connection
    comes back to the front after each: one kept-alive socket carries them all, in order."""
    with fronted(start_port) as swapd:
        start(swapd.url)
        port = swapd.port
        routine = request(port, json.dumps(chat()).encode())
        cases: list[tuple[bytes, int, str]] = [
            (routine, 200, "chat.completion"),
            (request(port, json.dumps(chat("nope")).encode()), 404, "model 'nope' not found"),
            (routine, 200, "chat.completion"),
            (request(port, b'{"model": "beta", '), 400, "not valid JSON"),
            (routine, 200, "chat.completion"),
            (request(port, json.dumps(chat("second")).encode()), 200, "chat.completion"),
            (
                request(port, json.dumps(chat()).encode(), extra="Origin: http://evil.example\r\n"),
                403,
                "cross_site",
            ),
            (f"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode(), 200, "beta"),
            (routine, 200, "chat.completion"),
        ]
        answers = []
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            left = b""
            for raw, _, _ in cases:
                sock.sendall(raw)
                head, body, left = http_response(sock, left)
                answers.append((int(head.split(b" ")[1]), body))
        records = activity(swapd.url)

    for (status, body), (_, want, text) in zip(answers, cases, strict=True):
        assert status == want, body
        assert text.encode() in body
    # recorded: the cold start (Python's), the four routine ones and the alias (beta's alias
    # goes to the engine as sent: nothing to rewrite, so the front's too); the refused ones
    # have no record
    assert len(records) == 6
    assert sum(served_by_front(r) for r in records) == 5


def test_an_alias_that_rewrites_the_model_is_served_by_python(start_port: int) -> None:
    with fronted(start_port) as swapd, httpx.Client(base_url=swapd.url, timeout=30) as client:
        for _ in range(3):
            reply = client.post("/v1/chat/completions", json=chat("first"))
            assert reply.status_code == 200
            assert reply.json()["model"] == "alpha-served"  # useModelName: Python's rewrite
        records = activity(swapd.url)
    assert len(records) == 3 and not any(served_by_front(r) for r in records)


def test_a_reload_reaches_the_front_with_no_model_changing_state(start_port: int) -> None:
    """A reload that only changes API keys or lowers the body limit takes effect at once for
    the model the front serves: the keyless request gets Python's 401, the big body its 413,
    a key taken out its 401."""
    with fronted(start_port) as swapd, httpx.Client(base_url=swapd.url, timeout=30) as client:
        big = chat(padding="x" * 4000)
        assert client.post("/v1/chat/completions", json=big).status_code == 200  # cold
        assert client.post("/v1/chat/completions", json=big).status_code == 200
        text = config(start_port)
        swapd.config_path.write_text(f"maxBodySize: 2000\n{text}")
        assert client.post("/api/config/reload").json()["ok"] is True
        too_big = client.post("/v1/chat/completions", json=big)
        small = client.post("/v1/chat/completions", json=chat())
        records = activity(swapd.url)
        swapd.config_path.write_text(f"apiKeys: [sekret]\n{text}")
        assert client.post("/api/config/reload").json()["ok"] is True
        keyless = client.post("/v1/chat/completions", json=chat())
        keyed = client.post(
            "/v1/chat/completions", json=chat(), headers={"Authorization": "Bearer sekret"}
        )
        swapd.config_path.write_text(f"apiKeys: [other]\n{text}")
        assert client.post("/api/config/reload", headers={"x-api-key": "sekret"}).json()["ok"]
        revoked = client.post(
            "/v1/chat/completions", json=chat(), headers={"Authorization": "Bearer sekret"}
        )
    assert too_big.status_code == 413, too_big.text
    assert small.status_code == 200
    assert sorted(served_by_front(r) for r in records) == [False, True, True]  # (the 413: none)
    assert keyless.status_code == 401, keyless.text
    assert keyed.status_code == 200
    assert revoked.status_code == 401, revoked.text  # a key taken out is refused at once


KEYS = """apiKeys:
  - sekret
  - {key: beta-only, name: narrow, models: [beta]}
  - {key: watcher, name: dash, scopes: [read]}
"""


def test_requests_presenting_an_api_key_are_the_fronts_and_the_key_is_not_passed_on(
    start_port: int,
) -> None:
    """With API keys the front serves a request presenting one that may use the model (Bearer
    or x-api-key), records the key's name and sends the engine no credentials; Python still
    answers everything else as before: no key or a wrong one 401, a key without the inference
    scope 403, a model outside the key's globs 404, a Basic password 200."""
    raw = f"  raw:\n    cmd: {raw_engine_cmd()}\n"
    cfg = KEYS + config(start_port, raw)
    basic = "Basic " + base64.b64encode(b"user:sekret").decode()
    asked = [  # (model, credentials) in order; raw and beta start on the first of each
        ("raw", {"Authorization": "Bearer sekret"}),
        ("raw", {"Authorization": "Bearer sekret"}),
        ("raw", {"x-api-key": "sekret"}),
        ("raw", {"authorization": "bearer  sekret", "x-api-key": "wrong"}),
        ("raw", {"Authorization": basic}),
        ("raw", {}),
        ("raw", {"Authorization": "Bearer nope"}),
        ("raw", {"Authorization": "Bearer beta-only"}),
        ("raw", {"Authorization": "Bearer watcher"}),
        ("beta", {"x-api-key": "beta-only"}),
        ("beta", {"x-api-key": "beta-only"}),
    ]
    with (
        run_swapd(cfg, env={**os.environ, **FRONT}) as swapd,
        httpx.Client(base_url=swapd.url, timeout=30) as client,
    ):
        answers = [
            client.post("/v1/chat/completions", json=chat(model), headers=headers)
            for model, headers in asked
        ]
        records = httpx.get(
            f"{swapd.url}/api/activity", headers={"x-api-key": "sekret"}, timeout=10
        ).json()["activity"]
    assert [r.status_code for r in answers] == [200] * 5 + [401, 401, 404, 403, 200, 200]
    for r in answers[:5]:  # the engine got no credentials, however they came
        assert not {"authorization", "x-api-key"} & set(r.json()["fields"]), r.json()
    booked = sorted(
        (r["id"], r["model"], served_by_front(r), (r.get("metadata") or {}).get("key"))
        for r in records
    )
    assert [row[1:] for row in booked] == [
        ("raw", False, "key-1"),  # it started the engine
        ("raw", True, "key-1"),
        ("raw", True, "key-1"),
        ("raw", True, "key-1"),
        ("raw", False, "key-1"),  # Basic: Python's
        ("beta", False, "narrow"),
        ("beta", True, "narrow"),
    ], booked


def test_hosts_the_config_allows_are_served_by_the_front(start_port: int) -> None:
    """A client that names swapd by a name of ``server.allowedHosts`` (or of the machine, when
    listening on every interface) is the front's too; a Host the guard refuses gets its 403."""
    cfg = "server: {allowedHosts: [gpu-box, .example.com]}\n" + config(start_port)
    with (
        run_swapd(cfg, env={**os.environ, **FRONT}) as swapd,
        httpx.Client(base_url=swapd.url, timeout=30) as client,
    ):
        start(swapd.url)
        hosts = ("gpu-box:8080", "GPU-BOX", "a.example.com", "evil.com", "gpu-boxx")
        answers = [
            client.post("/v1/chat/completions", json=chat(), headers={"Host": host})
            for host in hosts
        ]
        records = activity(swapd.url)
    assert [r.status_code for r in answers] == [200, 200, 200, 403, 403]
    assert sorted(served_by_front(r) for r in records) == [False, True, True, True]


def test_the_openai_sdk_streams_through_the_front(start_port: int) -> None:
    with fronted(start_port) as swapd:
        client = openai.OpenAI(base_url=f"{swapd.url}/v1", api_key="none", max_retries=0)
        texts = []
        for _ in range(3):
            stream = client.chat.completions.create(
                model="beta", messages=[{"role": "user", "content": "red green blue"}], stream=True
            )
            texts.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
        records = activity(swapd.url)
    assert all(text.endswith("red green blue") for text in texts), texts
    assert sum(served_by_front(r) for r in records) >= 2  # all but the cold one


def test_a_paced_stream_reaches_the_client_frame_by_frame(start_port: int) -> None:
    """200 frames 5 ms apart: each arrives as the engine sends it, not all at the end."""
    with fronted(start_port) as swapd:
        start(swapd.url)
        body = json.dumps(chat(stream=True, chunks=200, chunk_delay=0.005)).encode()
        arrivals = []
        with socket.create_connection(("127.0.0.1", swapd.port), timeout=30) as sock:
            sock.sendall(request(swapd.port, body))
            got = b""
            while b"data: [DONE]" not in got:
                piece = receive(sock)
                arrivals.append((time.monotonic(), piece.count(b"data: ")))
                got += piece
        records = activity(swapd.url)
    frames = sum(n for _, n in arrivals)
    assert frames == 202
    reads_with_frames = [t for t, n in arrivals if n]
    assert len(reads_with_frames) >= 100  # one read per frame or two, not one at the end
    assert reads_with_frames[-1] - reads_with_frames[0] >= 0.5  # spread over the stream
    assert served_by_front(records[0])


def test_pipelined_and_split_requests_are_each_answered_in_order(start_port: int) -> None:
    with fronted(start_port) as swapd:
        start(swapd.url)
        port = swapd.port
        one = request(port, json.dumps(chat(messages=[{"role": "user", "content": "a"}])).encode())
        two = request(port, json.dumps(chat(messages=[{"role": "user", "content": "b"}])).encode())
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(one + two)  # pipelined
            head1, body1, left = http_response(sock)
            head2, body2, left = http_response(sock, left)
            for cut in (5, len(one) // 2, len(one) - 3):  # a request in two packets
                sock.sendall(one[:cut])
                time.sleep(0.05)
                sock.sendall(one[cut:])
                head, body, left = http_response(sock, left)
                assert head.startswith(b"HTTP/1.1 200"), head
                assert json.loads(body)["choices"][0]["message"]["content"].endswith(": a")
    assert head1.startswith(b"HTTP/1.1 200") and head2.startswith(b"HTTP/1.1 200")
    assert json.loads(body1)["choices"][0]["message"]["content"].endswith(": a")
    assert json.loads(body2)["choices"][0]["message"]["content"].endswith(": b")


def test_a_client_that_leaves_mid_stream_leaves_the_model_ready_for_the_next(
    start_port: int,
) -> None:
    with fronted(start_port) as swapd:
        start(swapd.url)
        body = json.dumps(chat(stream=True, chunks=400, chunk_delay=0.01)).encode()
        with socket.create_connection(("127.0.0.1", swapd.port), timeout=30) as sock:
            sock.sendall(request(swapd.port, body))
            frames(sock, 5)
        deadline = time.monotonic() + 10
        while True:  # the front's request ended: nothing in flight for beta
            running = httpx.get(f"{swapd.url}/running", timeout=10).json()["running"]
            beta = next(m for m in running if m["id"] == "beta")
            if beta["inflight"] == 0:
                break
            assert time.monotonic() < deadline, beta
            time.sleep(0.05)
        again = httpx.post(f"{swapd.url}/v1/chat/completions", json=chat(), timeout=30)
        records = activity(swapd.url)
    assert again.status_code == 200
    assert len(records) == 3


def test_an_engine_that_dies_mid_stream_cuts_the_stream_and_the_next_request_restarts_it(
    start_port: int,
) -> None:
    with fronted(start_port) as swapd:
        first = httpx.post(f"{swapd.url}/v1/chat/completions", json=chat(), timeout=30)
        pid = int(first.headers["x-engine-pid"])
        body = json.dumps(chat(stream=True, chunks=400, chunk_delay=0.01)).encode()
        with socket.create_connection(("127.0.0.1", swapd.port), timeout=30) as sock:
            sock.sendall(request(swapd.port, body))
            got = frames(sock, 5)
            os.kill(pid, signal.SIGKILL)
            while piece := sock.recv(65536):  # the front closes the client's connection
                got += piece
        assert not got.endswith(b"0\r\n\r\n")  # no terminating chunk: the client sees a cut
        deadline = time.monotonic() + 10
        while pids_alive([pid]) and time.monotonic() < deadline:
            time.sleep(0.05)
        again = httpx.post(f"{swapd.url}/v1/chat/completions", json=chat(), timeout=30)
    assert again.status_code == 200
    assert int(again.headers["x-engine-pid"]) != pid


def tcp_sockets(pid: int) -> list[tuple[int, int, str]]:
    """The IPv4 TCP sockets of process ``pid``: (local port, remote port, state in hex)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    found = []
    with open(f"/proc/{pid}/net/tcp", encoding="ascii") as table:
        for line in list(table)[1:]:
            fields = line.split()
            if fields[9] in inodes:
                local, remote = (int(a.split(":")[1], 16) for a in fields[1:3])
                found.append((local, remote, fields[3]))
    return found


def test_connections_kept_to_an_engine_that_stopped_are_closed(start_port: int) -> None:
    with fronted(start_port) as swapd:
        first = httpx.post(f"{swapd.url}/v1/chat/completions", json=chat(), timeout=30)
        engine = int(first.headers["x-engine-pid"])
        port = next(local for local, _, state in tcp_sockets(engine) if state == "0A")  # LISTEN

        def ask(_: int) -> int:  # each on a connection of its own, closed after its answer
            body = chat(stream=True, chunks=20, chunk_delay=0.01)
            return httpx.post(f"{swapd.url}/v1/chat/completions", json=body, timeout=30).status_code

        with ThreadPoolExecutor(4) as pool:  # the front keeps the engine connections they used
            assert set(pool.map(ask, range(8))) == {200}

        def kept() -> list[tuple[int, int, str]]:
            return [s for s in tcp_sockets(swapd.pid) if s[1] == port]

        assert kept()
        stopped = httpx.post(f"{swapd.url}/api/models/beta/stop", timeout=30)
        assert stopped.status_code == 200
        wait_for(lambda: not pids_alive([engine]), "the engine to exit", 10)
        wait_for(lambda: not kept(), "swapd to close its connections to the stopped engine", 5)


def closed_by_swapd(port: int) -> int:
    """Connections to ``port`` in TIME_WAIT on the dialling side: the ones swapd closed first."""
    with open("/proc/net/tcp", encoding="ascii") as table:
        return sum(
            1
            for line in list(table)[1:]
            if int(line.split()[2].split(":")[1], 16) == port and line.split()[3] == "06"
        )


def test_a_streams_engine_connection_is_kept_unless_the_front_is_busy(start_port: int) -> None:
    """Alone, a client's streams keep their engine connection; of six streams at once, the two
    that end while four or more others are in flight close theirs (a new connection's small
    congestion window makes the engine gather its writes), and every stream is whole."""
    with fronted(start_port) as swapd:
        start(swapd.url)
        engine = int(
            httpx.post(f"{swapd.url}/v1/chat/completions", json=chat()).headers["x-engine-pid"]
        )
        port = next(local for local, _, state in tcp_sockets(engine) if state == "0A")  # LISTEN
        body = json.dumps(chat(stream=True, chunks=20, chunk_delay=0.02)).encode()
        closed = closed_by_swapd(port)
        with socket.create_connection(("127.0.0.1", swapd.port), timeout=30) as sock:
            for _ in range(3):
                sock.sendall(request(swapd.port, body))
                _, streamed, _ = http_response(sock)
                assert streamed.count(b"data: ") == 22
        assert closed_by_swapd(port) == closed

        socks = [socket.create_connection(("127.0.0.1", swapd.port), timeout=30) for _ in range(6)]
        try:
            for sock in socks:
                sock.sendall(request(swapd.port, body))
            for sock in socks:
                _, streamed, _ = http_response(sock)
                assert streamed.count(b"data: ") == 22
        finally:
            for sock in socks:
                sock.close()
        wait_for(lambda: closed_by_swapd(port) == closed + 2, "two engine connections closed", 5)
        time.sleep(0.2)
        assert closed_by_swapd(port) == closed + 2


def test_a_swap_waits_for_the_fronts_stream_to_finish(start_port: int) -> None:
    """alpha and beta swap (one at a time): a request for alpha while the front streams from
    beta waits for that stream; the stream is whole."""
    group = """
groups:
  one:
    swap: true
    exclusive: true
    members: [alpha, beta]
"""
    with fronted(start_port, group) as swapd:
        start(swapd.url)
        body = json.dumps(chat(stream=True, chunks=60, chunk_delay=0.02)).encode()
        with socket.create_connection(("127.0.0.1", swapd.port), timeout=30) as sock:
            sock.sendall(request(swapd.port, body))
            got = frames(sock, 3)
            began = time.monotonic()
            other = httpx.post(f"{swapd.url}/v1/chat/completions", json=chat("alpha"), timeout=30)
            waited = time.monotonic() - began
            while b"data: [DONE]" not in got:
                got += receive(sock)
    assert other.status_code == 200
    assert got.count(b"data: ") == 62  # the whole stream, then the swap
    assert waited >= 0.5  # ~57 frames of 20 ms were left when alpha was asked for


def test_shutdown_lets_the_fronts_stream_finish(start_port: int) -> None:
    with fronted(start_port) as swapd:
        start(swapd.url)
        body = json.dumps(chat(stream=True, chunks=50, chunk_delay=0.02)).encode()
        with socket.create_connection(("127.0.0.1", swapd.port), timeout=30) as sock:
            sock.sendall(request(swapd.port, body))
            got = frames(sock, 3)
            swapd.proc.send_signal(signal.SIGTERM)
            while b"data: [DONE]" not in got:
                got += receive(sock)
        status = swapd.exit_status(30)
    assert got.count(b"data: ") == 52
    assert status == 0


def inflight(url: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = httpx.get(f"{url}/api/inflight", timeout=10).json()["requests"]
    return entries


def test_the_fronts_streams_are_in_flight_and_an_operator_can_cancel_one(start_port: int) -> None:
    with fronted(start_port) as swapd:
        start(swapd.url)
        body = json.dumps(chat(stream=True, chunks=400, chunk_delay=0.01)).encode()
        with socket.create_connection(("127.0.0.1", swapd.port), timeout=30) as sock:
            sock.sendall(request(swapd.port, body))
            got = frames(sock, 5)
            [entry] = inflight(swapd.url)
            time.sleep(0.2)
            [later] = inflight(swapd.url)
            cancelled = httpx.post(f"{swapd.url}/api/inflight/{entry['id']}/cancel", timeout=10)
            while piece := sock.recv(65536):  # cut: the connection closes
                got += piece
        records = activity(swapd.url)
    assert entry["model"] == "beta" and entry["status"] == 200
    assert entry["req_path"] == "/v1/chat/completions" and entry["remote_ip"] == "127.0.0.1"
    assert later["id"] == entry["id"] and later["resp_bytes"] > entry["resp_bytes"] > 0
    assert cancelled.status_code == 200
    assert got.count(b"data: ") < 400 and not got.endswith(b"0\r\n\r\n")
    record = next(r for r in records if r["id"] == entry["id"])  # the same id
    assert record["status"] == 503 and served_by_front(record)


def test_a_request_cancelled_before_its_answer_gets_a_503(start_port: int) -> None:
    with fronted(start_port) as swapd:
        start(swapd.url)
        with socket.create_connection(("127.0.0.1", swapd.port), timeout=30) as sock:
            sock.sendall(request(swapd.port, json.dumps(chat(delay=20)).encode()))
            deadline = time.monotonic() + 10
            while not (entries := inflight(swapd.url)):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert entries[0]["status"] is None  # no head yet
            httpx.post(f"{swapd.url}/api/inflight/{entries[0]['id']}/cancel", timeout=10)
            head, body, _ = http_response(sock)
        records = activity(swapd.url)
    status_line, date, *_ = head.split(b"\r\n")
    assert status_line == b"HTTP/1.1 503 Service Unavailable"
    assert date.startswith(b"date: ") and date.endswith(b" GMT")  # as Python's answers have
    error = json.loads(body)["error"]
    assert error["code"] == "request_cancelled"
    assert error["message"] == f"request {entries[0]['id']} was cancelled by an operator"
    assert [r["status"] for r in records if r["id"] == entries[0]["id"]] == [503]
