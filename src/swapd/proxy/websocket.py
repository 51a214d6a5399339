"""WebSocket passthrough: one client connection relayed to one engine connection.

The engine's handshake comes first: the client is accepted only once the engine accepted,
with the subprotocol the engine chose, so a refusal reaches the client as the engine's own
HTTP answer. Then text and binary messages flow both ways, one at a time per direction (no
buffer of ours: uvicorn stops reading the client while a message waits, and the engine
connection's receive queue is bounded with flow control), and the first side to close has its
close code and reason passed on to the other.

A connection refused before the handshake gets the same HTTP status and JSON envelope an HTTP
request would (through ASGI's ``websocket.http.response`` extension, which uvicorn offers);
on a server without that extension it gets ``websocket.close`` 1008, which the server answers
as HTTP 403.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.frames import EXTERNAL_CLOSE_CODES

from swapd.config.model import Timeouts
from swapd.errors import SwapdError, UpstreamGone, UpstreamTimeout, UpstreamUnavailable
from swapd.proxy.asgi import ClientGone, Headers, Message, Receive, Scope, Send
from swapd.proxy.envelope import error_body, error_headers
from swapd.proxy.forward import HOP_BY_HOP

log = logging.getLogger("swapd.proxy")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # one message, either way (uvicorn's ws_max_size too)
MAX_QUEUE = 16  # messages the engine connection buffers before it stops reading
CLOSE_SECONDS = 5.0  # a closing handshake that takes longer is cut
REFUSAL_BODY_LIMIT = 64 * 1024  # an engine's refusal body passed on to the client
# Handshake headers each side negotiates for itself; never copied across.
_HANDSHAKE = frozenset(
    {
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"sec-websocket-accept",
    }
)
_NOT_RELAYED = HOP_BY_HOP | _HANDSHAKE | {b"date", b"server"}
_ids = itertools.count(1)

Engine = ClientConnection  # the engine's side of a relayed connection

T = TypeVar("T")


class Socket:
    """The client half of one ASGI WebSocket connection, and what was sent on it."""

    __slots__ = ("accepted", "closed", "receive", "scope", "send")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.accepted = False
        self.closed = False  # closed by either side, or refused: nothing more may be sent

    async def connected(self) -> None:
        """Wait for ``websocket.connect``; raises ClientGone if the client left first."""
        message = await self.receive()
        if message["type"] != "websocket.connect":
            self.closed = True
            raise ClientGone

    async def until(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` (before the handshake) while watching for the client to leave; raises
        ClientGone when it does, cancelling the work."""
        result: list[T] = []
        failure: list[BaseException] = []
        gone = False

        async def watch() -> None:
            nonlocal gone
            while not gone:  # before accept, only a disconnect can arrive
                gone = (await self.receive())["type"] == "websocket.disconnect"
            group.cancel_scope.cancel()

        async with anyio.create_task_group() as group:
            group.start_soon(watch, name=f"ws-watch {self.scope['path']}")
            try:
                result.append(await work())
            except Exception as exc:  # re-raised below, outside the group (no ExceptionGroup)
                failure.append(exc)
            group.cancel_scope.cancel()
        if gone:
            self.closed = True
            raise ClientGone
        if failure:
            raise failure[0]
        return result[0]

    async def respond(self, status: int, headers: Headers, body: bytes) -> None:
        """Refuse the upgrade with an HTTP response (or close 1008 without the extension)."""
        self.closed = True
        if "websocket.http.response" not in self.scope.get("extensions", {}):
            await self.send({"type": "websocket.close", "code": 1008, "reason": ""})
            return
        await self.send(
            {"type": "websocket.http.response.start", "status": status, "headers": headers}
        )
        await self.send({"type": "websocket.http.response.body", "body": body})

    async def fail(self, error: SwapdError) -> None:
        """Tell the client about ``error``: an HTTP envelope before accept, a close after."""
        if self.closed:
            return
        if self.accepted:
            await self.close(1011, error.message)
            return
        body = error_body(error.http_status, error.message, error.code)
        await self.respond(error.http_status, error_headers(error, body), body)

    async def accept(self, subprotocol: str | None, headers: Headers) -> None:
        message: Message = {"type": "websocket.accept", "headers": headers}
        if subprotocol:
            message["subprotocol"] = subprotocol
        try:
            await self.send(message)
        except OSError:  # uvicorn's ClientDisconnected
            self.closed = True
            raise ClientGone from None
        self.accepted = True

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError):  # uvicorn's ClientDisconnected: gone already
            await self.send({"type": "websocket.close", "code": code, "reason": _short(reason)})


def ws_url(http_url: str) -> str:
    """``http(s)://…`` → ``ws(s)://…`` (an engine or peer base URL plus a request target)."""
    if http_url.startswith("https://"):
        return "wss://" + http_url[len("https://") :]
    if http_url.startswith("http://"):
        return "ws://" + http_url[len("http://") :]
    return http_url


def upgrade_headers(headers: dict[str, str]) -> list[tuple[str, str]]:
    """Forwarded request headers (``forward.request_headers``, ``peer.peer_headers``) less the
    handshake headers: the engine connection negotiates its own."""
    return [(k, v) for k, v in headers.items() if k.encode("latin-1") not in _HANDSHAKE]


