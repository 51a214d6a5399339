"""Telemetry wiring: turns scheduler and proxy happenings into events, activity and metrics.

The scheduler calls :meth:`Observer.on_slot` with a :class:`~swapd.views.SlotView` on every
state change (it is one of the scheduler's ``listeners``); the proxy calls
:meth:`request_start` / :meth:`request_end` around each
proxied request and feeds the request's :class:`~swapd.observe.activity.Meter` as bytes pass.
Log lines reach the bus only while a subscriber asked for them.

Requests between start and end form the in-flight table (``GET /api/inflight``); one can be
cancelled (:meth:`Observer.cancel`): its task is cancelled and the proxy answers it with
:class:`~swapd.errors.RequestCancelled`. With ``captureBuffer`` on, a request's meter also tees
a bounded copy of the exchange (:mod:`swapd.observe.captures`); with it off, the meter is the
plain one and nothing more happens per chunk.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio

from swapd.config.model import Config
from swapd.errors import RequestCancelled
from swapd.native import Ended
from swapd.observe.activity import HEAD_BYTES, TAIL_BYTES, ActivityLog, Meter, Record, parse_usage
from swapd.observe.captures import Capture, CaptureStore, Tee, head_fields, header_map, mask_for
from swapd.observe.events import EventBus
from swapd.observe.logs import LogRing
from swapd.observe.metrics import Metrics
from swapd.views import ModelViews, SlotView, State

PROGRESS_INTERVAL = 0.25  # seconds between progress events for one loading model
SETTLE_SECONDS = 0.002  # a staged record is booked at the latest ~this long after its end

log = logging.getLogger("swapd.observe")
request_log = logging.getLogger("swapd.requests")


def client_ip(scope: Any) -> str:
    """The client's address: the first ``X-Forwarded-For`` entry, else ``X-Real-IP``, else the
    peer (as llama-swap logs it; these headers are client-supplied, so for logs only)."""
    real = None
    for key, value in scope["headers"]:
        if key == b"x-forwarded-for":
            first = value.split(b",", 1)[0].strip()
            if first:
                return str(first.decode("latin-1"))
        elif key == b"x-real-ip" and real is None:
            real = str(value.strip().decode("latin-1"))
    if real:
        return real
    client = scope.get("client")
    return str(client[0]) if client else ""


def iso_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TeeMeter(Meter):
    """A meter that also keeps the capture's bounded copy of the response."""

    __slots__ = ("tee",)

    def __init__(self, began: float, tee: Tee) -> None:
        super().__init__(began)
        self.tee = tee

    def feed(self, chunk: bytes) -> None:
        # Meter.feed, inlined: once per packet of every response, one call less each time
        if self.first_byte is None:
            self.first_byte = time.monotonic()
        self.size += len(chunk)
        if len(self.head) < HEAD_BYTES:
            self.head += chunk[: HEAD_BYTES - len(self.head)]
        tail = self._tail
        tail += chunk
        if len(tail) > 2 * TAIL_BYTES:
            del tail[: len(tail) - TAIL_BYTES]
        self.tee.feed(chunk)

    def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.tee.start(headers)
        Meter.start(self, status, headers)

    def reserve(self) -> int:
        return self.tee.reserve()

    def absorb(self, ended: Ended, reserved: int) -> None:
        Meter.absorb(self, ended, reserved)
        self.tee.absorb(ended.size, reserved, ended.keep, ended.keep_cut)


class Cancellable(Protocol):
    """What an operator's cancel needs of a request's task (an asyncio.Task has it)."""

    def cancel(self, msg: Any = None) -> bool: ...

    def done(self) -> bool: ...

    def uncancel(self) -> int: ...


