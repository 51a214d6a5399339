"""The events bus behind ``GET /api/events``: typed, numbered events fanned out to subscribers.

Publishing never blocks and never awaits. An event is encoded once, when some subscriber is
to get it, and the same frame goes into every subscriber's :class:`~swapd.observe.outbox.Outbox`
(bounded in bytes). A subscriber whose outbox would overflow (a client that does not read) is
dropped: marked ``dropped``, its outbox emptied at once and its ``cut`` scope cancelled (the
stream that reads it then ends the connection and logs why) — the server and the other
subscribers are unaffected. Event ids increase by one per event, across all types, and every
subscriber gets its events in id order: one made for one client (:meth:`EventBus.tell`) waits
in that client's outbox behind the events published before it.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import anyio

from swapd.observe.outbox import DEFAULT_BUDGET, Outbox


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    type: str  # snapshot | model | request | inflight | queue | profile | log
    data: Any

    def sse(self) -> bytes:
        """One Server-Sent Events frame."""
        payload = json.dumps(self.data, separators=(",", ":"))
        return f"id: {self.id}\nevent: {self.type}\ndata: {payload}\n\n".encode()


@dataclass(eq=False, slots=True)
class Subscription:
    """One reader of the bus: take frames from ``outbox`` until it ends (closed or dropped)."""

    name: str
    logs: bool
    outbox: Outbox
    dropped: bool = False
    cut: anyio.CancelScope = field(default_factory=anyio.CancelScope)  # cancelled on drop


@dataclass(slots=True)
class EventBus:
    budget: int = DEFAULT_BUDGET  # bytes buffered per subscriber before it is dropped
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _subs: list[Subscription] = field(default_factory=list)

    def next_id(self) -> int:
        return next(self._ids)

    def subscribe(self, name: str, *, logs: bool = False) -> Subscription:
        sub = Subscription(name, logs, Outbox(self.budget))
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget ``sub`` and let go of what it had queued (idempotent)."""
        if sub in self._subs:
            self._subs.remove(sub)
        sub.outbox.close()

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, type_: str, data: Any) -> Event:
        event = Event(self.next_id(), type_, data)
        frame = b""
        for sub in list(self._subs):
            # closed: it left or was dropped while this loop ran (a publish from inside it)
            if sub.outbox.closed or (type_ == "log" and not sub.logs):
                continue
            frame = frame or event.sse()
            self._put(sub, frame)
        return event

    def tell(self, sub: Subscription, type_: str, data: Any) -> Event:
        """An event for ``sub`` alone (made for it, such as an in-flight byte count). It goes
        through the same outbox as published events, so every client sees ids in order."""
        event = Event(self.next_id(), type_, data)
        if not sub.outbox.closed:
            self._put(sub, event.sse())
        return event

    def _put(self, sub: Subscription, frame: bytes) -> None:
        if not sub.outbox.put(frame):
            sub.dropped = True
            self.unsubscribe(sub)
            sub.cut.cancel()
