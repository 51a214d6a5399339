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
from typing import Protocol, runtime_checkable

from anyio.abc import TaskStatus

from swapd.assignment import Assignment
from swapd.config.model import Config, ModelConfig
from swapd.upstream import Upstream

__all__ = [
    "Driver",
    "DriverSpec",
    "EngineHooks",
    "LoadProgress",
    "LogSink",
    "Preflight",
    "Upstream",
]


class LogSink(Protocol):
    """Receives an engine's output lines (stdout and stderr, decoded, without newline)."""

    def write(self, line: str) -> None: ...


class EngineHooks(Protocol):
    """Optional engine-specific steps a driver runs inside its own task.

    ``preflight`` is part of the driver's pre-flight check (see :class:`Preflight`): it refuses
    a start bound to fail by raising a permanent ``StartFailed`` (e.g. a model file that does
    not exist) and has no side effects. ``after_ready`` runs once the
    engine is healthy and before it is reported ready (so before the first request is
    forwarded); ``before_stop`` runs, shielded, before a ready engine is stopped by swapd. These
    two must swallow their own failures: they never fail a swap.
    """

    async def preflight(self) -> None: ...

    async def after_ready(self, upstream: Upstream) -> None: ...

    async def before_stop(self, upstream: Upstream) -> None: ...


class Driver(Protocol):
    async def serve(self, *, task_status: TaskStatus[Upstream]) -> None: ...


@runtime_checkable
class Preflight(Protocol):
    """Optional capability: cheap checks for reasons a start would fail every time.

    ``preflight()`` raises ``StartFailed`` with ``permanent=True`` when the engine cannot start
    (empty command, no such program, a missing model file, its port held by another program)
    and changes nothing. The scheduler calls it before evicting anything for the start;
    ``serve`` runs it again first. Call it while none of this model's own engines runs (their
    port would count as taken).
    """

    async def preflight(self) -> None: ...


@runtime_checkable
class LoadProgress(Protocol):
    """Optional capability: how far a starting engine has got, from what it logged.

    ``load_progress()`` returns ``(phase, detail)`` — e.g. ``("loading", <latest log line>)`` —
    or None when the driver cannot tell for this engine.
    """

    def load_progress(self) -> tuple[str, str | None] | None: ...


class Assignable(Protocol):
    """Optional capability: run the engine where placement put it.

    ``assign(assignment)`` is called before ``serve`` with the node and devices chosen by
    ``swapd.placer``: the driver exports ``CUDA_VISIBLE_DEVICES``/``HIP_VISIBLE_DEVICES``,
    requests exactly those devices (docker) and fills ``${GPU}``-style macros
    (``swapd.assignment``). A driver without it runs the model wherever it always does.
    """

    def assign(self, assignment: Assignment) -> None: ...


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
