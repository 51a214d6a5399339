"""A lease: one request's claim on a model, the only door from the proxy to the scheduler.

Created by ``Scheduler.lease(model)``, which admits the request at once (or raises: 404, 429,
503 before any byte is written). ``await lease.ready()`` waits for the model and returns the
engine's address; while waiting, ``position`` and ``progress()`` tell where the request stands.
``release()`` ends the claim (idempotent); ``async with scheduler.lease(m) as upstream`` does
both.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from swapd.errors import SwapdError
from swapd.upstream import Upstream

if TYPE_CHECKING:
    from swapd.scheduler import Scheduler
    from swapd.slot import Ticket


class Lease:
    __slots__ = ("_scheduler", "_ticket", "model")

    def __init__(self, scheduler: Scheduler, ticket: Ticket) -> None:
        self._scheduler = scheduler
        self._ticket = ticket
        self.model = ticket.model

    @property
    def position(self) -> int:
        """1-based place in the queue while waiting; 0 once granted or failed."""
        return self._ticket.position

    @property
    def done(self) -> bool:
        """Granted or failed: ``ready()`` returns (or raises) without waiting."""
        return self._ticket.done

    def state(self) -> str:
        return str(self._scheduler.state(self.model) or "stopped")

    def progress(self) -> dict[str, Any] | None:
        """The model's load progress (phase, elapsed, detail) while it starts."""
        return self._scheduler.progress(self.model)

    def granted(self) -> Upstream | None:
        """The engine's address when the model already serves this request (no wait); else
        None (``ready()`` waits, or raises why it never will)."""
        ticket = self._ticket
        return ticket.upstream if ticket.error is None else None

    async def ready(self) -> Upstream:
        """Wait until the model serves this request; raises the reason it never will."""
        return await self._scheduler.wait(self._ticket)

    async def settled(self) -> SwapdError | None:
        """Wait until granted or failed; the failure is returned, not raised."""
        await self._ticket.wait()
        return self._ticket.error

    async def renew(self, dead: Upstream) -> Upstream:
        """The engine behind ``dead`` refused the connection: wait (bounded) until the
        scheduler has seen it exit, queue again and wait for a fresh engine."""
        await self._scheduler.engine_gone(self.model, dead)
        self.release()
        self._ticket = self._scheduler.admit(self.model)
        return await self.ready()

    def release(self) -> None:
        self._scheduler.release(self._ticket)

    async def __aenter__(self) -> Upstream:
        try:
            return await self.ready()
        except BaseException:
            self.release()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