class _Connect(connect):
    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc  # a proxy passes a redirect on to its client; it never follows one


async def open_engine(
    sock: Socket,
    url: str,
    headers: list[tuple[str, str]],
    *,
    model: str,
    timeouts: Timeouts,
) -> ClientConnection | None:
    """Open the engine's side of the connection, offering the client's subprotocols.

    Returns None when the engine refused the upgrade; its answer went to the client then.
    Raises UpstreamGone (refused: nothing reached the engine), UpstreamTimeout or
    UpstreamUnavailable.
    """
    subprotocols: list[Any] = list(sock.scope.get("subprotocols") or ())
    opening = _Connect(
        url,
        additional_headers=headers,
        subprotocols=subprotocols or None,
        user_agent_header=None,  # the client's own User-Agent is among the headers
        proxy=None,  # as the HTTP relay: no environment proxy between swapd and engines
        # TCP connect plus the handshake answer; an engine that never answers is not waited
        # on forever even where `responseHeader` is 0. Idle open sockets are normal: pings
        # (every 20 s, both sides) find dead peers instead of `idleRead`.
        open_timeout=timeouts.connect + timeouts.response_header if timeouts.connect else None,
        close_timeout=CLOSE_SECONDS,
        max_size=MAX_MESSAGE_BYTES,
        max_queue=MAX_QUEUE,
        logger=log,
    )
    try:
        return await opening
    except InvalidStatus as exc:
        response = exc.response
        relayed = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in response.headers.raw_items()
            if k.lower().encode("latin-1") not in _NOT_RELAYED
        ]
        body = bytes(response.body[:REFUSAL_BODY_LIMIT])
        await sock.respond(response.status_code, relayed, body)
        return None
    except ConnectionRefusedError as exc:
        raise UpstreamGone(model, f"engine for model {model!r} is unreachable: {exc}") from exc
    except TimeoutError as exc:
        raise UpstreamTimeout(
            model, f"engine for model {model!r} did not complete the WebSocket handshake"
        ) from exc
    except (OSError, InvalidHandshake, InvalidURI) as exc:
        raise UpstreamUnavailable(
            model, f"engine for model {model!r} refused the WebSocket: {exc}"
        ) from exc


async def relay(sock: Socket, engine: ClientConnection, *, model: str) -> None:
    """Accept the client and relay messages until either side closes; always closes both."""
    name = f"ws#{next(_ids)} {model} {sock.scope['path']}"
    accepted: Headers = []
    if engine.response is not None:
        accepted = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in engine.response.headers.raw_items()
            if k.lower().encode("latin-1") not in _NOT_RELAYED
        ]
    client_close: tuple[int, str] | None = None
    try:
        await sock.accept(engine.subprotocol, accepted)
        async with anyio.create_task_group() as group:

            async def upward() -> None:  # client → engine
                nonlocal client_close
                try:
                    while True:
                        message = await sock.receive()
                        if message["type"] == "websocket.disconnect":
                            sock.closed = True
                            client_close = (message.get("code", 1005), message.get("reason", ""))
                            return
                        if message["type"] == "websocket.receive":
                            text = message.get("text")
                            await engine.send(
                                text if text is not None else message.get("bytes") or b""
                            )
                except ConnectionClosed:
                    pass  # the engine closed: downward passes its close on
                finally:
                    group.cancel_scope.cancel()

            async def downward() -> None:  # engine → client
                try:
                    async for data in engine:
                        if isinstance(data, str):
                            await sock.send({"type": "websocket.send", "text": data})
                        else:
                            await sock.send({"type": "websocket.send", "bytes": data})
                except ConnectionClosed:
                    pass  # closed abnormally: close_code says 1006
                except OSError:  # uvicorn's ClientDisconnected
                    sock.closed = True
                finally:
                    group.cancel_scope.cancel()

            group.start_soon(upward, name=f"{name} up")
            group.start_soon(downward, name=f"{name} down")
    finally:
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(CLOSE_SECONDS * 2):  # close() bounds itself; belt and braces
                code, reason = _to_engine(client_close)
                await engine.close(code, _short(reason))
            with anyio.move_on_after(CLOSE_SECONDS):
                await sock.close(*_to_client(engine.close_code, engine.close_reason))


def _to_engine(close: tuple[int, str] | None) -> tuple[int, str]:
    """The close the engine gets for the client's (None: swapd ended the relay itself)."""
    if close is None:
        return 1001, "proxy closing"
    code, reason = close
    if code in EXTERNAL_CLOSE_CODES or 3000 <= code < 5000:
        return code, reason
    return (1000, "") if code == 1005 else (1001, "client went away")  # 1006: TCP dropped


def _to_client(code: int | None, reason: str | None) -> tuple[int, str]:
    """The close the client gets for the engine's."""
    if code is None:  # the engine connection did not finish closing in time
        return 1011, "engine did not close"
    if code in EXTERNAL_CLOSE_CODES or 3000 <= code < 5000:
        return code, reason or ""
    if code == 1005:
        return 1000, ""
    return 1014, "engine connection lost"  # 1006: the engine dropped it (1014 = bad gateway)


def _short(reason: str) -> str:
    """A close reason fits 123 bytes of UTF-8."""
    raw = reason.encode()
    return reason if len(raw) <= 123 else raw[:123].decode(errors="ignore")
