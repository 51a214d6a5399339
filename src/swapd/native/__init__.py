"""swapd's native relay (``relay.c``, built by hatch_build.py into ``_relay.so``, loaded with
ctypes): a thread of its own moves the body of an engine's chunked response to the client, with
no Python and no GIL per frame (docs/dataplane.md, option B.1).

swapd.proxy.relay hands a response over (:meth:`Relay.add`) once its head is written and the
engine's bytes pass as they come; the thread reports back once per response
(:class:`Ended`: how it ended, and what the meter and the capture need of the body). Without
the library (not built, not Linux) or with ``SWAPD_NATIVE_RELAY=0``, :func:`library` is None
and the relay stays in Python.

The same library scans a body window for the names of token numbers (:func:`name_scan`, for
swapd.observe.activity) and a JSON request body for its model (:func:`request_scan`, for
swapd.proxy.body), wherever it is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import itertools
import logging
import os
import socket
import struct
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("swapd.native")

LIBRARY = Path(__file__).with_name("_relay.so")
HEAD_MAX = 4096  # relay.c: the body's first bytes kept
TAIL_MAX = 16384  # ... and its last

# How a flow ended (relay.c)
DONE = 1  # the terminating chunk was written to the client
UPSTREAM_CLOSED = 2  # the engine closed (or reset) its connection before the end
CLIENT_GONE = 3  # the client's socket refused more bytes
IDLE = 4  # the engine sent nothing for the idle limit
ABORTED = 5  # :meth:`Relay.abort` or :meth:`Relay.settle` came first
BAD_FRAMING = 6  # the engine's chunked framing is broken
# The native front's ends of an exchange that had no answer yet: Python writes the error
ENGINE_HEAD = 7  # the engine's head is not one the front follows (502)
ENGINE_CLOSED = 8  # the engine closed a new connection before answering (502)
HEAD_LATE = 9  # the engine's head came later than responseHeader (504)
CANCELLED = 10  # an operator cancelled it (503)


class _Result(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_int64),
        ("end", ctypes.c_int32),
        ("err", ctypes.c_int32),
        ("extra", ctypes.c_int32),
        ("keep_cut", ctypes.c_int32),
        ("size", ctypes.c_int64),
        ("first", ctypes.c_double),
        ("head_len", ctypes.c_int64),
        ("tail_len", ctypes.c_int64),
        ("keep_len", ctypes.c_int64),
        ("keep", ctypes.c_void_p),
        ("head", ctypes.c_char * HEAD_MAX),
        ("tail", ctypes.c_char * TAIL_MAX),
    ]


_HEAD_AT = _Result.head.offset
_TAIL_AT = _Result.tail.offset


@dataclass(slots=True, frozen=True)
class Ended:
    """One handed-over body, ended: ``end`` (DONE, …), ``err`` (an errno or 0), ``extra``
    (the engine sent bytes past the response: its connection is not reusable), and the body's
    ``size``, ``first`` byte time (time.monotonic; None: no byte), ``head`` and ``tail``
    bytes, ``keep`` (the bytes kept for a capture) and ``keep_cut`` (more came than kept)."""

    end: int
    err: int
    extra: bool
    size: int
    first: float | None
    head: bytes
    tail: bytes
    keep: bytes
    keep_cut: bool


NOTHING = Ended(ABORTED, 0, False, 0, None, b"", b"", b"", False)  # a flow that never ran


class Owner(Protocol):
    """Told once when the flow it handed over has ended (not after an abort), and of its
    size so far when asked (:meth:`Relay.poll`)."""

    def native_ended(self, ended: Ended) -> None: ...

    def native_progress(self, size: int) -> None: ...


_loaded: list[ctypes.CDLL | None] = []  # the one load's outcome, once tried


def library() -> ctypes.CDLL | None:
    """The native relay's library, or None (not built, not Linux, ``SWAPD_NATIVE_RELAY=0``)."""
    if os.environ.get("SWAPD_NATIVE_RELAY", "1") == "0":
        return None
    return _built()


def _built() -> ctypes.CDLL | None:
    if not _loaded:
        _loaded.append(_load())
    return _loaded[0]


NAMES_AT_ONCE = 64  # places a scan returns from its first call (a window with more: a second)


