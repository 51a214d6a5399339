"""Stream a request to an engine and its answer back, byte for byte, as it arrives.

One shared aiohttp session carries all upstream traffic (measured several times faster than
httpx's default pool under concurrency; see bench/proxy_overhead.py). The upstream response is
always released or closed in ``finally``: a client that leaves cancels the scope around this
call, and closing the connection makes the engine stop generating.

Failures, and what the client sees (the rule documented in docs/architecture.md):

- the first connection attempt is refused: nothing reached any engine → :class:`UpstreamGone`
  (the proxy may send the request to a fresh engine);
- a kept-alive connection fails before any response byte: resent once, on a new connection,
  to the same engine; if that fails too the engine may have seen the request → 502, never
  replayed on another engine;
- timeouts (per model ``timeouts``) → 504 before the response starts;
- anything after the response started → :class:`Aborted`: the client connection is dropped.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterable
from functools import lru_cache
from typing import Protocol
from urllib.parse import quote_from_bytes, urlsplit

import aiohttp
from yarl import URL

from swapd.config.model import Timeouts
from swapd.errors import UpstreamGone, UpstreamTimeout, UpstreamUnavailable
from swapd.native import Ended
from swapd.proxy.asgi import Aborted, Headers, Reply, Scope, http_date
from swapd.proxy.envelope import error_body

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        b"expect",  # the body is read in full before forwarding: no 100-continue upstream
    }
)
_SKIP_RESPONSE = HOP_BY_HOP - {b"content-length"}
STALE = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
CREDENTIALS = frozenset({b"authorization", b"x-api-key"})
SSE = b"text/event-stream"
ERROR_BODY_LIMIT = 64 * 1024  # an engine's error answer put into an SSE error frame
# Printable ASCII but space: a raw request target is forwarded as is when it holds only these.
_TARGET_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))
_TARGET_UNSAFE = re.compile(rb"[^\x21-\x7e]")


class Meter(Protocol):
    """Sees the response start and each body chunk as it passes (swapd.observe.activity.Meter):
    must be cheap. With captures on it also keeps a bounded copy (swapd.observe.captures)."""

    def start(self, status: int, headers: Headers) -> None: ...

    def feed(self, chunk: bytes) -> None: ...

    size: int  # body bytes seen

    def reserve(self) -> int: ...

    def absorb(self, ended: Ended, reserved: int) -> None: ...


def _session(*, force_close: bool) -> aiohttp.ClientSession:
    # keepalive_timeout below llama-server's 5 s idle close, so idle connections are rarely stale
    connector = aiohttp.TCPConnector(
        limit=0,
        limit_per_host=0,
        ttl_dns_cache=300,
        force_close=force_close,
        keepalive_timeout=None if force_close else 4.0,
    )
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


class UpstreamClient:
    """The shared upstream sessions: kept-alive connections, and fresh ones where they fail.

    Some engines close kept-alive connections without saying so (llama-server does after
    streamed responses), so reusing one fails before any byte comes back. Such a request is
    resent once on a new connection to the same engine, and the engine's origin is
    remembered: its later requests use a new connection each time instead of failing first.
    """

    def __init__(self) -> None:
        self.pooled = _session(force_close=False)
        self.fresh = _session(force_close=True)
        self.no_keepalive: set[str] = set()

    def session_for(self, url: str) -> aiohttp.ClientSession:
        return self.fresh if _origin(url) in self.no_keepalive else self.pooled

    async def close(self) -> None:
        await self.pooled.close()
        await self.fresh.close()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def target(scope: Scope, raw_path: bytes | None = None, query: bytes | None = None) -> str:
    """The request target to forward: the client's raw path (never decoded) and query
    (``query``: the rewritten one instead of the client's)."""
    raw = raw_path if raw_path is not None else scope.get("raw_path") or scope["path"].encode()
    raw = raw.split(b"?", 1)[0]
    query = scope["query_string"] if query is None else query
    if query:
        raw += b"?" + query
    if _TARGET_UNSAFE.search(raw):
        return quote_from_bytes(raw, safe=_TARGET_SAFE)
    return raw.decode("ascii")


def connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Header names listed in ``Connection:`` (hop-by-hop for this message, RFC 9110 7.6.1)."""
    named: set[bytes] = set()
    for key, value in headers:
        if key.lower() == b"connection":
            named.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return frozenset(named)


def request_headers(scope: Scope, *, drop_credentials: bool) -> dict[str, str]:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    named = connection_tokens(headers)
    out: dict[str, str] = {}
    for key, value in headers:
        if key in HOP_BY_HOP or key in named or (drop_credentials and key in CREDENTIALS):
            continue
        name = key.decode("latin-1")
        text = value.decode("latin-1")
        out[name] = f"{out[name]}, {text}" if name in out else text
    client = scope.get("client")
    if client:
        prior = out.get("x-forwarded-for")
        out["x-forwarded-for"] = f"{prior}, {client[0]}" if prior else client[0]
    return out


def _response_headers(response: aiohttp.ClientResponse) -> Headers:
    return response_headers([(key.lower(), value) for key, value in response.raw_headers])[0]


def response_headers(raw: Headers) -> tuple[Headers, bool, bool]:
    """The engine's headers for the client (lower-case names, hop-by-hop ones dropped,
    ``x-accel-buffering: no`` on SSE, a ``date`` when it sent none), and whether it said
    ``content-length`` and ``transfer-encoding: chunked``."""
    named = connection_tokens(raw) if any(k == b"connection" for k, _ in raw) else ()
    out: Headers = []
    sse = dated = length = chunked = False
    for key, value in raw:
        if key == b"content-length":
            length = True
        elif key == b"transfer-encoding":
            chunked = value.lower().endswith(b"chunked")
            continue
        elif key in _SKIP_RESPONSE or key in named:
            continue
        elif key == b"content-type":
            sse = value.startswith(SSE)
        elif key == b"date":
            dated = True
        out.append((key, value))
    if sse:  # set, not added: a peer that is a swapd or llama-swap sends it already
        out = [h for h in out if h[0] != b"x-accel-buffering"]
        out.append((b"x-accel-buffering", b"no"))
    if not dated:  # as Go's server does for llama-swap: a response always has a date
        out.append((b"date", http_date()))
    return out, length, chunked


@lru_cache(maxsize=64)
def _client_timeout(timeouts: Timeouts) -> aiohttp.ClientTimeout:
    # sock_read runs from the end of the request write to the response headers (aiohttp starts
    # it there): the response-header deadline. The body has its own idle watchdog below.
    return aiohttp.ClientTimeout(
        total=None,
        sock_connect=timeouts.connect or None,
        sock_read=timeouts.response_header or None,
    )


class _Idle(Exception):
    pass


class IdleWatch:
    """Fails a response body read when the engine sent nothing for ``limit`` seconds.

    One timer per response, not one per chunk: the relay loop only stores the time it starts
    waiting for the next chunk (``waiting_since``; ``None`` while it is sending to the client, so
    a slow client is not blamed on the engine).
    """

    __slots__ = ("_content", "_handle", "_limit", "_loop", "waiting_since")

    def __init__(self, content: aiohttp.StreamReader, limit: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._content = content
        self._limit = limit
        self.waiting_since: float | None = time.monotonic()
        self._handle = self._loop.call_later(limit, self._check)

    def _check(self) -> None:
        since = self.waiting_since
        now = time.monotonic()
        if since is not None and now - since >= self._limit:
            self._content.set_exception(_Idle(f"no body byte for {self._limit:g}s"))
            return
        due = self._limit if since is None else since + self._limit - now
        self._handle = self._loop.call_later(due, self._check)

    def cancel(self) -> None:
        self._handle.cancel()


def _unreachable(model: str, exc: BaseException, what: str) -> UpstreamUnavailable:
    return UpstreamUnavailable(model, f"{what} is unreachable: {exc}")


async def open_response(
    client: UpstreamClient,
    method: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    model: str,
    timeouts: Timeouts,
    what: str,
) -> aiohttp.ClientResponse:
    """Send the request and return the response once its headers are in, with this module's
    retry rule and timeouts; ``what`` names the upstream in error messages. The caller reads
    the body and closes it: :func:`forward` relays it, swapd.proxy.ollama translates it."""
    session = client.session_for(url)
    timeout = _client_timeout(timeouts)
    first = True
    while True:
        try:
            response = await session.request(
                method,
                URL(url, encoded=True),
                data=body or None,
                headers=headers,
                allow_redirects=False,
                timeout=timeout,
            )
            if not first:  # alive, and it closed a kept-alive connection: no reuse from now on
                client.no_keepalive.add(_origin(url))
            return response
        except aiohttp.ConnectionTimeoutError as exc:
            raise UpstreamTimeout(
                model,
                f"{what} did not accept a connection within "
                f"{timeouts.connect:g}s (timeouts.connect)",
            ) from exc
        except aiohttp.ServerTimeoutError as exc:
            raise UpstreamTimeout(
                model,
                f"{what} sent no response headers within "
                f"{timeouts.response_header:g}s (timeouts.responseHeader)",
            ) from exc
        except aiohttp.ClientConnectorError as exc:  # (a ClientOSError: before STALE)
            if first:  # refused on the first try: nothing reached any engine
                raise UpstreamGone(model, f"{what} is unreachable: {exc}") from exc
            raise _unreachable(model, exc, what) from exc  # it may have seen the first try
        except STALE as exc:
            # A kept-alive connection failed before any response byte: the engine closed it
            # (llama-server does). Resent once, on a new connection, to this same engine only:
            # if the engine died on this request, the new connection is refused → 502 above.
            if session is client.fresh:
                raise _unreachable(model, exc, what) from exc
            session = client.fresh
            first = False
        except (aiohttp.ClientError, OSError) as exc:
            raise _unreachable(model, exc, what) from exc


async def _error_frame(response: aiohttp.ClientResponse) -> bytes:
    """An engine's error answer as one SSE ``data: {"error": …}`` frame."""
    raw = b""
    try:
        async for chunk in response.content.iter_any():
            raw += chunk
            if len(raw) >= ERROR_BODY_LIMIT:
                break
    except (aiohttp.ClientError, OSError, _Idle):
        pass  # the engine went away or stalled while answering its error: report what came
    return error_frame(response.status, raw)


