"""A data-plane worker process: accepts clients on the owner's listening socket and relays model
requests itself, with leases from the owner (``server.workers``; docs/dataplane.md).

Started by swapd.dataplane.owner as ``python -m swapd.dataplane.worker CONTROL_FD LISTEN_FD
INDEX``. It serves with the same edge (swapd.edge) and the same model-request code
(swapd.proxy.app.Proxy) as the single process, with two stand-ins:

- :class:`RemoteScheduler`: ``lease(model)`` asks the owner (``lease``), which admits the request
  into its scheduler and answers ``grant`` (the engine's address) or ``fail`` (the error, sent
  as a 404/429/503 envelope here as it would be there); ``release`` ends it. The owner's
  scheduler holds a real lease for every request a worker relays, so its rules (never evict a
  model that is serving, queueing, ``concurrencyLimit``) hold across processes.
- :class:`Shipping`: the observer meters the response here (the same meter and capture tee) and
  ships the start and the end of each request to the owner, which keeps the one activity log,
  the metrics, the events and the captures; an operator's cancel comes back as ``abort``.

Everything else is handed over to the owner with the connection itself: admin and UI routes,
websockets, ``/upstream/…``, peers, selectors, a model with ``sendLoadingState``, any request
while a profile is active. The worker reads the request (body included, bounded by
``maxBodySize``), passes the socket's descriptor (``SCM_RIGHTS``) and the request's bytes, and
lets go of the connection without writing a byte; the owner serves it from then on as if it had
accepted it.

The worker exits when the owner's end of the control socket closes (the owner exited or died)
and drains its requests when the owner says ``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, cast

import anyio
import uvicorn

from swapd.config.model import Config
from swapd.dataplane.channel import Channel
from swapd.dataplane.channel import Message as Control
from swapd.dataplane.wire import freeze_upstream, thaw, upstream_of
from swapd.drivers.guardian import die_with_parent
from swapd.edge import Edge, EdgeProtocol, raise_fd_limit
from swapd.errors import ShuttingDown, SwapdError
from swapd.observe.activity import Record
from swapd.observe.captures import Capture
from swapd.observe.logs import LogRing
from swapd.observe.observer import Observer, Request
from swapd.proxy import ollama, relay, routes
from swapd.proxy.app import Proxy
from swapd.proxy.asgi import Message, Receive, Reply, Scope, read_body
from swapd.proxy.forward import UpstreamClient
from swapd.routing import Route
from swapd.scheduler import Scheduler
from swapd.upstream import Upstream
from swapd.views import SlotView, State

log = logging.getLogger("swapd.dataplane")


class HandOff(Exception):
    """This request is the owner's: hand the connection over."""


class OwnerLink:
    """The worker's end of the control channel: config, leases, aborts, stop."""

    def __init__(self, sock: socket.socket, index: int) -> None:
        self.index = index
        self.config: Config | None = None
        self.profile: str | None = None  # the owner's active profile: every model request is its
        self.configured = asyncio.Event()
        self.leases: dict[int, RemoteLease] = {}
        self.ids = itertools.count(1)
        self.observer: Shipping | None = None
        self.on_stop: Callable[[], None] = lambda: None
        self.gone = False
        self.channel = Channel(sock, self._message, self._closed)

    def send(self, message: Control, fds: tuple[int, ...] = ()) -> None:
        self.channel.send(message, fds)

    def _message(self, message: Control, fds: list[int]) -> None:
        kind = message[0]
        if kind == "grant":
            lease = self.leases.get(message[1])
            if lease is not None:
                lease.answer(upstream_of(message[2]), None)
        elif kind == "fail":
            lease = self.leases.get(message[1])
            if lease is not None:
                lease.answer(None, thaw(message[2]))
        elif kind == "abort":
            if self.observer is not None:
                self.observer.cancel(message[1])
        elif kind == "config":
            _, self.config, self.profile = message
            self.configured.set()
        elif kind == "count":  # the owner reads its in-flight table: what the meters saw
            observer = self.observer
            counts = {}
            if observer is not None:
                for poll in observer.pollers:
                    poll()
                for rid, req in observer.inflight.items():
                    m = req.meter
                    counts[rid] = (m.status, m.headers, m.size, m.first_byte)
            self.send(("counted", message[1], counts))
        elif kind == "stop":
            self.on_stop()

    def _closed(self) -> None:
        self.gone = True
        for lease in list(self.leases.values()):
            lease.answer(None, ShuttingDown("swapd's owner process is gone"))
        self.on_stop()


