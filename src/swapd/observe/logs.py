"""Bounded log rings: one per model plus one for swapd itself, with live subscribers.

A ring keeps the most recent lines up to a byte budget, each with the time it was written
(:class:`Entry`): the text is kept as the engine (or swapd's formatter) wrote it, and the time
is shown two ways. Text views (``/logs``, ``/logs/stream``, stdout) put it in front of the line
in the ``logTimeFormat`` layout, as llama-swap does for its own lines, and only when one is
set (:attr:`LogRing.time_format`, one setting for every ring, applied with the logging config);
JSON views (``/api/logs``, which ``swapd logs`` reads to interleave sources) carry it as a
field, always. :func:`merged` puts several rings' entries in time order.

Subscribers get each new line (as the text views show it) from a callback that must not wait:
a subscriber that does not keep up loses lines (counted) rather than slowing the engine whose
output is being read. A raw subscriber gets the line as UTF-8 bytes with its newline, encoded
once per line and shared by all raw subscribers (the log streams queue these objects, never a
copy per client).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, NamedTuple

DEFAULT_RING_BYTES = 100 * 1024


class Entry(NamedTuple):
    """One line of a ring: when it was written (Unix seconds) and its text, unchanged."""

    at: float
    text: str


@dataclass(eq=False, slots=True)
class Subscriber:
    push: Callable[[str], bool] | None = None  # returns False when the line was dropped
    push_raw: Callable[[bytes], bool] | None = None  # the same, for ``line + "\n"`` as UTF-8
    dropped: int = 0


@dataclass(slots=True)
class LogRing:
    """Recent lines of one source (a model's engine, or swapd)."""

    # ``logTimeFormat`` (a Go layout name, "" = none) for the text views of every ring: one
    # process-wide setting, like the logging config it is applied with (swapd.app).
    time_format: ClassVar[str] = ""

    name: str
    capacity: int = DEFAULT_RING_BYTES
    echo: bool = False  # also write lines to swapd's stdout, prefixed with the name
    _lines: deque[Entry] = field(default_factory=deque)
    _size: int = 0
    _subscribers: list[Subscriber] = field(default_factory=list)

    def write(self, line: str, at: float | None = None) -> None:
        """Keep ``line`` (written at ``at``, default now) and pass it on."""
        entry = Entry(time.time() if at is None else at, line)
        self._lines.append(entry)
        self._size += len(line) + 1
        while self._size > self.capacity and len(self._lines) > 1:
            self._size -= len(self._lines.popleft().text) + 1
        text = line_of(entry)
        if self.echo:
            sys.stdout.write(f"[{self.name}] {text}\n")
            sys.stdout.flush()
        raw = b""
        for sub in self._subscribers:
            if sub.push is not None:
                kept = sub.push(text)
            else:
                assert sub.push_raw is not None
                raw = raw or (text + "\n").encode(errors="replace")
                kept = sub.push_raw(raw)
            if not kept:
                sub.dropped += 1

    def history(self) -> list[str]:
        """Every line kept, as the text views show it."""
        return [line_of(e) for e in self._lines]

    def entries(self) -> list[Entry]:
        return list(self._lines)

    def tail(self, n: int) -> list[str]:
        """The texts of the last ``n`` lines, without a timestamp (what swapd reads back: a
        failed start's reason, an out-of-memory line, loading progress)."""
        return [e.text for e in list(self._lines)[-n:]] if n > 0 else []

    def subscribe(self, push: Callable[[str], bool]) -> Subscriber:
        sub = Subscriber(push=push)
        self._subscribers.append(sub)
        return sub

    def subscribe_raw(self, push: Callable[[bytes], bool]) -> Subscriber:
        """Like :meth:`subscribe`, with each line as shared UTF-8 bytes ending in a newline."""
        sub = Subscriber(push_raw=push)
        self._subscribers.append(sub)
        return sub

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)


# ── swapd's own line format (``logTimeFormat``) ─────────────────────────────────────────────

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _offset(d: datetime, *, colon: bool, zulu: bool) -> str:
    """Go's ``-0700`` (or ``Z07:00`` with ``zulu`` and ``colon``)."""
    delta = d.utcoffset()
    minutes = int(delta.total_seconds() // 60) if delta is not None else 0
    if zulu and minutes == 0:
        return "Z"
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02}{':' if colon else ''}{mins:02}"


def _zone(d: datetime) -> str:
    return d.tzname() or _offset(d, colon=False, zulu=False)


def _clock(d: datetime) -> str:
    return f"{d.hour:02}:{d.minute:02}:{d.second:02}"


def _stamp(d: datetime) -> str:
    return f"{_MONTHS[d.month - 1]} {d.day:>2} {_clock(d)}"


def _rfc3339(d: datetime, *, fraction: bool) -> str:
    frac = ""
    if fraction and d.microsecond:  # Go's .999999999: trailing zeros trimmed
        frac = "." + f"{d.microsecond:06}".rstrip("0")
    return f"{d.year:04}-{d.month:02}-{d.day:02}T{_clock(d)}{frac}" + _offset(
        d, colon=True, zulu=True
    )


def _kitchen(d: datetime) -> str:
    return f"{(d.hour % 12) or 12}:{d.minute:02}{'PM' if d.hour >= 12 else 'AM'}"


