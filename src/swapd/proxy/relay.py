"""The data plane for model requests: an engine's response relayed at the protocol level.

:func:`forward` in swapd.proxy.forward passes every chunk through aiohttp's stream reader, a
coroutine step and an ASGI ``http.response.body`` message through uvicorn: about 27 µs of CPU
per SSE frame on a paced load (bench/proxy_overhead.py; docs/architecture.md has the figures).
Here the upstream connection is an :class:`asyncio.Protocol` with an ``httptools`` response
parser, and its ``data_received`` writes each packet straight to the client's transport:

- an upstream body that is already chunked goes to an HTTP/1.1 client as it came, one
  ``transport.write`` per packet (the terminating chunk included) once a packet has ended
  between two chunks; until then (the packet with the header block, one that ends inside a
  chunk) each body piece is reframed as a chunk of its own;
- a ``content-length`` body passes as is; a body delimited by the connection's close gets
  chunked framing for an HTTP/1.1 client, and an HTTP/1.0 client reads it to the close;
- the client head and the first body bytes leave in one write (a small answer: one read
  upstream, one write to the client);
- flow control both ways: the client's transport paused (its buffer full) pauses reading the
  engine's socket (swapd.edge forwards ``pause_writing``/``resume_writing``); an engine that
  sends nothing for ``timeouts.idleRead`` while the client keeps up ends the response (504);
- the request leaves as one write: a pre-built header block (no header dict) and the body;
- a chunked body, once a packet has ended between two chunks, is handed to the native relay
  (swapd.native: a C thread, no Python per packet) where it is built; the exchange hears of it
  again when the body has ended, and finishes the response as if it had relayed it.

The ASGI boundary stays for routing, auth and the lease: swapd.edge puts a :class:`Client` in
the scope (``extensions["swapd.client"]``); :func:`relay` writes the response to its transport
and then completes uvicorn's request cycle (:meth:`Client.complete`), so keep-alive, pipelined
requests and the idle timer go on as for any response. Without the extension (h11) or for a
non-``http`` upstream, swapd.proxy.forward's aiohttp path serves the request; so do peers,
passthrough and the Ollama API (fewer, bigger requests; their own error handling).

Connections to engines are kept alive in a small pool per origin (:class:`Pool`), with the
retry rule of swapd.proxy.forward: a reused connection that fails before any response byte is
retried once on a new one to the same engine, and that origin gets a new connection per request
from then on; a first connection that is refused raises :class:`UpstreamGone`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import time
from typing import Any, Protocol

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from swapd import native
from swapd.config.model import Timeouts
from swapd.errors import UpstreamGone, UpstreamTimeout, UpstreamUnavailable
from swapd.proxy.asgi import Aborted, Headers, Reply, Scope
from swapd.proxy.forward import (
    CREDENTIALS,
    ERROR_BODY_LIMIT,
    HOP_BY_HOP,
    Meter,
    connection_tokens,
    error_frame,
    response_headers,
)

IDLE_KEEP = 4.0  # seconds an idle engine connection is kept (below llama-server's 5 s close)
NO_BODY = frozenset({204, 304})
FRAMED = 1  # the client gets chunked framing built here
RAW = 2  # the client gets the upstream's bytes as they came (its chunked framing, or a length)
PLAIN = 3  # the client gets the body without framing (HTTP/1.0 or content-length)
COLLECT = 4  # an engine error after a loading stream's 200: collected into one SSE frame
# An exchange's parser once it is detached: the parser's callbacks are the exchange's bound
# methods, a reference cycle that only the garbage collector would otherwise break.
SPENT = httptools.HttpResponseParser(object())


class Lost(Protocol):
    """Told when the client's connection is lost (a DisconnectGuard)."""

    def client_lost(self) -> None: ...


