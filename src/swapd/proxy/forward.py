"""Stream a request to an engine and its answer back, byte for byte, as it arrives.

One shared aiohttp session carries all upstream traffic (measured several times faster than
httpx's default pool under concurrency; see bench/proxy_overhead.py). The upstream response is
always released or closed in ``finally``: a client that leaves cancels the scope around this
call, and closing the connection makes the engine stop generating.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

import aiohttp

from swapd.errors import UpstreamGone, UpstreamUnavailable
from swapd.proxy.asgi import Headers, Scope, Send

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
    }
)
STALE = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
CREDENTIALS = frozenset({b"authorization", b"x-api-key"})
SSE = b"text/event-stream"


class Meter(Protocol):
    """Sees each body chunk as it passes (swapd.observe.activity.Meter): must be cheap."""

    def feed(self, chunk: bytes) -> None: ...


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
    retried once on a fresh connection, and the engine's origin is remembered: its later
    requests use a new connection each time instead of failing first.
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


def request_headers(scope: Scope, *, drop_credentials: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in scope["headers"]:
        if key in HOP_BY_HOP or (drop_credentials and key in CREDENTIALS):
            continue
        name = key.decode("latin-1")
        text = value.decode("latin-1")
        out[name] = f"{out[name]}, {text}" if name in out else text
    client = scope.get("client")
    if client:
        prior = out.get("x-forwarded-for")
        out["x-forwarded-for"] = f"{prior}, {client[0]}" if prior else client[0]
    return out


async def forward(
    client: UpstreamClient,
    scope: Scope,
    send: Send,
    *,
    url: str,
    body: bytes,
    headers: dict[str, str],
    model: str,
    headers_sent: bool = False,
    meter: Meter | None = None,
) -> int:
    """Proxy one request to ``url``; returns the upstream status.

    With ``headers_sent`` (a loading stream already answered 200), only the body is relayed.
    """
    session = client.session_for(url)
    while True:
        try:
            response = await session.request(
                scope["method"], url, data=body or None, headers=headers, allow_redirects=False
            )
            break
        except aiohttp.ClientConnectorError as exc:  # (a ClientOSError: before STALE)
            raise UpstreamGone(model, f"engine for model {model!r} is unreachable: {exc}") from exc
        except STALE as exc:
            # A kept-alive connection turned out closed and nothing came back: retry once on a
            # fresh connection (as Go's transport does for llama-swap) and remember the engine.
            if session is client.fresh:
                raise UpstreamUnavailable(
                    model, f"engine for model {model!r} is unreachable: {exc}"
                ) from exc
            client.no_keepalive.add(_origin(url))
            session = client.fresh
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamUnavailable(
                model, f"engine for model {model!r} is unreachable: {exc}"
            ) from exc
    done = False
    try:
        if not headers_sent:
            out: Headers = []
            sse = False
            for key, value in response.raw_headers:
                lower = key.lower()
                if lower in HOP_BY_HOP and lower != b"content-length":
                    continue
                if lower == b"content-type" and value.startswith(SSE):
                    sse = True
                out.append((lower, value))
            if sse:
                out.append((b"x-accel-buffering", b"no"))
            await send({"type": "http.response.start", "status": response.status, "headers": out})
        try:
            async for chunk in response.content.iter_any():
                if meter is not None:
                    meter.feed(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (aiohttp.ClientError, OSError):
            pass  # the engine went away mid-stream: end the client's stream where it stopped
        await send({"type": "http.response.body", "body": b""})
        done = True
        return response.status
    finally:
        if done:
            response.release()
        else:
            response.close()
