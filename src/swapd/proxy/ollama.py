"""The Ollama-compatible API (opt-in: ``ollama: {enabled: true}``), on the OpenAI surface of
whatever engine serves the model, so it works for llama-server, vLLM, SGLang and peers alike.

Served: ``GET|HEAD /`` ("Ollama is running", to clients that are not browsers; a browser keeps
the redirect to the UI), ``GET /api/version``, ``GET /api/tags``, ``POST /api/show``,
``GET /api/ps``, ``POST /api/chat``, ``POST /api/generate``, ``POST /api/embed`` and
``POST /api/embeddings``. ``pull``, ``push``, ``create``, ``copy``, ``delete`` and blobs answer
501: swapd does not manage model files. Errors on these routes are Ollama's envelope, a plain
string: ``{"error": "…"}``.

A request is translated (swapd.proxy.ollamabody), then takes the proxy's own steps: the name
is resolved as for ``/v1`` (a trailing ``:latest`` that names nothing is dropped), filters
apply, the model is leased, the request is recorded in activity, and the engine's OpenAI
answer is translated back (swapd.proxy.ndjson). ``keep_alive`` 0 unloads the model once the
request is done; a duration sets its idle TTL for this load (``Scheduler.keep_alive``).

Keys: chat, generate, embed, show, tags and ps need the ``inference`` scope (and a key's model
globs apply); ``/`` and ``/api/version`` any valid key.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio

from swapd.config.model import KeyScope, ModelConfig, Timeouts
from swapd.errors import (
    MethodNotAllowed,
    NotFound,
    NotSupported,
    RequestError,
    ShuttingDown,
    SwapdError,
    UpstreamGone,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from swapd.lease import Lease
from swapd.observe.build import build_info
from swapd.proxy import auth, body, listing, modelcard, ndjson, ollamabody
from swapd.proxy.asgi import (
    Aborted,
    ClientGone,
    DisconnectGuard,
    Receive,
    Reply,
    Scope,
    header,
    read_body,
    send_bytes,
)
from swapd.proxy.envelope import error_headers
from swapd.proxy.forward import Meter, open_response, request_headers
from swapd.proxy.peer import peer_headers, peer_url, shown_url
from swapd.routing import Route
from swapd.upstream import Upstream
from swapd.views import State

if TYPE_CHECKING:
    from swapd.proxy.app import Proxy

log = logging.getLogger("swapd.proxy")

RUNNING_TEXT = b"Ollama is running"
NDJSON = b"application/x-ndjson"
JSON = b"application/json; charset=utf-8"
ERROR_LIMIT = 64 * 1024  # bytes of an engine's error answer read for its message
UNLOAD_WAIT = 5.0  # seconds keep_alive 0 holds the last line for the engine to stop
FAR_FUTURE = timedelta(days=365 * 100)  # expires_at of a model without a TTL
_TRANSLATE: dict[str, Callable[[dict[str, Any]], ollamabody.Call]] = {
    "/api/chat": ollamabody.chat,
    "/api/generate": ollamabody.generate,
    "/api/embed": ollamabody.embed,
    "/api/embeddings": ollamabody.embeddings,
}
_REFUSED = {
    "/api/pull": "POST",
    "/api/push": "POST",
    "/api/create": "POST",
    "/api/copy": "POST",
    "/api/delete": "DELETE",
}
_READS = {"/api/version": "GET", "/api/tags": "GET", "/api/ps": "GET", "/api/show": "POST"}
_PATHS = frozenset({*_TRANSLATE, *_REFUSED, *_READS})


def is_browser(scope: Scope) -> bool:
    return b"text/html" in (header(scope, b"accept") or b"")


def serves(method: str, path: str, scope: Scope) -> bool:
    """Whether this request is the Ollama API's (when it is enabled)."""
    if path == "/":
        return method in ("GET", "HEAD") and not is_browser(scope)
    return path in _PATHS or path.startswith("/api/blobs/")


def needed_scope(path: str) -> KeyScope | None:
    return None if path in ("/", "/api/version") else "inference"


def error_body(message: str) -> bytes:
    """Ollama's error envelope: ``error`` is the message itself."""
    return json.dumps({"error": message}).encode()