class RemoteLease:
    """A lease held for this worker by the owner's scheduler (the interface of swapd.lease)."""

    __slots__ = ("_future", "_link", "_released", "id", "model")

    def __init__(self, link: OwnerLink, model: str) -> None:
        self._link = link
        self.model = model
        self.id = next(link.ids)
        self._released = False
        self._future: asyncio.Future[Upstream] = asyncio.get_running_loop().create_future()
        link.leases[self.id] = self
        if link.gone:
            self.answer(None, ShuttingDown("swapd's owner process is gone"))
        else:
            link.send(("lease", self.id, model))

    @property
    def position(self) -> int:
        return 0

    @property
    def done(self) -> bool:
        return self._future.done()

    def state(self) -> str:
        return "unknown"

    def progress(self) -> dict[str, Any] | None:
        return None

    def answer(self, upstream: Upstream | None, error: BaseException | None) -> None:
        future = self._future
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        elif upstream is not None:
            future.set_result(upstream)

    async def ready(self) -> Upstream:
        return await self._future

    async def settled(self) -> SwapdError | None:
        try:
            await self._future
        except SwapdError as exc:
            return exc
        return None

    async def renew(self, dead: Upstream) -> Upstream:
        """The engine refused the connection: the owner waits for the scheduler to see it
        exit, queues the request again and grants a fresh engine."""
        self._future = asyncio.get_running_loop().create_future()
        self._link.send(("gone", self.id, freeze_upstream(dead)))
        return await self._future

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._link.leases.pop(self.id, None)
        self._link.send(("release", self.id))
        if not self._future.done():
            self._future.cancel()
        elif not self._future.cancelled():
            self._future.exception()  # an answer nobody awaited is not an error


class RemoteScheduler:
    """What the proxy and the observer read of a scheduler, in a worker: the owner's config
    and leases; no model state (selectors, which need it, are the owner's)."""

    def __init__(self, link: OwnerLink) -> None:
        self.link = link
        self.listeners: list[Callable[[SlotView], None]] = []
        self.queue_listeners: list[Callable[[str, int], None]] = []

    @property
    def config(self) -> Config:
        assert self.link.config is not None
        return self.link.config

    def lease(self, model_id: str) -> RemoteLease:
        return RemoteLease(self.link, model_id)

    def state(self, model_id: str) -> State | None:
        return None

    def snapshot(self) -> list[dict[str, Any]]:
        return []

    def info(self, model_id: str) -> dict[str, Any] | None:
        return None

    def rings(self) -> list[LogRing]:
        return []


class Shipping(Observer):
    """Meters here, records there: each request's start and end go to the owner."""

    def __init__(self, remote: RemoteScheduler, link: OwnerLink) -> None:
        super().__init__(remote, LogRing("swapd"), config=lambda: remote.config)
        self.link = link

    def request_start(
        self,
        model: str,
        path: str,
        scope: Any = None,
        body: bytes = b"",
        metadata: dict[str, Any] | None = None,
    ) -> Request:
        req = super().request_start(model, path, scope, body, metadata)
        shown = None
        if scope is not None:
            shown = {
                "type": "http",
                "method": scope["method"],
                "headers": scope["headers"],
                "client": scope.get("client"),
            }
        self.link.send(("start", req.id, model, path, req.method, shown, req.time, metadata))
        meter = req.meter
        rid = req.id
        meter.on_start = lambda: self.link.send(("head", rid, meter.status, meter.headers))
        return req

    def book(self, req: Request, record: Record, size: int, capture: Capture | None) -> None:
        """The record and capture are made here (usage read from the meter's windows, by
        :meth:`Observer.request_end`); the owner keeps them."""
        self.link.send(("end", req.id, record, size, capture))


class WorkerProxy(Proxy):
    """The proxy with the owner's scheduler behind leases; what is not a plain model request
    goes to the owner with its connection."""

    def __init__(self, link: OwnerLink, listen_host: str) -> None:
        remote = RemoteScheduler(link)
        observer = Shipping(remote, link)
        link.observer = observer
        super().__init__(
            cast(Scheduler, remote),  # the lease/config surface the model routes use
            UpstreamClient(),
            LogRing("swapd"),
            observer=observer,
            listen_host=listen_host,
        )
        self.link = link

    async def _route(self, scope: Scope, receive: Receive, send: Reply) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        config = self.config
        if (
            self.link.profile is not None
            or not routes.is_model_route(method, path)
            or (config.ollama.enabled and ollama.serves(method, path, scope))
        ):
            await self.hand_over(scope, await read_body(receive, config.max_body_bytes))
            return
        await super()._route(scope, receive, send)

    async def _model_request(self, scope: Scope, receive: Receive, send: Reply) -> None:
        raw = await read_body(receive, self.config.max_body_bytes)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}

        try:
            await super()._model_request(scope, replay, send)
        except HandOff:
            await self.hand_over(scope, raw)

    def _resolve(self, name: str | None, who: Any) -> Route:
        route = super()._resolve(name, who)
        model = route.model
        if model is None or route.selector is not None or model.send_loading_state:
            self.routes.release(route)
            raise HandOff
        return route

    async def hand_over(self, scope: Scope, body: bytes) -> None:
        """The owner takes the connection: this request's bytes go with its descriptor."""
        client = relay.client_of(scope)
        if client is None:
            raise SwapdError("this request cannot be handed to swapd's owner process")
        head = request_bytes(
            scope["method"], _target(scope), scope["headers"], body, scope.get("http_version")
        )
        cycle = client.cycle
        cycle.response_started = True  # uvicorn writes nothing more on this connection
        cycle.response_complete = True
        cycle.keep_alive = False
        give(client.transport, head + body, self.link)