def error_frame(status: int, raw: bytes) -> bytes:
    """An engine's error answer ``raw`` (status ``status``) as one SSE error frame."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: an answer nested ~1000 deep
        data = None
    if isinstance(data, dict) and "error" in data:
        payload = json.dumps({"error": data["error"]}).encode()
    else:
        text = raw[:2000].decode("utf-8", errors="replace").strip()
        message = f"engine answered {status}" + (f": {text}" if text else "")
        payload = error_body(status, message, "upstream_error")
    return b"data: " + payload + b"\n\n"


async def forward(
    client: UpstreamClient,
    scope: Scope,
    reply: Reply,
    *,
    url: str,
    body: bytes,
    headers: dict[str, str],
    model: str,
    timeouts: Timeouts,
    sse_started: bool = False,
    meter: Meter | None = None,
    upstream: str = "",
) -> int:
    """Proxy one request to ``url`` (base URL + raw target); returns the upstream status.
    ``upstream`` names it in error messages (default: the engine for ``model``).

    With ``sse_started`` (a loading stream already answered 200 as SSE), only the body is
    relayed, and an engine error status becomes an SSE error frame that ends the stream.
    """
    what = upstream or f"engine for model {model!r}"  # the upstream, in error messages
    response = await open_response(
        client, scope["method"], url, body, headers, model, timeouts, what
    )
    if timeouts.response_header and (conn := response.connection) and conn.protocol:
        conn.protocol.read_timeout = None  # the header deadline is met; the body has its own
        conn.protocol.start_timeout()
    done = False
    watch: IdleWatch | None = None
    try:
        if timeouts.idle_read:
            watch = IdleWatch(response.content, timeouts.idle_read)
        if sse_started and response.status >= 400:
            if meter is not None:
                meter.start(response.status, _response_headers(response))
            frame = await _error_frame(response)
            if meter is not None:
                meter.feed(frame)
            await reply.send({"type": "http.response.body", "body": frame, "more_body": True})
        else:
            if not sse_started:
                relayed = _response_headers(response)
                if meter is not None:
                    meter.start(response.status, relayed)
                await reply.relay_start(response.status, relayed)
            elif meter is not None:
                meter.start(response.status, _response_headers(response))
            send = reply.send
            try:
                async for chunk in response.content.iter_any():
                    if meter is not None:
                        meter.feed(chunk)
                    if watch is not None:
                        watch.waiting_since = None  # sending: a slow client is not an idle engine
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    if watch is not None:
                        watch.waiting_since = time.monotonic()
            except _Idle as exc:
                raise Aborted(
                    504,
                    f"{what} stalled mid-response: {exc} (timeouts.idleRead)",
                ) from exc
            except (aiohttp.ClientError, OSError) as exc:
                raise Aborted(
                    502,
                    f"{what} stopped mid-response: {exc or type(exc).__name__}",
                ) from exc
        await reply.send({"type": "http.response.body", "body": b""})
        done = True
        return response.status
    finally:
        if watch is not None:
            watch.cancel()
        if done:
            response.release()
        else:
            response.close()