def name_scan() -> Callable[[bytes], list[int]] | None:
    """relay.c's ``scan_names`` where the library is built (whatever ``SWAPD_NATIVE_RELAY``
    says: it only reads a window), else None: ``scan(window)`` is where the quoted names
    ``"usage"``, ``"timings"`` and ``"num_cached_tokens"`` start in ``window``, in order, as
    one ``bytes.find`` loop per name finds them, four to five times faster on a 16 KiB window
    of SSE frames."""
    lib = _built()
    if lib is None:
        return None
    scan = lib.scan_names

    def names(window: bytes) -> list[int]:
        room = NAMES_AT_ONCE
        while True:
            out = (ctypes.c_int64 * room)()  # per call: a scan may run on any thread
            count: int = scan(window, len(window), out, room)
            if count <= room:
                return out[:count]
            room = count

    return names


# What relay.c's scan_request says of a body's "model" (out[2])
NO_MODEL, PLAIN_MODEL, ESCAPED_MODEL, OTHER_MODEL = range(4)


def request_scan() -> Callable[[bytes, int], tuple[int, int, int, bool] | None] | None:
    """relay.c's ``scan_request`` where the library is built, else None: ``scan(body,
    max_depth)`` is None when Python must parse ``body`` itself (it may be invalid), else
    ``(start, end, kind, stream)``: the top-level ``model`` string's bytes, what the model is
    (:data:`NO_MODEL` …) and whether ``stream`` is true, for a body ``json.loads`` accepts as
    an object nesting at most ``max_depth`` deep, read once with no object made."""
    lib = _built()
    if lib is None:
        return None
    scan_request = lib.scan_request

    def scan(body: bytes, max_depth: int) -> tuple[int, int, int, bool] | None:
        out = (ctypes.c_int64 * 4)()
        if not scan_request(body, len(body), max_depth, out):
            return None
        return out[0], out[1], out[2], bool(out[3])

    return scan


METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")  # relay.c's, in order
NOTED = ("host", "authorization", "x-api-key", "origin", "content-type")  # ... and its fields


@dataclass(frozen=True, slots=True)
class Head:
    """A request head :func:`head_scan` vouched for: where things are in the bytes it read."""

    size: int  # the head's bytes, the empty line included: the body starts here
    method: str
    target: tuple[int, int]  # start, end
    length: int | None  # the content-length
    close: bool  # "Connection: close"
    fields: dict[str, tuple[int, int]]  # NOTED field -> its value's start, end (when present)


def head_scan() -> Callable[[bytes], Head | int] | None:
    """relay.c's ``scan_head`` where the library is built, else None: ``scan(data)`` is the
    :class:`Head` at the start of ``data``, 0 when more bytes are needed to tell, or -1 when a
    native front must leave the request to Python (unusual, or not HTTP/1.1 llhttp takes)."""
    lib = _built()
    if lib is None:
        return None
    scan_head = lib.scan_head

    def scan(data: bytes) -> Head | int:
        out = (ctypes.c_int64 * (5 + 2 * len(NOTED)))()
        size = scan_head(data, len(data), out)
        if size <= 0:
            return int(size)
        fields = {
            name: (out[5 + 2 * i], out[5 + 2 * i] + out[6 + 2 * i])
            for i, name in enumerate(NOTED)
            if out[5 + 2 * i] >= 0
        }
        target = (out[1], out[1] + out[2])
        length = None if out[3] < 0 else int(out[3])
        return Head(int(size), METHODS[out[0]], target, length, bool(out[4]), fields)

    return scan


@dataclass(frozen=True, slots=True)
class Response:
    """An engine's response head :func:`response_scan` read, and the client's head it wrote."""

    size: int  # the engine's head's bytes: its body starts here
    status: int
    head: bytes  # what the client gets
    mode: int  # swapd.proxy.relay's FRAMED, RAW or PLAIN
    length: int | None  # the engine's content-length
    reuse: bool  # the engine's connection serves again after this body