def _target(scope: Scope) -> bytes:
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string") or b""
    return raw + b"?" + query if query else raw


def request_bytes(
    method: str,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes | None,
    version: str | None = "1.1",
) -> bytes:
    """A request's head as the owner's parser reads it: the headers as received (the edge has
    screened the forwarding ones); with a ``body`` read whole, its framing is its length (and
    no ``Expect``: the client has had its 100 Continue)."""
    out = [b"%s %s HTTP/%s\r\n" % (method.encode(), target, (version or "1.1").encode())]
    for name, value in headers:
        if body is not None and name in (b"content-length", b"transfer-encoding", b"expect"):
            continue
        out.append(b"%s: %s\r\n" % (name, value))
    if body:
        out.append(b"content-length: %d\r\n" % len(body))
    out.append(b"\r\n")
    return b"".join(out)


def give(transport: asyncio.Transport, data: bytes, link: OwnerLink) -> None:
    """Send the connection's descriptor and ``data`` (what was read of it) to the owner, then
    close this process's copy: no byte is written, so the client sees one connection."""
    transport.pause_reading()
    sock = transport.get_extra_info("socket")
    fd = os.dup(sock.fileno())
    link.send(("handoff", data), (fd,))
    transport.abort()


class WorkerEdge(EdgeProtocol):
    """The edge in a worker: a websocket upgrade goes to the owner before any answer."""

    LINK: ClassVar[OwnerLink]

    def handle_websocket_upgrade(self) -> None:
        self.connections.discard(self)
        head = request_bytes(self.scope["method"], self.url, list(self.scope["headers"]), None)
        give(self.transport, head, self.LINK)


async def run(control: int, listen: int, index: int) -> None:
    link = OwnerLink(socket.socket(fileno=control), index)
    logging.getLogger().addHandler(_LinkHandler(link))
    listener = socket.socket(fileno=listen)
    link.send(("hello", os.getpid()))
    await link.configured.wait()
    assert link.config is not None
    fd_limit = raise_fd_limit()[1]
    host = listener.getsockname()[0]
    proxy = WorkerProxy(link, listen_host=host)
    edge = Edge(lambda: proxy.config.server, fd_limit)

    class Bound(WorkerEdge):
        EDGE = edge
        LINK = link

    config = link.config
    server = _Server(
        uvicorn.Config(
            proxy,
            lifespan="off",
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            http=Bound,
            timeout_keep_alive=math.ceil(config.server.keepalive_timeout),
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=30,
            loop="none",
        )
    )

    def stop() -> None:
        server.should_exit = True

    link.on_stop = stop
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    from swapd.app import settle_collector

    settle_collector()
    try:
        await server.serve(sockets=[listener])
    finally:
        proxy.links.close()
        await proxy.upstreams.close()
        link.channel.close()


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the worker's loop handles SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _LinkHandler(logging.Handler):
    """Warnings and errors go to the owner's log (its ring, the UI, stdout); to stderr once
    the owner is gone."""

    def __init__(self, link: OwnerLink) -> None:
        super().__init__(logging.WARNING)
        self.link = link

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if self.link.gone:
            print(f"swapd worker {self.link.index}: {text}", file=sys.stderr)
        else:
            self.link.send(("log", record.levelno, record.name, text))


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    control, listen, index = (int(a) for a in args[:3])
    die_with_parent(signal.SIGKILL)  # the owner SIGKILLed: no worker keeps its port open
    if os.getppid() == 1:  # it died before that took effect
        return
    logging.getLogger().setLevel(logging.WARNING)
    backend_options = {"use_uvloop": True}
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(run, control, listen, index, backend="asyncio", backend_options=backend_options)


if __name__ == "__main__":
    main()
