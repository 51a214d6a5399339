"""The ASGI application: auth, routing, model requests, raw passthrough, management endpoints.

Pure ASGI on the request path (no middleware stack). A model request is: read the body (capped)
→ find the model → admit (429 before any byte) → wait for the lease while watching for the
client to leave → forward and stream → release in ``finally``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from swapd import web
from swapd.config.model import Config, ModelConfig
from swapd.errors import (
    MethodNotAllowed,
    NotFound,
    RequestError,
    ShuttingDown,
    SwapdError,
    UpstreamGone,
)
from swapd.lease import Lease
from swapd.observe.logs import LogRing
from swapd.observe.observer import Observer
from swapd.proxy import auth, body, loading, routes
from swapd.proxy.asgi import (
    Aborted,
    ClientGone,
    DisconnectGuard,
    Receive,
    Reply,
    Scope,
    Send,
    drop_abort_tracebacks,
    read_body,
    send_bytes,
    send_error,
    send_json,
)
from swapd.proxy.envelope import error_body, is_anthropic
from swapd.proxy.forward import UpstreamClient, forward, request_headers, target
from swapd.routing import Routes
from swapd.scheduler import Scheduler
from swapd.upstream import Upstream
from swapd.views import LOADED, State

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("swapd.proxy")


class Proxy:
    def __init__(
        self,
        scheduler: Scheduler,
        upstreams: UpstreamClient,
        swapd_log: LogRing,
        *,
        reload: Callable[[], Awaitable[dict[str, Any]]] | None = None,
        observer: Observer | None = None,
        admin: Handler | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.upstreams = upstreams
        self.swapd_log = swapd_log
        self.reload = reload
        self.accepting = True
        self.observer = observer
        self.admin = admin  # swapd.proxy.admin: /api/*, /metrics, /logs/stream, /openapi.json
        self._admin: dict[tuple[str, str], Handler] = {
            ("GET", "/health"): self._health,
            ("GET", "/v1/models"): self._models,
            ("GET", "/models"): self._models,
            ("GET", "/running"): self._running,
            ("GET", "/unload"): self._unload_all_text,
            ("POST", "/api/models/unload"): self._unload_all_json,
            ("GET", "/logs"): self._logs,
            ("GET", "/"): self._root,
        }
        # An Aborted response is logged here in one line; uvicorn need not add a traceback.
        logging.getLogger("uvicorn.error").addFilter(drop_abort_tracebacks)

    @property
    def config(self) -> Config:
        return self.scheduler.config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        reply = Reply(send)
        try:
            await self._route(scope, receive, reply)
        except ClientGone:
            pass
        except Aborted as exc:
            log.warning("%s %s: %s; client connection dropped", *_line(scope), exc.reason)
            raise  # the server drops the connection: no terminating chunk
        except SwapdError as exc:
            if reply.started:
                log.warning("%s %s: %s after the response started", *_line(scope), exc)
                raise Aborted(exc.http_status, str(exc)) from exc
            await send_error(reply, scope, exc)
        except Exception as exc:  # the one catch-all: a bug in a route is a JSON 500, not a hang
            log.exception("%s %s: unhandled error", *_line(scope))
            if reply.started:
                raise Aborted(500, f"internal error: {exc!r}") from exc
            internal = SwapdError("internal error in swapd; its log has the details")
            await send_error(reply, scope, internal)

    async def _route(self, scope: Scope, receive: Receive, send: Reply) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        if method == "OPTIONS":
            await self._preflight(scope, send)
            return
        if web.is_ui_path(path):  # static UI files: public, the UI asks for a key itself
            await web.serve(scope, send)
            return
        if path != "/health":
            auth.check(scope, self.config.api_keys)
        routed = routes.is_model_route(method, path)
        if routed:
            await self._model_request(scope, receive, send)
        elif routed is None:
            raise MethodNotAllowed(f"method {method} is not allowed on {path}")
        elif path.startswith("/upstream/"):
            await self._upstream(scope, receive, send)
        elif path.startswith("/api/models/unload/") and method == "POST":
            await self._unload_one(scope, receive, send)
        elif (handler := self._admin.get((method, path))) is not None:
            await handler(scope, receive, send)
        elif self.admin is not None and admin_path(path):
            await self.admin(scope, receive, send)
        else:
            raise NotFound(f"no route for {method} {path}")

    async def _preflight(self, scope: Scope, send: Send) -> None:
        requested = dict(scope["headers"]).get(b"access-control-request-headers")
        headers = [
            (b"access-control-allow-origin", b"*"),
            (b"access-control-allow-methods", b"GET, POST, PUT, PATCH, DELETE, OPTIONS"),
            (
                b"access-control-allow-headers",
                requested or b"Content-Type, Authorization, Accept, X-Requested-With",
            ),
            (b"access-control-max-age", b"86400"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    # ── model requests ──────────────────────────────────────────────────────────────────────

    def _resolve(self, name: str | None) -> ModelConfig:
        if not name:
            raise RequestError("the request does not name a model (field 'model')")
        model = self.config.resolve(name)
        if model is None:
            known = ", ".join(sorted(self.config.models)) or "(none configured)"
            raise NotFound(f"model {name!r} not found; available models: {known}")
        return model

    async def _model_request(self, scope: Scope, receive: Receive, send: Reply) -> None:
        raw = await read_body(receive, self.config.max_body_bytes)
        ctype = dict(scope["headers"]).get(b"content-type", b"")
        parsed = await body.extract_async(scope["method"], scope["query_string"], ctype, raw)
        model = self._resolve(parsed.model)
        payload = await body.rewrite_async(parsed, raw, ctype, model)
        loading_state = (
            parsed.stream
            and model.send_loading_state
            and scope["path"].startswith(routes.LOADING_STATE_PATH)
        )
        await self._serve(
            scope, receive, send, model, target(scope), payload, loading_state=loading_state
        )

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Reply,
        model: ModelConfig,
        path: str,
        payload: bytes,
        *,
        loading_state: bool = False,
    ) -> None:
        """Lease the model, forward ``path`` (a raw request target) to it, release."""
        if not self.accepting:
            raise ShuttingDown("swapd is shutting down")
        lease = self.scheduler.lease(model.id)  # 404/429/503 here, before any byte
        headers = request_headers(scope, drop_credentials=bool(self.config.api_keys))
        req = (
            self.observer.request_start(model.id, path, scope, payload) if self.observer else None
        )
        status = 499  # client closed the request, unless something below says otherwise
        streamed = False  # a loading stream: its 200 SSE headers are out
        try:
            async with DisconnectGuard(receive):
                streamed = loading_state and not lease.done
                if streamed:
                    upstream = await self._wait_reporting(send, lease)
                else:
                    upstream = await lease.ready()
                relay = functools.partial(
                    forward,
                    self.upstreams,
                    scope,
                    send,
                    body=payload,
                    headers=headers,
                    model=model.id,
                    timeouts=model.timeouts,
                    sse_started=streamed,
                    meter=req.meter if req else None,
                )
                try:
                    status = await relay(url=upstream.base_url + path)
                except UpstreamGone:
                    # Nothing reached the engine: it died just before this request. Once the
                    # scheduler has seen the exit, a new lease starts a fresh engine; once.
                    upstream = await lease.renew(upstream)
                    status = await relay(url=upstream.base_url + path)
        except SwapdError as exc:
            status = exc.http_status
            if not streamed:
                raise
            # The 200 is out: the error ends the SSE stream as an error frame.
            await loading.send_error(send, body_of(exc, scope))
        except Aborted as exc:
            status = exc.status
            raise
        except anyio.get_cancelled_exc_class():
            if req is None or (cancelled := req.cancellation()) is None:
                raise
            status = cancelled.http_status  # POST /api/inflight/{id}/cancel
            raise cancelled from None
        finally:
            lease.release()
            if req is not None and self.observer is not None:
                self.observer.request_end(req, status)

    async def _wait_reporting(self, send: Reply, lease: Lease) -> Upstream:
        """Wait for the lease while streaming loading progress (the 200 is sent at once)."""
        began = anyio.current_time()
        await loading.begin(send, lease.model)
        async with anyio.create_task_group() as progress:
            progress.start_soon(loading.report, send, lease, name="loading")
            try:
                upstream = await lease.ready()
            except SwapdError as exc:
                progress.cancel_scope.cancel()
                await loading.send_frame(send, lease.model, f"\nfailed: {exc.message}\n")
                raise
            progress.cancel_scope.cancel()
        await loading.finish(send, lease.model, anyio.current_time() - began)
        return upstream

    # ── /upstream/{model}/{path} ────────────────────────────────────────────────────────────

    async def _upstream(self, scope: Scope, receive: Receive, send: Reply) -> None:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        # Raw segments: `author%2Fmodel` is one segment that names the model `author/model`.
        segments = raw_path.split(b"?", 1)[0][len(b"/upstream/") :].split(b"/")
        found = Routes(self.config).resolve_path(segments)
        if found is None or found[0].model is None:
            raise NotFound(f"no model matches {scope['path']!r}")
        model, used = found[0].model, found[1]
        if used == len(segments):
            location = b"/upstream/" + b"/".join(segments) + b"/"
            if scope["query_string"]:
                location += b"?" + scope["query_string"]
            status = 301 if scope["method"] in ("GET", "HEAD") else 308
            await send_bytes(send, status, b"", [(b"location", location)])
            return
        payload = await read_body(receive, self.config.max_body_bytes)
        path = target(scope, b"/" + b"/".join(segments[used:]))  # forwarded as the client sent it
        await self._serve(scope, receive, send, model, path, payload)

    # ── management ──────────────────────────────────────────────────────────────────────────

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_bytes(send, 200, b"OK", content_type=b"text/plain")

    async def _root(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_bytes(send, 302, b"", [(b"location", b"/ui/")])

    def _record(
        self, model: ModelConfig, record_id: str, loaded: bool, kind: str
    ) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": record_id,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "swapd",
        }
        if model.name:
            record["name"] = model.name
        if model.description:
            record["description"] = model.description
        meta: dict[str, Any] = {**model.metadata, "type": kind}
        if kind == "alias":
            meta["modelID"] = model.id
        elif model.aliases:
            meta["aliases"] = list(model.aliases)
        record["meta"] = {"swapd": meta, "llamaswap": meta}
        record["status"] = {"value": "loaded" if loaded else "unloaded"}
        return record

    async def _models(self, scope: Scope, receive: Receive, send: Send) -> None:
        data = []
        for model in self.config.models.values():
            if model.unlisted:
                continue
            loaded = self.scheduler.state(model.id) in LOADED
            data.append(self._record(model, model.id, loaded, "model"))
            if self.config.include_aliases_in_list:
                data.extend(self._record(model, a, loaded, "alias") for a in model.aliases)
        data.sort(key=lambda r: r["id"])
        origin = dict(scope["headers"]).get(b"origin")
        extra = [(b"access-control-allow-origin", origin)] if origin else None
        await send_json(send, {"object": "list", "data": data}, headers=extra)

    async def _running(self, scope: Scope, receive: Receive, send: Send) -> None:
        running = [i for i in self.scheduler.snapshot() if i["state"] != State.STOPPED]
        await send_json(send, {"running": running})

    async def _unload_all_text(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.scheduler.unload(None)
        await send_bytes(send, 200, b"OK", content_type=b"text/plain")

    async def _unload_all_json(self, scope: Scope, receive: Receive, send: Send) -> None:
        stopped = await self.scheduler.unload(None)
        await send_json(send, {"msg": "ok", "stopped": stopped})

    async def _unload_one(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = scope["path"][len("/api/models/unload/") :].strip("/")
        model = self.config.resolve(name)
        if model is None:
            raise NotFound(f"model {name!r} not found")
        stopped = await self.scheduler.unload([model.id])
        await send_json(send, {"msg": "ok", "stopped": stopped})

    async def _logs(self, scope: Scope, receive: Receive, send: Send) -> None:
        lines = self.swapd_log.history()
        for ring in self.scheduler.rings():
            lines.extend(f"[{ring.name}] {line}" for line in ring.history())
        await send_bytes(
            send, 200, ("\n".join(lines) + "\n").encode(), content_type=b"text/plain; charset=utf-8"
        )


ADMIN_PREFIXES = ("/api/", "/logs/stream")
ADMIN_PATHS = frozenset({"/metrics", "/openapi.json"})


def admin_path(path: str) -> bool:
    return path in ADMIN_PATHS or path.startswith(ADMIN_PREFIXES)


def body_of(exc: SwapdError, scope: Scope) -> bytes:
    return error_body(exc.http_status, exc.message, exc.code, anthropic=is_anthropic(scope["path"]))


def _line(scope: Scope) -> tuple[str, str]:
    """Method and path, for a log line."""
    return scope["method"], scope["path"]
