"""The driver seam: one coroutine per engine, shaped for structured concurrency.

A driver's ``serve`` starts the engine, calls ``task_status.started(upstream)`` once it is
healthy, then blocks until the engine exits. The scheduler stops an engine by cancelling the
scope ``serve`` runs in; the driver's cleanup (graceful stop, then force) runs shielded.
If the engine fails to start, ``serve`` raises ``StartFailed``; if it dies after being
ready, ``serve`` returns or raises and the scheduler marks the model stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from anyio.abc import TaskStatus

from swapd.config.model import ModelConfig


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where a ready engine accepts HTTP."""

    base_url: str  # no trailing slash, e.g. http://127.0.0.1:5800
    pid: int | None = None  # process id, when the driver knows one
    container: str | None = None  # container name, for container drivers


class LogSink(Protocol):
    """Receives an engine's output lines (stdout and stderr, decoded, without newline)."""

    def write(self, line: str) -> None: ...


class Driver(Protocol):
    async def serve(self, *, task_status: TaskStatus[Upstream]) -> None: ...


@dataclass(frozen=True, slots=True)
class DriverSpec:
    """What a driver package exports (as an entry point in the ``swapd.drivers`` group)."""

    name: str
    factory: Callable[[ModelConfig, LogSink], Driver]
    description: str = ""
