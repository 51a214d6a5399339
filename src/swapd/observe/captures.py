"""Request/response captures: what one proxied request sent and got back, bounded.

With ``captureBuffer`` above 0, each proxied request gets a :class:`Tee` beside its activity
meter. The tee keeps the client's request headers (credentials replaced with ``[REDACTED]``), the
request body as forwarded, the engine's response headers and the response body as it passes —
each body bounded: at most half the budget is kept of each, the rest is dropped and the capture
says ``req_truncated`` / ``resp_truncated``; and all captures in the making together hold at most
the budget (a shared :class:`Pool`). So multi-megabyte bodies never make swapd hold more than
twice ``captureBuffer`` for captures (the store plus those in flight), and a large body still
shows its beginning. A failed request is captured as well (an engine's error answer is a
response like any other; a request that never reached an engine has an empty response part).

When the response ends the capture goes into a :class:`CaptureStore` as it is: nothing is
encoded or compressed on the request's path. The store counts what it holds against the budget
(raw bodies plus a fixed allowance for the rest, :data:`OVERHEAD`; a packed one its share of
the frame plus :data:`ENTRY`) and, once the raw captures reach a batch (:data:`BATCH_BYTES`, at
most an eighth of the budget), packs them in a worker thread into one zstd frame — many small
captures compress far better together, and one compression per batch costs a capture about a
microsecond instead of tens. It stays a FIFO cache
within the budget (oldest out first, a packed batch when all its captures are out); a capture
bigger than a batch is packed alone at once, and not kept when even compressed it is bigger than
the whole budget. Reading a packed capture decompresses its batch.

A compressed response body (``Content-Encoding`` gzip, deflate, zstd; br when the
``brotli`` package is installed) is stored decompressed and the header dropped, as llama-swap
does. Some routes carry large binary payloads (audio, images): their bodies are left out
(:data:`MASKS`, llama-swap's table), and nothing is teed for them.

``GET /api/captures/{id}`` answers :meth:`Capture.as_json`: bodies in base64, as llama-swap's UI
expects.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import functools
import io
import logging
import pickle
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import zstandard

REDACTED = "[REDACTED]"
SENSITIVE = frozenset(
    {b"authorization", b"proxy-authorization", b"cookie", b"set-cookie", b"x-api-key"}
)
ZSTD_LEVEL = 3
OVERHEAD = 1024  # counted per raw capture for what is not a body (headers, path, the objects)
ENTRY = 160  # counted per packed capture: its id in the store's tables
BATCH_BYTES = 256 * 1024  # raw captures packed together, at most an eighth of the budget

log = logging.getLogger("swapd.observe")


class Part(enum.IntFlag):
    REQ_HEADERS = 1
    REQ_BODY = 2
    RESP_HEADERS = 4
    RESP_BODY = 8
    REQ = REQ_HEADERS | REQ_BODY
    RESP = RESP_HEADERS | RESP_BODY
    ALL = REQ | RESP


# Routes with large binary payloads keep less (llama-swap's captureFieldsByPath).
MASKS: dict[str, Part] = {
    "/v1/audio/speech": Part.REQ | Part.RESP_HEADERS,
    "/v1/audio/voices": Part.REQ_HEADERS | Part.RESP,
    "/v1/audio/transcriptions": Part.REQ_HEADERS | Part.RESP,
    "/v1/images/generations": Part.REQ | Part.RESP_HEADERS,
    "/v1/images/edits": Part.REQ_HEADERS | Part.RESP_HEADERS,
    "/sdapi/v1/txt2img": Part.REQ | Part.RESP_HEADERS,
    "/sdapi/v1/img2img": Part.REQ_HEADERS | Part.RESP_HEADERS,
}


# The parts as ints, for the per-request checks (IntFlag's operators cost a µs each).
_REQ_HEADERS = int(Part.REQ_HEADERS)
_REQ_BODY = int(Part.REQ_BODY)
_RESP_HEADERS = int(Part.RESP_HEADERS)
_RESP_BODY = int(Part.RESP_BODY)


def mask_for(path: str) -> Part:
    """What to keep for a request target (its query is ignored)."""
    return MASKS.get(path.split("?", 1)[0], Part.ALL)


@functools.lru_cache(maxsize=1024)
def _name(key: bytes) -> tuple[str, bool]:
    """A header's canonical name and whether it is redacted (header names repeat: cached)."""
    lower = key.lower()
    return canonical(lower), lower in SENSITIVE


