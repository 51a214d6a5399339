"""Property test: random interleavings of clients, swaps, stops, reloads and crashes through one
real swapd (its native front on where the library is built; the ``python`` nox session runs it
again with the front off).

alpha and beta swap (one at a time; alpha sleeps when swapped out), gamma stays beside them
and can sleep too. Hypothesis draws batches of
actions run at once, each in a thread on a kept-alive client connection of its own: requests
(streamed or not, up to three pipelined on one connection), a client leaving mid-stream, an
engine killed, a model stopped or put to sleep, an operator's cancel, a reload that adds or
removes a model.
After every batch:

- every answer is the one to its own request (the echo engine repeats each request's words),
  whole (a stream ends with ``[DONE]``) and in order on its connection;
- only a request (or a stop or sleep) of a model whose engine was killed, or whose requests
  an operator cancelled, in the same batch may fail, and only as a cut connection, a 502 or a
  503; a stop, a sleep, a swap or a reload waits for what is in flight;
- nothing is left in flight: ``/api/inflight`` empties and every model's count is back to 0.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from swapd.proxy import front
from swapd.testing import (
    Cut,
    SwapdProcess,
    echo_cmd,
    free_port_range,
    http_response,
    receive,
    run_swapd,
    wait_for,
)

pytestmark = [pytest.mark.soak, pytest.mark.timeout(600)]

MODELS = ("alpha", "beta", "gamma")
BOUND = 45.0  # seconds: a batch still running after this is a hang
CONNECTIONS = 4  # a batch's actions at most: one client connection each


def config(start_port: int, extra: bool) -> str:
    delta = f"  delta:\n    cmd: {echo_cmd()}\n" if extra else ""
    return f"""
startPort: {start_port}
healthCheckTimeout: 20
models:
  alpha:
    cmd: {echo_cmd()}
    sleep: {{level: 1}}
  beta:
    cmd: {echo_cmd()}
  gamma:
    cmd: {echo_cmd()}
    sleep: {{level: 1}}
{delta}groups:
  pair:
    swap: true
    exclusive: true
    members: [alpha, beta]
"""


@dataclass(frozen=True)
class Ask:
    """``count`` requests for ``model`` written at once on one connection (pipelined)."""

    model: str
    stream: bool
    chunks: int
    delay: float
    count: int


@dataclass(frozen=True)
class Leave:
    """A stream for ``model`` that the client leaves after its first frame."""

    model: str


@dataclass(frozen=True)
class Kill:
    model: str


@dataclass(frozen=True)
class Stop:
    model: str


@dataclass(frozen=True)
class Sleep:
    """``model`` put to sleep now (alpha and gamma have ``sleep``; a swap sleeps alpha too)."""

    model: str


@dataclass(frozen=True)
class Cancel:
    """An operator cancels what ``model`` has in flight (``POST /api/inflight/{id}/cancel``)."""

    model: str


@dataclass(frozen=True)
class Reload:
    pass


Action = Ask | Leave | Kill | Stop | Sleep | Cancel | Reload

MODEL = st.sampled_from(MODELS)
ASK = st.builds(
    Ask,
    MODEL,
    st.booleans(),
    st.integers(1, 12),
    st.sampled_from([0.0, 0.005, 0.02]),
    st.integers(1, 3),
)
ACTION: st.SearchStrategy[Action] = st.one_of(
    ASK,
    ASK,
    ASK,
    st.builds(Leave, MODEL),
    st.builds(Kill, MODEL),
    st.builds(Stop, MODEL),
    st.builds(Sleep, MODEL),
    st.builds(Cancel, MODEL),
    st.just(Reload()),
)
BATCHES = st.lists(st.lists(ACTION, min_size=1, max_size=CONNECTIONS), min_size=1, max_size=4)


@dataclass
class Served:
    """The one swapd the examples share, and the client connections kept between batches."""

    swapd: SwapdProcess
    start_port: int
    extra: bool = False
    words: Iterator[int] = field(default_factory=itertools.count)
    sockets: list[socket.socket | None] = field(default_factory=lambda: [None] * CONNECTIONS)

    def connection(self, slot: int) -> socket.socket:
        """The slot's connection; a new one where swapd closed the last (``keepAliveTimeout``
        ran out between two batches), as an HTTP client does."""
        sock = self.sockets[slot]
        if sock is not None:
            sock.setblocking(False)
            try:
                stray = sock.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                stray = None  # open, nothing unasked for
            except OSError:
                stray = b""
            sock.settimeout(BOUND)
            assert not stray, f"bytes nobody asked for on a kept connection: {stray!r}"
            if stray is not None:
                self.drop(slot)
                sock = None
        if sock is None:
            sock = socket.create_connection(("127.0.0.1", self.swapd.port), timeout=BOUND)
            self.sockets[slot] = sock
        return sock

    def drop(self, slot: int) -> None:
        sock, self.sockets[slot] = self.sockets[slot], None
        if sock is not None:
            sock.close()


def post(port: int, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


def said(body: bytes, stream: bool) -> str | None:
    """The answer's text, or None when a stream did not end with ``[DONE]``."""
    if not stream:
        return str(json.loads(body)["choices"][0]["message"]["content"])
    text = body.decode()
    if not text.endswith("data: [DONE]\n\n"):
        return None
    pieces = []
    for line in text.split("\n"):
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices", []):
                pieces.append(choice.get("delta", {}).get("content") or "")
    return "".join(pieces)