class Sink(Lost, Protocol):
    """A relay writing the response: also told when the client's transport pauses writing."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...


class Client:
    """The client side of one request, put in the scope by swapd.edge: its transport and
    uvicorn's request cycle, so a relay can write the response itself and then complete it."""

    __slots__ = ("cycle", "edge", "transport")

    def __init__(self, edge: Any, cycle: Any) -> None:
        self.edge = edge  # the swapd.edge.EdgeProtocol: flow control and loss callbacks
        self.cycle = cycle
        self.transport: asyncio.Transport = edge.transport

    @property
    def disconnected(self) -> bool:
        return bool(self.cycle.disconnected)

    @property
    def keep_alive(self) -> bool:
        return bool(self.cycle.keep_alive)

    def watch(self, guard: Lost) -> None:
        self.edge.guard = guard

    def unwatch(self, guard: Lost) -> None:
        if self.edge.guard is guard:
            self.edge.guard = None

    def start(self) -> None:
        """The response head is being written by the relay: uvicorn must not write one."""
        cycle = self.cycle
        cycle.response_started = True
        cycle.waiting_for_100_continue = False

    def complete(self) -> None:
        """The whole response is written: uvicorn's cycle ends as after its own last send."""
        cycle = self.cycle
        cycle.response_complete = True
        cycle.message_event.set()
        if not cycle.keep_alive:
            self.transport.close()
        cycle.on_response()


def client_of(scope: Scope) -> Client | None:
    extensions = scope.get("extensions")
    return extensions.get("swapd.client") if extensions else None


def let_go(scope: Scope) -> None:
    """The request is over: its :class:`Client` leaves the scope. (uvicorn's cycle holds the
    scope and the client holds the cycle: a reference cycle that only the garbage collector
    would otherwise break, for every request.)"""
    extensions = scope.get("extensions")
    if extensions:
        extensions.pop("swapd.client", None)