def canonical(name: bytes) -> str:
    """``content-type`` → ``Content-Type`` (the form Go, and so llama-swap's UI, shows)."""
    return "-".join(p[:1].upper() + p[1:] for p in name.decode("latin-1").lower().split("-"))


def head_fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """The fields of an HTTP/1.1 head (its first line skipped), names in lower case and values
    without the spaces around them, as uvicorn gives a request's."""
    fields = []
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            fields.append((name.lower(), value.strip(b" \t")))
    return fields


def header_map(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Headers as one string each (repeats joined with ``, ``), credentials redacted."""
    out: dict[str, str] = {}
    for key, value in headers:
        name, secret = _name(key)
        text = REDACTED if secret else value.decode("latin-1")
        if name in out and text != REDACTED:
            out[name] = f"{out[name]}, {text}"
        else:
            out[name] = text
    return out


@dataclass(slots=True)
class Capture:
    id: str
    req_path: str
    req_headers: dict[str, str]
    req_body: bytes
    resp_headers: dict[str, str]
    resp_body: bytes
    req_truncated: bool = False
    resp_truncated: bool = False

    @property
    def held(self) -> int:
        """Bytes counted against the budget while kept raw."""
        return len(self.req_body) + len(self.resp_body) + OVERHEAD

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "req_path": self.req_path,
            "req_headers": self.req_headers,
            "req_body": base64.b64encode(self.req_body).decode("ascii"),
            "resp_headers": self.resp_headers,
            "resp_body": base64.b64encode(self.resp_body).decode("ascii"),
            "req_truncated": self.req_truncated,
            "resp_truncated": self.resp_truncated,
        }


@dataclass(eq=False, slots=True)
class Batch:
    """Captures packed together: one zstd frame holding one pickle of their fields."""

    blob: bytes
    index: dict[str, int]  # request id -> its place in the batch
    live: int  # captures of the batch still in the store

    @classmethod
    def pack(cls, captures: list[Capture]) -> Batch:
        """Runs in a worker thread: reads only the captures, which nothing changes."""
        fields = [
            (
                c.id,
                c.req_path,
                c.req_headers,
                c.req_body,
                c.resp_headers,
                c.resp_body,
                c.req_truncated,
                c.resp_truncated,
            )
            for c in captures
        ]
        raw = pickle.dumps(fields, protocol=pickle.HIGHEST_PROTOCOL)
        blob = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(raw)
        return cls(blob, {c.id: n for n, c in enumerate(captures)}, len(captures))

    @property
    def size(self) -> int:
        """Bytes counted against the budget: the frame, and each capture's entries."""
        return len(self.blob) + ENTRY * len(self.index)

    def get(self, request_id: str) -> Capture:
        raw = zstandard.ZstdDecompressor().decompress(self.blob)
        fields = pickle.loads(raw)[self.index[request_id]]  # bytes this store made
        return Capture(*fields)


def decode_body(raw: bytes, encoding: str, limit: int) -> tuple[bytes, bool] | None:
    """A response body decompressed (at most ``limit`` bytes, and whether it was cut), or
    ``None`` for an encoding that cannot be undone here (the body is then kept as it came)."""
    encoding = encoding.strip().lower()
    try:
        if encoding in ("gzip", "x-gzip", "deflate"):
            wbits = 47 if encoding != "deflate" else 15  # 47: gzip or zlib header, detected
            try:
                d = zlib.decompressobj(wbits)
                out = d.decompress(raw, limit)
            except zlib.error:
                if encoding != "deflate":
                    raise
                d = zlib.decompressobj(-15)  # raw deflate, as some servers send it
                out = d.decompress(raw, limit)
            return out, bool(d.unconsumed_tail)
        if encoding == "zstd":
            reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw))
            out = reader.read(limit)
            return out, bool(reader.read(1))
        if encoding == "br":
            try:
                import brotli  # type: ignore[import-not-found,unused-ignore]
            except ImportError:
                return None
            data: bytes = brotli.decompress(raw)
            return data[:limit], len(data) > limit
    except (zlib.error, zstandard.ZstdError, ValueError, OSError):
        return None
    return None


