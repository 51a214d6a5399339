"""The admin API: ``/api/*``, ``/metrics``, ``/logs/stream``, ``/openapi.json`` (cold paths).

JSON routes run on Starlette's router (models, config, activity, captures, the in-flight table,
version, hardware); the two kinds of long-lived streams (``/api/events``
SSE and the ``/logs/stream`` text streams) are raw ASGI so that a client that stops reading can
be cut off: each stream has a bounded buffer, and when it overflows the client is dropped with a
log line.
Auth is checked by the proxy before anything here runs, and every error raised here (a
SwapdError, Starlette's 404/405, a bug) reaches the proxy's one catch-all, which answers with a
JSON envelope. Contract: ``docs/api.md``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

import anyio
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router

from swapd.errors import Conflict, MethodNotAllowed, NotFound, RequestError, SwapdError
from swapd.hardware import Inventory
from swapd.observe.build import build_info
from swapd.observe.events import Event, Subscription
from swapd.observe.logs import LogRing, line_of, merged
from swapd.observe.metrics import CONTENT_TYPE
from swapd.observe.observer import Observer
from swapd.observe.outbox import DEFAULT_BUDGET, Outbox
from swapd.proxy import auth, configsource, fleet
from swapd.proxy.asgi import Aborted, Receive, Scope, Send
from swapd.proxy.envelope import error_body
from swapd.proxy.openapi import OPENAPI
from swapd.scheduler import Scheduler
from swapd.secrets import masked_config, redactor
from swapd.views import RUNNING, State

log = logging.getLogger("swapd.admin")

HEARTBEAT = 15.0  # seconds between SSE comments / keep-alives on idle streams
LOG_STREAM_BUDGET = DEFAULT_BUDGET  # bytes buffered per /logs/stream client, then dropped
INFLIGHT_INTERVAL = 0.25  # seconds between in-flight byte-count updates on /api/events
INVALID_LOGGER = "invalid logger. Use 'proxy', 'upstream' or a model's ID"


def jsonable(value: Any) -> Any:
    """Frozen config dataclasses (with Mapping fields) as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _query(scope: Scope) -> dict[str, list[str]]:
    return parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)


def _request_error(exc: HTTPException, scope: Scope) -> SwapdError:
    """Starlette's 404 / 405 as swapd errors (the proxy answers them with a JSON envelope)."""
    method, path = scope["method"], scope["path"]
    if exc.status_code == 404:
        return NotFound(f"no route for {method} {path}")
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return MethodNotAllowed(f"method {method} is not allowed on {path} (allowed: {allowed})")
    return RequestError(f"{path}: {exc.detail}")


def _flag(query: dict[str, list[str]], name: str) -> bool:
    values = query.get(name)
    return values is not None and (values[-1] or "true").lower() not in ("0", "false", "no")


def client_name(scope: Scope) -> str:
    """The peer as ``host:port`` and the name of its key if any (never the key), for log
    lines about one connection."""
    client = scope.get("client")
    peer = f"{client[0]}:{client[1]}" if client else "?"
    key = auth.principal(scope).name
    return f"{peer} (key {key})" if key else peer


def _dropped(client: str, what: str, budget: int) -> Aborted:
    """What ends a stream whose client was dropped: the proxy logs the reason (naming the
    client) and the server closes the connection without the final chunk."""
    reason = f"dropped client {client}: its unread {what} passed the {budget}-byte budget"
    return Aborted(200, reason)


