"""Bounded observers: a client of ``/logs/stream`` or ``/api/events`` that stops reading costs
at most its byte budget, is dropped with a log line naming it, and leaves nothing behind.

The end-to-end tests run a real ``swapd serve`` whose engine prints 8 KB lines as fast as swapd
reads them, open stuck clients (raw sockets with a tiny receive buffer that never read) and
measure the server's resident memory before, during and after.
"""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from swapd.observe.events import EventBus
from swapd.observe.logs import LogRing
from swapd.observe.outbox import CHUNK_OVERHEAD, Outbox
from swapd.testing import SwapdProcess, rss_kib, run_swapd, wait_for

LINE = 8000  # bytes of one engine log line
STUCK = 10  # stuck clients per test
MIB = 1024

# What 10 stuck clients may add to the server's RSS while connected, and what may stay after
# they left (KiB). Before the byte budget, 10 stuck clients held ~100 MiB, and kept it.
WHILE_STUCK = 32 * MIB
AFTER = 12 * MIB
ADMIN_KEY = "sk-observers-admin-0123456789"
WATCH_KEY = "sk-observers-watch-0123456789"

ENGINE = """\
import sys, time
rate = float(sys.argv[1])  # lines per second; 0: bursts as fast as the pipe takes them;
line = "x" * {size} + "\\n"  # below 0: never a pause
n = 0
while True:
    sys.stdout.write(line)
    n += 1
    if rate > 0:
        sys.stdout.flush()
        time.sleep(1 / rate)
    elif rate == 0 and n % 200 == 0:
        sys.stdout.flush()
        time.sleep(0.005)
"""


def chatty_config(tmp_path: Path, rate: float = 0, top: str = "") -> str:
    script = tmp_path / "chatty.py"
    script.write_text(ENGINE.format(size=LINE - 1))
    cmd = shlex.join([sys.executable, str(script), str(rate)])
    return f"""
{top}
models:
  chatty:
    cmd: {cmd}
    checkEndpoint: none
    proxy: http://127.0.0.1:9
"""


@contextmanager
def stuck_clients(
    swapd: SwapdProcess, paths: list[str], headers: str = ""
) -> Iterator[list[socket.socket]]:
    """One connection per path that sends a GET for it, reads one byte (the stream has begun:
    the client is subscribed) and then nothing more."""
    with ExitStack() as stack:
        socks = []
        for path in paths:
            sock = stack.enter_context(socket.socket())
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
            sock.settimeout(30)
            sock.connect(("127.0.0.1", swapd.port))
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
            socks.append(sock)
        for sock in socks:
            assert sock.recv(1) == b"H"  # HTTP/1.1 200 OK
        yield socks


def peers(socks: list[socket.socket]) -> set[str]:
    """How swapd names these connections in its log lines."""
    return {f"127.0.0.1:{sock.getsockname()[1]}" for sock in socks}


DROP = re.compile(r"dropped client (\S+?):? ")


def dropped_peer(line: str) -> str | None:
    found = DROP.search(line)
    return found[1] if found else None


def dropped(swapd: SwapdProcess, names: set[str]) -> list[str]:
    """The drop lines that name one of ``names`` (see :func:`peers`), each at most once."""
    found = [line for line in swapd.log if dropped_peer(line) in names]
    assert len(found) == len({dropped_peer(line) for line in found}), found
    return found


def settled_rss(pid: int, seconds: float = 2.0) -> int:
    """The smallest RSS seen over ``seconds`` (KiB): transient buffers do not count."""
    lowest = rss_kib(pid) or 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.2)
        lowest = min(lowest, rss_kib(pid) or lowest)
    return lowest


def warm_up(
    swapd: SwapdProcess, path: str, size: int = 2 * 1024 * 1024, key: str | None = None
) -> int:
    """Start the engine, read ``size`` bytes through one normal stream, return the RSS baseline."""
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    start = httpx.post(f"{swapd.url}/api/models/chatty/start", headers=auth, timeout=30)
    start.raise_for_status()
    with httpx.stream("GET", f"{swapd.url}{path}", headers=auth, timeout=30) as response:
        assert response.status_code == 200
        got = 0
        for chunk in response.iter_bytes():
            got += len(chunk)
            if got > size:
                break
    return settled_rss(swapd.pid)


# ── the outbox and the shared lines ─────────────────────────────────────────────────────────


def test_outbox_counts_bytes_and_refuses_what_does_not_fit() -> None:
    box = Outbox(budget=3 * (100 + CHUNK_OVERHEAD))
    assert all(box.put(b"a" * 100) for _ in range(3))
    assert not box.put(b"b")  # a fourth chunk, however small, would pass the budget
    assert box.get_nowait(limit=250) == b"a" * 200  # joined up to the limit
    assert box.put(b"c" * 100)
    assert box.get_nowait(limit=1) == b"a" * 100  # at least one chunk, whatever the limit
    assert box.size == 100 + CHUNK_OVERHEAD