class Pool:
    """Bytes that captures in the making may still hold, shared by all in-flight requests."""

    __slots__ = ("left",)

    def __init__(self, size: int) -> None:
        self.left = size


class Tee:
    """One request's capture in the making: bounded copies of the bodies as they pass.

    Each body keeps at most ``limit`` bytes (half the budget), and all tees together at most
    their :class:`Pool` (the budget): many concurrent large requests cannot multiply it.
    """

    __slots__ = (
        "_chunks",
        "_held",
        "_left",
        "_pool",
        "id",
        "limit",
        "parts",
        "req_body",
        "req_headers",
        "req_path",
        "req_truncated",
        "resp_headers",
        "resp_truncated",
    )

    def __init__(
        self,
        request_id: str,
        req_path: str,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        parts: Part,
        budget: int,
        pool: Pool | None = None,
    ) -> None:
        self.id = request_id
        self.req_path = req_path
        self.parts = int(parts)
        self.limit = max(1, budget // 2)  # per body
        self._pool = pool if pool is not None else Pool(budget)
        self.req_headers = header_map(headers) if self.parts & _REQ_HEADERS else {}
        keep = body if self.parts & _REQ_BODY else b""
        room = max(0, min(self.limit, self._pool.left))
        self.req_truncated = len(keep) > room
        self.req_body = keep[:room]
        self._held = len(self.req_body)
        self._pool.left -= self._held
        self.resp_headers: list[tuple[bytes, bytes]] = []
        self._chunks: list[bytes] = []
        self._left = self.limit if self.parts & _RESP_BODY else -1  # -1: not teeing
        self.resp_truncated = False

    def start(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        if self.parts & _RESP_HEADERS:
            self.resp_headers = list(headers)

    def feed(self, chunk: bytes) -> None:
        left = self._left
        if left <= 0:
            if left == 0:  # full, and more came
                self.resp_truncated = True
                self._left = -1
            return
        pool = self._pool
        if pool.left < left:
            left = pool.left
            if left <= 0:  # the other captures in the making hold the whole budget
                self.resp_truncated = True
                self._left = -1
                return
        if len(chunk) > left:
            chunk = chunk[:left]
            self.resp_truncated = True
        n = len(chunk)
        self._chunks.append(chunk)
        self._left -= n
        self._held += n
        pool.left -= n

    def reserve(self) -> int:
        """Take from the pool the room left for the response body, for the native relay to
        fill (swapd.native); :meth:`absorb` gives it back."""
        room = min(self._left, self._pool.left)
        if room <= 0:
            return 0
        self._pool.left -= room
        return room

    def absorb(self, size: int, reserved: int, kept: bytes, cut: bool) -> None:
        """The native relay moved ``size`` body bytes and kept ``kept`` of them (``cut``:
        more came than the ``reserved`` room)."""
        self._pool.left += reserved
        if kept:
            self.feed(kept)
        if self._left >= 0 and (cut or len(kept) < size):
            self.resp_truncated = True
            self._left = -1

    def release(self) -> None:
        """Give the held bytes back to the pool (the capture is done or abandoned)."""
        self._pool.left += self._held
        self._held = 0

    def finish(self) -> Capture:
        body = b"".join(self._chunks)
        self._chunks = []
        self.release()
        headers = self.resp_headers
        encoding = next((v for k, v in headers if k.lower() == b"content-encoding"), None)
        truncated = self.resp_truncated
        if encoding is not None and body:
            decoded = decode_body(body, encoding.decode("latin-1"), self.limit)
            if decoded is not None:
                body, cut = decoded
                truncated = truncated or cut
                headers = [(k, v) for k, v in headers if k.lower() != b"content-encoding"]
        return Capture(
            id=self.id,
            req_path=self.req_path,
            req_headers=self.req_headers,
            req_body=self.req_body,
            resp_headers=header_map(headers),
            resp_body=body,
            req_truncated=self.req_truncated,
            resp_truncated=truncated,
        )


class CaptureStore:
    """Captures by request id, oldest evicted first, within a byte budget: raw as they come,
    packed in batches off the event loop (see the module's notes)."""

    def __init__(self, budget: int) -> None:
        self.budget = max(0, budget)
        self.pending = Pool(self.budget)  # for the tees of requests in flight
        self._items: OrderedDict[str, Capture | Batch] = OrderedDict()
        self._size = 0
        self._fresh: list[Capture] = []  # raw, oldest first, not yet in a batch being packed
        self._fresh_size = 0
        self._packing = False

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size(self) -> int:
        """Bytes held: raw captures as counted by :attr:`Capture.held`, batches compressed."""
        return self._size

    @property
    def batch_bytes(self) -> int:
        return max(1, min(BATCH_BYTES, self.budget // 8))

    def resize(self, budget: int) -> None:
        """A new budget (a reload changed ``captureBuffer``): keeps what still fits."""
        self.pending.left += max(0, budget) - self.budget
        self.budget = max(0, budget)
        self._evict(0)

    def _evict(self, room: int) -> None:
        while self._items and self._size + room > self.budget:
            _, old = self._items.popitem(last=False)
            if isinstance(old, Batch):
                old.live -= 1
                if old.live == 0:
                    self._size -= old.size
            else:
                self._size -= old.held

    def add(self, capture: Capture) -> bool:
        """Keep ``capture``; False when it is bigger than the whole budget, even compressed.

        One bigger than a batch is packed alone right away (in a worker thread with an event
        loop: it is kept once packed); smaller ones are kept raw and packed in batches."""
        held = capture.held
        if held > self.batch_bytes:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop (a synchronous caller)
                return self._put([capture], Batch.pack([capture]))
            packed = loop.run_in_executor(None, Batch.pack, [capture])
            packed.add_done_callback(lambda done: self._packed([capture], done, fresh=False))
            return True
        self._evict(held)
        self._items[capture.id] = capture
        self._size += held
        self._fresh.append(capture)
        self._fresh_size += held
        if self._fresh_size >= self.batch_bytes and not self._packing:
            self._pack()
        return True

    def _put(self, captures: list[Capture], batch: Batch) -> bool:
        if batch.size > self.budget:
            log.debug("capture %s is bigger than captureBuffer; not kept", captures[0].id)
            return False
        self._evict(batch.size)
        for capture in captures:
            self._items[capture.id] = batch
        self._size += batch.size
        return True

    def _pack(self) -> None:
        batch = [c for c in self._fresh if self._items.get(c.id) is c]  # not evicted since
        self._fresh = []
        self._fresh_size = 0
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a synchronous caller): they stay raw
            return
        if not batch:
            return
        self._packing = True
        packed = loop.run_in_executor(None, Batch.pack, batch)
        packed.add_done_callback(lambda done: self._packed(batch, done))

    def _packed(
        self, captures: list[Capture], done: asyncio.Future[Batch], *, fresh: bool = True
    ) -> None:
        """A batch is packed: ``fresh`` ones replace their raw selves, a big one is put."""
        if fresh:
            self._packing = False
        if done.cancelled() or (exc := done.exception()) is not None:
            log.warning("captures not packed: %s", "cancelled" if done.cancelled() else exc)
        elif not fresh:
            self._put(captures, done.result())
        # The oldest are the first evicted: with any gone meanwhile, the rest soon follow.
        elif all(self._items.get(c.id) is c for c in captures):
            batch = done.result()
            for capture in captures:
                self._items[capture.id] = batch
            self._size += batch.size - sum(c.held for c in captures)
        if fresh and self._fresh_size >= self.batch_bytes:
            self._pack()

    def get(self, request_id: str) -> Capture | None:
        item = self._items.get(request_id)
        if isinstance(item, Batch):
            return item.get(request_id)
        return item

    def clear(self) -> None:
        self._items.clear()
        self._size = 0
        self._fresh = []
        self._fresh_size = 0
