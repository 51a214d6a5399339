"""The native relay (swapd.native, relay.c) on real socket pairs: every byte of a chunked body
reaches the client in order and nothing past its end, under random chunk sizes, packet splits
and a client that reads slowly; the meter's and the capture's figures match the body; and each
way a flow can end (engine closed, broken framing, idle engine, client gone, abort) is told."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swapd import native

lib = native.library()
pytestmark = pytest.mark.skipif(lib is None, reason="the native relay is not built here")


class Owner:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.ended: asyncio.Future[native.Ended] = loop.create_future()
        self.sizes: list[int] = []

    def native_ended(self, ended: native.Ended) -> None:
        self.ended.set_result(ended)

    def native_progress(self, size: int) -> None:
        self.sizes.append(size)


def chunked(chunks: list[bytes], *, trailer: bool = False, extension: bool = False) -> bytes:
    ext = b";name=value" if extension else b""
    out = b"".join(b"%x%s\r\n%s\r\n" % (len(c), ext, c) for c in chunks if c)
    return out + (b"0\r\nx-trailer: yes\r\n\r\n" if trailer else b"0\r\n\r\n")


def pairs() -> tuple[socket.socket, socket.socket, socket.socket, socket.socket]:
    """(engine, swapd's engine side, swapd's client side, client)"""
    engine, up = socket.socketpair()
    down, client = socket.socketpair()
    for s in (up, down):
        s.setblocking(False)
    return engine, up, down, client


def write_packets(sock: socket.socket, data: bytes, cuts: list[int], pause: float) -> None:
    at = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        if cut > at:
            sock.sendall(data[at:cut])
            at = cut
            if pause:
                time.sleep(pause)


def read_all(sock: socket.socket, want: int, got: bytearray, slow: bool) -> None:
    sock.settimeout(20)
    while len(got) < want:
        piece = sock.recv(512 if slow else 65536)
        if not piece:
            return
        got += piece
        if slow:
            time.sleep(0.0005)


bodies = st.lists(st.binary(min_size=0, max_size=3000), min_size=0, max_size=40)


@given(
    chunks=bodies,
    cuts=st.lists(st.integers(0, 200_000), max_size=12),
    keep=st.integers(0, 50_000),
    trailer=st.booleans(),
    extension=st.booleans(),
    extra=st.booleans(),
    slow=st.booleans(),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_chunked_body_arrives_whole_and_metered_whatever_its_packets(
    chunks: list[bytes],
    cuts: list[int],
    keep: int,
    trailer: bool,
    extension: bool,
    extra: bool,
    slow: bool,
) -> None:
    wire = chunked(chunks, trailer=trailer, extension=extension)
    body = b"".join(chunks)
    after = b"HTTP/1.1 200 OK\r\n" if extra else b""  # bytes past the end: not relayed
    cuts = [c % (len(wire) + 1) for c in cuts]

    async def run() -> tuple[native.Ended, bytes]:
        assert lib is not None
        loop = asyncio.get_running_loop()
        relay = native.Relay(lib, loop)
        engine, up, down, client = pairs()
        if slow:
            down.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        got = bytearray()
        try:
            owner = Owner(loop)
            relay.add(owner, up.fileno(), down.fileno(), 0, keep)
            writer = threading.Thread(
                target=write_packets, args=(engine, wire + after, cuts, 0.001 if slow else 0)
            )
            reader = threading.Thread(target=read_all, args=(client, len(wire), got, slow))
            writer.start()
            reader.start()
            ended = await asyncio.wait_for(owner.ended, 20)
            writer.join(20)
            reader.join(20)
            return ended, bytes(got)
        finally:
            relay.close()
            for s in (engine, up, down, client):
                s.close()

    ended, got = asyncio.run(run())
    assert ended.end == native.DONE
    assert got == wire
    assert ended.size == len(body)
    assert ended.head == body[: native.HEAD_MAX]
    assert ended.tail == body[-native.TAIL_MAX :] if body else ended.tail == b""
    assert ended.keep == body[:keep]
    assert ended.keep_cut == (len(body) > keep > 0)
    assert (ended.first is not None) == bool(body)
    if not extra:  # (with them, the next read may or may not have taken them too)
        assert not ended.extra


@dataclass
class Flow:
    """One flow handed to a fresh relay over socket pairs: ``engine`` writes what the engine
    sends, ``client`` reads what the client gets."""

    relay: native.Relay
    owner: Owner
    fid: int
    engine: socket.socket
    client: socket.socket

    async def ended(self) -> native.Ended:
        return await asyncio.wait_for(self.owner.ended, 10)

    def client_has_nothing(self) -> bool:
        self.client.setblocking(False)
        try:
            self.client.recv(100)
        except BlockingIOError:
            return True
        return False


@contextlib.asynccontextmanager
async def flowing(keep: int = 0, idle: float = 0) -> AsyncIterator[Flow]:
    assert lib is not None
    loop = asyncio.get_running_loop()
    relay = native.Relay(lib, loop)
    socks = engine, up, down, client = pairs()
    owner = Owner(loop)
    try:
        fid = relay.add(owner, up.fileno(), down.fileno(), idle, keep)
        client.settimeout(10)
        yield Flow(relay, owner, fid, engine, client)
    finally:
        relay.close()
        for s in socks:
            s.close()


@pytest.mark.anyio
async def test_an_engine_that_closes_mid_body_ends_the_flow_as_closed() -> None:
    async with flowing() as flow:
        flow.engine.sendall(b"5\r\nhello\r\n")
        flow.engine.close()
        ended = await flow.ended()
        assert ended.end == native.UPSTREAM_CLOSED and ended.size == 5
        assert flow.client.recv(100) == b"5\r\nhello\r\n"


@pytest.mark.anyio
async def test_broken_chunk_framing_ends_the_flow_before_it_reaches_the_client() -> None:
    async with flowing() as flow:
        flow.engine.sendall(b"zz\r\nhello\r\n")
        assert (await flow.ended()).end == native.BAD_FRAMING
        assert flow.client_has_nothing()


@pytest.mark.anyio
async def test_an_idle_engine_ends_the_flow_after_its_limit() -> None:
    began = time.monotonic()
    async with flowing(idle=0.3) as flow:
        flow.engine.sendall(b"3\r\nabc\r\n")
        assert (await flow.ended()).end == native.IDLE
        assert 0.3 <= time.monotonic() - began < 5


@pytest.mark.anyio
async def test_a_client_that_went_away_ends_the_flow_as_gone() -> None:
    async with flowing() as flow:
        flow.client.close()
        for _ in range(50):  # the first write may still be taken; a later one fails
            flow.engine.sendall(b"3\r\nabc\r\n")
            if flow.owner.ended.done():
                break
            await asyncio.sleep(0.02)
        assert (await flow.ended()).end == native.CLIENT_GONE


@pytest.mark.anyio
async def test_an_aborted_flow_relays_nothing_more_and_tells_nobody() -> None:
    async with flowing() as flow:
        flow.engine.sendall(b"3\r\nabc\r\n")
        assert flow.client.recv(100) == b"3\r\nabc\r\n"
        flow.relay.poll()
        assert flow.owner.sizes == [3]
        flow.relay.abort(flow.fid)
        await asyncio.sleep(0.1)
        flow.engine.sendall(b"3\r\ndef\r\n0\r\n\r\n")
        await asyncio.sleep(0.2)
        assert flow.client_has_nothing()
        assert not flow.owner.ended.done() and not flow.relay.flows


@pytest.mark.anyio
async def test_settling_a_flow_tells_done_when_its_last_chunk_was_written_already() -> None:
    async with flowing() as flow:
        wire = chunked([b"last words"])
        flow.engine.sendall(wire)
        got = b""
        while len(got) < len(wire):  # the client has it all: the thread wrote the end
            got += flow.client.recv(100)
        flow.relay.settle(flow.fid)  # without yielding to the loop: its notice is unread
        assert flow.owner.ended.done() and flow.owner.ended.result().end == native.DONE
        assert not flow.relay.flows


@pytest.mark.anyio
async def test_settling_a_running_flow_ends_it_as_aborted_before_returning() -> None:
    async with flowing() as flow:
        flow.engine.sendall(b"3\r\nabc\r\n")
        assert flow.client.recv(100) == b"3\r\nabc\r\n"
        flow.relay.settle(flow.fid)
        assert flow.owner.ended.done()
        ended = flow.owner.ended.result()
        assert ended.end == native.ABORTED and ended.size == 3
