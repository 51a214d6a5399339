"""Request/response captures: what one proxied request sent and got back, kept compressed.

With ``captureBuffer`` above 0, each proxied request gets a :class:`Tee` beside its activity
meter. The tee keeps the client's request headers (credentials replaced with ``[REDACTED]``), the
request body as forwarded, the engine's response headers and the response body as it passes —
each body bounded: at most half the budget is kept of each, the rest is dropped and the capture
says ``req_truncated`` / ``resp_truncated``; and all captures in the making together hold at most
the budget (a shared :class:`Pool`). So multi-megabyte bodies never make swapd hold more than
twice ``captureBuffer`` for captures (the store plus those in flight), and a large body still
shows its beginning. A failed request is captured as well (an engine's error answer is a
response like any other; a request that never reached an engine has an empty response part).

When the response ends the capture is packed (a small JSON header plus the raw bodies),
compressed with zstd and put in a :class:`CaptureStore`: a FIFO cache of compressed bytes whose
total stays within the budget (oldest out first; one item bigger than the whole budget is not
kept). A compressed response body (``Content-Encoding`` gzip, deflate, zstd; br when the
``brotli`` package is installed) is stored decompressed and the header dropped, as llama-swap
does. Some routes carry large binary payloads (audio, images): their bodies are left out
(:data:`MASKS`, llama-swap's table), and nothing is teed for them.

``GET /api/captures/{id}`` answers :meth:`Capture.as_json`: bodies in base64, as llama-swap's UI
expects.
"""

from __future__ import annotations

import base64
import enum
import functools
import io
import json
import struct
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
_HEAD = struct.Struct("<II")  # header length, request body length
_JSON = json.JSONEncoder(separators=(",", ":"))


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
    def raw_size(self) -> int:
        return len(self.req_body) + len(self.resp_body)

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

    def pack(self, compressor: zstandard.ZstdCompressor | None = None) -> bytes:
        """The capture compressed: header JSON, then the two bodies, in one zstd frame."""
        head = _JSON.encode(
            {
                "id": self.id,
                "req_path": self.req_path,
                "req_headers": self.req_headers,
                "resp_headers": self.resp_headers,
                "req_truncated": self.req_truncated,
                "resp_truncated": self.resp_truncated,
            }
        ).encode()
        raw = b"".join(
            (_HEAD.pack(len(head), len(self.req_body)), head, self.req_body, self.resp_body)
        )
        return (compressor or zstandard.ZstdCompressor(level=ZSTD_LEVEL)).compress(raw)

    @classmethod
    def unpack(cls, blob: bytes) -> Capture:
        raw = zstandard.ZstdDecompressor().decompress(blob)
        head_len, req_len = _HEAD.unpack_from(raw)
        at = _HEAD.size
        head = json.loads(raw[at : at + head_len])
        at += head_len
        return cls(
            id=head["id"],
            req_path=head["req_path"],
            req_headers=head["req_headers"],
            req_body=raw[at : at + req_len],
            resp_headers=head["resp_headers"],
            resp_body=raw[at + req_len :],
            req_truncated=head["req_truncated"],
            resp_truncated=head["resp_truncated"],
        )


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
        self.parts = parts
        self.limit = max(1, budget // 2)  # per body
        self._pool = pool if pool is not None else Pool(budget)
        self.req_headers = header_map(headers) if parts & Part.REQ_HEADERS else {}
        keep = body if parts & Part.REQ_BODY else b""
        room = max(0, min(self.limit, self._pool.left))
        self.req_truncated = len(keep) > room
        self.req_body = keep[:room]
        self._held = len(self.req_body)
        self._pool.left -= self._held
        self.resp_headers: list[tuple[bytes, bytes]] = []
        self._chunks: list[bytes] = []
        self._left = self.limit if parts & Part.RESP_BODY else -1  # -1: not teeing
        self.resp_truncated = False

    def start(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        if self.parts & Part.RESP_HEADERS:
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
    """Compressed captures by request id, oldest evicted first, within a byte budget."""

    def __init__(self, budget: int) -> None:
        self.budget = max(0, budget)
        self.pending = Pool(self.budget)  # for the tees of requests in flight
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size(self) -> int:
        """Compressed bytes held."""
        return self._size

    def resize(self, budget: int) -> None:
        """A new budget (a reload changed ``captureBuffer``): keeps what still fits."""
        self.pending.left += max(0, budget) - self.budget
        self.budget = max(0, budget)
        self._evict(0)

    def _evict(self, room: int) -> None:
        while self._items and self._size + room > self.budget:
            _, old = self._items.popitem(last=False)
            self._size -= len(old)

    def add(self, capture: Capture) -> bool:
        """Compress and keep ``capture``; False when it alone is bigger than the budget."""
        return self.put(capture.id, capture.pack(self._compressor))

    def put(self, request_id: str, blob: bytes) -> bool:
        """Keep an already packed capture (see :meth:`Capture.pack`)."""
        if len(blob) > self.budget:
            return False
        old = self._items.pop(request_id, None)
        if old is not None:
            self._size -= len(old)
        self._evict(len(blob))
        self._items[request_id] = blob
        self._size += len(blob)
        return True

    def get(self, request_id: str) -> Capture | None:
        blob = self._items.get(request_id)
        return Capture.unpack(blob) if blob is not None else None

    def clear(self) -> None:
        self._items.clear()
        self._size = 0
