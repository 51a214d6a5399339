"""One model's lifecycle record, owned and mutated only by the scheduler.

stopped → starting → ready → stopping → stopped
             └──────→ failed (start error; queued requests retry it, or fail when it will repeat)
ready → stopping (going to sleep) → sleeping → starting (waking) → ready, for a model with
``sleep:`` whose driver can sleep; a failed sleep stops the engine, a failed wake restarts it.

A slot that must go (reload changed or removed it, an unload) is *retiring*: it takes no new
grants, finishes the requests it serves, then stops; requests still queued start it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio

from swapd.assignment import Assignment
from swapd.config.model import ModelConfig
from swapd.errors import SwapdError
from swapd.need import Demand
from swapd.observe.logs import LogRing
from swapd.upstream import Upstream
from swapd.views import ALIVE, State


@dataclass(eq=False, slots=True)
class Slot:
    config: ModelConfig
    log: LogRing
    state: State = State.STOPPED
    upstream: Upstream | None = None
    error: str | None = None  # why the last start failed or the engine died
    inflight: int = 0  # requests handed an upstream and not yet released
    reserved: int = 0  # admitted requests (queued or in flight), bounded by concurrencyLimit
    generation: int = 0  # bumps on every start; events from older engines are ignored
    scope: anyio.CancelScope | None = None  # cancelling it stops the engine
    stopped: anyio.Event = field(default_factory=anyio.Event)
    last_use: float = 0.0
    started_at: float | None = None  # when the current engine was spawned
    ready_at: float | None = None
    next_config: ModelConfig | None = None  # config to apply once the engine has stopped
    removed: bool = False  # dropped by a reload; deleted once stopped
    unloading: bool = False  # an unload waits for the requests in flight, then stops it
    swaps: int = 0
    driver: Any = None  # the current engine's driver (optional sleep/wake/load_progress)
    prepared: Any = None  # a driver whose pre-flight check passed, for the next start
    preparing: bool = False  # a pre-flight check is running
    failures: int = 0  # start failures in a row
    backing_off: bool = False  # a failed start waits before the next attempt
    going_to_sleep: bool = False  # STOPPING because of a sleep, not a stop
    changed_at: float = 0.0  # when the state last changed (scheduler clock)
    # memory-aware placement (swapd.placer): where it runs and what it holds there
    assignment: Assignment | None = None  # set at start, kept while asleep, cleared at exit
    demand: Demand | None = None  # the need it was placed with
    measured: int = 0  # peak bytes per device measured since it became ready
    reload_seconds: float | None = None  # how long its last start took (eviction cost)
    oom_retried: bool = False  # an out-of-memory start was retried once already
    crowded: str | None = None  # a Ray node that had no capacity: the one retry needs all of it
    blocked_by: tuple[str, ...] = ()  # busy models a queued start waits for
    # Ollama's keep_alive: (generation, idle seconds; 0 = never) for that load only
    keep_alive: tuple[int, float] | None = None

    def __post_init__(self) -> None:
        self.stopped.set()

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def ttl(self) -> float:
        """Idle seconds before unload (0 = never): a keep_alive set for the running load,
        else the config's. A new start (a new generation) forgets the keep_alive."""
        held = self.keep_alive
        if held is not None and held[0] == self.generation and self.state in ALIVE:
            return held[1]
        return self.config.ttl

    @property
    def retiring(self) -> bool:
        """No new grants: the engine stops once the requests in flight are done."""
        return self.removed or self.unloading or self.next_config is not None


@dataclass(eq=False, slots=True)
class Ticket:
    """One admitted request's claim on a model: granted an upstream, or failed with an error."""

    model: str
    slot: Slot = field(repr=False)  # the slot it was admitted to (a reload may replace it)
    seq: int
    created: float
    upstream: Upstream | None = None
    error: SwapdError | None = None
    granted: bool = False
    released: bool = False
    position: int = 0  # 1-based place in the queue while waiting, 0 otherwise
    priority: int = 0  # `fifo.priority` of its model at admission; queued ahead of lower ones
    done: bool = False  # granted or failed
    # made by the first waiter only: most tickets are granted at admission, never waited on
    _event: anyio.Event | None = field(default=None, repr=False)

    def settle(self) -> None:
        """Granted or failed: whoever waits wakes."""
        self.done = True
        if self._event is not None:
            self._event.set()

    async def wait(self) -> None:
        """Until granted or failed."""
        if not self.done:
            if self._event is None:
                self._event = anyio.Event()
            await self._event.wait()