@dataclass
class Outcome:
    action: Action
    problems: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # cuts, 502s, 503s: after a kill, a cancel
    note: str = ""  # for hypothesis's statistics


def run(served: Served, slot: int, action: Action, outcome: Outcome) -> None:
    """One action, in its own thread: what goes wrong is the outcome's problem."""
    try:
        act(served, slot, action, outcome)
    except Exception as exc:  # a thread's error is the test's
        outcome.problems.append(repr(exc))


def act(served: Served, slot: int, action: Action, outcome: Outcome) -> None:
    url = served.swapd.url
    if isinstance(action, Kill):
        models = httpx.get(f"{url}/api/models", timeout=BOUND).json()["models"]
        for m in models:
            if m["id"] == action.model and m.get("pid"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(m["pid"], signal.SIGKILL)
    elif isinstance(action, Stop):
        answer = httpx.post(f"{url}/api/models/{action.model}/stop", timeout=BOUND)
        judge(outcome, "stop", answer, (200,))
    elif isinstance(action, Sleep):
        answer = httpx.post(f"{url}/api/models/{action.model}/sleep", timeout=BOUND)
        judge(outcome, "sleep", answer, (200, 409))  # 409: not running, or no sleep configured
        outcome.note = f" {answer.status_code}"
    elif isinstance(action, Cancel):
        time.sleep(0.02)  # the batch's requests are on their way
        for req in httpx.get(f"{url}/api/inflight", timeout=BOUND).json()["requests"]:
            if req["model"] == action.model:
                httpx.post(f"{url}/api/inflight/{req['id']}/cancel", timeout=BOUND)
    elif isinstance(action, Reload):
        served.extra = not served.extra
        served.swapd.config_path.write_text(
            config(served.start_port, served.extra), encoding="utf-8"
        )
        os.kill(served.swapd.pid, signal.SIGHUP)
    elif isinstance(action, Leave):
        sock = served.connection(slot)
        body = {"model": action.model, "messages": [{"role": "user", "content": "bye"}]}
        try:
            sock.sendall(post(served.swapd.port, {**body, "stream": True, "chunks": 50}))
            receive(sock)
        except (Cut, OSError):
            pass
        served.drop(slot)
    else:
        ask(served, slot, action, outcome)


def judge(outcome: Outcome, what: str, answer: httpx.Response, fine: tuple[int, ...]) -> None:
    """An operator's call: a status in ``fine``; a 502 or 503 only as the fault of a kill."""
    if answer.status_code in (502, 503):
        outcome.failed.append(f"{what}: {answer.status_code} {answer.text[:200]}")
    elif answer.status_code not in fine:
        outcome.problems.append(f"{what}: {answer.status_code} {answer.text[:200]}")


def ask(served: Served, slot: int, action: Ask, outcome: Outcome) -> None:
    sock = served.connection(slot)
    expected = []
    data = b""
    for _ in range(action.count):
        words = f"words {next(served.words)}"
        body = {
            "model": action.model,
            "messages": [{"role": "user", "content": words}],
            "stream": action.stream,
            "chunks": action.chunks,
            "chunk_delay": action.delay,
        }
        expected.append(f"echo {action.model}: {words}")
        data += post(served.swapd.port, body)
    try:
        sock.sendall(data)
        rest = b""
        for want in expected:
            head, body_bytes, rest = http_response(sock, rest)
            status = int(head.split(b" ", 2)[1])
            if status in (502, 503):
                outcome.failed.append(f"{status} {body_bytes[:200]!r}")
                served.drop(slot)  # the answers after it are not read
                return
            if status != 200:
                outcome.problems.append(f"{want!r}: {status} {body_bytes[:300]!r}")
                served.drop(slot)
                return
            text = said(body_bytes, action.stream)
            if text is None or not text.startswith(want):
                outcome.problems.append(f"{want!r}: got {body_bytes[-300:]!r}")
                served.drop(slot)
                return
        if rest:
            outcome.problems.append(f"bytes after the last answer: {rest[:200]!r}")
            served.drop(slot)
    except (Cut, ConnectionError) as exc:
        outcome.failed.append(f"cut: {exc!r}")
        served.drop(slot)


def settled(served: Served) -> None:
    """Nothing in flight: not in swapd's table, not in any model's count."""
    url = served.swapd.url

    def quiet() -> bool:
        if httpx.get(f"{url}/api/inflight", timeout=10).json()["requests"]:
            return False
        running = httpx.get(f"{url}/running", timeout=10).json()["running"]
        return all(m.get("inflight", 0) == 0 for m in running)

    wait_for(quiet, "nothing in flight once a batch ended", 10)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    start_port = free_port_range(8)
    with run_swapd(config(start_port, extra=False)) as swapd:
        state = Served(swapd, start_port)
        yield state
        for slot in range(CONNECTIONS):
            state.drop(slot)
        records = httpx.get(f"{swapd.url}/api/activity", timeout=10).json()["activity"]
    fronted = sum(bool((r.get("metadata") or {}).get("front")) for r in records)
    assert fronted > 0 or not front.enabled(), f"the front served none of {len(records)}"


@settings(
    max_examples=int(os.environ.get("SWAPD_INTERLEAVINGS", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=BATCHES)
def test_interleaved_clients_swaps_stops_reloads_and_crashes_leave_answers_whole(
    served: Served, batches: list[list[Action]]
) -> None:
    for batch in batches:
        outcomes = [Outcome(action) for action in batch]
        threads = [
            threading.Thread(target=run, args=(served, slot, action, outcome), daemon=True)
            for slot, (action, outcome) in enumerate(zip(batch, outcomes, strict=True))
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + BOUND
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in threads), f"a batch still running: {batch}"
        disrupted = {a.model for a in batch if isinstance(a, Kill | Cancel)}
        for outcome in outcomes:
            failed = " failed" if outcome.failed else ""
            event(type(outcome.action).__name__ + outcome.note + failed)
            assert not outcome.problems, (outcome.action, outcome.problems, batch)
            model = getattr(outcome.action, "model", None)
            assert not outcome.failed or model in disrupted, (outcome.action, outcome.failed, batch)
        settled(served)
