"""Stream a request to an engine and its answer back, byte for byte, as it arrives.

One shared aiohttp session carries all upstream traffic (measured several times faster than
httpx's default pool under concurrency; see bench/proxy_overhead.py). The upstream response is
always released or closed in ``finally``: a client that leaves cancels the scope around this
call, and closing the connection makes the engine stop generating.
"""

from __future__ import annotations

from typing import Protocol

import aiohttp

from swapd.errors import UpstreamUnavailable
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


def new_session() -> aiohttp.ClientSession:
    # keepalive_timeout below llama-server's 5 s idle close, so idle connections are rarely stale
    connector = aiohttp.TCPConnector(
        limit=0, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=4.0
    )
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


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
    session: aiohttp.ClientSession,
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
    for attempt in (1, 2):
        try:
            response = await session.request(
                scope["method"], url, data=body or None, headers=headers, allow_redirects=False
            )
            break
        except STALE as exc:
            # An engine closed a kept-alive connection just as it was reused (llama-server
            # does, after a few requests or an idle spell): nothing came back, so try once
            # more on a fresh connection, as Go's transport does for llama-swap.
            if attempt == 2:
                raise UpstreamUnavailable(
                    model, f"engine for model {model!r} is unreachable: {exc}"
                ) from exc
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