# Go's named layouts (time.ANSIC …), written out: English names whatever the locale, and
# Python's microseconds where Go has nanoseconds (stampnano ends in 000, rfc3339nano has at
# most six digits).
TIME_LAYOUTS: dict[str, Callable[[datetime], str]] = {
    "ansic": lambda d: (
        f"{_DAYS[d.weekday()]} {_MONTHS[d.month - 1]} {d.day:>2} {_clock(d)} {d.year}"
    ),
    "unixdate": lambda d: (
        f"{_DAYS[d.weekday()]} {_MONTHS[d.month - 1]} {d.day:>2} {_clock(d)} {_zone(d)} {d.year}"
    ),
    "rubydate": lambda d: (
        f"{_DAYS[d.weekday()]} {_MONTHS[d.month - 1]} {d.day:02} "
        f"{_clock(d)} {_offset(d, colon=False, zulu=False)} {d.year}"
    ),
    "rfc822": lambda d: (
        f"{d.day:02} {_MONTHS[d.month - 1]} {d.year % 100:02} {d.hour:02}:{d.minute:02} {_zone(d)}"
    ),
    "rfc822z": lambda d: (
        f"{d.day:02} {_MONTHS[d.month - 1]} {d.year % 100:02} "
        f"{d.hour:02}:{d.minute:02} {_offset(d, colon=False, zulu=False)}"
    ),
    "rfc850": lambda d: (
        f"{_WEEKDAYS[d.weekday()]}, {d.day:02}-{_MONTHS[d.month - 1]}-"
        f"{d.year % 100:02} {_clock(d)} {_zone(d)}"
    ),
    "rfc1123": lambda d: (
        f"{_DAYS[d.weekday()]}, {d.day:02} {_MONTHS[d.month - 1]} {d.year} {_clock(d)} {_zone(d)}"
    ),
    "rfc1123z": lambda d: (
        f"{_DAYS[d.weekday()]}, {d.day:02} {_MONTHS[d.month - 1]} "
        f"{d.year} {_clock(d)} {_offset(d, colon=False, zulu=False)}"
    ),
    "rfc3339": lambda d: _rfc3339(d, fraction=False),
    "rfc3339nano": lambda d: _rfc3339(d, fraction=True),
    "kitchen": _kitchen,
    "stamp": _stamp,
    "stampmilli": lambda d: f"{_stamp(d)}.{d.microsecond // 1000:03}",
    "stampmicro": lambda d: f"{_stamp(d)}.{d.microsecond:06}",
    "stampnano": lambda d: f"{_stamp(d)}.{d.microsecond:06}000",
}


def time_layout(name: str) -> Callable[[datetime], str] | None:
    """The formatter for a ``logTimeFormat`` value (case and spaces ignored); ``None`` for ""
    or an unknown name (no timestamp, as in llama-swap)."""
    return TIME_LAYOUTS.get(name.strip().lower())


def stamped(text: str, at: float, time_format: str) -> str:
    """``text`` after the time ``at`` in the ``time_format`` layout (local time, as Go prints
    it); ``text`` alone when there is no layout."""
    layout = time_layout(time_format)
    if layout is None:
        return text
    return f"{layout(datetime.fromtimestamp(at).astimezone())} {text}"


def line_of(entry: Entry) -> str:
    """An entry as the text views show it (see :attr:`LogRing.time_format`)."""
    return stamped(entry.text, entry.at, LogRing.time_format)


def merged(sources: Iterable[tuple[str, LogRing]]) -> list[tuple[str, Entry]]:
    """Every entry of the rings, tagged with its source, oldest first; lines written at the
    same time keep their ring's order."""
    tagged = ([(name, e) for e in ring.entries()] for name, ring in sources)
    return list(heapq.merge(*tagged, key=lambda item: item[1].at))


class LineFormatter(logging.Formatter):
    """swapd's log line: ``[<time> ]LEVEL message``, the time in a ``logTimeFormat`` layout
    (local time, as Go prints it). swapd's own ring is written without the time (the ring
    keeps it, see :attr:`LogRing.time_format`)."""

    def __init__(self, time_format: str = "") -> None:
        super().__init__("%(levelname)s %(message)s")
        self._time_format = time_format

    def format(self, record: logging.LogRecord) -> str:
        return stamped(super().format(record), record.created, self._time_format)


class RingHandler(logging.Handler):
    """swapd's own log records into its ring (and on stdout when ``echo``).

    The ring and its subscribers (log streams, the events bus) belong to ``loop``: a record
    logged from another thread (work handed to a thread: pulling an image, connecting to Ray)
    is written there by the loop, in the order the records came."""

    def __init__(self, ring: LogRing, echo: bool, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.ring = ring
        self.echo = echo
        self.loop = loop
        self.loop_thread = threading.get_ident()  # made on the loop
        self.setFormatter(LineFormatter())  # the ring keeps the time (logTimeFormat)

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        if record.thread == self.loop_thread:
            self.ring.write(line, at=record.created)
        else:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody to tell
                self.loop.call_soon_threadsafe(self.ring.write, line, record.created)
        if self.echo:
            print(stamped(line, record.created, LogRing.time_format), file=sys.stdout, flush=True)
