"""The native front's Python side (docs/dataplane.md, option C; ``SWAPD_NATIVE_FRONT=0``: off).

The front (swapd.native, ``front.c``) accepts swapd's connections and serves the routine
requests of ready models with no Python per request. This module keeps it told and booked:

- **the table**: which model names it may serve, each with its gate and its engine's address,
  and the server's limits (:meth:`NativeFront.publish`, after every state change of a model,
  reload and profile change). A name is in it when a request for it needs nothing Python does
  beyond the lease: a local model reached by that name with no rewrite (no ``useModelName``,
  no filters, no selector), and an engine on a plain ``http://`` address. With API keys
  configured the table has them too, and which of them may use each name (the ``inference``
  scope and the key's model globs, as ``swapd.proxy.auth`` decides): a request presenting one
  of those (Bearer or ``x-api-key``) is the front's, and reaches the engine without it; any
  other (no key, a wrong one, a Basic password, a key that may not) is Python's, which answers
  its 401, 403 or 404. The table also has the Host names the browser guard allows
  (``server.allowedHosts``, the listen address's) and the proxies whose forwarding fields
  are believed (``server.trustedProxies``, as swapd.edge screens them);
- **the records**: each exchange the front served is booked as Python books its own (the
  activity log, metrics, the request log line, the ``request`` events, the capture), in
  batches, with Python's statuses (:func:`status_of`);
- **the in-flight table**: while someone reads it or the event stream, the front's exchanges
  in flight are listed there too (:meth:`NativeFront.show_inflight`), and an operator's cancel
  reaches the front (:class:`Cancel`);
- **the hand-over**: every other connection reaches uvicorn with the bytes read of it
  (``_Server.adopt``), and Python serves it from then on.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from swapd import native
from swapd.config.model import ApiKey
from swapd.edge import Edge, refusal
from swapd.errors import RequestCancelled, SwapdError, UpstreamTimeout, UpstreamUnavailable
from swapd.proxy import auth, body, relay, routes
from swapd.proxy.app import engine_name

if TYPE_CHECKING:
    from swapd.observe.observer import Observer
    from swapd.proxy.app import Proxy
    from swapd.scheduler import Scheduler

log = logging.getLogger("swapd.front")

# The routes the front serves: a model's POST routes whose path goes upstream unchanged.
PATHS = sorted(p for p in routes.MODEL_POST if not p.startswith(("/v/", "/audioapi/")))


# How an exchange that did not end well is recorded and logged, as Python's relay does
CUT = {
    native.IDLE: "stalled mid-response (timeouts.idleRead)",
    native.UPSTREAM_CLOSED: "stopped mid-response: the engine closed the connection",
    native.BAD_FRAMING: "stopped mid-response: broken chunked framing",
    native.ABORTED: "cancelled by an operator",
}


def status_of(done: native.Exchange) -> int:
    """The status Python would record: the engine's for a whole answer, 499 when the client
    left first, 504 for a stalled body, 502 for a broken one, and for an exchange that ended
    with no answer the status of Python's error."""
    if done.end == native.DONE or done.fd >= 0:
        return done.status
    if done.end == native.CLIENT_GONE:
        return 499
    if done.end == native.IDLE:
        return 504
    if done.end == native.ABORTED:
        return 503  # cancelled by an operator (RequestCancelled)
    return 502 if done.end in CUT else done.status


class Cancel:
    """An operator's cancel of a front's exchange (swapd.observe.observer.Cancellable)."""

    def __init__(self, front: native.Front, exchange: int) -> None:
        self.front, self.exchange = front, exchange

    def cancel(self, msg: Any = None) -> bool:
        return self.front.cancel(self.exchange)

    def done(self) -> bool:
        return False  # (an ended exchange has left the in-flight table)

    def uncancel(self) -> int:
        return 0


def enabled() -> bool:
    """The library is built and ``SWAPD_NATIVE_FRONT=0`` does not turn the front off."""
    return os.environ.get("SWAPD_NATIVE_FRONT") != "0" and native.library() is not None


def engine_address(base_url: str) -> tuple[str, int] | None:
    """The IPv4 address and port of a plain ``http://host:port`` engine URL (localhost is
    127.0.0.1), else None (the front leaves it to Python)."""
    origin = relay.origin_of(base_url)
    if origin is None or "/" in base_url[7:]:
        return None
    host, port = origin
    if host == "localhost":
        return "127.0.0.1", port
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return (str(address), port) if address.version == 4 else None


