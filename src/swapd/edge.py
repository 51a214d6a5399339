"""swapd's own HTTP edge: limits on what a client connection may hold, and whom to believe.

uvicorn's httptools protocol, bounded (``server:`` in the config, read again on each new
connection, so a reload applies to connections opened after it):

- a request's header block (request line + headers) above ``maxHeaderBytes`` → 431 and close;
  bytes past the limit never reach the parser (httptools itself has no limit);
- a connection that has not sent a request's complete headers within ``headerTimeout`` is
  closed (408 if part of a request came, silently if nothing did);
- an idle keep-alive connection is closed after ``keepAliveTimeout`` (uvicorn's timer);
- at most ``maxConnections`` open connections (0: derived from the fd limit, see
  :func:`derived_cap`); one more gets a 503 envelope and is closed, so the fds left stay
  available for engine pipes, upstream sockets and logs;
- ``X-Forwarded-For``, ``X-Real-IP`` and ``Forwarded`` are removed from requests whose peer is
  not in ``trustedProxies``; from a trusted peer, ``X-Forwarded-For`` keeps the hops from the
  nearest untrusted one on. The forwarder then appends the real peer, so an engine sees the
  client's address and no address a client made up.

Refusals are written straight to the socket as JSON envelopes; then the connection is closed
after a short lingering read, so the client reads the answer instead of a reset.

Each request's scope carries ``extensions["swapd.client"]`` (swapd.proxy.relay.Client): the
connection's transport and uvicorn's request cycle, for the relay that writes a model's response
itself. The protocol forwards the transport's ``pause_writing``/``resume_writing`` to that relay
(``sink``) and tells it, and the request's DisconnectGuard (``guard``), when the client leaves.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import logging
import os
import resource
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Protocol

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from swapd.config.model import ServerConfig
from swapd.errors import HeadersTooLarge, HeaderTimeout, SwapdError, TooManyConnections
from swapd.proxy.asgi import Receive, Scope, Send
from swapd.proxy.envelope import error_body, is_anthropic
from swapd.proxy.relay import Client, Lost, Sink

log = logging.getLogger("swapd.edge")

FD_RESERVE = 64  # fds never given to client connections: listener, logs, store, engine pipes
LINGER_SECONDS = 2.0  # after a refusal: read and drop what the client still sends, then close
LINGER_BYTES = 1 << 20  # ... up to this much
REFUSE_BACKLOG = 64  # most connections lingering after a 503 at once; past it the oldest closes
WARN_EVERY = 10.0  # seconds between two "connection cap reached" warnings
FORWARDING = (b"x-forwarded-for", b"x-real-ip", b"forwarded")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard one; returns (before, now)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft, soft
    return soft, target


def fd_budget(fd_limit: int) -> int:
    """fds client connections may use: the limit less a fixed reserve and an eighth of it."""
    return max(fd_limit - FD_RESERVE - fd_limit // 8, 8)


def derived_cap(fd_limit: int) -> int:
    """The default connection cap: each connection may need an upstream socket too (2 fds),
    and a quarter as many again may be lingering after a refusal (:func:`refuse_backlog`)."""
    return max(fd_budget(fd_limit) * 4 // 9, 4)


def connection_cap(configured: int, fd_limit: int) -> int:
    """``maxConnections`` (0: :func:`derived_cap`), never more than the fd budget."""
    if configured <= 0:
        return derived_cap(fd_limit)
    return min(configured, fd_budget(fd_limit))


def refuse_backlog(cap: int) -> int:
    """How many connections refused past the cap may linger at once."""
    return min(max(cap // 4, 4), REFUSE_BACKLOG)


def refusal(error: SwapdError, path: bytes = b"", *, retry: bool = False) -> bytes:
    """A complete ``connection: close`` response carrying ``error``'s JSON envelope (in
    Anthropic's shape for its routes), dated as uvicorn's responses are."""
    anthropic = is_anthropic(path.decode("latin-1"))
    body = error_body(error.http_status, error.message, error.code, anthropic=anthropic)
    head = [
        STATUS_LINE[error.http_status],
        b"date: %s\r\n" % email.utils.formatdate(usegmt=True).encode(),
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"connection: close\r\n",
    ]
    if retry:
        head.append(b"retry-after: 1\r\n")
    return b"".join((*head, b"\r\n", body))


class Edge:
    """The limits in force (``settings``: the running config's ``server:``) and the state the
    connections share: the fd limit, how many are being refused, when the last warning went."""

    def __init__(self, settings: Callable[[], ServerConfig], fd_limit: int) -> None:
        self.settings = settings
        self.fd_limit = fd_limit
        self.refusing: dict[asyncio.Transport, None] = {}  # lingering after a 503, oldest first
        self._warned = 0.0
        self._for: ServerConfig | None = None  # the settings _cap and _nets were made from
        self._cap = 0
        self._nets: tuple[Network, ...] | None = ()  # None: "*", every peer
        self.front: FrontLink | None = None  # the native front, where it runs

    def _derive(self, settings: ServerConfig) -> None:
        if settings is not self._for:
            self._cap = connection_cap(settings.max_connections, self.fd_limit)
            proxies = settings.trusted_proxies
            self._nets = None if "*" in proxies else tuple(map(ipaddress.ip_network, proxies))
            self._for = settings

    def cap(self, settings: ServerConfig) -> int:
        self._derive(settings)
        return self._cap

    def networks(self, settings: ServerConfig) -> tuple[Network, ...] | None:
        """``trustedProxies`` as networks; None for ``*`` (every peer)."""
        self._derive(settings)
        return self._nets

    def trusts(self, settings: ServerConfig, address: str) -> bool:
        """Whether ``address`` is one of ``trustedProxies``."""
        self._derive(settings)
        nets = self._nets
        if nets is None:
            return True
        if not nets:
            return False
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        return any(ip in net for net in nets)

    def screen(self, settings: ServerConfig, headers: list[tuple[bytes, bytes]], peer: str) -> None:
        """Drop the forwarding headers an untrusted ``peer`` sent; from a trusted one, trim
        ``X-Forwarded-For`` to the hops from the nearest untrusted one on (module doc)."""
        if not peer or not self.trusts(settings, peer):
            headers[:] = [(n, v) for n, v in headers if n not in FORWARDING]
            return
        for i, (name, value) in enumerate(headers):
            if name != b"x-forwarded-for":
                continue
            hops = [h.strip() for h in value.split(b",") if h.strip()]
            start = 0
            for j in range(len(hops) - 1, -1, -1):
                if not self.trusts(settings, hops[j].decode("latin-1")):
                    start = j
                    break
            headers[i] = (name, b", ".join(hops[start:]))

    def warn_full(self, open_now: int) -> None:
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY:
            self._warned = now
            log.warning(
                "connection cap reached (%d open, server.maxConnections): refusing new "
                "connections with 503 until some close",
                open_now,
            )

    def protocol(self) -> type[asyncio.Protocol]:
        """The uvicorn ``http`` protocol class bound to this edge."""
        edge = self

        class Bound(EdgeProtocol):
            EDGE = edge

        return Bound


class FrontLink(Protocol):
    """The native front (swapd.native.Front) as the edge sees it: it takes a kept-alive
    connection back between two requests (False: it did not, the fd is still the caller's),
    and the connection cap counts its connections and Python's together."""

    def adopt(self, fd: int, peer: str) -> bool: ...

    def open(self) -> int: ...

    def python_open(self, count: int) -> None: ...


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of :class:`Edge` (see the module doc)."""

    EDGE: ClassVar[Edge]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = self.EDGE.settings()
        self.timeout_keep_alive = self.limits.keepalive_timeout  # type: ignore[assignment]
        self._in_head = True  # reading a request's header block
        self._head_bytes = 0  # of the current header block
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_since: float | None = None  # loop time a header block began; None: none
        self._refused = False  # answered by the edge: only draining until the close
        self._counted = False  # in Edge.refusing
        self._drained = 0
        self.sink: Sink | None = None  # the relay writing the current response, if one is
        self.guard: Lost | None = None  # the current request's DisconnectGuard, if one is

    # -- connection ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        edge = self.EDGE
        front = edge.front
        held = len(self.connections) + (front.open() if front is not None else 0)
        if held >= edge.cap(self.limits):
            self.transport = transport
            edge.warn_full(held)
            if len(edge.refusing) >= refuse_backlog(edge.cap(self.limits)):
                oldest = next(iter(edge.refusing))  # it has its answer: close it early
                del edge.refusing[oldest]
                oldest.close()
            edge.refusing[transport] = None
            self._counted = True
            message = "too many open connections to swapd; retry shortly"
            self._refuse(refusal(TooManyConnections(message), retry=True))
            return
        super().connection_made(transport)
        self._head_began()
        if front is not None:
            front.python_open(len(self.connections))

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self.sink is not None:
            self.sink.client_lost()
        cycle = self.cycle
        if self.guard is not None and not (cycle is not None and cycle.response_complete):
            self.guard.client_lost()  # (a client that closed after the whole response: no)
        if self._counted:
            self._counted = False
            self.EDGE.refusing.pop(self.transport, None)
        if self._refused and self.flow is None:  # refused before uvicorn saw it
            self.parser = None
            return
        super().connection_lost(exc)
        if (front := self.EDGE.front) is not None:
            front.python_open(len(self.connections))

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._drained += len(data)
            if self._drained > LINGER_BYTES:
                self.transport.close()
            return
        if self._in_head:
            room = self.limits.max_header_bytes - self._head_bytes
            if len(data) > room:
                if room > 0:
                    self._head_bytes += room
                    super().data_received(data[:room])
                if self._in_head:
                    self._too_large()
                    return
                if self.transport.is_closing() or self.transport.get_protocol() is not self:
                    return
                data = data[room:]
            else:
                self._head_bytes += len(data)
        super().data_received(data)

    # -- parser callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_began()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_since = None  # the timer, if armed, finds nothing to time and lapses
        self._check_forwarding()
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:
            extensions: Any = {"swapd.client": Client(self, cycle)}
            self.scope["extensions"] = extensions

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.sink is not None:
            self.sink.pause()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.sink is not None:
            self.sink.resume()

    def on_response_complete(self) -> None:
        """The native front, when there is one, takes a kept-alive connection back once its
        response is out and no byte of a next request has come (else uvicorn keeps it)."""
        front = self.EDGE.front
        cycle = self.cycle
        transport = self.transport
        if (
            front is None
            or self.pipeline
            or not self._in_head
            or self._head_bytes
            or cycle is None
            or not cycle.keep_alive
            or transport.is_closing()
            or transport.get_write_buffer_size()
        ):
            super().on_response_complete()
            return
        self.server_state.total_requests += 1
        try:
            fd = os.dup(transport.get_extra_info("socket").fileno())
        except (AttributeError, OSError):
            super().on_response_complete()
            return
        transport.abort()  # reads nothing more; the dup keeps the connection open
        if not front.adopt(fd, self.client[0] if self.client else ""):
            os.close(fd)  # the client sees the connection close, as after an idle timeout

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # the next bytes are the next request's header block
        self._head_bytes = 0

    # -- limits --------------------------------------------------------------------------
    def _head_began(self) -> None:
        """A header block starts (or may: a new connection) and must be complete in time. One
        timer per connection, re-armed lazily: no timer call per request on a busy one."""
        self._head_since = now = self.loop.time()
        if self._head_timer is None:
            self._head_timer = self.loop.call_at(
                now + self.limits.header_timeout, self._head_timed_out
            )

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _responding(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _head_timed_out(self) -> None:
        self._head_timer = None
        since = self._head_since
        if since is None or self._refused or self.transport.is_closing():
            return
        deadline = since + self.limits.header_timeout
        if self.loop.time() < deadline:  # a later header block: its own full time
            self._head_timer = self.loop.call_at(deadline, self._head_timed_out)
            return
        if self._responding():  # a pipelined request stalls: close after the current answer
            self.cycle.keep_alive = False
            return
        if self._head_bytes == 0:  # connected (or kept alive) and sent nothing: just close
            self.transport.close()
            return
        seconds = f"{self.limits.header_timeout:g}"
        message = f"request headers not received within {seconds}s (server.headerTimeout)"
        self._refuse(refusal(HeaderTimeout(message), getattr(self, "url", b"")))

    def _too_large(self) -> None:
        limit = self.limits.max_header_bytes
        message = f"request header block is larger than {limit} bytes (server.maxHeaderBytes)"
        if self._responding():  # an answer is being written: no room for ours
            self.transport.close()
            return
        self._refuse(refusal(HeadersTooLarge(message), getattr(self, "url", b"")))

    def _refuse(self, response: bytes) -> None:
        """Answer ``response``, stop reading requests, close after a short lingering read."""
        self._refused = True
        self._cancel_head_timer()
        self._unset_keepalive_if_required()
        transport = self.transport
        transport.write(response)
        if transport.can_write_eof():
            transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, transport.close)

    # -- forwarding headers --------------------------------------------------------------
    def _check_forwarding(self) -> None:
        headers = self.headers
        for name, _ in headers:
            if name in FORWARDING:
                self.EDGE.screen(self.limits, headers, self.client[0] if self.client else "")
                return


def forwarded(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name in FORWARDING for name, _ in headers)


class ForwardingScreen:
    """:meth:`Edge.screen` as ASGI middleware, for when uvicorn runs h11 (no httptools), so
    the forwarding headers are screened whichever protocol runs."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], edge: Edge) -> None:
        self.app = app
        self.edge = edge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and forwarded(scope["headers"]):
            headers = list(scope["headers"])
            client = scope.get("client")
            self.edge.screen(self.edge.settings(), headers, client[0] if client else "")
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)