@dataclass(slots=True)
class Request:
    id: str
    model: str
    path: str
    time: float
    meter: Meter
    method: str = "POST"
    scope: Any = None  # the client's ASGI scope: headers and address, read only when shown
    task: Cancellable | None = None  # the request's task (a worker's: swapd.dataplane)
    cancelled: bool = False
    tee: Tee | None = field(default=None, repr=False)
    metadata: dict[str, Any] | None = None  # kept with the activity record

    @property
    def remote_ip(self) -> str:
        return client_ip(self.scope) if self.scope is not None else ""

    def cancellation(self) -> RequestCancelled | None:
        """After a CancelledError in the request's task: the error to answer with when the
        cancel came from :meth:`Observer.cancel` (the task's cancel is then taken back), else
        ``None`` (a real cancellation: let it propagate)."""
        if not self.cancelled:
            return None
        if self.task is not None:
            self.task.uncancel()
        return RequestCancelled(f"request {self.id} was cancelled by an operator")

    def view(self) -> dict[str, Any]:
        """The in-flight entry (headers redacted)."""
        meter = self.meter
        return {
            "id": self.id,
            "timestamp": iso_time(self.time),
            "model": self.model,
            "req_path": self.path,
            "method": self.method,
            "remote_ip": self.remote_ip,
            "req_headers": header_map(self.scope["headers"] if self.scope else ()),
            "status": meter.status,
            "resp_headers": header_map(meter.headers),
            "resp_bytes": meter.size,
            "elapsed_ms": int((time.monotonic() - meter.began) * 1000),
            **({"metadata": self.metadata} if self.metadata else {}),
        }


def _fronts(
    rid: str,
    model: str,
    path: str,
    peer: str,
    wall: float,
    meter: Meter,
    metadata: dict[str, Any] | None,
) -> Request:
    """A request the native front serves, as the records see it: a POST from ``peer`` (its
    headers are not kept)."""
    req = Request(rid, model, path, wall, meter, metadata=metadata)
    req.scope = {"method": "POST", "headers": [], "client": (peer, 0)}
    return req


def _start(req: Request) -> dict[str, Any]:
    """The ``request`` event of a request's start."""
    return {"phase": "start", "id": req.id, "model": req.model, "path": req.path}