class NativeFront:
    """The owner of a :class:`swapd.native.Front`: its table, its records, its hand-overs."""

    def __init__(
        self,
        scheduler: Scheduler,
        proxy: Proxy,
        observer: Observer | None,
        handed: Callable[[int, bytes], None],
        edge: Edge,
    ) -> None:
        self.scheduler = scheduler
        self.edge = edge  # the connection cap and the trusted proxies of server settings
        self.proxy = proxy
        self.observer = observer
        self._handed = handed
        self.front: native.Front | None = None
        self.models: dict[int, str] = {}  # gate -> model id
        self.engines: dict[int, str] = {}  # gate -> its engine, as errors name it
        self.rids: dict[int, str] = {}  # exchange -> its id in the observer, once listed
        self.shown: set[int] = set()  # exchanges listed in the observer's in-flight table
        self.key_names: list[str] = []  # an API key's id in the table -> its name (only grows:
        self.key_ids: dict[str, int] = {}  # an exchange from before a reload keeps its name)
        self._publish_soon = False

    def start(self, front: native.Front) -> None:
        self.front = front
        self.scheduler.listeners.append(lambda _view: self.publish_soon())
        if self.observer is not None:  # a reader of records sees the front's too, and one
            self.observer.drains.append(front.drain)  # of the in-flight table its exchanges
            self.observer.listers.append(self.show_inflight)
        self.publish()

    # -- the table ------------------------------------------------------------------------

    def publish_soon(self) -> None:
        """:meth:`publish` once the current step is done (state changes come in bursts)."""
        if not self._publish_soon and self.front is not None:
            self._publish_soon = True
            self.front.loop.call_soon(self.publish)

    def publish(self) -> None:
        self._publish_soon = False
        if self.front is None:
            return
        for slot in self.scheduler.slots.values():  # a gate is never reused: kept for the
            if slot.gates is not None:  # records of a model that stopped meanwhile
                self.models[slot.gate] = slot.id
        config = self.scheduler.config
        keys = [(self.key_id(k), k.key.encode()) for k in config.keys]
        rule = self.proxy.guard.rule(config)  # the Host names beyond addresses and localhost
        nets = self.edge.networks(config.server)
        self.front.table(
            self.entries(),
            keys,
            any_host=rule.any,
            hosts=sorted(rule.names),
            domains=rule.domains,
            trust_all=nets is None,
            trusted=[(n.version, n.prefixlen, n.network_address.packed) for n in nets or ()],
        )
        self.front.limits(**self.limits())
        budget = self.scheduler.config.capture_bytes
        self.front.captures(budget, max(1, budget // 2) if budget else 0)  # as a Tee keeps

    def limits(self) -> dict[str, Any]:
        """The server's limits the front applies as Python does (:meth:`native.Front.limits`)."""
        config = self.scheduler.config
        settings = config.server
        return {
            "max_body": config.max_body_bytes,
            "max_depth": settings.max_json_depth,
            "keep_alive": settings.keepalive_timeout,
            "head_timeout": settings.header_timeout,
            "cap": self.edge.cap(settings),
        }

    def key_id(self, key: ApiKey) -> int:
        if (ident := self.key_ids.get(key.name)) is None:
            ident = self.key_ids[key.name] = len(self.key_names)
            self.key_names.append(key.name)
        return ident

    def entries(self) -> list[native.FrontEntry]:
        """Each name the front may serve, with the API keys that may use it."""
        config = self.scheduler.config
        who = [auth.principal_of(key) for key in config.keys]
        found = []
        table = self.proxy.routes
        for name in (*config.models, *config.aliases):
            try:
                route = table.resolve(name)
            except SwapdError:  # disabled by the profile, or a selector with no target
                continue
            if route is None:
                continue
            try:
                model = route.model
                if model is None or route.selector is not None:
                    continue
                change = body.Rewrite.for_route(route, name)
                if change.model is not None or not change.unfiltered():
                    continue
                slot = self.scheduler.slots.get(model.id)
                if slot is None or slot.gates is None or slot.upstream is None:
                    continue
                address = engine_address(slot.upstream.base_url)
                if address is None:
                    continue
                host = slot.upstream.base_url[7:].encode()
                self.engines[slot.gate] = engine_name(model.id, slot.upstream)
                t = model.timeouts
                times = (t.connect, t.response_header, t.idle_read)
                may = bytes(p.has("inference") and p.may_use(route) for p in who)
                found.append(native.FrontEntry(name, host, slot.gate, *address, times, may))
            finally:
                table.release(route)
        return found

    # -- what the front tells -------------------------------------------------------------

    def exchanged(self, exchanges: list[native.Exchange]) -> None:
        observer = self.observer
        for done in exchanges:
            self.shown.discard(done.id)
            model = self.models.get(done.gate)
            rid = self.rids.pop(done.id, None)
            if done.fd >= 0:
                self.answer_error(done, model or "", rid)
            if model is None:
                continue
            path = PATHS[done.path]
            status = status_of(done)
            if done.end in CUT:
                log.warning("POST %s: %s %s; client connection dropped", path, model, CUT[done.end])
            if observer is None:
                continue
            observer.exchanged(
                model,
                path,
                done.peer,
                self.metadata(model, done.key),
                status=status,
                wall=done.wall,
                began=done.began,
                ended=done.ended,
                body=done.body,
                request=done.request,
                request_head=done.request_head,
                response_head=done.response_head,
                rid=rid,
            )

    def answer_error(self, done: native.Exchange, model: str, rid: str | None) -> None:
        """Write Python's error for an exchange that ended with no answer (``done.fd``: the
        client's connection, which closes after it), as Python's relay words it."""
        what = self.engines.get(done.gate, f"engine for model {model!r}")
        error: SwapdError
        if done.end == native.HEAD_LATE:
            config = self.scheduler.config.models.get(model)
            limit = f" within {config.timeouts.response_header:g}s" if config else ""
            sent = f"sent no response headers{limit} (timeouts.responseHeader)"
            error = UpstreamTimeout(model, f"{what} {sent}")
        elif done.end == native.CANCELLED:
            asked = f"request {rid}" if rid else "the request"
            error = RequestCancelled(f"{asked} was cancelled by an operator")
        elif done.end == native.ENGINE_HEAD:
            error = UpstreamUnavailable(model, f"{what} sent a response head swapd cannot relay")
        else:
            error = UpstreamUnavailable(model, f"{what} closed the connection before answering")
        with socket.socket(fileno=done.fd) as sock, contextlib.suppress(OSError):
            sock.send(refusal(error, PATHS[done.path].encode()))

    def metadata(self, model: str, key: int = -1) -> dict[str, Any]:
        """As Python's for its own requests (``key``: the API key's name, when one was asked)."""
        meta: dict[str, Any] = {
            "fifo_priority": self.scheduler.config.priorities.get(model, 0),
            "front": True,
        }
        if 0 <= key < len(self.key_names) and (name := self.key_names[key]):
            meta["key"] = name
        return meta

    def show_inflight(self) -> None:
        """The front's exchanges in flight into the observer's table (each once; their sizes
        brought up to date), when the table or the event stream is read."""
        observer, front = self.observer, self.front
        if observer is None or front is None:
            return
        front.drain()  # what ended first leaves the table
        now = front.inflight()
        for gone in self.shown - {flying.id for flying in now}:  # ended with no record (the
            self.shown.discard(gone)  # engine refused it: Python serves it), or the record
            if (rid := self.rids.pop(gone, None)) is not None:  # comes next under a new id
                observer.forget(rid)
        for flying in now:
            rid = self.rids.get(flying.id)
            req = observer.inflight.get(rid) if rid is not None else None
            if req is None:
                model = self.models.get(flying.gate)
                if model is None:
                    continue
                task = Cancel(front, flying.id)
                path = PATHS[flying.path]
                meta = self.metadata(model, flying.key)
                rid = self.rids[flying.id] = observer.new_id()
                self.shown.add(flying.id)
                req = observer.front_start(
                    rid, model, path, flying.peer, flying.wall, flying.began, meta, task
                )
            req.meter.size = flying.size
            if flying.status and req.meter.status is None:
                req.meter.status = flying.status

    def handed(self, fd: int, data: bytes) -> None:
        self._handed(fd, data)