def _engine_message(raw: bytes, status: int) -> str:
    """The message in an engine's error answer (OpenAI's envelope, a string, or text)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        data = None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return str(err["message"])
    if isinstance(err, str):
        return err
    text = raw[:2000].decode("utf-8", errors="replace").strip()
    return f"engine answered {status}" + (f": {text}" if text else "")


class Ollama:
    """The Ollama routes of one :class:`~swapd.proxy.app.Proxy` (whose steps it reuses)."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Reply) -> None:
        method, path = scope["method"], scope["path"]
        try:
            who = auth.identify(scope, self.proxy.config.keys)
            who.require(needed_scope(path), f"{method} {path}")
            await self._route(method, path, scope, receive, send)
        except (ClientGone, Aborted):
            raise  # the proxy's to handle: nothing more to send
        except SwapdError as exc:
            if send.started:
                raise
            await self._error(send, self.proxy._shown(exc, scope))
        except Exception:  # as the proxy's catch-all, in Ollama's envelope
            if send.started:
                raise
            log.exception("%s %s: unhandled error", method, path)
            await self._error(send, SwapdError("internal error in swapd; its log has the details"))

    async def _error(self, send: Reply, error: SwapdError) -> None:
        payload = error_body(error.message)
        await send(
            {
                "type": "http.response.start",
                "status": error.http_status,
                "headers": error_headers(error, payload),
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _route(
        self, method: str, path: str, scope: Scope, receive: Receive, send: Reply
    ) -> None:
        if path == "/":
            text = b"" if method == "HEAD" else RUNNING_TEXT
            await send_bytes(send, 200, text, content_type=b"text/plain; charset=utf-8")
            return
        if path in _REFUSED or path.startswith("/api/blobs/"):
            what = path.removeprefix("/api/").split("/", 1)[0]
            raise NotSupported(
                f"swapd does not manage model files: {what} is not supported; "
                "models are configured in swapd's config file"
            )
        wanted = _READS.get(path) or "POST"
        if method != wanted:
            raise MethodNotAllowed(f"method {method} is not allowed on {path} (allowed: {wanted})")
        if path == "/api/version":
            swapd = build_info()
            info = {"version": self.proxy.config.ollama.version}
            await self._json(send, {**swapd, **info, "swapd_version": swapd["version"]})
        elif path == "/api/tags":
            await self._json(send, {"models": await self._tags(scope)})
        elif path == "/api/ps":
            await self._json(send, {"models": await self._ps(scope)})
        else:
            request = await self._request(scope, receive)
            if path == "/api/show":
                await self._json(send, await self._show(scope, request))
            else:
                await self._infer(scope, receive, send, _TRANSLATE[path](request))

    async def _json(self, send: Reply, data: Any) -> None:
        payload = json.dumps(data, ensure_ascii=False).encode()
        await send_bytes(send, 200, payload, content_type=JSON)

    async def _request(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        config = self.proxy.config
        raw = await read_body(receive, config.max_body_bytes)
        depth = config.server.max_json_depth
        parsed = await body.extract_async(
            "POST", b"", b"application/json", raw, max_depth=depth, whole=True
        )
        assert parsed.data is not None  # a JSON body that is not an object is refused there
        return parsed.data

    # ── names ───────────────────────────────────────────────────────────────────────────────

    def _resolve(self, name: str, who: auth.Principal) -> Route:
        """The route for ``name``, or for it without a trailing ``:latest`` (Ollama's default
        tag) when ``name`` itself names nothing; the caller releases it."""
        try:
            return self.proxy._resolve(name, who)
        except NotFound as exc:
            bare = name.removesuffix(":latest")
            if bare == name:
                raise
            unknown = exc  # its message names what the client sent
        try:
            return self.proxy._resolve(bare, who)
        except NotFound:
            raise unknown from None

    def _local(self, name: str) -> ModelConfig | None:
        route = self.proxy.routes.concrete(name)
        return route.model if route is not None else None

    # ── read-only routes ────────────────────────────────────────────────────────────────────

    async def _cards(self, models: list[ModelConfig]) -> dict[str, modelcard.Card]:
        return await anyio.to_thread.run_sync(modelcard.cards, models)

    async def _tags(self, scope: Scope) -> list[dict[str, Any]]:
        proxy, who = self.proxy, auth.principal(scope)
        config = proxy.config
        records = listing.models_list(
            config,
            proxy.routes,
            proxy.scheduler.state,
            proxy.profile.get(config),
            allowed=who.allows if who.models else None,
        )
        targets = {r["id"]: self._local(r["id"]) for r in records}
        cards = await self._cards([m for m in targets.values() if m is not None])
        out = []
        for name, model in targets.items():
            card = cards[model.id] if model is not None else modelcard.Card()
            size = card.size
            if not size and model is not None:
                size = _placed_bytes(proxy.scheduler.info(model.id))[0]
            out.append(
                {
                    "name": name,
                    "model": name,
                    "modified_at": modelcard.rfc3339(card.modified),
                    "size": size,
                    "digest": modelcard.digest(name),
                    "details": card.details,
                }
            )
        return out

    async def _ps(self, scope: Scope) -> list[dict[str, Any]]:
        proxy, who = self.proxy, auth.principal(scope)
        running = [
            i
            for i in proxy.scheduler.snapshot()
            if i["state"] in (State.READY, State.STARTING) and who.allows(i["id"])
        ]
        models = [m for i in running if (m := proxy.config.models.get(i["id"])) is not None]
        cards = await self._cards(models)
        now = datetime.now(UTC)
        out = []
        for info in running:
            card = cards.get(info["id"]) or modelcard.Card()
            size, vram = _placed_bytes(info)
            ttl = info["ttl"]  # 0: never unloaded for idleness
            left = info["ttl_left"] if info["ttl_left"] is not None else ttl  # busy: all of it
            expires = now + (timedelta(seconds=left) if ttl > 0 else FAR_FUTURE)
            entry = {
                "name": info["id"],
                "model": info["id"],
                "size": size or card.size,
                "digest": modelcard.digest(info["id"]),
                "details": card.details,
                "expires_at": modelcard.rfc3339(expires),
                "size_vram": vram,
            }
            if card.context:
                entry["context_length"] = card.context
            out.append(entry)
        return out

    async def _show(self, scope: Scope, request: dict[str, Any]) -> dict[str, Any]:
        name = request.get("model") or request.get("name")
        if not isinstance(name, str) or not name:
            raise RequestError("model is required")
        route = self._resolve(name, auth.principal(scope))
        self.proxy.routes.release(route)
        model = route.model
        card = (await self._cards([model]))[model.id] if model is not None else None
        card = card or modelcard.Card()
        return {
            "modelfile": "",
            "parameters": "",
            "template": "",
            "details": card.details,
            "model_info": card.model_info,
            "capabilities": list(card.capabilities),
            "modified_at": modelcard.rfc3339(card.modified),
        }

    # ── chat, generate, embed ──────────────────────────────────────────────────────────────

    async def _infer(
        self, scope: Scope, receive: Receive, send: Reply, call: ollamabody.Call
    ) -> None:
        began = time.monotonic()
        proxy = self.proxy
        route = self._resolve(call.model, auth.principal(scope))
        try:
            call.body["model"] = route.requested
            change = body.Rewrite.for_route(route, route.requested)
            parsed = body.Parsed(route.requested, call.stream, call.body)
            raw = json.dumps(call.body, ensure_ascii=False).encode()
            payload, _ = body.rewrite(parsed, raw, b"", b"application/json", change)
            translation = ndjson.Translation(call.kind, call.model, began, thinking=call.thinking)
            if not proxy.accepting:
                raise ShuttingDown("swapd is shutting down")
            if route.model is None:
                await self._peer(scope, receive, send, route, call, payload, translation)
            else:
                await self._leased(scope, receive, send, route.model, call, payload, translation)
        finally:
            proxy.routes.release(route)

    def _headers(self, scope: Scope, base: dict[str, str]) -> dict[str, str]:
        """The client's headers for the engine, less what would change the answer's bytes
        (compression) or type; the body is always JSON."""
        drop = {"accept-encoding", "accept", "content-type"}
        out = {k: v for k, v in base.items() if k.lower() not in drop}
        out["content-type"] = "application/json"
        return out

    async def _peer(
        self,
        scope: Scope,
        receive: Receive,
        send: Reply,
        route: Route,
        call: ollamabody.Call,
        payload: bytes,
        translation: ndjson.Translation,
    ) -> None:
        """A peer's model: no lease, no keep_alive; the peer's OpenAI surface answers."""
        peer = route.peer
        assert peer is not None
        if call.load_only:
            await self._json(send, translation.loaded("load"))
            return
        url = peer_url(peer, call.path)
        headers = self._headers(scope, peer_headers(scope, peer))
        what = f"peer {peer.id} ({shown_url(peer.proxy)})"
        tracking = self.proxy._tracked(route.key, call.path, scope, payload)
        async with tracking as tracked, DisconnectGuard(receive):
            response = await open_response(
                self.proxy.upstreams, "POST", url, payload, headers, route.key, peer.timeouts, what
            )
            tracked.status = await self._answer(
                send, response, call, translation, tracked.meter, peer.timeouts, _nothing
            )

    async def _leased(
        self,
        scope: Scope,
        receive: Receive,
        send: Reply,
        model: ModelConfig,
        call: ollamabody.Call,
        payload: bytes,
        translation: ndjson.Translation,
    ) -> None:
        proxy = self.proxy
        scheduler = proxy.scheduler
        unload = call.keep_alive == ollamabody.UNLOAD
        if call.load_only and unload:  # Ollama's way to unload a model: no start first
            with anyio.move_on_after(UNLOAD_WAIT):
                await scheduler.unload([model.id])
            await self._json(send, translation.loaded("unload"))
            return
        lease = scheduler.lease(model.id)  # 404/429/503 here, before any byte
        drop = bool(proxy.config.api_keys)
        headers = self._headers(scope, request_headers(scope, drop_credentials=drop))

        async def finish() -> None:
            """Before the last line: with keep_alive 0 the model goes now (the answer waits
            for the engine to stop, up to UNLOAD_WAIT: other requests may still hold it)."""
            if unload:
                lease.release()
                with anyio.move_on_after(UNLOAD_WAIT):
                    await scheduler.unload([model.id])  # marks it at once, then waits

        try:
            metadata: dict[str, Any] = {"fifo_priority": proxy.config.priorities.get(model.id, 0)}
            tracking = proxy._tracked(model.id, call.path, scope, payload, metadata)
            async with tracking as tracked, DisconnectGuard(receive):
                waited = time.monotonic()
                upstream = await lease.ready()
                translation.load = time.monotonic() - waited
                if call.keep_alive is not None and not unload:
                    ttl = 0.0 if call.keep_alive == ollamabody.FOREVER else call.keep_alive
                    scheduler.keep_alive(model.id, ttl)
                if call.load_only:
                    await finish()
                    await self._json(send, translation.loaded("unload" if unload else "load"))
                    tracked.status = 200
                    return
                response = await self._open(lease, upstream, call, payload, headers, model)
                tracked.status = await self._answer(
                    send, response, call, translation, tracked.meter, model.timeouts, finish
                )
        finally:
            lease.release()

    async def _open(
        self,
        lease: Lease,
        upstream: Upstream,
        call: ollamabody.Call,
        payload: bytes,
        headers: dict[str, str],
        model: ModelConfig,
    ) -> aiohttp.ClientResponse:
        """The engine's response; once more on a fresh engine when nothing reached this one
        (it died just before the request: swapd.errors.UpstreamGone)."""
        what = f"engine for model {model.id!r}"

        def send(to: Upstream) -> Awaitable[aiohttp.ClientResponse]:
            url = to.base_url + call.path
            client = self.proxy.upstreams
            return open_response(
                client, "POST", url, payload, headers, model.id, model.timeouts, what
            )

        try:
            return await send(upstream)
        except UpstreamGone:
            return await send(await lease.renew(upstream))

    async def _answer(
        self,
        send: Reply,
        response: aiohttp.ClientResponse,
        call: ollamabody.Call,
        translation: ndjson.Translation,
        meter: Meter | None,
        timeouts: Timeouts,
        finish: Callable[[], Awaitable[None]],
    ) -> int:
        """Translate the engine's answer for the client; the status for activity."""
        try:
            if meter is not None:
                meter.start(response.status, list(response.raw_headers))
            if response.status >= 400:
                raw = await response.content.read(ERROR_LIMIT)
                if meter is not None:
                    meter.feed(raw)
                message = _engine_message(raw, response.status)
                await send_bytes(send, response.status, error_body(message), content_type=JSON)
                return response.status
            sse = response.headers.get("content-type", "").startswith("text/event-stream")
            if call.stream and sse:
                return await self._stream(send, response, translation, meter, timeouts, finish)
            raw = await _read_all(response, timeouts, call.model)
            if meter is not None:
                meter.feed(raw)
            try:
                data = json.loads(raw.decode("utf-8", errors="replace"))
            except ValueError:
                data = None
            if not isinstance(data, dict):
                text = raw[:200].decode("utf-8", errors="replace")
                raise UpstreamUnavailable(call.model, f"engine answered {text!r}, not JSON")
            if call.kind in ("embed", "embeddings"):
                out = translation.embedded(data)
            else:
                out = translation.whole(data)
            await finish()
            if call.stream:  # an engine that answered a stream request with one JSON
                await send_bytes(send, 200, ndjson.line(out), content_type=NDJSON)
            else:
                await self._json(send, out)
            return response.status
        finally:
            response.close()

    async def _stream(
        self,
        send: Reply,
        response: aiohttp.ClientResponse,
        translation: ndjson.Translation,
        meter: Meter | None,
        timeouts: Timeouts,
        finish: Callable[[], Awaitable[None]],
    ) -> int:
        """SSE in, NDJSON out. A failure once the 200 is out ends the stream with an
        ``{"error": …}`` line, as Ollama does (its clients raise it)."""
        headers = [(b"content-type", NDJSON), (b"x-accel-buffering", b"no")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        status, pending = 200, b""
        try:
            while True:
                with anyio.fail_after(timeouts.idle_read or None):
                    chunk = await response.content.readany()
                if not chunk:
                    break
                if meter is not None:
                    meter.feed(chunk)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                out = b"".join(self._frame(translation, raw) for raw in lines)
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
            tail = self._frame(translation, pending)  # a last line without its newline
            if tail:
                await send({"type": "http.response.body", "body": tail, "more_body": True})
            await finish()
            last = ndjson.line(translation.final())
        except _EngineError as exc:
            status, last = 502, ndjson.line({"error": str(exc)})
        except TimeoutError:
            status = 504
            stalled = f"engine stalled mid-response: no byte for {timeouts.idle_read:g}s"
            last = ndjson.line({"error": f"{stalled} (timeouts.idleRead)"})
        except (aiohttp.ClientError, OSError) as exc:
            status = 502
            last = ndjson.line(
                {"error": f"engine stopped mid-response: {exc or type(exc).__name__}"}
            )
        await send({"type": "http.response.body", "body": last})
        return status

    def _frame(self, translation: ndjson.Translation, raw: bytes) -> bytes:
        """The NDJSON for one SSE line (``data: {…}``; other lines carry nothing)."""
        raw = raw.strip()
        if not raw.startswith(b"data:"):
            return b""
        data = raw[5:].strip()
        if data == b"[DONE]":
            return b""
        try:
            event = json.loads(data.decode("utf-8", errors="replace"))
        except ValueError:
            return b""
        if not isinstance(event, dict):
            return b""
        if "error" in event:
            raise _EngineError(_engine_message(data, 500))
        return b"".join(ndjson.line(o) for o in translation.chunk(event))


class _EngineError(Exception):
    """The engine sent an error frame mid-stream."""


async def _nothing() -> None:
    return None


async def _read_all(response: aiohttp.ClientResponse, timeouts: Timeouts, model: str) -> bytes:
    """A whole (not streamed) answer; 504 when the engine sends nothing for
    ``timeouts.idleRead``, 502 when it stops midway."""
    try:
        with anyio.fail_after(timeouts.idle_read or None):
            return await response.read()
    except TimeoutError as exc:
        raise UpstreamTimeout(
            model, f"engine sent no body for {timeouts.idle_read:g}s (timeouts.idleRead)"
        ) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise UpstreamUnavailable(model, f"engine stopped mid-response: {exc}") from exc


def _placed_bytes(info: dict[str, Any] | None) -> tuple[int, int]:
    """(size, size in GPU memory) from a model's placement view: the bytes it holds (or
    needs, before it runs) on each device, times its devices; (0, 0) when unknown."""
    placed = (info or {}).get("placement")
    if not placed:
        return 0, 0
    devices = len(placed.get("devices") or ())
    per = placed.get("held_bytes") or placed.get("need_bytes") or 0
    return per * max(devices, 1), per * devices
