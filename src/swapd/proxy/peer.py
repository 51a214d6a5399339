"""Requests for a peer's model: forwarded to the peer, never through the local scheduler.

A peer is a remote OpenAI-compatible server (another swapd, a llama-swap, a cloud provider).
The request goes to ``peer.proxy`` joined with the request path, streamed back untouched
(``X-Accel-Buffering: no`` on SSE, as for engines). Credentials: the client's ``Authorization``
and ``x-api-key`` are never passed on (they may be swapd's own keys); with the peer's
``apiKey`` set, both headers carry that key instead. Peers have no queue or concurrency limit.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from swapd.config.model import PeerConfig
from swapd.errors import UpstreamUnavailable
from swapd.proxy.asgi import Reply, Scope
from swapd.proxy.forward import Meter, UpstreamClient, forward, request_headers


def peer_headers(scope: Scope, peer: PeerConfig) -> dict[str, str]:
    """The client's headers for the peer: hop-by-hop and client credentials dropped, the
    peer's own key added when it has one."""
    headers = request_headers(scope, drop_credentials=True)
    if peer.api_key:
        headers["authorization"] = f"Bearer {peer.api_key}"
        headers["x-api-key"] = peer.api_key
    return headers


def peer_url(peer: PeerConfig, target: str) -> str:
    """``peer.proxy`` joined with the raw request ``target`` (path and query)."""
    return peer.proxy.rstrip("/") + target


def shown_url(url: str) -> str:
    """A peer URL for messages: without any user:password part."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


async def forward_peer(
    client: UpstreamClient,
    scope: Scope,
    reply: Reply,
    peer: PeerConfig,
    model: str,
    *,
    target: str,
    body: bytes,
    meter: Meter | None = None,
) -> int:
    """Proxy one request to ``peer`` (``model`` names it in messages); the peer's status.

    A peer that cannot be reached, or sends no response headers in time, is a 502 / 504
    envelope naming the peer.
    """
    where = f"peer {peer.id} ({shown_url(peer.proxy)})"
    try:
        return await forward(
            client,
            scope,
            reply,
            url=peer_url(peer, target),
            body=body,
            headers=peer_headers(scope, peer),
            model=model,
            timeouts=peer.timeouts,
            meter=meter,
            upstream=where,
        )
    except UpstreamUnavailable as exc:
        cause = exc.__cause__
        detail = str(cause) if cause is not None and str(cause) else type(cause).__name__
        raise UpstreamUnavailable(model, f"{where} unreachable: {detail}") from exc