def response_scan(
    status_lines: Mapping[int, bytes],
) -> Callable[[bytes, bytes, bool, bool], Response | int] | None:
    """relay.c's ``response_head`` where the library is built, else None: ``scan(data, date,
    client_keeps, head_only)`` reads the engine's response head at the start of ``data`` and
    makes the client's, as swapd.proxy.relay does, with ``status_lines`` (uvicorn's, 100 to
    599) and ``date`` when the engine sent none. 0: more bytes are needed; -1: a head a native
    front leaves to Python."""
    lib = _built()
    if lib is None:
        return None
    response_head = lib.response_head
    keep = [ctypes.create_string_buffer(status_lines[code]) for code in range(100, 600)]
    lines = (ctypes.c_char_p * 500)(*(ctypes.cast(b, ctypes.c_char_p) for b in keep))

    def scan(data: bytes, date: bytes, client_keeps: bool, head_only: bool) -> Response | int:
        info = (ctypes.c_int64 * 5)()
        out = ctypes.create_string_buffer(len(data) + 256)
        flags = (1 if client_keeps else 0) | (2 if head_only else 0)
        size = response_head(data, len(data), lines, date, len(date), flags, out, len(out), info)
        if size <= 0:
            return int(size)
        length = None if info[3] < 0 else int(info[3])
        head = out.raw[: info[1]]
        return Response(int(size), int(info[0]), head, int(info[2]), length, bool(info[4]))

    scan.lines = keep  # type: ignore[attr-defined]  # the buffers live as long as the scan
    return scan


def request_writer() -> Callable[[bytes, str, bytes, str, int, bool], bytes | None] | None:
    """relay.c's ``request_head`` where the library is built, else None: ``write(head, target,
    host, ip, length, drop)`` is the head an engine gets for the client's request ``head`` (one
    :func:`head_scan` vouches for; else None), as swapd.proxy.relay.request_head writes it."""
    lib = _built()
    if lib is None:
        return None
    request_head = lib.request_head

    def write(
        head: bytes, target: str, host: bytes, ip: str, length: int, drop: bool
    ) -> bytes | None:
        out = ctypes.create_string_buffer(len(head) + len(target) + len(host) + len(ip) + 256)
        aim, addr = target.encode(), ip.encode()
        size = request_head(
            head,
            len(head),
            aim,
            len(aim),
            host,
            len(host),
            addr,
            len(addr),
            length,
            drop,
            out,
            len(out),
        )
        return None if size < 0 else out.raw[:size]

    return write


class _FrontResult(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_int),
        ("fd", ctypes.c_int),
        ("id", ctypes.c_int64),
        ("gate", ctypes.c_int64),
        ("status", ctypes.c_int32),
        ("path", ctypes.c_int32),
        ("end", ctypes.c_int32),
        ("key", ctypes.c_int32),
        ("began", ctypes.c_double),
        ("wall", ctypes.c_double),
        ("ended", ctypes.c_double),
        ("first", ctypes.c_double),
        ("size", ctypes.c_int64),
        ("head_len", ctypes.c_int64),
        ("tail_len", ctypes.c_int64),
        ("data_len", ctypes.c_int64),
        ("data_head", ctypes.c_int64),
        ("resp_len", ctypes.c_int64),
        ("keep_len", ctypes.c_int64),
        ("data", ctypes.c_void_p),
        ("resp", ctypes.c_void_p),
        ("keep", ctypes.c_void_p),
        ("keep_cut", ctypes.c_int32),
        ("pad2", ctypes.c_int32),
        ("peer", ctypes.c_char * 64),
        ("head", ctypes.c_char * HEAD_MAX),
        ("tail", ctypes.c_char * TAIL_MAX),
    ]


class _Flying(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_int64),
        ("gate", ctypes.c_int64),
        ("size", ctypes.c_int64),
        ("path", ctypes.c_int32),
        ("status", ctypes.c_int32),
        ("key", ctypes.c_int32),
        ("pad", ctypes.c_int32),
        ("wall", ctypes.c_double),
        ("began", ctypes.c_double),
        ("peer", ctypes.c_char * 64),
    ]


@dataclass(frozen=True, slots=True)
class Flying:
    """An exchange the front has in flight: its ``id``, the model's ``gate``, the route (an
    index into the front's paths), the engine's ``status`` (0: no head yet), when it began
    (``wall``: time.time; ``began``: time.monotonic), the body bytes so far, the client, and
    the API key it presented (its id in :meth:`Front.table`; -1: no keys are asked for)."""

    id: int
    gate: int
    path: int
    status: int
    wall: float
    began: float
    size: int
    peer: str
    key: int = -1


