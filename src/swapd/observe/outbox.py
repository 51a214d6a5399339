"""Outbox: the bytes waiting to be sent to one streaming client, bounded by a byte budget.

A long-lived stream (``/logs/stream``, ``/api/events``) is fed by callbacks that must never
wait: an engine's output is read at its own pace and published to every watcher. What a client
has not read yet waits in its outbox. The outbox counts bytes, not items, so a client that
stops reading costs at most its budget however long the lines are; :meth:`Outbox.put` refuses
a chunk that does not fit and the caller drops the client. Chunks are kept as given (shared
``bytes`` objects, never copied per client), and each also counts :data:`CHUNK_OVERHEAD`
bytes, so a flood of tiny chunks is bounded too. :meth:`Outbox.close` lets go of everything
queued at once.
"""

from __future__ import annotations

from collections import deque

import anyio

DEFAULT_BUDGET = 1024 * 1024  # bytes buffered per streaming client before it is dropped
CHUNK_OVERHEAD = 64  # bytes counted per queued chunk on top of its length (object + slot)
SEND_SIZE = 64 * 1024  # most bytes joined into one write to the client


class Outbox:
    """A FIFO of byte chunks for one reader, at most ``budget`` bytes (with overhead)."""

    __slots__ = ("_chunks", "_ready", "budget", "closed", "size")

    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self.budget = budget
        self.size = 0  # bytes counted now, overhead included
        self.closed = False
        self._chunks: deque[bytes] = deque()
        self._ready = anyio.Event()

    def __len__(self) -> int:
        return len(self._chunks)

    def put(self, *chunks: bytes) -> bool:
        """Queue ``chunks`` (all or none); False when closed or when they would not fit."""
        if self.closed:
            return False
        cost = sum(len(c) for c in chunks) + CHUNK_OVERHEAD * len(chunks)
        if self.size + cost > self.budget:
            return False
        self._chunks.extend(chunks)
        self.size += cost
        self._ready.set()
        return True

    def get_nowait(self, limit: int = SEND_SIZE) -> bytes:
        """The queued bytes, joined up to ``limit`` (at least one chunk whatever its size).

        Raises ``anyio.WouldBlock`` when nothing is queued, ``anyio.EndOfStream`` once closed.
        """
        if self.closed:
            raise anyio.EndOfStream
        if not self._chunks:
            raise anyio.WouldBlock
        chunks = self._chunks
        first = chunks.popleft()
        taken, total = [first], len(first)
        while chunks and total + len(chunks[0]) <= limit:
            chunk = chunks.popleft()
            taken.append(chunk)
            total += len(chunk)
        self.size -= total + CHUNK_OVERHEAD * len(taken)
        return first if len(taken) == 1 else b"".join(taken)

    async def get(self, limit: int = SEND_SIZE) -> bytes:
        """Wait for queued bytes and take them, as :meth:`get_nowait` does (cancel-safe)."""
        while True:
            try:
                return self.get_nowait(limit)
            except anyio.WouldBlock:
                pass
            await self._ready.wait()
            self._ready = anyio.Event()

    def close(self) -> None:
        """Refuse further chunks, drop what is queued, and end a waiting :meth:`get`."""
        self.closed = True
        self._chunks.clear()
        self.size = 0
        self._ready.set()
