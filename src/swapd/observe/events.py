"""The events bus behind ``GET /api/events``: typed, numbered events fanned out to subscribers.

Publishing never blocks and never awaits: each subscriber has a bounded buffer, and a subscriber
whose buffer is full (a client that does not read) is dropped with a log line — the server and
the other subscribers are unaffected. Event ids increase by one per event, across all types.
"""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

log = logging.getLogger("swapd.events")

DEFAULT_BUFFER = 1024  # events buffered per subscriber before it is dropped


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
    """One reader of the bus; iterate ``receive`` until it ends (closed or dropped)."""

    name: str
    logs: bool
    send: MemoryObjectSendStream[Event]
    receive: MemoryObjectReceiveStream[Event]
    dropped: bool = False
    cut: anyio.CancelScope = field(default_factory=anyio.CancelScope)  # cancelled on drop


@dataclass(slots=True)
class EventBus:
    buffer: int = DEFAULT_BUFFER
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _subs: list[Subscription] = field(default_factory=list)

    def next_id(self) -> int:
        return next(self._ids)

    def subscribe(self, name: str, *, logs: bool = False) -> Subscription:
        send, receive = anyio.create_memory_object_stream[Event](self.buffer)
        sub = Subscription(name, logs, send, receive)
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
        sub.send.close()

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, type_: str, data: Any) -> Event:
        event = Event(self.next_id(), type_, data)
        for sub in list(self._subs):
            if type_ == "log" and not sub.logs:
                continue
            try:
                sub.send.send_nowait(event)
            except anyio.WouldBlock:
                sub.dropped = True
                self.unsubscribe(sub)
                sub.cut.cancel()
                log.warning(
                    "events: dropped client %s: it did not read %d buffered events",
                    sub.name,
                    self.buffer,
                )
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self.unsubscribe(sub)
        return event
