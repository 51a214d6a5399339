"""The ASGI application: auth, routing, model requests, raw passthrough, management endpoints.

Pure ASGI on the request path (no middleware stack). A model request is: read the body (capped)
→ resolve the name (active profile, selector, local model, peer: swapd.routing) → rewrite the
``model`` and apply filters → admit (429 before any byte) → wait for the lease while watching
for the client to leave → forward and stream → release in ``finally``. A peer's model skips the
lease: it is forwarded to the peer at once (swapd.proxy.peer).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import anyio

from swapd import web
from swapd.config.model import Config, ModelConfig
from swapd.errors import (
    Conflict,
    MethodNotAllowed,
    NotFound,
    RequestError,
    ShuttingDown,
    SwapdError,
    UpstreamGone,
)
from swapd.lease import Lease
from swapd.observe.activity import Meter
from swapd.observe.logs import LogRing, line_of, merged
from swapd.observe.observer import Observer, Request
from swapd.proxy import (
    auth,
    body,
    guard,
    listing,
    loading,
    ollama,
    passthrough,
    relay,
    routes,
    websocket,
)
from swapd.proxy.asgi import (
    Aborted,
    ClientGone,
    DisconnectGuard,
    Receive,
    Reply,
    Scope,
    Send,
    drop_abort_tracebacks,
    header,
    read_body,
    send_bytes,
    send_error,
    send_json,
)
from swapd.proxy.envelope import error_body, is_anthropic, shown
from swapd.proxy.forward import UpstreamClient, forward, request_headers, target
from swapd.proxy.peer import forward_peer, peer_headers, peer_url
from swapd.routing import ActiveProfile, Route, Routes, Spillover
from swapd.scheduler import Scheduler
from swapd.secrets import redactor
from swapd.upstream import Upstream
from swapd.views import State

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("swapd.proxy")


class Tracked:
    """One proxied request in the observer, as ``async with``: its in-flight entry, capture and
    activity record, ended with the status it got (499 when the client left first). An
    operator's cancel (``POST /api/inflight/{id}/cancel``) surfaces as ``RequestCancelled``.
    A plain class, not a generator-based context manager: it runs once per request."""

    __slots__ = ("_req", "_start", "meter", "observer", "status")

    def __init__(self, observer: Observer | None, start: Callable[[Observer], Request]) -> None:
        self.observer = observer
        self._start = start
        self._req: Request | None = None
        self.meter: Meter | None = None  # counts the response (None without an observer)
        self.status = 499  # client closed the request, unless something says otherwise

    async def __aenter__(self) -> Tracked:
        if self.observer is not None:
            self._req = self._start(self.observer)
            self.meter = self._req.meter
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        req = self._req
        if req is None or self.observer is None:
            return
        try:
            if isinstance(exc, SwapdError):
                self.status = exc.http_status
            elif isinstance(exc, Aborted):
                self.status = exc.status
            elif (
                isinstance(exc, anyio.get_cancelled_exc_class())
                and (cancelled := req.cancellation()) is not None
            ):
                self.status = cancelled.http_status
                raise cancelled from None
        finally:
            self.observer.request_end(req, self.status)


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
        listen_host: str = "127.0.0.1",
    ) -> None:
        self.scheduler = scheduler
        self.upstreams = upstreams
        self.links = relay.Pool()  # kept-alive engine connections of the relay (proxy.relay)
        if observer is not None:
            observer.pollers.append(self.links.poll)
        self.swapd_log = swapd_log
        self.reload = reload
        self.accepting = True
        self.observer = observer
        self.admin = admin  # swapd.proxy.admin: /api/*, /metrics, /logs/stream, /openapi.json
        self.profile = ActiveProfile()  # none at start and after every reload
        self.guard = guard.Guard(listen_host)  # Host allow-list and cross-site refusal
        self.spillover = Spillover()  # selector reservations, across reloads
        self.ollama = ollama.Ollama(self)  # the opt-in Ollama API (config `ollama.enabled`)
        # Told after a profile change or a reload: the data-plane workers' or the native
        # front's copy of what routes where
        self.routes_changed: Callable[[], None] | None = None
        self._routes: tuple[Config, str | None, Routes] | None = None
        self._admin: dict[tuple[str, str], Handler] = {
            ("GET", "/health"): self._health,
            ("GET", "/v1/models"): self._models,
            ("GET", "/models"): self._models,
            ("GET", "/running"): self._running,
            ("GET", "/api/auth"): self._whoami,
            ("GET", "/unload"): self._unload_all_text,
            ("POST", "/api/models/unload"): self._unload_all_json,
            ("GET", "/logs"): self._logs,
            ("GET", "/api/profiles"): self._profiles,
            ("PUT", "/api/profiles/active"): self._set_profile,
            ("GET", "/"): self._root,
        }
        # An Aborted response is logged here in one line; uvicorn need not add a traceback.
        logging.getLogger("uvicorn.error").addFilter(drop_abort_tracebacks)

    @property
    def config(self) -> Config:
        return self.scheduler.config

    @property
    def routes(self) -> Routes:
        """Name resolution for the current config and active profile (rebuilt on a change)."""
        config = self.config
        name = self.profile.name(config)
        cached = self._routes
        if cached is None or cached[0] is not config or cached[1] != name:
            routes = Routes(
                config,
                profile=self.profile.get(config),
                state=self.scheduler.state,
                spillover=self.spillover,
            )
            self._routes = cached = (config, name, routes)
        return cached[2]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
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
            await send_error(reply, scope, self._shown(exc, scope))
        except Exception as exc:  # the one catch-all: a bug in a route is a JSON 500, not a hang
            log.exception("%s %s: unhandled error", *_line(scope))
            if reply.started:
                raise Aborted(500, f"internal error: {exc!r}") from exc
            internal = SwapdError("internal error in swapd; its log has the details")
            await send_error(reply, scope, internal)
        finally:
            relay.let_go(scope)

    async def _route(self, scope: Scope, receive: Receive, send: Reply) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        routed = routes.is_model_route(method, path)
        if not routed and self.observer is not None:
            self.observer.settle()  # a reader sees every request whose answer is out
        self.guard.check(scope, self.config)  # DNS rebinding, cross-site pages (proxy.guard)
        if method == "OPTIONS":
            await self._preflight(scope, send)
            return
        if self.config.ollama.enabled and ollama.serves(method, path, scope):
            await self.ollama(scope, receive, send)  # its own auth and error envelope
            return
        if web.is_ui_path(path):  # static UI files: public, the UI asks for a key itself
            await web.serve(scope, send)
            return
        if path == "/upstream" and method == "GET":  # public, as in llama-swap: the models page
            await send_bytes(send, 302, b"", [(b"location", b"/ui/#/models")])
            return
        if path != "/health":  # who is asking, and may they (swapd.proxy.auth)
            who = auth.identify(scope, self.config.keys)
            who.require(auth.request_scope(method, path), f"{method} {path}")
        if routed:
            await self._model_request(scope, receive, send)
        elif routed is None:
            raise MethodNotAllowed(f"method {method} is not allowed on {path}")
        elif passthrough.is_passthrough(path):  # /upstream/{model}/…, /comfyui/…
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

    def _shown(self, exc: SwapdError, scope: Scope) -> SwapdError:
        """The error as this client may see it: secrets redacted, engine log lines only for
        the admin scope (swapd.proxy.envelope.shown)."""
        detail = auth.principal(scope).has("admin")  # nobody identified yet: no detail
        return shown(exc, redactor(self.config).text, detail=detail)

    # ── model requests ──────────────────────────────────────────────────────────────────────

    def _resolve(self, name: str | None, who: auth.Principal) -> Route:
        """The route for ``name``; a model the key may not use is not found, as an unknown
        one (and the message lists only the models it may use)."""
        if not name:
            raise RequestError("the request does not name a model (field 'model')")
        route = self.routes.resolve(name)
        if route is not None and not who.may_use(route):
            self.routes.release(route)
            route = None
        if route is None:
            shown = [m for m in sorted(self.config.models) if who.allows(m)]
            known = ", ".join(shown) or "(none configured)"
            raise NotFound(f"model {name!r} not found; available models: {known}")
        return route

    async def _model_request(self, scope: Scope, receive: Receive, send: Reply) -> None:
        config = self.config
        raw = await read_body(receive, config.max_body_bytes)
        ctype = header(scope, b"content-type") or b""
        query: bytes = scope["query_string"]
        depth = config.server.max_json_depth
        parsed = await body.extract_async(scope["method"], query, ctype, raw, max_depth=depth)
        route = self._resolve(parsed.model, auth.principal(scope))
        try:
            change = body.Rewrite.for_route(route, parsed.model)
            payload, query = await body.rewrite_async(parsed, raw, query, ctype, change)
            raw_path = scope.get("raw_path") or scope["path"].encode()
            upstream_path = routes.upstream_path(scope["path"], raw_path)
            path = target(scope, upstream_path, query)
            if route.model is None:
                await self._serve_peer(scope, receive, send, route, path, payload)
                return
            loading_state = (
                parsed.stream
                and route.model.send_loading_state
                and scope["path"].startswith(routes.LOADING_STATE_PATH)
            )
            await self._serve(
                scope,
                receive,
                send,
                route.model,
                path,
                payload,
                loading_state=loading_state,
                selector=route.selector,
            )
        finally:
            self.routes.release(route)

    async def _serve_peer(
        self, scope: Scope, receive: Receive, send: Reply, route: Route, path: str, payload: bytes
    ) -> None:
        """Forward to a peer: no lease, no queue; the local scheduler never hears of it."""
        if not self.accepting:
            raise ShuttingDown("swapd is shutting down")
        assert route.peer is not None
        metadata = {"selector": route.selector} if route.selector else None
        tracking = self._tracked(route.key, path, scope, payload, metadata)
        async with tracking as tracked, DisconnectGuard(receive):
            tracked.status = await forward_peer(
                self.upstreams,
                scope,
                send,
                route.peer,
                route.key,
                target=path,
                body=payload,
                meter=tracked.meter,
            )

    def _tracked(
        self,
        key: str,
        path: str,
        scope: Scope,
        payload: bytes,
        metadata: dict[str, Any] | None = None,
    ) -> Tracked:
        """The request ``async with`` the result is in the observer (see :class:`Tracked`);
        ``metadata``: a dict of the caller's own, completed here."""
        if name := auth.principal(scope).name:  # the key's name, never its value
            metadata = metadata if metadata is not None else {}
            metadata["key"] = name

        def start(observer: Observer) -> Request:
            return observer.request_start(key, path, scope, payload, metadata)

        return Tracked(self.observer, start)

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
        selector: str | None = None,
    ) -> None:
        """Lease the model, forward ``path`` (a raw request target) to it, release;
        ``selector``: the selector that chose the model (for the activity record)."""
        if not self.accepting:
            raise ShuttingDown("swapd is shutting down")
        lease = self.scheduler.lease(model.id)  # 404/429/503 here, before any byte
        client = relay.client_of(scope)
        try:
            metadata: dict[str, Any] = {"fifo_priority": self.config.priorities.get(model.id, 0)}
            if selector is not None:
                metadata["selector"] = selector
            async with self._tracked(model.id, path, scope, payload, metadata) as tracked:
                streamed = False  # a loading stream: its 200 SSE headers are out
                try:
                    async with DisconnectGuard(receive, client):
                        streamed = loading_state and not lease.done
                        if streamed:
                            upstream = await self._wait_reporting(send, lease)
                        else:
                            upstream = await lease.ready()
                        send_to = self._sender(scope, client, send, model, path, payload)
                        try:
                            tracked.status = await send_to(upstream, streamed, tracked.meter)
                        except UpstreamGone:
                            # Nothing reached the engine: it died just before this request.
                            # Once the scheduler has seen the exit, a new lease starts a fresh
                            # engine; once.
                            upstream = await lease.renew(upstream)
                            tracked.status = await send_to(upstream, streamed, tracked.meter)
                except SwapdError as exc:
                    if not streamed:
                        raise
                    # The 200 is out: the error ends the SSE stream as an error frame.
                    tracked.status = exc.http_status
                    await loading.send_error(send, body_of(self._shown(exc, scope), scope))
        finally:
            lease.release()

    def _sender(
        self,
        scope: Scope,
        client: relay.Client | None,
        send: Reply,
        model: ModelConfig,
        path: str,
        payload: bytes,
    ) -> Callable[[Upstream, bool, Meter | None], Awaitable[int]]:
        """How to send the request to an engine and relay its answer: swapd.proxy.relay
        where the edge offers the client's connection, aiohttp (swapd.proxy.forward) else."""
        drop = bool(self.config.api_keys)
        heads: dict[str, bytes] = {}  # per upstream host: the request head, built once

        async def relayed(upstream: Upstream, streamed: bool, meter: Meter | None) -> int:
            origin = relay.origin_of(upstream.base_url)
            if client is None or origin is None:
                return await forwarded(upstream, streamed, meter)
            host = upstream.base_url[7:]
            if (head := heads.get(host)) is None:
                head = heads[host] = relay.request_head(
                    scope, scope["method"], path, host.encode(), len(payload), drop_credentials=drop
                )
            return await relay.relay(
                self.links,
                client,
                send,
                scope,
                origin=origin,
                head=head,
                body=payload,
                model=model.id,
                timeouts=model.timeouts,
                sse_started=streamed,
                meter=meter,
                what=engine_name(model.id, upstream),
            )

        async def forwarded(upstream: Upstream, streamed: bool, meter: Meter | None) -> int:
            return await forward(
                self.upstreams,
                scope,
                send,
                url=upstream.base_url + path,
                body=payload,
                headers=request_headers(scope, drop_credentials=drop),
                model=model.id,
                timeouts=model.timeouts,
                sse_started=streamed,
                meter=meter,
                upstream=engine_name(model.id, upstream),
            )

        return relayed

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
                reason = shown(exc, redactor(self.config).text, detail=False).message
                await loading.send_frame(send, lease.model, f"\nfailed: {reason}\n")
                raise
            progress.cancel_scope.cancel()
        await loading.finish(send, lease.model, anyio.current_time() - began)
        return upstream

    # ── passthrough: /upstream/{model}/{path}, /comfyui/{path} (HTTP and WebSocket) ─────────────

    async def _upstream(self, scope: Scope, receive: Receive, send: Reply) -> None:
        passage = passthrough.find(self.routes, scope)
        self._may_pass(scope, passage)
        if isinstance(passage, passthrough.Redirect):
            status = passage.status(scope["method"])
            await send_bytes(send, status, b"", [(b"location", passage.location)])
            return
        passthrough.check_may_start(self.config, passage, self.scheduler.state)
        payload = await read_body(receive, self.config.max_body_bytes)
        route = passage.route
        if route.peer is not None:
            assert route.peer_model is not None
            async with DisconnectGuard(receive):
                await forward_peer(
                    self.upstreams,
                    scope,
                    send,
                    route.peer,
                    route.peer_model,
                    target=passage.target(scope),
                    body=payload,
                )
            return
        if route.model is None:
            raise NotFound(f"no model matches {scope['path']!r}")
        await self._serve(scope, receive, send, route.model, passage.target(scope), payload)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket under /upstream/ or /comfyui/, relayed to the engine (or the peer).

        Unless the model has ``compat.ignoreWebsockets``, the connection holds a lease for its
        whole life: the upgrade starts the model and it is never evicted under an open socket.
        With the flag it bypasses the scheduler and is refused (409) unless the model is ready.
        """
        sock = websocket.Socket(scope, receive, send)
        try:
            await sock.connected()
            self.guard.check(scope, self.config)
            auth.identify(scope, self.config.keys).require("inference", "a WebSocket")
            passage = passthrough.find(self.routes, scope)
            self._may_pass(scope, passage)
            if isinstance(passage, passthrough.Redirect):
                location = [(b"location", passage.location)]
                await sock.respond(passage.status(scope["method"]), location, b"")
                return
            passthrough.check_may_start(self.config, passage, self.scheduler.state)
            await self._ws_relay(sock, passage)
        except ClientGone:
            pass
        except SwapdError as exc:
            await sock.fail(self._shown(exc, scope))
        except Exception:  # the one catch-all, as for HTTP: a bug is a 500 / close 1011
            log.exception("WebSocket %s: unhandled error", scope["path"])
            await sock.fail(SwapdError("internal error in swapd; its log has the details"))

    def _may_pass(self, scope: Scope, passage: passthrough.Passage | passthrough.Redirect) -> None:
        """A passthrough to a model the key may not use is not found (as an unknown one); an
        engine control or status path needs the admin or read scope (upstream.adminPaths)."""
        who = auth.principal(scope)
        if passage.route is not None and not who.may_use(passage.route):
            if isinstance(passage, passthrough.Passage) and passage.comfyui:
                raise NotFound(f"local model {passthrough.COMFYUI_MODEL} not found")
            raise NotFound(f"no model matches {scope['path']!r}")
        if isinstance(passage, passthrough.Passage):
            method = scope.get("method", "GET")  # a WebSocket's upgrade is a GET
            needed = auth.upstream_scope(self.config, method, passage.path)
            who.require(needed, f"{method} {scope['path']}")

    async def _ws_relay(self, sock: websocket.Socket, passage: passthrough.Passage) -> None:
        scope, route = sock.scope, passage.route
        target_ = passage.target(scope)
        if route.peer is not None:
            peer, name = route.peer, route.peer_model or route.name
            headers = websocket.upgrade_headers(peer_headers(scope, peer))
            url = websocket.ws_url(peer_url(peer, target_))
            conn = await sock.until(
                lambda: websocket.open_engine(
                    sock, url, headers, model=name, timeouts=peer.timeouts
                )
            )
            if conn is not None:
                await websocket.relay(sock, conn, model=name)
            return
        model = route.model
        if model is None:
            raise NotFound(f"no model matches {scope['path']!r}")
        drop = bool(self.config.api_keys)
        headers = websocket.upgrade_headers(request_headers(scope, drop_credentials=drop))

        def opener(upstream: Upstream) -> Callable[[], Awaitable[websocket.Engine | None]]:
            url = websocket.ws_url(upstream.base_url + target_)
            return lambda: websocket.open_engine(
                sock, url, headers, model=model.id, timeouts=model.timeouts
            )

        if model.ignore_websockets:  # outside the scheduler: no start, no lease, no TTL hold
            ready = self.scheduler.upstream(model.id)
            if ready is None:
                raise Conflict(
                    f"model {model.id} is not loaded; ignored websocket requests cannot start it"
                )
            if (conn := await sock.until(opener(ready))) is not None:
                await websocket.relay(sock, conn, model=model.id)
            return
        if not self.accepting:
            raise ShuttingDown("swapd is shutting down")
        lease = self.scheduler.lease(model.id)
        try:
            upstream = await sock.until(lease.ready)
            try:
                conn = await sock.until(opener(upstream))
            except UpstreamGone:  # the engine died just before: once more on a fresh one
                upstream = await sock.until(lambda: lease.renew(upstream))
                conn = await sock.until(opener(upstream))
            if conn is not None:
                await websocket.relay(sock, conn, model=model.id)
        finally:
            lease.release()

    # ── management ──────────────────────────────────────────────────────────────────────────

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_bytes(send, 200, b"OK", content_type=b"text/plain")

    async def _root(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_bytes(send, 302, b"", [(b"location", b"/ui/")])

    async def _models(self, scope: Scope, receive: Receive, send: Send) -> None:
        config = self.config
        who = auth.principal(scope)
        data = listing.models_list(
            config,
            self.routes,
            self.scheduler.state,
            self.profile.get(config),
            allowed=who.allows if who.models else None,
        )
        origin = header(scope, b"origin")
        extra = [(b"access-control-allow-origin", origin)] if origin else None
        await send_json(send, {"object": "list", "data": data}, headers=extra)

    async def _whoami(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /api/auth``: the presented key's name, scopes and model globs."""
        who = auth.principal(scope)
        await send_json(send, who.as_json(keys_required=bool(self.config.keys)))

    async def _profiles(self, scope: Scope, receive: Receive, send: Send) -> None:
        config = self.config
        profiles = [
            {
                "id": p.id,
                "description": p.description,
                "pins": {name: target or "" for name, target in p.pins.items()},
            }
            for p in sorted(config.profiles.values(), key=lambda p: p.id)
        ]
        await send_json(send, {"active": self.profile.name(config), "profiles": profiles})

    async def _set_profile(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = await read_body(receive, 64 * 1024)
        try:
            request = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: input nested ~1000 deep
            request = None
        if not isinstance(request, dict):
            raise RequestError("invalid profile request")
        if "name" not in request:
            raise RequestError("profile name is required")
        name = request["name"]
        if name is not None and not isinstance(name, str):
            raise RequestError("profile name must be a string or null")
        config = self.config
        if self.profile.set(config, name):
            active = self.profile.name(config)
            log.info("active profile changed to %s", active or "(none)")
            if self.routes_changed is not None:
                self.routes_changed()
            if self.observer is not None:
                self.observer.bus.publish("profile", {"active": active})
        await send_json(send, {"active": self.profile.name(config)})

    async def _running(self, scope: Scope, receive: Receive, send: Send) -> None:
        running = [i for i in self.scheduler.snapshot() if i["state"] != State.STOPPED]
        await send_json(send, {"running": redactor(self.config).value(running)})

    async def _unload_all_text(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.scheduler.unload(None)
        await send_bytes(send, 200, b"OK", content_type=b"text/plain")

    async def _unload_all_json(self, scope: Scope, receive: Receive, send: Send) -> None:
        stopped = await self.scheduler.unload(None)
        await send_json(send, {"msg": "ok", "stopped": stopped})

    async def _unload_one(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = scope["path"][len("/api/models/unload/") :].strip("/")
        route = self.routes.concrete(name)  # concrete names: no profile, no selector
        if route is None:
            raise NotFound(f"model {name!r} not found")
        if route.model is None:
            raise NotFound(f"model {name!r} is a peer's: no local server to unload")
        model = route.model
        stopped = await self.scheduler.unload([model.id])
        await send_json(send, {"msg": "ok", "stopped": stopped})

    async def _logs(self, scope: Scope, receive: Receive, send: Send) -> None:
        if b"text/html" in (header(scope, b"accept") or b""):  # a browser: the UI's log view
            await send_bytes(send, 302, b"", [(b"location", b"/ui/")])
            return
        rings = [("", self.swapd_log), *((f"[{r.name}] ", r) for r in self.scheduler.rings())]
        lines = [prefix + line_of(entry) for prefix, entry in merged(rings)]  # in time order
        text = redactor(self.config).text("\n".join(lines) + "\n")  # secrets stay in
        await send_bytes(send, 200, text.encode(), content_type=b"text/plain; charset=utf-8")


ADMIN_PREFIXES = ("/api/", "/logs/stream")
ADMIN_PATHS = frozenset({"/metrics", "/openapi.json"})


def engine_name(model: str, upstream: Upstream) -> str:
    """The engine in error messages; with its node when it runs on one (a 502 names it)."""
    where = f" on node {upstream.node}" if upstream.node else ""
    return f"engine for model {model!r}{where}"


def admin_path(path: str) -> bool:
    return path in ADMIN_PATHS or path.startswith(ADMIN_PREFIXES)


def body_of(exc: SwapdError, scope: Scope) -> bytes:
    return error_body(exc.http_status, exc.message, exc.code, anthropic=is_anthropic(scope["path"]))


def _line(scope: Scope) -> tuple[str, str]:
    """Method and path, for a log line."""
    return scope["method"], scope["path"]
