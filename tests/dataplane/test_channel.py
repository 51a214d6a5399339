"""The control channel (swapd.dataplane.channel): batched frames over a real socket pair, with
descriptors, under random message sizes, batchings and partial writes."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swapd.dataplane.channel import Channel

# A message: (sequence number, payload size, whether it carries a descriptor); turns: how many
# messages are queued before the loop runs (one frame per turn).
messages = st.lists(st.tuples(st.integers(0, 600_000), st.booleans()), min_size=1, max_size=24)
turns = st.lists(st.integers(1, 6), min_size=1, max_size=24)


async def exchange(plan: list[tuple[int, bool]], grouping: list[int]) -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)  # partial writes, EAGAIN
    got: list[tuple[Any, ...]] = []
    fds_got: list[int] = []
    done = asyncio.Event()
    closed: list[str] = []

    def on_message(message: tuple[Any, ...], fds: list[int]) -> None:
        got.append(message)
        if message[2]:
            fds_got.append(fds.pop(0))
        if len(got) == len(plan):
            done.set()

    sender = Channel(a, lambda m, f: None, lambda: closed.append("a"))
    receiver = Channel(b, on_message, lambda: closed.append("b"))
    pipes: list[tuple[int, int]] = []
    i = 0
    step = 0
    while i < len(plan):
        for _ in range(grouping[step % len(grouping)]):
            if i == len(plan):
                break
            size, with_fd = plan[i]
            fds: tuple[int, ...] = ()
            if with_fd:
                r, w = os.pipe()
                pipes.append((r, w))
                fds = (os.dup(w),)  # the channel owns (and closes) what it is given
            sender.send((i, os.urandom(8) * (size // 8), with_fd), fds)
            i += 1
        step += 1
        await asyncio.sleep(0)
    await asyncio.wait_for(done.wait(), 30)
    try:
        assert [m[0] for m in got] == list(range(len(plan)))
        assert [len(m[1]) for m in got] == [s // 8 * 8 for s, _ in plan]
        assert len(fds_got) == len(pipes)
        for fd, (r, _w) in zip(fds_got, pipes, strict=True):
            os.write(fd, b"x")  # the descriptor that arrived is the same pipe's write end
            assert os.read(r, 1) == b"x"
            os.close(fd)
    finally:
        for r, w in pipes:
            os.close(r)
            os.close(w)
        sender.close()
        receiver.close()
    assert sorted(closed) == ["a", "b"]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=messages, grouping=turns)
def test_messages_and_descriptors_arrive_in_order_whatever_the_batching(
    plan: list[tuple[int, bool]], grouping: list[int]
) -> None:
    asyncio.run(exchange(plan, grouping))


def test_the_other_end_closing_is_reported_once() -> None:
    async def run() -> None:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        closed: list[str] = []
        gone = asyncio.Event()
        receiver = Channel(b, lambda m, f: None, lambda: (closed.append("b"), gone.set()))
        a.close()
        await asyncio.wait_for(gone.wait(), 10)
        receiver.close()
        receiver.send(("late",), (os.dup(0),))  # after the close: dropped, descriptor closed
        assert closed == ["b"]

    asyncio.run(run())


@pytest.mark.parametrize("count", [0, 3])
def test_descriptors_no_message_takes_are_closed(count: int) -> None:
    async def run() -> None:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        seen = asyncio.Event()
        receiver = Channel(b, lambda m, f: seen.set(), lambda: None)
        sender = Channel(a, lambda m, f: None, lambda: None)
        r, w = os.pipe()
        sender.send(("no taker",), tuple(os.dup(w) for _ in range(count)))
        await asyncio.wait_for(seen.wait(), 10)
        os.close(w)  # every copy closed (ours, the sender's, the receiver's): the pipe ends
        assert os.read(r, 1) == b""
        os.close(r)
        sender.close()
        receiver.close()

    asyncio.run(run())