def test_a_flood_of_empty_chunks_is_bounded_by_the_overhead() -> None:
    box = Outbox(budget=64 * 1024)
    kept = 0
    while box.put(b""):
        kept += 1
    assert kept == 64 * 1024 // CHUNK_OVERHEAD


def test_closing_an_outbox_lets_go_and_ends_a_waiting_reader() -> None:
    async def main() -> None:
        box = Outbox(budget=1024)
        got: list[BaseException] = []

        async def reader() -> None:
            try:
                await box.get()
            except anyio.EndOfStream as exc:
                got.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.wait_all_tasks_blocked()
            box.put(b"x" * 10)
            box.close()
        assert got and box.size == 0 and len(box) == 0 and not box.put(b"y")

    anyio.run(main)


def test_raw_subscribers_share_one_encoded_line() -> None:
    ring = LogRing("m")
    seen: list[list[bytes]] = [[], []]

    def keeper(out: list[bytes]) -> Callable[[bytes], bool]:
        def push(line: bytes) -> bool:
            out.append(line)
            return True

        return push

    subs = [ring.subscribe_raw(keeper(out)) for out in seen]
    ring.write("héllo")
    assert seen[0] == [b"h\xc3\xa9llo\n"]
    assert seen[0][0] is seen[1][0]  # one bytes object for every stream, not a copy each
    for sub in subs:
        ring.unsubscribe(sub)
    assert ring.subscribers == 0


def test_bus_drops_a_subscriber_past_its_budget_and_frees_its_frames() -> None:
    async def main() -> None:
        bus = EventBus(budget=4096)
        slow, fast = bus.subscribe("slow", logs=True), bus.subscribe("fast", logs=True)
        for n in range(40):
            bus.publish("log", {"source": "m", "line": "x" * 200 + str(n)})
            fast.outbox.get_nowait()
        assert slow.dropped and slow.cut.cancel_called and slow.outbox.size == 0
        assert not fast.dropped and bus.subscribers == 1

    anyio.run(main)


def test_a_subscriber_that_left_is_skipped_not_dropped() -> None:
    async def main() -> None:
        bus = EventBus(budget=1024)
        gone, staying = bus.subscribe("gone"), bus.subscribe("staying")
        gone.outbox.close()  # it left while a publish was under way
        bus.publish("model", {"n": 1})
        assert not gone.dropped and not gone.cut.cancel_called
        assert staying.outbox.get_nowait().startswith(b"id: 1\nevent: model\n")

    anyio.run(main)


# ── a real swapd ────────────────────────────────────────────────────────────────────────────


@pytest.mark.timeout(180)
def test_stuck_log_stream_clients_are_dropped_and_their_memory_returns(tmp_path: Path) -> None:
    with run_swapd(chatty_config(tmp_path)) as swapd:
        baseline = warm_up(swapd, "/logs/stream/chatty?no-history")
        peak = baseline
        paths = ["/logs/stream/chatty?no-history"] * 4 + ["/logs/stream/upstream"] * 3
        with stuck_clients(swapd, [*paths, *["/logs/stream"] * 3]) as socks:

            def all_dropped() -> bool:
                nonlocal peak
                peak = max(peak, rss_kib(swapd.pid) or 0)
                return len(dropped(swapd, peers(socks))) == STUCK

            wait_for(all_dropped, "every stuck client to be dropped", timeout=60)
            lines = dropped(swapd, peers(socks))
            assert any("logs/stream/chatty: dropped client" in line for line in lines)
            assert any("logs/stream/upstream: dropped client" in line for line in lines)
            assert any("/logs/stream: dropped client" in line for line in lines)
            assert all("1048576-byte budget" in line for line in lines), lines
            during = settled_rss(swapd.pid)
            # The server is unaffected while they are still connected.
            assert httpx.get(f"{swapd.url}/api/models", timeout=10).status_code == 200
        after = settled_rss(swapd.pid)
        report = f"baseline {baseline} KiB, peak {peak}, while stuck {during}, after {after}"
        assert peak - baseline < WHILE_STUCK, report
        assert after - baseline < AFTER, report


KEYS = f"""
apiKeys:
  - {{key: {ADMIN_KEY}, name: ops, scopes: [admin, read]}}
  - {{key: {WATCH_KEY}, name: dashboard, scopes: [read]}}
"""


