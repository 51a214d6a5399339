"""The driver seam: one coroutine per engine, shaped for structured concurrency.

A driver's ``serve`` starts the engine, calls ``task_status.started(upstream)`` once it is
healthy, then blocks until the engine exits. The scheduler stops an engine by cancelling the
scope ``serve`` runs in; the driver's cleanup (graceful stop, then force) runs shielded.
If the engine fails to start, ``serve`` raises ``StartFailed``; if it dies after being
ready, ``serve`` returns or raises and the scheduler marks the model stopped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from anyio.abc import TaskStatus

from swapd.config.model import Config, ModelConfig
from swapd.upstream import Upstream

__all__ = ["Driver", "DriverSpec", "EngineHooks", "LogSink", "Upstream"]


class LogSink(Protocol):
    """Receives an engine's output lines (stdout and stderr, decoded, without newline)."""

    def write(self, line: str) -> None: ...


class EngineHooks(Protocol):
    """Optional engine-specific steps a driver runs inside its own task.

    ``before_start`` runs before anything is spawned and may refuse the start by raising
    ``StartFailed`` (e.g. a model file that does not exist). ``after_ready`` runs once the
    engine is healthy and before it is reported ready (so before the first request is
    forwarded); ``before_stop`` runs, shielded, before a ready engine is stopped by swapd. These
    two must swallow their own failures: they never fail a swap.
    """

    async def before_start(self) -> None: ...

    async def after_ready(self, upstream: Upstream) -> None: ...

    async def before_stop(self, upstream: Upstream) -> None: ...


class Driver(Protocol):
    async def serve(self, *, task_status: TaskStatus[Upstream]) -> None: ...


@dataclass(frozen=True, slots=True)
class DriverSpec:
    """What a driver package exports (as an entry point in the ``swapd.drivers`` group)."""

    name: str
    factory: Callable[[ModelConfig, LogSink], Driver]
    description: str = ""
    # Optional lifecycle steps around all engines of this driver: ``reconcile`` runs once at
    # startup (clean up or adopt what an earlier swapd left; returns the model ids to start so
    # that their surviving engines are adopted), ``cleanup`` after every engine has stopped.
    reconcile: Callable[[Config], Awaitable[list[str]]] | None = None
    cleanup: Callable[[Config], Awaitable[None]] | None = None
