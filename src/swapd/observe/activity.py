"""Activity: one record per proxied request, with token numbers read off the response.

The hot path only feeds a :class:`Meter` (time of the first byte, a bounded head and tail window
of the body); :func:`parse_usage` runs once the response has ended. It understands OpenAI
``usage`` (``prompt_tokens``/``completion_tokens``/``prompt_tokens_details.cached_tokens``),
Anthropic ``usage`` (``input_tokens``/``output_tokens``/``cache_read_input_tokens``, split over
``message_start`` and ``message_delta`` when streaming), llama.cpp ``timings``
(``prompt_n``/``predicted_n``/``cache_n``/``predicted_per_second``/``prompt_per_second``) and
vLLM's ``num_cached_tokens``, in plain JSON bodies and in SSE streams.

Records are kept in a bounded deque (``metricsMaxInMemory``) and optionally appended to SQLite
(``store.path``).
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from swapd.native import Ended, name_scan

HEAD_BYTES = 4096
TAIL_BYTES = 16384
DEFAULT_MAX_RECORDS = 1000


class Meter:
    """Watches one response's bytes as they pass: cheap per chunk, bounded memory.

    :meth:`start` is called once with the engine's status and response headers (before the
    first chunk); ``on_start`` (if set) is called then, e.g. to announce the request's headers.
    """

    __slots__ = ("_tail", "began", "first_byte", "head", "headers", "on_start", "size", "status")

    def __init__(self, began: float) -> None:
        self.began = began
        self.first_byte: float | None = None
        self.head = b""
        self.size = 0
        self._tail = bytearray()
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.on_start: Callable[[], None] | None = None

    def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.headers = headers
        if self.on_start is not None:
            self.on_start()

    def feed(self, chunk: bytes) -> None:
        if self.first_byte is None:
            self.first_byte = time.monotonic()
        self.size += len(chunk)
        if len(self.head) < HEAD_BYTES:
            self.head += chunk[: HEAD_BYTES - len(self.head)]
        self._tail += chunk
        if len(self._tail) > 2 * TAIL_BYTES:
            del self._tail[: len(self._tail) - TAIL_BYTES]

    def reserve(self) -> int:
        """Body bytes to keep of what the native relay moves (swapd.native): a capture's."""
        return 0

    def absorb(self, ended: Ended, reserved: int) -> None:
        """What the native relay saw of the body it moved, as if it had been fed here (its
        size, first byte's time, first and last bytes); ``reserved``: what :meth:`reserve`
        gave."""
        if self.first_byte is None:
            self.first_byte = ended.first
        self.size += ended.size
        if len(self.head) < HEAD_BYTES:
            self.head += ended.head[: HEAD_BYTES - len(self.head)]
        self._tail += ended.tail
        if len(self._tail) > 2 * TAIL_BYTES:
            del self._tail[: len(self._tail) - TAIL_BYTES]

    @property
    def tail(self) -> bytes:
        return bytes(self._tail[-TAIL_BYTES:])


@dataclass(slots=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    tokens_per_second: float | None = None
    prompt_per_second: float | None = None  # llama.cpp's timings only


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


_USAGE_KEYS = (  # a later one wins
    ("prompt_tokens", "prompt_tokens"),
    ("input_tokens", "prompt_tokens"),
    ("completion_tokens", "completion_tokens"),
    ("output_tokens", "completion_tokens"),
    ("cache_read_input_tokens", "cached_tokens"),
)


def _apply(obj: Any, out: Usage) -> None:
    if not isinstance(obj, dict):
        return
    if obj.get("type") == "message_start":
        _apply(obj.get("message"), out)
    usage = obj.get("usage")
    if isinstance(usage, dict):
        for key, attr in _USAGE_KEYS:
            if type(v := usage.get(key)) is int:  # not a bool (nor None, nor a float)
                setattr(out, attr, v)
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict) and (v := _int(details.get("cached_tokens"))) is not None:
            out.cached_tokens = v
    if (v := _int(obj.get("num_cached_tokens"))) is not None:  # vLLM
        out.cached_tokens = v
    timings = obj.get("timings")
    if isinstance(timings, dict):  # llama.cpp
        if out.prompt_tokens is None and (v := _int(timings.get("prompt_n"))) is not None:
            out.prompt_tokens = v
        if out.completion_tokens is None and (v := _int(timings.get("predicted_n"))) is not None:
            out.completion_tokens = v
        if out.cached_tokens is None and (v := _int(timings.get("cache_n"))) is not None:
            out.cached_tokens = v
        for key, attr in (
            ("predicted_per_second", "tokens_per_second"),
            ("prompt_per_second", "prompt_per_second"),
        ):
            rate = timings.get(key)
            if isinstance(rate, int | float) and not isinstance(rate, bool):
                setattr(out, attr, round(float(rate), 2))