@pytest.mark.timeout(180)
def test_stuck_event_stream_clients_are_dropped_and_their_memory_returns(tmp_path: Path) -> None:
    # Clients with a read-only key: the drop line names the key, never its value.
    with run_swapd(chatty_config(tmp_path, top=KEYS)) as swapd:
        baseline = warm_up(swapd, "/api/events?logs=true", key=ADMIN_KEY)
        peak = baseline
        bearer = f"Authorization: Bearer {WATCH_KEY}\r\n"
        with stuck_clients(swapd, ["/api/events?logs=true"] * STUCK, bearer) as socks:

            def all_dropped() -> bool:
                nonlocal peak
                peak = max(peak, rss_kib(swapd.pid) or 0)
                return len(dropped(swapd, peers(socks))) == STUCK

            wait_for(all_dropped, "every stuck events client to be dropped", timeout=60)
            lines = dropped(swapd, peers(socks))
            assert all("events: dropped client" in line for line in lines), lines
            assert all("(key dashboard): its unread events" in line for line in lines), lines
        after = settled_rss(swapd.pid)
        assert not any(WATCH_KEY in line for line in swapd.log)
        report = f"baseline {baseline} KiB, peak {peak}, after {after}"
        assert peak - baseline < WHILE_STUCK, report
        assert after - baseline < AFTER, report


@pytest.mark.timeout(180)
def test_a_reader_that_keeps_up_is_never_dropped_beside_stuck_ones(tmp_path: Path) -> None:
    # 8 KB lines at ~100 lines/s: a reader keeps up; a stuck client passes 1 MiB in seconds.
    with run_swapd(chatty_config(tmp_path, rate=100)) as swapd:
        httpx.post(f"{swapd.url}/api/models/chatty/start", timeout=30).raise_for_status()
        received = 0
        stop = threading.Event()

        def read() -> None:
            nonlocal received
            url = f"{swapd.url}/logs/stream/chatty?no-history"
            with httpx.stream("GET", url, timeout=30) as response:
                for chunk in response.iter_bytes():
                    received += len(chunk)
                    if stop.is_set():
                        return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        with stuck_clients(swapd, ["/logs/stream/chatty?no-history"] * 3) as socks:
            wait_for(
                lambda: len(dropped(swapd, peers(socks))) == 3,
                "the stuck clients to be dropped",
                timeout=60,
            )
            before = received
            more = before + 20 * LINE
            wait_for(lambda: received > more, "the reader to go on receiving", timeout=60)
        stop.set()
        reader.join(timeout=30)
        assert sum("dropped client" in line for line in swapd.log) == 3, swapd.log[-5:]


@pytest.mark.timeout(180)
def test_stuck_clients_that_leave_before_their_budget_leave_nothing(tmp_path: Path) -> None:
    # Slow output (~480 KB/s): the clients leave long before 1 MiB waits for them. Had one
    # stayed subscribed, it would pass its budget before a client that came after them all.
    with run_swapd(chatty_config(tmp_path, rate=60)) as swapd:
        baseline = warm_up(swapd, "/logs/stream/chatty", size=64 * 1024)
        for _ in range(3):
            with stuck_clients(swapd, ["/logs/stream/chatty?no-history"] * STUCK) as early:
                names = peers(early)
                time.sleep(0.5)  # stuck for a while, far from the budget
            assert not dropped(swapd, names)
        with stuck_clients(swapd, ["/logs/stream/chatty?no-history"]) as probe:
            late = peers(probe)
            wait_for(lambda: dropped(swapd, late), "the late client to be dropped", timeout=60)
        assert sum("dropped client" in line for line in swapd.log) == 1, swapd.log[-5:]
        after = settled_rss(swapd.pid)
        assert after - baseline < AFTER, f"baseline {baseline} KiB, after {after}"


@pytest.mark.timeout(120)
def test_an_engine_that_never_stops_printing_does_not_starve_swapd(tmp_path: Path) -> None:
    # Reading a pipe that always has data never waits: without a checkpoint per chunk, the
    # engine's reader held the event loop, a log stream's lines piled up until its client was
    # dropped before it got a byte, and /health waited for a pause in the output.
    yes = shutil.which("yes")
    if yes is None:
        pytest.skip("needs coreutils' yes: a writer faster than swapd's reader")
    config = f"""
models:
  chatty:
    cmd: {yes} {"x" * 200}
    checkEndpoint: none
    proxy: http://127.0.0.1:9
"""
    with run_swapd(config) as swapd:
        start = httpx.post(f"{swapd.url}/api/models/chatty/start", timeout=30)
        assert start.status_code == 200
        url = f"{swapd.url}/logs/stream/chatty?no-history"
        with httpx.stream("GET", url, timeout=30) as response:
            assert len(next(response.iter_bytes())) > 0
        for _ in range(5):
            began = time.monotonic()
            assert httpx.get(f"{swapd.url}/health", timeout=10).status_code == 200
            assert time.monotonic() - began < 5
