"""Bounded log rings: one per model plus one for swapd itself, with live subscribers.

A ring keeps the most recent lines up to a byte budget. Subscribers get new lines through a
bounded buffer; a subscriber that does not keep up loses lines (counted) rather than slowing
the engine whose output is being read.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

DEFAULT_RING_BYTES = 100 * 1024


@dataclass(slots=True)
class Subscriber:
    push: Callable[[str], bool]  # returns False when the line was dropped
    dropped: int = 0


@dataclass(slots=True)
class LogRing:
    """Recent lines of one source (a model's engine, or swapd)."""

    name: str
    capacity: int = DEFAULT_RING_BYTES
    echo: bool = False  # also write lines to swapd's stdout, prefixed with the name
    _lines: deque[str] = field(default_factory=deque)
    _size: int = 0
    _subscribers: list[Subscriber] = field(default_factory=list)

    def write(self, line: str) -> None:
        self._lines.append(line)
        self._size += len(line) + 1
        while self._size > self.capacity and len(self._lines) > 1:
            self._size -= len(self._lines.popleft()) + 1
        if self.echo:
            sys.stdout.write(f"[{self.name}] {line}\n")
            sys.stdout.flush()
        for sub in self._subscribers:
            if not sub.push(line):
                sub.dropped += 1

    def history(self) -> list[str]:
        return list(self._lines)

    def tail(self, n: int) -> list[str]:
        return list(self._lines)[-n:] if n > 0 else []

    def subscribe(self, push: Callable[[str], bool]) -> Subscriber:
        sub = Subscriber(push)
        self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)