_CARRIES_USAGE = re.compile(rb'"(?:usage|timings)"\s*:\s*\{|"num_cached_tokens"\s*:\s*\d')


_NEEDLES = (b'"usage"', b'"timings"', b'"num_cached_tokens"')


def _find_names(window: bytes) -> list[int]:
    """Where the quoted names of :data:`_NEEDLES` are in ``window``, in order: found by
    ``bytes.find`` (a C scan, several times faster than a regex over a 16 KiB window of frames
    that carry none). :data:`_names` is native's faster scan where the library is built."""
    places = []
    for needle in _NEEDLES:
        at = window.find(needle)
        while at >= 0:
            places.append(at)
            at = window.find(needle, at + len(needle))
    if len(places) > 1:
        places.sort()
    return places


_names: Callable[[bytes], list[int]] = name_scan() or _find_names


def _usage_keys(window: bytes, places: list[int]) -> list[re.Match[bytes]]:
    """:data:`_CARRIES_USAGE` matches at ``places`` (:func:`_names`) in ``window``."""
    return [m for at in places if (m := _CARRIES_USAGE.match(window, at)) is not None]


def _line_around(window: bytes, start: int, end: int) -> tuple[int, int]:
    """The bounds of the line holding ``window[start:end]`` (ended by CR, LF or the edge)."""
    begin = max(window.rfind(b"\n", 0, start), window.rfind(b"\r", 0, start)) + 1
    ends = [i for i in (window.find(b"\n", end), window.find(b"\r", end)) if i >= 0]
    return begin, min(ends) if ends else len(window)


def _objects(window: bytes, places: list[int] | None = None) -> list[Any]:
    """JSON objects in a body window: the whole body, or the ``data:`` lines of an SSE stream
    (``places``: :func:`_names` of the window, when known).

    Only the lines that carry numbers are looked at (a 200-frame stream has one or two), so the
    cost does not grow with the frames."""
    if _JSON_BODY.match(window):
        return _fields(window)
    out = []
    after = 0  # the end of the last line decoded
    for found in _usage_keys(window, _names(window) if places is None else places):
        if found.start() < after:
            continue
        begin, after = _line_around(window, found.start(), found.end())
        line = window[begin:after]
        if line.startswith(b"data:"):
            data = line[5:].strip()
            if data.startswith(b"{"):
                try:
                    out.append(json.loads(data))
                except ValueError:  # cut by the window edge, or not UTF-8
                    continue
    return out


_JSON_BODY = re.compile(rb"\s*\{")
_KEY_END = re.compile(rb"\s*:\s*")  # after a quoted name: it is a key
_DECODER = json.JSONDecoder()
FIELD_BYTES = 4096  # a usage or timings object is far smaller
_FIELDS = tuple((k, b'"%s"' % k.encode()) for k in ("usage", "timings", "num_cached_tokens"))


def _fields(window: bytes) -> list[Any]:
    """The ``usage``/``timings``/``num_cached_tokens`` values of a JSON body (whole, or cut by
    the window), as one object: each found by its last occurrence (engines put them at the end)
    and decoded alone from at most :data:`FIELD_BYTES`; the rest of the body is never parsed."""
    found: dict[str, Any] = {}
    for key, quoted in _FIELDS:
        at = window.rfind(quoted)
        if at < 0:
            continue
        colon = _KEY_END.match(window, at + len(quoted))
        if colon is None:  # a string value, not a key
            continue
        start = colon.end()
        text = window[start : start + FIELD_BYTES].decode("utf-8", errors="replace")
        try:
            found[key] = _DECODER.raw_decode(text)[0]
        except ValueError:
            continue
    return [found] if found else []