class Link(asyncio.Protocol):
    """One connection to an engine: its transport's protocol for as long as it is open. While
    a request is on it, what the engine sends goes to that request's :class:`Exchange`.
    (Never ``transport.set_protocol``: uvloop restarts reading on it, two ``epoll_ctl`` calls
    each time.)"""

    def __init__(self, pool: Pool, origin: tuple[str, int]) -> None:
        self.pool = pool
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self.lost = False
        self.exchange: Exchange | None = None  # the request on the connection now, if any

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP transport (uvloop's)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.pool.forget(self)
        if self.exchange is not None:  # (a detached exchange is no longer here)
            self.exchange.upstream_lost(exc)

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            self.close()  # an idle connection must not speak: it is not reusable
        else:
            exchange.data_received(data)

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost says what it meant

    def close(self) -> None:
        self.lost = True
        self.pool.forget(self)
        if self.transport is not None:
            self.transport.close()


class Pool:
    """Kept-alive engine connections per origin (``IDLE_KEEP`` seconds at most), the origins
    that drop kept-alive connections (a new connection per request for those), and the native
    relay's thread (started by the first body handed over)."""

    def __init__(self) -> None:
        self.idle: dict[tuple[str, int], list[Link]] = {}
        self.no_keepalive: set[tuple[str, int]] = set()
        self._native: native.Relay | None = None
        self._no_native = False

    def native(self) -> native.Relay | None:
        """The native relay (swapd.native), or None where there is none."""
        relay = self._native
        if relay is None and not self._no_native:
            lib = native.library()
            if lib is None:
                self._no_native = True
                return None
            relay = self._native = native.Relay(lib, asyncio.get_running_loop())
        return relay

    def native_abort(self, flow: int) -> None:
        if self._native is not None:
            self._native.abort(flow)

    def native_settle(self, flow: int) -> None:
        if self._native is not None:
            self._native.settle(flow)

    def poll(self) -> None:
        """Bring the meters of bodies the native relay is moving up to date (for the
        in-flight table)."""
        if self._native is not None:
            self._native.poll()

    def take(self, origin: tuple[str, int]) -> Link | None:
        links = self.idle.get(origin)
        if not links:
            return None
        limit = time.monotonic() - IDLE_KEEP
        while links:
            link = links.pop()
            if not link.lost and link.idle_since > limit:
                return link
            link.close()
        return None

    def give(self, link: Link) -> None:
        if link.origin in self.no_keepalive or link.lost:
            link.close()
            return
        link.idle_since = time.monotonic()
        self.idle.setdefault(link.origin, []).append(link)

    def forget(self, link: Link) -> None:
        links = self.idle.get(link.origin)
        if links and link in links:
            links.remove(link)

    async def connect(self, origin: tuple[str, int], seconds: float) -> Link:
        """A new connection to ``origin``, within ``seconds`` (0: no limit)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(seconds or None):
            _, link = await loop.create_connection(lambda: Link(self, origin), origin[0], origin[1])
        return link

    def close(self) -> None:
        for links in self.idle.values():
            for link in links:
                if link.transport is not None:
                    link.transport.close()
        self.idle.clear()
        if self._native is not None:
            self._native.close()
            self._native = None


_ORIGINS: dict[str, tuple[str, int] | None] = {}  # origin_of's answers (a few engines' URLs)


def origin_of(base_url: str) -> tuple[str, int] | None:
    """(host, port) of an ``http://`` base URL; None for anything this relay does not speak."""
    try:
        return _ORIGINS[base_url]
    except KeyError:
        pass
    if len(_ORIGINS) > 1024:  # engines come and go on new ports: bounded
        _ORIGINS.clear()
    found = _ORIGINS[base_url] = _origin(base_url)
    return found


def _origin(base_url: str) -> tuple[str, int] | None:
    if not base_url.startswith("http://"):
        return None
    netloc = base_url[7:].split("/", 1)[0]
    if "@" in netloc:
        return None
    host, sep, port = netloc.rpartition(":")
    if not sep or not port.isdigit() or "]" in port:
        return None
    return host.strip("[]"), int(port)


def body_mode(status: int, length: bool, chunked: bool, *, head_only: bool, http10: bool) -> int:
    """How the client gets an engine's body: PLAIN (as it came: a length, none, or an HTTP/1.0
    client's read to the close), RAW (the engine's chunked framing) or FRAMED (chunks built
    here, for a body the engine ends by closing)."""
    if head_only or status in NO_BODY or length:
        return PLAIN
    if chunked and not http10:
        return RAW
    return PLAIN if http10 else FRAMED


def client_head(status: int, headers: Headers, mode: int, keep_alive: bool) -> bytes:
    """The response head the client gets: the status line, the engine's headers as
    :func:`~swapd.proxy.forward.response_headers` left them, the framing, the connection."""
    head = [STATUS_LINE[status]]
    for name, value in headers:
        head.append(b"%s: %s\r\n" % (name, value))
    if mode in (FRAMED, RAW):
        head.append(b"transfer-encoding: chunked\r\n")
    if not keep_alive:
        head.append(b"connection: close\r\n")
    head.append(b"\r\n")
    return b"".join(head)


def request_head(
    scope: Scope, method: str, target: str, host: bytes, length: int, *, drop_credentials: bool
) -> bytes:
    """The request line and header block to send upstream, as one bytes object: the client's
    headers less the hop-by-hop ones (and those its ``Connection`` names), the credentials when
    swapd checks keys, ``X-Forwarded-For`` with the client's address appended."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    named = connection_tokens(headers) if any(k == b"connection" for k, _ in headers) else ()
    out = [b"%s %s HTTP/1.1\r\nhost: %s\r\n" % (method.encode(), target.encode(), host)]
    forwarded_for: list[bytes] = []
    for key, value in headers:
        if key in HOP_BY_HOP or key in named or (drop_credentials and key in CREDENTIALS):
            continue
        if key == b"x-forwarded-for":
            forwarded_for.append(value)
            continue
        out.append(b"%s: %s\r\n" % (key, value))
    client = scope.get("client")
    if client:
        forwarded_for.append(client[0].encode())
    if forwarded_for:
        out.append(b"x-forwarded-for: %s\r\n" % b", ".join(forwarded_for))
    if length or method not in ("GET", "HEAD", "OPTIONS", "TRACE"):
        out.append(b"content-length: %d\r\n" % length)
    out.append(b"\r\n")
    return b"".join(out)


def whole_chunks(packet: bytes, marks: list[bool], ended: bool) -> bool:
    """Whether the body in ``packet`` (parsed: ``marks`` are its chunk boundaries) ends
    between two chunks, or with a terminating chunk that has no extension, trailer or byte
    after it."""
    if not marks or marks[-1]:
        return False
    return packet.endswith(b"\r\n0\r\n\r\n") if ended else packet.endswith(b"\r\n")


class Exchange:
    """One request on a :class:`Link`: what the engine sends while the response comes (the
    parser's callbacks), written to the client as it does."""

    __slots__ = (
        "bodies",
        "client",
        "closed",
        "collected",
        "counted",
        "done",
        "ended",
        "flow",
        "got_byte",
        "handed",
        "head_only",
        "idle_read",
        "in_chunk",
        "keep_alive",
        "last_read",
        "link",
        "loop",
        "marks",
        "meter",
        "mode",
        "on_body",
        "on_chunk_complete",
        "on_chunk_header",
        "out",
        "parser",
        "paused",
        "pending",
        "raw",
        "raw_headers",
        "reply",
        "reserved",
        "retry",
        "reusable",
        "sse_started",
        "stalled",
        "status",
        "timer",
    )

    def __init__(
        self,
        link: Link,
        client: Client,
        reply: Reply,
        *,
        head_only: bool,
        sse_started: bool,
        meter: Meter | None,
        idle_read: float,
    ) -> None:
        self.link = link
        self.client = client
        self.reply = reply
        self.out = client.transport
        self.head_only = head_only
        self.sse_started = sse_started
        self.meter = meter
        self.raw_headers: Headers = []
        self.status = 0
        self.mode = 0  # FRAMED, RAW, PLAIN or COLLECT once the head is in
        self.raw = False  # from a packet that ends between two chunks on: packets pass as is
        self.in_chunk = False  # the parser is inside a chunk (its size line read, not its end)
        self.ended = False  # the upstream message is complete
        self.reusable = False  # ... and the engine keeps the connection open after it
        self.pending: list[bytes] = []  # what one packet makes for the client: one write
        self.collected = b""
        self.got_byte = False
        self.last_read = 0.0
        self.paused = False
        self.idle_read = idle_read
        self.timer: asyncio.TimerHandle | None = None  # the header deadline, then idle reads
        self.stalled = False  # the timer ended it
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[int] = self.loop.create_future()  # the status, or why not
        # Per body piece and chunk boundary the parser calls C callables, never Python: the
        # pieces of one packet are handled together once it is parsed (see data_received).
        self.bodies: list[bytes] = []
        self.on_body = self.bodies.append
        self.marks: list[bool] = []  # True: a chunk's size line read; False: its end
        self.on_chunk_header = functools.partial(self.marks.append, True)
        self.on_chunk_complete = functools.partial(self.marks.append, False)
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False  # detached from the link (finished, failed or abandoned)
        self.keep_alive = False  # the engine's head lets the connection be reused
        self.flow = 0  # the body's flow in the native relay (0: none)
        self.counted = 0  # body bytes the meter had counted when the flow began
        self.reserved = 0  # body bytes the flow keeps for the capture
        self.handed = False  # the engine's socket is not read here (the native relay's)
        self.retry = False  # the hand-over waits for the client to catch up
        link.exchange = self

    # -- what the engine sends (Link.data_received) ----------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        first = not self.got_byte
        self.got_byte = True
        self.last_read = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(exc)
            return
        bodies = self.bodies
        if self.raw:  # the hot path: one parse (for the meter and the end), one write
            if bodies:  # (Exchange.feed, inlined: once per packet, one call less each time)
                if self.meter is not None:
                    self.meter.feed(bodies[0] if len(bodies) == 1 else b"".join(bodies))
                bodies.clear()
            marks = self.marks
            self.out.write(data)
            if self.ended:
                self.finish()
            elif self.retry and marks and not marks[-1] and data.endswith(b"\r\n"):
                self.hand_over()  # between two chunks again, and the client has caught up?
            marks.clear()
            return
        if bodies:
            if first and self.mode == RAW and whole_chunks(data, self.marks, self.ended):
                # The body in the head's packet is whole chunks: it passes as it came.
                self.raw = True
                self.feed(bodies)
                self.pending.append(data[data.index(b"\r\n\r\n") + 4 :])
            else:
                self.take(bodies)
            bodies.clear()
        if self.pending:
            self.out.write(b"".join(self.pending))
            self.pending.clear()
        marks = self.marks
        if marks:
            self.in_chunk = marks[-1]
            marks.clear()
        if self.ended:
            self.finish()
        elif self.mode == RAW and not self.in_chunk and data.endswith(b"\r\n"):
            self.raw = True  # the packet ended between two chunks: the next ones pass as is
            self.hand_over()
        elif self.head_only and self.status:
            self.finish()  # a HEAD answer: no body follows whatever its length says
        # The idle watchdog, armed once the head is in and the body is not here (a small answer
        # that came whole with its head never needs one; a handed-over body is the native
        # relay's to watch).
        idle = self.timer is None and self.status and self.idle_read
        if idle and not (self.closed or self.handed):
            self.timer = self.loop.call_later(self.idle_read, self._idle)

    # -- httptools callbacks -------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        self.head(self.parser.get_status_code())

    def on_message_complete(self) -> None:
        self.ended = True
        self.reusable = self.parser.should_keep_alive()  # (reset once feed_data returns)

    def head(self, status: int) -> None:
        self.status = status
        headers, length, chunked = response_headers(self.raw_headers)
        meter = self.meter
        if meter is not None:
            meter.start(status, headers)
        if self.timer is not None:  # the header deadline (the idle timer: see data_received)
            self.timer.cancel()
            self.timer = None
        if self.sse_started:
            self.mode = COLLECT if status >= 400 else FRAMED
            return
        client = self.client
        http10 = client.cycle.scope.get("http_version") == "1.0"
        self.mode = body_mode(status, length, chunked, head_only=self.head_only, http10=http10)
        if http10 and not (length or self.head_only or status in NO_BODY):
            client.cycle.keep_alive = False  # the body is read to the close
        client.start()
        self.reply.started = True
        self.pending.append(client_head(status, headers, self.mode, client.keep_alive))

    def feed(self, bodies: list[bytes]) -> None:
        if self.meter is not None:
            self.meter.feed(bodies[0] if len(bodies) == 1 else b"".join(bodies))

    def take(self, bodies: list[bytes]) -> None:
        """One packet's body pieces, before the connection passes packets as they come."""
        self.feed(bodies)
        mode = self.mode
        if mode == PLAIN:
            if not self.head_only:
                self.pending.extend(bodies)
        elif mode == COLLECT:
            for chunk in bodies:
                if len(self.collected) < ERROR_BODY_LIMIT:
                    self.collected += chunk
        else:  # FRAMED, and RAW's first packets
            self.pending.extend(b"%x\r\n%s\r\n" % (len(c), c) for c in bodies)

    def finish(self) -> None:
        """The engine's message is complete: end the client's response, free the link."""
        mode = self.mode
        if mode == COLLECT:
            frame = error_frame(self.status, self.collected)
            if self.meter is not None:
                self.meter.feed(frame)
            self.out.write(b"%x\r\n%s\r\n" % (len(frame), frame))
        elif (mode == FRAMED and not self.sse_started) or (mode == RAW and not self.raw):
            self.out.write(b"0\r\n\r\n")  # (RAW: the whole body came with the head)
        self.detach(keep=self.reusable and not self.head_only)
        if self.paused and not self.sse_started:  # the client still has a full buffer to read:
            self.client.edge.sink = self  # the response completes once it drains (resume)
            return
        self.complete()

    def complete(self) -> None:
        """uvicorn's cycle ends (its keep-alive idle timer starts) and :func:`relay` returns."""
        if not self.sse_started:
            self.client.complete()
        if not self.done.done():
            self.done.set_result(self.status)

    def upstream_lost(self, exc: Exception | None) -> None:
        if self.ended:
            return
        if self.status and self.mode == PLAIN and not self.head_only:
            known = any(k == b"content-length" for k, _ in self.raw_headers)
            if not known:  # a body read to the close: the close is its end
                self.ended = True
                self.finish()
                return
        reason = exc or "connection closed"
        self.fail(ConnectionResetError(f"{reason}") if exc is None else exc)

    def detach(self, *, keep: bool = False) -> None:
        """The exchange is over: its link goes back to the pool (``keep``) or closes; what
        the client's transport says from now on is not for this exchange."""
        if self.closed:
            return
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.parser = SPENT  # its callbacks are this exchange's methods: no cycle left behind
        edge = self.client.edge
        if edge.sink is self:
            edge.sink = None
        if self.flow:
            self.link.pool.native_abort(self.flow)
            self.flow = 0
        link = self.link
        if link.exchange is self:
            link.exchange = None
        if keep and link.transport is not None:
            if self.paused or self.handed:  # paused: for the client, or for the native relay
                link.transport.resume_reading()
            link.pool.give(link)
        else:
            link.close()

    def fail(self, exc: BaseException) -> None:
        self.detach()
        if not self.done.done():
            self.done.set_exception(exc)

    # -- timers: one per exchange at a time ------------------------------------------------
    def deadline(self, seconds: float) -> None:
        """The response head must come within ``seconds`` of the request's write."""
        self.timer = self.loop.call_later(seconds, self._late)

    def _late(self) -> None:
        self.stalled = True
        self.fail(TimeoutError("no response head"))

    def _idle(self) -> None:
        """The idle-read watchdog, re-armed from the last read: a paused client (the engine's
        socket is not read meanwhile) is not an idle engine."""
        due = self.last_read + self.idle_read - time.monotonic()
        if self.paused or due > 0:
            self.timer = self.loop.call_later(due if due > 0 else self.idle_read, self._idle)
            return
        self.stalled = True
        self.fail(TimeoutError(f"no body byte for {self.idle_read:g}s"))

    # -- client flow control (called by swapd.edge) ----------------------------------------
    def pause(self) -> None:
        self.paused = True
        if not self.closed and self.link.transport is not None:
            self.link.transport.pause_reading()

    def resume(self) -> None:
        if self.flow:
            return  # the native relay reads the engine's socket now
        self.paused = False
        self.last_read = time.monotonic()
        if not self.closed and self.link.transport is not None:
            self.link.transport.resume_reading()
        elif self.ended and not self.done.done():  # finished while the client was behind
            self.client.edge.sink = None
            self.complete()

    def client_lost(self) -> None:
        """The client went away: the engine's connection closes at once, so it stops
        generating (the request's task is cancelled by its DisconnectGuard). A body the native
        relay is moving is settled first: a client that closed as soon as it had read the last
        chunk got the whole response (the relay says DONE), and the request completes."""
        if self.flow:
            self.link.pool.native_settle(self.flow)  # native_ended runs before this returns
        self.detach()

    # -- the native relay (swapd.native) ---------------------------------------------------
    def hand_over(self) -> None:
        """The rest of the body, from the engine's next packet to its terminating chunk, is
        the native relay's to move (when there is one, and nothing is pending for the client):
        Python hears of this response once more, when it has ended (:meth:`native_ended`)."""
        relay = self.link.pool.native()
        transport = self.link.transport
        if relay is None or transport is None:
            return
        self.retry = bool(self.paused or self.out.get_write_buffer_size())
        if self.retry:
            return
        upstream = transport.get_extra_info("socket")
        client = self.out.get_extra_info("socket")
        if upstream is None or client is None:
            return
        meter = self.meter
        keep = meter.reserve() if meter is not None else 0
        try:
            self.flow = relay.add(self, upstream.fileno(), client.fileno(), self.idle_read, keep)
        except OSError:
            if meter is not None:
                meter.absorb(native.NOTHING, keep)
            return
        self.counted = meter.size if meter is not None else 0
        self.reserved = keep
        self.handed = True
        transport.pause_reading()
        if self.timer is not None:  # the native relay watches for an idle engine now
            self.timer.cancel()
            self.timer = None

    def native_progress(self, size: int) -> None:
        if self.meter is not None:
            self.meter.size = self.counted + size

    def native_ended(self, ended: native.Ended) -> None:
        self.flow = 0
        meter = self.meter
        if meter is not None:
            meter.size = self.counted
            meter.absorb(ended, self.reserved)
        self.last_read = time.monotonic()
        end = ended.end
        if end == native.DONE:
            self.ended = True
            self.reusable = self.keep_alive and not ended.extra
            self.finish()
        elif end == native.CLIENT_GONE:
            self.out.abort()  # the edge's connection_lost: as for any client that left
        elif end == native.ABORTED:  # settled (client_lost): the engine's connection closes
            self.detach()
        elif end == native.IDLE:
            self.stalled = True
            self.fail(TimeoutError(f"no body byte for {self.idle_read:g}s"))
        elif end == native.BAD_FRAMING:
            self.fail(httptools.HttpParserError("invalid chunked framing from the engine"))
        else:
            reason = os.strerror(ended.err) if ended.err else "connection closed"
            self.fail(ConnectionResetError(reason))


async def _open(
    pool: Pool,
    origin: tuple[str, int],
    timeouts: Timeouts,
    model: str,
    what: str,
    *,
    first: bool,
) -> Link:
    try:
        return await pool.connect(origin, timeouts.connect)
    except TimeoutError as exc:
        raise UpstreamTimeout(
            model,
            f"{what} did not accept a connection within {timeouts.connect:g}s (timeouts.connect)",
        ) from exc
    except OSError as exc:
        if first:  # refused on the first try: nothing reached any engine
            raise UpstreamGone(model, f"{what} is unreachable: {exc}") from exc
        raise UpstreamUnavailable(model, f"{what} is unreachable: {exc}") from exc


async def relay(
    pool: Pool,
    client: Client,
    reply: Reply,
    scope: Scope,
    *,
    origin: tuple[str, int],
    head: bytes,
    body: bytes,
    model: str,
    timeouts: Timeouts,
    sse_started: bool = False,
    meter: Meter | None = None,
    what: str = "",
) -> int:
    """Send ``head`` + ``body`` (see :func:`request_head`) to ``origin`` and write the answer
    to ``client``; returns the upstream status. Errors as swapd.proxy.forward.forward."""
    what = what or f"engine for model {model!r}"
    request = head + body if body else head
    head_only = scope["method"] == "HEAD"
    link = pool.take(origin) if origin not in pool.no_keepalive else None
    reused = link is not None
    if link is None:
        link = await _open(pool, origin, timeouts, model, what, first=True)
    while True:
        ex = Exchange(
            link,
            client,
            reply,
            head_only=head_only,
            sse_started=sse_started,
            meter=meter,
            idle_read=timeouts.idle_read,
        )
        edge = client.edge
        edge.sink = ex
        try:
            assert link.transport is not None
            link.transport.write(request)
            if timeouts.response_header:
                ex.deadline(timeouts.response_header)
            try:
                status = await ex.done
            except (OSError, httptools.HttpParserError) as exc:
                if ex.status:  # the response started: the client's connection is dropped
                    if ex.stalled:
                        raise Aborted(
                            504, f"{what} stalled mid-response: {exc} (timeouts.idleRead)"
                        ) from exc
                    reason = exc or type(exc).__name__
                    raise Aborted(502, f"{what} stopped mid-response: {reason}") from exc
                if ex.stalled:
                    raise UpstreamTimeout(
                        model,
                        f"{what} sent no response headers within "
                        f"{timeouts.response_header:g}s (timeouts.responseHeader)",
                    ) from exc
                if reused and not ex.got_byte:
                    # A kept-alive connection failed before any response byte: the engine
                    # closed it (llama-server does). Resent once, on a new connection, to
                    # this same engine only.
                    link = await _open(pool, origin, timeouts, model, what, first=False)
                    pool.no_keepalive.add(origin)
                    reused = False
                    continue
                raise UpstreamUnavailable(model, f"{what} is unreachable: {exc}") from exc
            if sse_started:  # the loading stream's response is uvicorn's: it ends it
                await reply.send({"type": "http.response.body", "body": b""})
            return status
        finally:
            if edge.sink is ex:
                edge.sink = None
            if not ex.closed:  # cancelled (the client left, an operator): stop the engine
                ex.fail(ConnectionAbortedError("the client left"))  # (done is cancelled then)
            if not ex.done.cancelled():  # an outcome nobody awaited is not an error
                ex.done.exception()