class Observer:
    def __init__(
        self,
        models: ModelViews,
        swapd_log: LogRing,
        activity: ActivityLog | None = None,
        *,
        config: Callable[[], Config] | None = None,
    ) -> None:
        self.models = models
        self.bus = EventBus()
        self.activity = activity or ActivityLog()
        self.config = config  # the running config (captureBuffer and logRequests follow reloads)
        self.captures = CaptureStore(0)
        self.inflight: dict[str, Request] = {}
        # Called (awaited) before the in-flight table is read: data-plane workers report what
        # their requests' meters have counted since (swapd.dataplane.owner).
        self.refreshers: list[Callable[[], Awaitable[None]]] = []
        # Called before that too, and before a worker reports its meters: the native relay
        # tells the meters what it has moved (swapd.proxy.relay.Pool.poll).
        self.pollers: list[Callable[[], None]] = []
        # Those that book records made elsewhere (the native front's): read by settle()
        self.drains: list[Callable[[], None]] = []
        # Called before the table is read too: they list requests served elsewhere (the
        # native front's), which announce nothing when they start, so a reader of the event
        # stream looks every INFLIGHT_INTERVAL while there are any, even with nothing listed
        self.listers: list[Callable[[], None]] = []
        self.metrics = Metrics(models.snapshot)
        self._ids = itertools.count(self.activity.next_number())
        # With ``staging`` on (the server, in one process), request_end stages the record:
        # it is made and booked by :meth:`settle`, off the path of the next request.
        self.staging = False
        self._staged: list[tuple[Request, int, float]] = []
        self._settle_timer: asyncio.TimerHandle | None = None
        self._settle_soon = False
        self._watched: dict[str, LogRing] = {}  # model id -> the ring we subscribed to
        self._progress_at: dict[str, float] = {}
        models.listeners.append(self.on_slot)
        models.queue_listeners.append(self._queue)
        swapd_log.subscribe(self._log_pusher("swapd"))
        for ring in models.rings():
            self._watch(ring)

    # ── models ──────────────────────────────────────────────────────────────────────────────

    def _watch(self, ring: LogRing) -> None:
        if self._watched.get(ring.name) is not ring:  # new, or re-added by a reload
            self._watched[ring.name] = ring
            ring.subscribe(self._log_pusher(ring.name))

    def _log_pusher(self, source: str) -> Any:
        def push(line: str) -> bool:
            if self.bus.subscribers:
                self.bus.publish("log", {"source": source, "line": line})
                if self.models.state(source) is State.STARTING:
                    now = anyio.current_time()
                    info = self.models.info(source)
                    if info and now - self._progress_at.get(source, 0.0) >= PROGRESS_INTERVAL:
                        self._progress_at[source] = now
                        self.bus.publish("model", info)
            return True

        return push

    def on_slot(self, view: SlotView) -> None:
        self._watch(view.log)
        if view.state is State.STARTING:
            self.metrics.swaps.labels(view.id).inc()
        elif view.state is State.READY and view.swap_seconds is not None:
            self.metrics.swap_duration.labels(view.id).observe(view.swap_seconds)
        self.bus.publish("model", dict(view.info))

    def snapshot(self) -> list[dict[str, Any]]:
        return self.models.snapshot()

    def _queue(self, model: str, queued: int) -> None:
        if self.bus.subscribers:
            self.bus.publish("queue", {"model": model, "queued": queued})

    # ── requests ────────────────────────────────────────────────────────────────────────────

    def _settings(self) -> tuple[int, bool]:
        """(capture budget, logRequests) from the running config; the store follows a reload
        that changes the budget, keeping the captures that still fit."""
        if self.config is None:
            return 0, False
        config = self.config()
        if config.capture_bytes != self.captures.budget:
            self.captures.resize(config.capture_bytes)
        return config.capture_bytes, config.log_requests

    def request_start(
        self,
        model: str,
        path: str,
        scope: Any = None,
        body: bytes = b"",
        metadata: dict[str, Any] | None = None,
    ) -> Request:
        """A proxied request begins: ``path`` is the target sent upstream, ``scope`` the
        client's ASGI scope and ``body`` the body forwarded (both for captures and the
        in-flight table); ``metadata`` (routing decisions) goes into the activity record."""
        rid = f"req-{next(self._ids)}"
        began = time.monotonic()
        budget, _ = self._settings()
        meter: Meter
        tee = None
        if budget > 0 and scope is not None:
            tee = Tee(
                rid, path, scope["headers"], body, mask_for(path), budget, self.captures.pending
            )
            meter = TeeMeter(began, tee)
        else:
            meter = Meter(began)
        req = Request(rid, model, path, time.time(), meter, tee=tee, metadata=metadata)
        if scope is not None:
            req.method = scope["method"]
            req.scope = scope
        try:
            req.task = asyncio.current_task()
        except RuntimeError:  # no event loop (a synchronous caller): cannot be cancelled
            req.task = None
        self._begun(req)
        meter.on_start = lambda: self._headers(req)
        if self._staged and not self._settle_soon:  # booked once this task step yields:
            self._settle_soon = True  # after its request went upstream, as it waits for
            asyncio.get_running_loop().call_soon(self.settle)  # the engine's answer
        return req

    def remote_start(
        self,
        model: str,
        path: str,
        method: str,
        scope: dict[str, Any] | None,
        began: float,
        metadata: dict[str, Any] | None,
        task: Cancellable,
    ) -> Request:
        """A request a data-plane worker relays begins (swapd.dataplane): in flight here, under
        an id of this observer; ``task`` cancels it in the worker."""
        rid = f"req-{next(self._ids)}"
        req = Request(rid, model, path, began, Meter(time.monotonic()), metadata=metadata)
        req.method = method
        req.scope = scope
        req.task = task
        req.meter.on_start = lambda: self._headers(req)  # the worker's "head" starts it
        self._begun(req)
        return req

    def remote_end(
        self,
        req: Request,
        record: Record | None,
        size: int = 0,
        capture: Capture | None = None,
    ) -> None:
        """The worker's request ended: its record and capture (made there) are kept under this
        observer's id; without a record (the worker died) one is made here from what is known."""
        self.inflight.pop(req.id, None)
        req.meter.on_start = None
        if record is None:
            record = self.finish(req, 502)
        record.id = req.id
        record.time = round(req.time, 3)
        if capture is not None:
            capture.id = req.id
        self.book(req, record, size, capture)

    def exchanged(
        self,
        model: str,
        path: str,
        peer: str,
        metadata: dict[str, Any] | None,
        *,
        status: int,
        wall: float,
        began: float,
        ended: float,
        body: Ended,
        request: bytes = b"",
        request_head: int = 0,
        response_head: bytes = b"",
        rid: str | None = None,
    ) -> None:
        """A request the native front served (swapd.proxy.front) ended: booked as one of
        Python's own (under ``rid`` when :meth:`front_start` listed it in flight), its body's
        meter read from what the front saw of it (``body``); with captures on, its capture
        made of the ``request`` (head and body) and the ``response_head`` the client got."""
        shown = self.inflight.pop(rid, None) if rid is not None else None  # front_start's
        meter = Meter(began)
        meter.status = status
        meter.absorb(body, 0)
        req = _fronts(rid or self.new_id(), model, path, peer, wall, meter, metadata)
        if shown is None and self.bus.subscribers:  # it ended before anyone looked: its
            self.bus.publish("request", _start(req))  # start still precedes its end
        capture = None
        budget, _ = self._settings()
        if budget > 0 and request:
            headers = head_fields(request[:request_head])
            payload = request[request_head:]
            pool = self.captures.pending
            tee = Tee(req.id, path, headers, payload, mask_for(path), budget, pool)
            tee.start(head_fields(response_head))
            tee.absorb(body.size, tee.reserve(), body.keep, body.keep_cut)
            capture = tee.finish()
        self.book(req, self.finish(req, status, ended), meter.size, capture)

    def new_id(self) -> str:
        """A request id of this observer's (``req-N``: captures are found by N)."""
        return f"req-{next(self._ids)}"

    def forget(self, rid: str) -> None:
        """A request listed in flight ended with no record (it went elsewhere)."""
        if self.inflight.pop(rid, None) is not None and self.bus.subscribers:
            self.bus.publish("inflight", {"operation": "remove", "id": rid})

    def front_start(
        self,
        rid: str,
        model: str,
        path: str,
        peer: str,
        wall: float,
        began: float,
        metadata: dict[str, Any] | None,
        task: Cancellable,
    ) -> Request:
        """A request the native front has in flight, listed once someone looks (its records
        come through :meth:`exchanged`, under the same ``rid``); ``task`` cancels it there."""
        req = _fronts(rid, model, path, peer, wall, Meter(began), metadata)
        req.task = task
        self._begun(req)
        return req

    def _begun(self, req: Request) -> None:
        """``req`` is in flight: listed, and announced to the event stream's subscribers."""
        self.inflight[req.id] = req
        if self.bus.subscribers:
            self.bus.publish("request", _start(req))
            self.bus.publish("inflight", {"operation": "upsert", "request": req.view()})

    def _headers(self, req: Request) -> None:
        if self.bus.subscribers:
            self.bus.publish("inflight", {"operation": "upsert", "request": req.view()})

    async def refresh(self) -> None:
        """Bring the in-flight entries of requests relayed elsewhere up to date."""
        for lister in self.listers:
            lister()
        for poll in self.pollers:
            poll()
        for refresher in self.refreshers:
            await refresher()

    def inflight_views(self) -> list[dict[str, Any]]:
        return [r.view() for r in self.inflight.values()]

    def cancel(self, request_id: str) -> bool:
        """Cancel an in-flight request: False when there is none with that id (or it cannot
        be cancelled). The proxy answers it with RequestCancelled, or cuts a started stream."""
        req = self.inflight.get(request_id)
        if req is None or req.task is None or req.task.done():
            return False
        req.cancelled = True
        req.task.cancel()
        return True

    def request_end(self, req: Request, status: int) -> None:
        """``req`` ended with ``status``: its record and capture are made and booked now, or
        with ``staging`` on, by :meth:`settle` (the next request's, a reader's, or a timer's)."""
        self.inflight.pop(req.id, None)
        req.meter.on_start = None  # (a closure holding req: a cycle the collector would break)
        if not self.staging:
            self._end(req, status, time.monotonic())
            return
        self._staged.append((req, status, time.monotonic()))
        if self._settle_timer is None:  # (left to lapse, not cancelled: one per few requests)
            loop = asyncio.get_running_loop()
            self._settle_timer = loop.call_later(SETTLE_SECONDS, self._lapsed)

    def _lapsed(self) -> None:
        self._settle_timer = None
        self.settle()

    def settle(self) -> None:
        """Make and book the records staged so far. Whatever reads records, metrics,
        captures or events calls this first (swapd.proxy.app does, for every request that is
        not a model's): a client that has its answer never reads state without it."""
        self._settle_soon = False
        for drain in self.drains:
            drain()
        staged = self._staged
        if not staged:
            return
        self._staged = []
        for req, status, ended in staged:
            try:
                self._end(req, status, ended)
            except Exception:  # one request's record must not lose the others'
                log.exception("the activity record of %s failed", req.id)

    def _end(self, req: Request, status: int, ended: float) -> None:
        record = self.finish(req, status, ended)
        capture = req.tee.finish() if req.tee is not None else None  # kept raw: packed later
        req.tee = None
        self.book(req, record, req.meter.size, capture)

    def finish(self, req: Request, status: int, ended: float | None = None) -> Record:
        """The activity record of a request that ended with ``status`` (its meter read) at
        ``ended`` (``time.monotonic()``; None: now)."""
        meter = req.meter
        if ended is None:
            ended = time.monotonic()
        duration = ended - meter.began
        ttfb = meter.first_byte - meter.began if meter.first_byte is not None else None
        usage = parse_usage(meter) if meter.size else None
        tps = usage.tokens_per_second if usage else None
        if usage and tps is None and usage.completion_tokens and meter.first_byte is not None:
            generating = ended - meter.first_byte
            if generating > 0.001 and usage.completion_tokens > 1:
                tps = round(usage.completion_tokens / generating, 2)
        return Record(
            id=req.id,
            time=round(req.time, 3),
            model=req.model,
            path=req.path,
            status=status,
            duration=round(duration, 4),
            ttfb=round(ttfb, 4) if ttfb is not None else None,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            cached_tokens=usage.cached_tokens if usage else None,
            tokens_per_second=tps,
            metadata=req.metadata,
        )

    def book(self, req: Request, record: Record, size: int, capture: Capture | None) -> None:
        """Keep ``record`` (and ``capture``): the activity log, metrics, the request log line,
        the ``request`` events; ``size``: the response's body bytes."""
        self.activity.add(record)
        self.metrics.request(
            req.model,
            record.status,
            record.duration,
            record.ttfb,
            {
                "prompt": record.prompt_tokens,
                "completion": record.completion_tokens,
                "cached": record.cached_tokens,
            },
        )
        if capture is not None:
            self.captures.add(capture)
        _, log_requests = self._settings()
        if log_requests:
            key = req.metadata.get("key") if req.metadata else None  # a name, never the key
            request_log.info(
                '%s "%s %s" %s %d %dB %.3fs%s',
                req.remote_ip or "-",
                req.method,
                req.path,
                req.model,
                record.status,
                size,
                record.duration,
                f" key={key}" if key else "",
            )
        if self.bus.subscribers:
            data = {"phase": "end", **record.as_dict(), "has_capture": req.id in self.captures}
            del data["time"]
            self.bus.publish("request", data)
            self.bus.publish("inflight", {"operation": "remove", "id": req.id})