def parse_usage(meter: Meter) -> Usage:
    """Token numbers from a finished response's head and tail windows."""
    out = Usage()
    tail = meter.tail
    if meter.size <= len(tail):  # the tail window holds the whole body
        objects = _objects(tail)
    else:
        objects = _objects(meter.head)
        places = _names(tail)
        if places:  # (none: neither an SSE line nor a JSON field carries a number here)
            objects += _objects(tail, places) or _fields(tail)
    for obj in objects:
        _apply(obj, out)
    return out


@dataclass(slots=True)
class Record:
    id: str
    time: float  # unix seconds when the request arrived
    model: str
    path: str
    status: int
    duration: float
    ttfb: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cached_tokens: int | None
    tokens_per_second: float | None
    # what routing decided: `selector` (the selector that chose the model), `fifo_priority`
    metadata: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_COLUMNS = tuple(Record.__dataclass_fields__)
_JSON_COLUMNS = frozenset({"metadata"})  # stored as JSON text


def _stored(record: Record) -> tuple[Any, ...]:
    return tuple(
        json.dumps(v) if c in _JSON_COLUMNS and v is not None else v
        for c in _COLUMNS
        for v in (getattr(record, c),)
    )


def _loaded(row: tuple[Any, ...]) -> Record:
    values = [
        json.loads(v) if c in _JSON_COLUMNS and isinstance(v, str) else v
        for c, v in zip(_COLUMNS, row, strict=True)
    ]
    return Record(*values)


class ActivityLog:
    """The last N records in memory, optionally persisted to SQLite."""

    def __init__(self, max_records: int = DEFAULT_MAX_RECORDS, store: Path | None = None) -> None:
        self.records: deque[Record] = deque(maxlen=max(1, max_records))
        self._db: sqlite3.Connection | None = None
        if store is not None:
            store.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(store, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # no fsync per request
            cols = ", ".join(_COLUMNS)
            self._db.execute(f"CREATE TABLE IF NOT EXISTS activity ({cols})")
            have = {row[1] for row in self._db.execute("PRAGMA table_info(activity)")}
            for column in _COLUMNS:  # a store written by an older swapd: add the new columns
                if column not in have:
                    self._db.execute(f"ALTER TABLE activity ADD COLUMN {column}")
            self._db.execute("CREATE INDEX IF NOT EXISTS activity_time ON activity (time)")
            rows = self._db.execute(  # the last requests to arrive (see add)
                f"SELECT {cols} FROM activity ORDER BY time DESC, rowid DESC LIMIT ?",
                (max_records,),
            ).fetchall()
            for row in reversed(rows):
                self.records.append(_loaded(row))

    def add(self, record: Record) -> None:
        """Keep ``record`` in the order requests arrived: one booked after a later request's
        record (Python books a request after its last byte is out, and the native front can
        serve and book the client's next one first) goes before it."""
        records = self.records
        records.append(record)
        at = len(records) - 1
        while at > 0 and records[at - 1].time > record.time:
            records[at] = records[at - 1]
            at -= 1
        records[at] = record
        if self._db is not None:
            marks = ", ".join("?" for _ in _COLUMNS)
            cols = ", ".join(_COLUMNS)
            self._db.execute(f"INSERT INTO activity ({cols}) VALUES ({marks})", _stored(record))

    def next_number(self) -> int:
        """The number for the next request id (``req-N``): after the stored ones, so ids stay
        unique across restarts when records are persisted."""
        numbers = [int(n) for r in self.records if (n := r.id.removeprefix("req-")).isdigit()]
        return max(numbers, default=0) + 1

    def recent(self, limit: int | None = None) -> list[dict[str, Any]]:
        items = list(reversed(self.records))
        if limit is not None:
            items = items[: max(0, limit)]
        return [r.as_dict() for r in items]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