class Admin:
    def __init__(
        self,
        scheduler: Scheduler,
        observer: Observer,
        swapd_log: LogRing,
        *,
        reload: Callable[[], Awaitable[dict[str, Any]]] | None = None,
        config_errors: Callable[[], list[str]] = list,
        hardware: Inventory | None = None,
        active_profile: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.scheduler = scheduler
        self.observer = observer
        self.swapd_log = swapd_log
        self.reload = reload
        self.config_errors = config_errors
        self.hardware = hardware or Inventory()
        self.active_profile = active_profile  # the proxy's active profile, by name
        observer.metrics.watch_devices(scheduler.placement_view)
        routes = [
            Route("/api/models", self.models, methods=["GET"]),
            Route("/api/models/stop", self.stop_all, methods=["POST"]),
            Route("/api/models/{id:path}/start", self.start, methods=["POST"]),
            Route("/api/models/{id:path}/stop", self.stop, methods=["POST"]),
            Route("/api/models/{id:path}/sleep", self.sleep, methods=["POST"]),
            Route("/api/models/{id:path}/wake", self.wake, methods=["POST"]),
            Route("/api/logs", self.logs, methods=["GET"]),
            Route("/api/config", self.config, methods=["GET"]),
            Route("/api/config/reload", self.do_reload, methods=["POST"]),
            Route("/api/config/source", self.config_source, methods=["GET"]),
            Route("/api/config/errors", self.config_issues, methods=["GET"]),
            Route("/api/activity", self.activity, methods=["GET"]),
            Route("/api/captures/{id}", self.capture, methods=["GET"]),
            Route("/api/inflight", self.inflight, methods=["GET"]),
            Route("/api/inflight/{id}/cancel", self.cancel, methods=["POST"]),
            Route("/api/version", self.version, methods=["GET"]),
            Route("/api/hardware", self.hardware_info, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/openapi.json", self.openapi, methods=["GET"]),
            *fleet.routes(self),
        ]
        self.app = Router(routes=routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if scope["method"] == "GET" and path == "/api/events":
            await self.events(scope, receive, send)
        elif scope["method"] == "GET" and (
            path == "/logs/stream" or path.startswith("/logs/stream/")
        ):
            await self.log_stream(scope, receive, send)
        else:
            scope["app"] = self  # so Starlette's router raises its 404/405 instead of answering
            try:
                await self.app(scope, receive, send)
            except HTTPException as exc:
                raise _request_error(exc, scope) from None

    # ── models ──────────────────────────────────────────────────────────────────────────────

    def _model_id(self, request: Request) -> str:
        name = str(request.path_params["id"])
        config = self.scheduler.config
        model = config.resolve(name)
        if model is None or self.scheduler.state(model.id) is None:
            known = ", ".join(sorted(config.models)) or "(none configured)"
            raise NotFound(f"model {name!r} not found; available models: {known}")
        return model.id

    def _info(self, model_id: str) -> dict[str, Any]:
        return self.scheduler.info(model_id) or {}

    async def models(self, request: Request) -> Response:
        shown = redactor(self.scheduler.config).value(self.scheduler.snapshot())
        return JSONResponse({"models": shown})

    async def start(self, request: Request) -> Response:
        model_id = self._model_id(request)
        lease = self.scheduler.start(model_id)
        if _flag(_query(request.scope), "wait") and (error := await lease.settled()) is not None:
            raise error
        return JSONResponse(self._info(model_id))

    def _stopping(self, request: Request, model_ids: list[str]) -> None:
        """A stop request is logged as a TTL unload is: in the model's log and swapd's."""
        who = auth.principal(request.scope).name or "admin"
        for model_id in model_ids:
            if (ring := self.scheduler.ring(model_id)) is not None:
                ring.write(f"[swapd] unloading {model_id}: stopped by {who} (stop request)")
            log.info("unloading %s: stopped by %s (stop request)", model_id, who)

    async def stop(self, request: Request) -> Response:
        model_id = self._model_id(request)
        if self.scheduler.state(model_id) not in RUNNING:
            return JSONResponse({"stopped": [], "message": f"model {model_id} is not running"})
        self._stopping(request, [model_id])
        return JSONResponse({"stopped": await self.scheduler.unload([model_id])})

    async def stop_all(self, request: Request) -> Response:
        self._stopping(
            request, [m for m in self.scheduler.slots if self.scheduler.state(m) in RUNNING]
        )
        stopped = await self.scheduler.unload(None)
        body: dict[str, Any] = {"stopped": stopped}
        if not stopped:
            body["message"] = "no model is running"
        return JSONResponse(body)

    async def sleep(self, request: Request) -> Response:
        model_id = self._model_id(request)
        await self.scheduler.sleep(model_id)
        return JSONResponse(self._info(model_id))

    async def wake(self, request: Request) -> Response:
        model_id = self._model_id(request)
        if self.scheduler.state(model_id) is not State.SLEEPING:
            raise Conflict(f"model {model_id} is not sleeping")
        if (error := await self.scheduler.start(model_id).settled()) is not None:
            raise error
        return JSONResponse(self._info(model_id))

    # ── logs ────────────────────────────────────────────────────────────────────────────────

    async def logs(self, request: Request) -> Response:
        """``GET /api/logs[?model=ID][&lines=N]``: the lines kept of swapd's log and every
        engine's (or one model's engine), oldest first, each with its source and the time it
        was written; the last ``N`` only with ``lines``."""
        name, count = request.query_params.get("model"), request.query_params.get("lines")
        if count is not None and not (count.isascii() and count.isdigit()):
            raise RequestError(f"lines must be a whole number, got {count!r}")
        sources = [("swapd", self.swapd_log), *((r.name, r) for r in self.scheduler.rings())]
        if name is not None:
            model = self.scheduler.config.resolve(name)
            ring = self.scheduler.ring(model.id) if model else None
            if ring is None:
                known = ", ".join(sorted(self.scheduler.config.models)) or "(none configured)"
                raise NotFound(f"model {name!r} not found; available models: {known}")
            sources = [(ring.name, ring)]
        picked = merged(sources)
        if count is not None:
            picked = picked[-int(count) :] if int(count) > 0 else []
        hide = redactor(self.scheduler.config).text  # secrets never leave in a log line
        lines = [{"time": e.at, "source": s, "text": hide(e.text)} for s, e in picked]
        return JSONResponse({"lines": lines})

    # ── config ──────────────────────────────────────────────────────────────────────────────

    async def config(self, request: Request) -> Response:
        config = self.scheduler.config
        data = jsonable(config)
        for key in ("sources", "warnings"):
            data.pop(key, None)
        data = masked_config(config, data)  # env values, keys, ${env.X} values (swapd.secrets)
        return JSONResponse(
            {
                "sources": list(config.sources),
                "config": data,
                "warnings": [str(w) for w in config.warnings],
                "errors": self.config_errors(),
            }
        )

    async def config_source(self, request: Request) -> Response:
        """The config files as written (secrets masked) and the last rejected reload's errors."""
        files = await anyio.to_thread.run_sync(configsource.sources, self.scheduler.config)
        return JSONResponse({"files": files, "errors": self._reload_errors()})

    async def config_issues(self, request: Request) -> Response:
        """The last rejected reload's errors (empty once a reload succeeds), redacted as log
        lines are (they are logged too): read scope, polled by the UI's banner."""
        return JSONResponse({"errors": self._reload_errors()})

    def _reload_errors(self) -> Any:
        """The last rejected reload's errors, secrets redacted as in log lines."""
        return redactor(self.scheduler.config).value(self.config_errors())

    async def do_reload(self, request: Request) -> Response:
        if self.reload is None:
            return JSONResponse({"ok": False, "errors": ["reload is not available"]})
        return JSONResponse(await self.reload())

    # ── telemetry ───────────────────────────────────────────────────────────────────────────

    async def activity(self, request: Request) -> Response:
        raw = request.query_params.get("limit")
        limit = int(raw) if raw and raw.isdigit() else None
        records = self.observer.activity.recent(limit)
        captures = self.observer.captures
        for record in records:  # from the live cache, as llama-swap does
            record["has_capture"] = record["id"] in captures
        return JSONResponse({"activity": records})

    async def capture(self, request: Request) -> Response:
        """``GET /api/captures/{id}``: ``req-7`` (an activity id) or ``7``."""
        raw = str(request.path_params["id"])
        number = raw.removeprefix("req-")
        if not (number.isascii() and number.isdigit()) or int(number) < 1:
            raise RequestError("invalid capture ID")
        capture = self.observer.captures.get(f"req-{int(number)}")
        if capture is None:
            raise NotFound("capture not found")
        return JSONResponse(capture.as_json())

    async def inflight(self, request: Request) -> Response:
        await self.observer.refresh()
        return JSONResponse({"requests": self.observer.inflight_views()})

    async def cancel(self, request: Request) -> Response:
        if not self.observer.cancel(str(request.path_params["id"])):
            raise NotFound("inflight request not found")
        return JSONResponse({"msg": "ok"})

    async def version(self, request: Request) -> Response:
        return JSONResponse(build_info())

    async def hardware_info(self, request: Request) -> Response:
        """``GET /api/hardware[?refresh]``: GPUs, CPU and RAM, and ``placement``: every node's
        devices as the placer sees them (used, reserved by swapd, free, which models); 503
        when no source answered."""
        snap = await self.hardware.snapshot(refresh=_flag(_query(request.scope), "refresh"))
        if not snap.usable:
            body = error_body(503, "hardware detection unavailable", "hardware_unavailable")
            return Response(body, 503, media_type="application/json")
        return JSONResponse({**snap.as_dict(), "placement": self.scheduler.placement_view()})

    async def metrics(self, request: Request) -> Response:
        return Response(self.observer.metrics.render(), media_type=CONTENT_TYPE)

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(OPENAPI)

    # ── streams ─────────────────────────────────────────────────────────────────────────────

    async def events(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /api/events``: a snapshot, then model/request/queue (and log) events.

        Frames wait in the client's outbox (``EventBus.budget`` bytes); past that the bus
        drops the client and lets go of what it held, and the connection is cut with a log
        line naming the client."""
        bus = self.observer.bus
        sub = bus.subscribe(client_name(scope), logs=_flag(_query(scope), "logs"))
        snapshot = {
            "models": self.scheduler.snapshot(),
            "inflight": self.observer.inflight_views(),
            "profile": {"active": self.active_profile()},
        }

        def hide(frame: bytes) -> bytes:  # secrets in model views and log lines; after a
            return redactor(self.scheduler.config).bytes(frame)  # reload, the new config's

        first = hide(Event(bus.next_id(), "snapshot", snapshot).sse())
        shown: dict[str, int] = {}  # in-flight id -> the response bytes this client last saw
        tick = anyio.current_time() + INFLIGHT_INTERVAL

        async def next_chunk() -> bytes:
            nonlocal tick
            if not self.observer.inflight and not self.observer.listers:
                shown.clear()
                return hide(await sub.outbox.get())
            with anyio.move_on_after(max(0.0, tick - anyio.current_time())):
                return hide(await sub.outbox.get())
            tick = anyio.current_time() + INFLIGHT_INTERVAL
            await self.observer.refresh()
            self._growth(sub, shown)  # queued behind what was published meanwhile
            try:
                return hide(sub.outbox.get_nowait())
            except anyio.WouldBlock:
                return b""

        try:
            with sub.cut:
                await _stream(scope, receive, send, b"text/event-stream", first, next_chunk)
        finally:
            bus.unsubscribe(sub)
        if sub.dropped:
            raise _dropped(sub.name, "events", bus.budget)

    def _growth(self, sub: Subscription, shown: dict[str, int]) -> None:
        """``inflight`` upserts for requests whose response grew since ``sub``'s client last
        saw them: made per client when it waits for events, so the relay never pays for them."""
        live = self.observer.inflight
        for gone in [rid for rid in shown if rid not in live]:
            del shown[gone]
        for req in list(live.values()):
            size = req.meter.size
            if shown.get(req.id, 0) != size:
                shown[req.id] = size
                data = {"operation": "upsert", "request": req.view()}
                self.observer.bus.tell(sub, "inflight", data)

    async def log_stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /logs/stream[/proxy|/upstream|/{model}]``: history (unless ``?no-history``),
        then live lines. ``proxy`` is swapd's own log, ``upstream`` every engine's output
        (each line prefixed ``[model]``), no name both."""
        name = scope["path"][len("/logs/stream") :].strip("/")
        rings: list[tuple[str, LogRing]]
        if name == "proxy":
            rings = [("", self.swapd_log)]
        elif name == "upstream":
            rings = [(f"[{r.name}] ", r) for r in self.scheduler.rings()]
        elif name:
            model = self.scheduler.config.resolve(name)
            ring = self.scheduler.ring(model.id) if model else None
            if ring is None:
                raise RequestError(INVALID_LOGGER)
            rings = [("", ring)]
        else:
            rings = [("", self.swapd_log)]
            rings += [(f"[{r.name}] ", r) for r in self.scheduler.rings()]

        def hide(line: str) -> str:  # secrets never leave in a log line
            return redactor(self.scheduler.config).text(line)

        budget = LOG_STREAM_BUDGET
        outbox = Outbox(budget)  # this client's unsent lines, bounded in bytes
        cut = anyio.CancelScope()  # cancelled when the client is dropped
        client = client_name(scope)

        def pusher(prefix: bytes) -> Callable[[bytes], bool]:
            def push(line: bytes) -> bool:  # shared with every other stream of this ring
                line = redactor(self.scheduler.config).bytes(line)
                if outbox.put(prefix, line) if prefix else outbox.put(line):
                    return True
                if not outbox.closed:
                    outbox.close()  # let go of everything it held, now
                    cut.cancel()
                return False

            return push

        history = b""
        if not _flag(_query(scope), "no-history"):
            lines = [p + hide(line_of(entry)) for p, entry in merged(rings)]  # in time order
            history = ("\n".join(lines) + "\n").encode() if lines else b""
        subs = [(ring, ring.subscribe_raw(pusher(prefix.encode()))) for prefix, ring in rings]

        try:
            with cut:
                await _stream(
                    scope, receive, send, b"text/plain; charset=utf-8", history, outbox.get
                )
        finally:
            for ring, sub in subs:
                ring.unsubscribe(sub)
            outbox.close()
        if cut.cancel_called:  # dropped (see push)
            raise _dropped(client, "lines", budget)


async def _stream(
    scope: Scope,
    receive: Receive,
    send: Send,
    ctype: bytes,
    first: bytes,
    next_chunk: Callable[[], Awaitable[bytes]],
) -> None:
    """Send a streaming response until the client leaves or the source ends."""
    headers = [
        (b"content-type", ctype),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": first, "more_body": True})
    ping = b": ping\n\n" if ctype == b"text/event-stream" else b""
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        while True:
            chunk = ping
            with anyio.move_on_after(HEARTBEAT):
                try:
                    chunk = await next_chunk()
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    break
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        tg.cancel_scope.cancel()