_FRONT_HEAD_AT = _FrontResult.head.offset
_FRONT_TAIL_AT = _FrontResult.tail.offset
FRONT_RECORD, FRONT_PYTHON = 1, 2  # front.c: what front_next gives


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request the native front served: its ``id`` (as :class:`Flying`'s), the model's
    ``gate``, the route (an index into
    the front's paths), the engine's ``status`` (499: the client left before it; 502: an
    engine head the front does not follow), how it ``ended`` (DONE, …), when it began
    (``began``: time.monotonic; ``wall``: time.time) and ended, the client's address, and
    the body as the native relay reports one (``body``); with captures on, the ``request``
    (its head's first ``request_head`` bytes, then its body) and the ``response_head`` the
    client got; ``key``: the API key presented, as :class:`Flying`'s."""

    id: int
    gate: int
    path: int
    status: int
    end: int
    began: float
    wall: float
    ended: float
    peer: str
    body: Ended
    request: bytes = b""
    request_head: int = 0
    response_head: bytes = b""
    fd: int = -1  # ended with no answer (ENGINE_HEAD…): the client's connection, for Python's
    key: int = -1


@dataclass(frozen=True, slots=True)
class FrontEntry:
    """A name the front serves: the model's ``gate``, the ``host`` the engine gets, the
    engine's IPv4 ``address`` and ``port``, the model's timeouts (connect, responseHeader,
    idleRead; 0: none), and which API keys may use it (``may``: one byte per key of
    :meth:`Front.table`'s, 1 when it may)."""

    name: str
    host: bytes
    gate: int
    address: str
    port: int
    timeouts: tuple[float, float, float]
    may: bytes = b""


class FrontOwner(Protocol):
    """Told of each exchange the front served, and given each connection it leaves to Python
    (the fd, now the owner's, and the bytes read of it)."""

    def exchanged(self, exchanges: list[Exchange]) -> None: ...

    def handed(self, fd: int, data: bytes) -> None: ...


class Front:
    """relay.c's native front (front.c): a thread that accepts on a listening socket and serves
    routine requests of the models in its table (:meth:`table`) through their gates, with no
    Python per request; everything else is handed to ``owner``, and so are the connections of
    exchanges that end with no answer, for Python's error (:class:`Exchange`'s ``fd``)."""

    def __init__(
        self,
        lib: ctypes.CDLL,
        loop: asyncio.AbstractEventLoop,
        listener: int,
        gates: Gates,
        owner: FrontOwner,
        *,
        status_lines: Mapping[int, bytes],
        paths: list[str],
        max_body: int,
        max_depth: int,
        keep_alive: float,
        head_timeout: float,
        cap: int,
    ) -> None:
        self._lines = [ctypes.create_string_buffer(status_lines[code]) for code in range(100, 600)]
        lines = (ctypes.c_char_p * 500)(*(ctypes.cast(b, ctypes.c_char_p) for b in self._lines))
        listed = b"".join(p.encode() + b"\0" for p in paths) + b"\0"
        handle = lib.front_create(
            listener,
            gates.handle,
            lines,
            listed,
            max_body,
            max_depth,
            keep_alive,
            head_timeout,
            cap,
        )
        if not handle:
            raise OSError("the native front could not start its thread")
        self.lib, self.handle, self.loop, self.owner, self.gates = lib, handle, loop, owner, gates
        self.fd: int = lib.front_notify_fd(handle)
        self._result = _FrontResult()
        loop.add_reader(self.fd, self._notified)

    def table(
        self,
        entries: list[FrontEntry],
        keys: Sequence[tuple[int, bytes]] = (),
        *,
        any_host: bool = False,
        hosts: Sequence[str] = (),
        domains: Sequence[str] = (),
        trust_all: bool = False,
        trusted: Sequence[tuple[int, int, bytes]] = (),
    ) -> None:
        """The names served here from now on; any other name is Python's. ``keys``: the API
        keys, each with the id its requests are told by (none: no key is asked for); a request
        is the front's when it presents one whose byte in the entry's ``may`` is 1. A request
        whose ``Host`` is not an address or localhost is the front's when ``any_host``, or its
        name is one of ``hosts`` or in one of ``domains`` (``.example.com``; all lower case).
        The forwarding fields of a peer in ``trusted`` (networks: IP version, prefix length,
        packed address), or of any with ``trust_all``, are believed; others' are dropped."""
        order = sys.byteorder
        parts = [len(keys).to_bytes(4, order)]
        for ident, key in keys:
            parts.append(ident.to_bytes(4, order, signed=True))
            parts.append(len(key).to_bytes(4, order) + key)
        parts.append(int(any_host).to_bytes(4, order))
        for names in (hosts, domains):
            parts.append(len(names).to_bytes(4, order))
            parts.extend(len(raw).to_bytes(4, order) + raw for raw in map(str.encode, names))
        parts.append(int(trust_all).to_bytes(4, order) + len(trusted).to_bytes(4, order))
        parts.extend(bytes((v, bits)) + packed.ljust(16, b"\0") for v, bits, packed in trusted)
        for e in entries:
            raw = e.name.encode()
            parts.append(len(raw).to_bytes(4, order) + raw)
            parts.append(len(e.host).to_bytes(4, order) + e.host)
            parts.append(e.gate.to_bytes(8, order, signed=True))
            parts.append(socket.inet_aton(e.address) + e.port.to_bytes(2, order))
            parts.append(struct.pack("=3d", *e.timeouts))
            parts.append(e.may.ljust(len(keys), b"\0")[: len(keys)])
        blob = b"".join(parts)
        if not self.lib.front_table(self.handle, blob, len(blob)):
            raise MemoryError("no memory for the native front's table")

    def adopt(self, fd: int, peer: str) -> bool:
        """Take back a connection Python served a request on, between two requests: ``fd``
        is the front's if this returns True."""
        return bool(self.handle) and bool(self.lib.front_adopt(self.handle, fd, peer.encode()))

    def open(self) -> int:
        """The connections the front has open."""
        return int(self.lib.front_open(self.handle)) if self.handle else 0

    def python_open(self, count: int) -> None:
        """Python has ``count`` connections open (the cap counts the front's and these)."""
        if self.handle:
            self.lib.front_python_open(self.handle, count)

    def limits(
        self, max_body: int, max_depth: int, keep_alive: float, head_timeout: float, cap: int
    ) -> None:
        """The server's limits from now on (a reload's; the same as :class:`Front`'s)."""
        self.lib.front_limits(self.handle, max_body, max_depth, keep_alive, head_timeout, cap)

    def captures(self, budget: int, limit: int) -> None:
        """Keep what captures need from now on: response bodies up to ``limit`` bytes each and
        ``budget`` bytes for all exchanges in flight (0: no captures)."""
        self.lib.front_captures(self.handle, budget, limit)

    def inflight(self) -> list[Flying]:
        """The exchanges in flight now."""
        room = 64
        while True:
            out = (_Flying * room)()
            count = int(self.lib.front_inflight(self.handle, out, room))
            if count <= room:
                return [
                    Flying(
                        *(x.id, x.gate, x.path, x.status, x.wall, x.began, x.size),
                        x.peer.decode(),
                        x.key,
                    )
                    for x in out[:count]
                ]
            room = count

    def cancel(self, exchange: int) -> bool:
        """Cancel an exchange in flight (a 503, or its stream cut); False: none has that id."""
        return bool(self.lib.front_cancel(self.handle, exchange))

    def active(self) -> int:
        """Exchanges in flight."""
        return int(self.lib.front_active(self.handle))

    def stop(self) -> None:
        """Accept no more; each connection closes once its exchange has ended."""
        self.lib.front_stop(self.handle)

    def _notified(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.fd, 8)
        self.drain()

    def drain(self) -> None:
        """Tell the owner of every exchange that ended and every connection handed over so
        far (the front tells Python itself at once of a connection, of exchanges in batches)."""
        if not self.handle:
            return
        res = self._result
        at = ctypes.addressof(res)
        lib = self.lib
        exchanges: list[Exchange] = []
        while lib.front_next(self.handle, ctypes.byref(res)):
            if res.kind == FRONT_PYTHON:
                data = ctypes.string_at(res.data, res.data_len) if res.data else b""
                lib.relay_free(res.data)
                try:
                    self.owner.handed(res.fd, data)
                except Exception:
                    log.exception("a connection the native front handed over failed")
                    os.close(res.fd)
                continue
            request = response = keep = b""
            if res.data:  # a capture's
                request = ctypes.string_at(res.data, res.data_len)
                response = ctypes.string_at(res.resp, res.resp_len) if res.resp else b""
                keep = ctypes.string_at(res.keep, res.keep_len) if res.keep else b""
                for owned in (res.data, res.resp, res.keep):
                    lib.relay_free(owned)
            body = Ended(
                end=res.end,
                err=0,
                extra=False,
                size=res.size,
                first=res.first or None,
                head=ctypes.string_at(at + _FRONT_HEAD_AT, res.head_len),
                tail=ctypes.string_at(at + _FRONT_TAIL_AT, res.tail_len),
                keep=keep,
                keep_cut=bool(res.keep_cut),
            )
            peer = res.peer.decode("ascii", "replace")
            times = res.began, res.wall, res.ended
            what = res.id, res.gate, res.path, res.status, res.end
            exchange = Exchange(*what, *times, peer, body, fd=res.fd, key=res.key)
            if request:
                exchange = dataclasses.replace(
                    exchange, request=request, request_head=res.data_head, response_head=response
                )
            exchanges.append(exchange)
        if exchanges:
            try:
                self.owner.exchanged(exchanges)
            except Exception:
                log.exception("the records of the native front's exchanges failed")

    def close(self) -> None:
        """End the thread; every connection it still holds is closed."""
        if not self.handle:
            return
        if not self.loop.is_closed():
            self.loop.remove_reader(self.fd)
        self.drain()
        self.lib.front_destroy(self.handle)
        self.handle = None


def front(
    loop: asyncio.AbstractEventLoop,
    listener: int,
    gates: Gates,
    owner: FrontOwner,
    **settings: Any,
) -> Front | None:
    """A :class:`Front` where the library is built, else None."""
    lib = _built()
    return None if lib is None else Front(lib, loop, listener, gates, owner, **settings)


def _load() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux") or not LIBRARY.is_file():
        return None
    try:
        lib = ctypes.CDLL(str(LIBRARY), use_errno=True)
    except OSError:
        return None
    handle = ctypes.c_void_p
    lib.relay_create.restype = handle
    lib.relay_create.argtypes = []
    lib.relay_notify_fd.restype = ctypes.c_int
    lib.relay_notify_fd.argtypes = [handle]
    lib.relay_add.restype = handle
    lib.relay_add.argtypes = [
        handle,
        ctypes.c_int64,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_double,
        ctypes.c_int64,
    ]
    lib.relay_abort.restype = None
    lib.relay_abort.argtypes = [handle, handle]
    lib.relay_settle.restype = None
    lib.relay_settle.argtypes = [handle, handle]
    lib.relay_size.restype = ctypes.c_int64
    lib.relay_size.argtypes = [handle]
    lib.relay_next.restype = ctypes.c_int
    lib.relay_next.argtypes = [handle, ctypes.POINTER(_Result)]
    lib.relay_free.restype = None
    lib.relay_free.argtypes = [ctypes.c_void_p]
    lib.relay_destroy.restype = None
    lib.relay_destroy.argtypes = [handle]
    lib.gates_create.restype = handle
    lib.gates_create.argtypes = [ctypes.c_int64, ctypes.c_int]
    lib.gates_destroy.restype = None
    lib.gates_destroy.argtypes = [handle]
    lib.gate_open.restype = None
    lib.gate_open.argtypes = [handle, ctypes.c_int64, ctypes.c_int64]
    lib.gate_close.restype = ctypes.c_int64
    lib.gate_close.argtypes = [handle, ctypes.c_int64]
    lib.gate_admit.restype = ctypes.c_int
    lib.gate_admit.argtypes = [handle, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]
    lib.gate_enter.restype = ctypes.c_int
    lib.gate_enter.argtypes = [handle, ctypes.c_int64]
    lib.gate_leave.restype = ctypes.c_int
    lib.gate_leave.argtypes = [handle, ctypes.c_int64]
    lib.gate_read.restype = None
    lib.gate_read.argtypes = [
        handle,
        ctypes.c_int64,
        ctypes.POINTER(ctypes.c_int64),
        ctypes.POINTER(ctypes.c_double),
    ]
    lib.response_head.restype = ctypes.c_int64
    lib.response_head.argtypes = [
        ctypes.c_char_p,
        ctypes.c_int64,
        ctypes.POINTER(ctypes.c_char_p),
        ctypes.c_char_p,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_char_p,
        ctypes.c_int64,
        ctypes.POINTER(ctypes.c_int64),
    ]
    lib.request_head.restype = ctypes.c_int64
    lib.request_head.argtypes = [
        ctypes.c_char_p,
        ctypes.c_int64,
        ctypes.c_char_p,
        ctypes.c_int64,
        ctypes.c_char_p,
        ctypes.c_int64,
        ctypes.c_char_p,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int64,
    ]
    lib.front_create.restype = handle
    lib.front_create.argtypes = [
        ctypes.c_int,
        handle,
        ctypes.POINTER(ctypes.c_char_p),
        ctypes.c_char_p,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_double,
        ctypes.c_double,
        ctypes.c_int64,
    ]
    lib.front_inflight.restype = ctypes.c_int64
    lib.front_inflight.argtypes = [handle, ctypes.POINTER(_Flying), ctypes.c_int64]
    lib.front_cancel.restype = ctypes.c_int
    lib.front_cancel.argtypes = [handle, ctypes.c_int64]
    lib.front_notify_fd.restype = ctypes.c_int
    lib.front_notify_fd.argtypes = [handle]
    lib.front_table.restype = ctypes.c_int
    lib.front_table.argtypes = [handle, ctypes.c_char_p, ctypes.c_int64]
    lib.front_next.restype = ctypes.c_int
    lib.front_next.argtypes = [handle, ctypes.POINTER(_FrontResult)]
    lib.front_adopt.restype = ctypes.c_int
    lib.front_adopt.argtypes = [handle, ctypes.c_int, ctypes.c_char_p]
    lib.front_open.restype = ctypes.c_int64
    lib.front_open.argtypes = [handle]
    lib.front_python_open.restype = None
    lib.front_python_open.argtypes = [handle, ctypes.c_int64]
    lib.front_limits.restype = None
    lib.front_limits.argtypes = [
        handle,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_double,
        ctypes.c_double,
        ctypes.c_int64,
    ]
    lib.front_captures.restype = None
    lib.front_captures.argtypes = [handle, ctypes.c_int64, ctypes.c_int64]
    lib.front_active.restype = ctypes.c_int64
    lib.front_active.argtypes = [handle]
    lib.front_stop.restype = None
    lib.front_stop.argtypes = [handle]
    lib.front_destroy.restype = None
    lib.front_destroy.argtypes = [handle]
    lib.scan_head.restype = ctypes.c_int64
    lib.scan_head.argtypes = [ctypes.c_char_p, ctypes.c_int64, ctypes.POINTER(ctypes.c_int64)]
    lib.scan_request.restype = ctypes.c_int
    lib.scan_request.argtypes = [
        ctypes.c_char_p,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.POINTER(ctypes.c_int64),
    ]
    lib.scan_names.restype = ctypes.c_int64
    lib.scan_names.argtypes = [
        ctypes.c_char_p,
        ctypes.c_int64,
        ctypes.POINTER(ctypes.c_int64),
        ctypes.c_int64,
    ]
    return lib


class Gates:
    """relay.c's gates: per model, whether a native front may send it requests, and how many
    it has in flight (see the scheduler's ``attach_gates``). ``emptied`` is called on the loop
    when a front request's end leaves a closed gate with none in flight."""

    def __init__(
        self,
        lib: ctypes.CDLL,
        loop: asyncio.AbstractEventLoop,
        size: int,
        emptied: Callable[[], None],
    ) -> None:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        handle = lib.gates_create(size, self.fd)
        if not handle:
            os.close(self.fd)
            raise MemoryError("no memory for the gates")
        self.lib, self.handle, self.size, self.loop = lib, handle, size, loop
        self._emptied = emptied
        self._count = ctypes.c_int64()
        self._last = ctypes.c_double()
        loop.add_reader(self.fd, self._notified)

    def open(self, i: int, room: int) -> None:
        """Let front requests through gate ``i``, at most ``room`` at once (also: a new room)."""
        self.lib.gate_open(self.handle, i, room)

    def close(self, i: int) -> int:
        """No more front requests through gate ``i``; returns how many are in flight."""
        return int(self.lib.gate_close(self.handle, i))

    def admit(self, i: int, limit: int, admitted: int) -> bool:
        """Whether one more of Python's requests fits under ``limit`` beside the front's and
        the ``admitted`` ones; if so the front's room shrinks by one first."""
        return bool(self.lib.gate_admit(self.handle, i, limit, admitted))

    def enter(self, i: int) -> bool:
        """A front request for gate ``i`` (the front calls this; tests do from Python)."""
        return bool(self.lib.gate_enter(self.handle, i))

    def leave(self, i: int) -> None:
        self.lib.gate_leave(self.handle, i)

    def read(self, i: int) -> tuple[int, float]:
        """Front requests in flight through gate ``i``, and when one last ended (0: never)."""
        self.lib.gate_read(self.handle, i, ctypes.byref(self._count), ctypes.byref(self._last))
        return self._count.value, self._last.value

    def _notified(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.fd, 8)
        self._emptied()

    def close_all(self) -> None:
        self.loop.remove_reader(self.fd)
        self.lib.gates_destroy(self.handle)
        os.close(self.fd)


def gates(loop: asyncio.AbstractEventLoop, size: int, emptied: Callable[[], None]) -> Gates | None:
    """:class:`Gates` for ``size`` models where the library is built, else None."""
    lib = _built()
    return None if lib is None else Gates(lib, loop, size, emptied)


class Relay:
    """The native relay of one event loop: its thread, and the flows handed to it."""

    def __init__(self, lib: ctypes.CDLL, loop: asyncio.AbstractEventLoop) -> None:
        handle = lib.relay_create()
        if not handle:
            raise OSError("the native relay could not start its thread")
        self.lib = lib
        self.handle = handle
        self.loop = loop
        self.fd: int = lib.relay_notify_fd(handle)
        self.flows: dict[int, tuple[Owner, int]] = {}  # id -> its owner and relay.c's flow
        self._ids = itertools.count(1)
        self._result = _Result()
        loop.add_reader(self.fd, self._drain)

    def add(self, owner: Owner, upstream: int, client: int, idle: float, keep: int) -> int:
        """Hand over the body now coming on socket ``upstream`` for socket ``client`` (both
        dup()ed by the thread); ``idle``: seconds the engine may send nothing (0: no limit);
        ``keep``: body bytes to keep for a capture. Returns the flow's id."""
        fid = next(self._ids)
        flow = self.lib.relay_add(self.handle, fid, upstream, client, idle, keep)
        if not flow:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self.flows[fid] = (owner, flow)
        return fid

    def abort(self, fid: int) -> None:
        """End a flow now; its owner hears nothing more of it."""
        found = self.flows.pop(fid, None)
        if found is not None:
            self.lib.relay_abort(self.handle, found[1])

    def settle(self, fid: int) -> None:
        """End a flow now and tell its owner how it ended before this returns: ``DONE`` when
        its last chunk had been written already (the thread is waited for, a few µs), else
        ``ABORTED``."""
        found = self.flows.get(fid)
        if found is not None:
            self.lib.relay_settle(self.handle, found[1])
            self._drain()

    def poll(self) -> None:
        """Tell every running flow's owner how many body bytes it has relayed so far."""
        for owner, flow in list(self.flows.values()):
            owner.native_progress(int(self.lib.relay_size(flow)))

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.fd, 8)
        res = self._result
        at = ctypes.addressof(res)
        lib = self.lib
        while lib.relay_next(self.handle, ctypes.byref(res)):
            keep = b""
            if res.keep:
                keep = ctypes.string_at(res.keep, res.keep_len)
                lib.relay_free(res.keep)
            found = self.flows.pop(res.id, None)
            if found is None:  # aborted meanwhile
                continue
            owner = found[0]
            ended = Ended(
                end=res.end,
                err=res.err,
                extra=bool(res.extra),
                size=res.size,
                first=res.first or None,
                head=ctypes.string_at(at + _HEAD_AT, res.head_len),
                tail=ctypes.string_at(at + _TAIL_AT, res.tail_len),
                keep=keep,
                keep_cut=bool(res.keep_cut),
            )
            try:
                owner.native_ended(ended)
            except Exception:  # one response's bug must not stall the others' ends
                log.exception("the end of a natively relayed response failed")

    def close(self) -> None:
        """Stop the thread: every flow still running ends, its sockets closed; no owner is told."""
        if not self.handle:
            return
        if not self.loop.is_closed():
            self.loop.remove_reader(self.fd)
        self.flows.clear()
        self.lib.relay_destroy(self.handle)
        self.handle = None
