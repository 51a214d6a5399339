"""Read-only views of model state, for everything outside the scheduler.

The proxy, the admin API, the CLI runner and the observers see models only through these: the
:class:`State` names, and a :class:`SlotView` handed to listeners on every change. Nothing here
imports the scheduler or the slot record, so observers stay leaves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from swapd.observe.logs import LogRing


class State(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    FAILED = "failed"
    SLEEPING = "sleeping"  # engine alive but asleep (its GPU memory is free); woken on demand


RUNNING = (State.STARTING, State.READY, State.STOPPING)
ALIVE = (*RUNNING, State.SLEEPING)  # an engine task exists (stopping it needs a cancel)
LOADED = RUNNING  # what /v1/models reports as "loaded"


@dataclass(frozen=True, slots=True)
class SlotView:
    """One model at one moment, as listeners see it."""

    id: str
    state: State
    log: LogRing
    info: Mapping[str, Any]  # the JSON-ready record of /running and the admin API
    swap_seconds: float | None = None  # set on the change to ready: spawn → ready


class ModelViews(Protocol):
    """What observers may read of the scheduler (it satisfies this), and where they listen."""

    listeners: list[Callable[[SlotView], None]]
    queue_listeners: list[Callable[[str, int], None]]

    def snapshot(self) -> list[dict[str, Any]]: ...

    def info(self, model_id: str) -> dict[str, Any] | None: ...

    def state(self, model_id: str) -> State | None: ...

    def rings(self) -> list[LogRing]: ...
