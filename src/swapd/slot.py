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
from typing import TYPE_CHECKING, Any

import anyio

from swapd.assignment import Assignment
from swapd.config.model import ModelConfig
from swapd.errors import SwapdError
from swapd.need import Demand
from swapd.observe.logs import LogRing
from swapd.upstream import Upstream
from swapd.views import ALIVE, State

if TYPE_CHECKING:
    from swapd.native import Gates


@dataclass(eq=False, slots=True)
class Slot:
    config: ModelConfig
    log: LogRing
    state: State = State.STOPPED
    upstream: Upstream | None = None
    error: str | None = None  # why the last start failed or the engine died
    granted: int = 0  # Python's requests handed an upstream and not yet released
    admitted: int = 0  # Python's admitted requests (queued or granted)
    generation: int = 0  # bumps on every start; events from older engines are ignored
    scope: anyio.CancelScope | None = None  # cancelling it stops the engine
    stopped: anyio.Event = field(default_factory=anyio.Event)
    released_at: float = 0.0  # when one of Python's requests last ended (or it became ready)
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
    # a native front's gate for this model (swapd.native.Gates; the scheduler's attach_gates)
    gates: Gates | None = None
    gate: int = -1

    def __post_init__(self) -> None:
        self.stopped.set()

    @property
    def front(self) -> tuple[int, float]:
        """A native front's requests in flight for this model, and when one last ended."""
        gates = self.gates
        return (0, 0.0) if gates is None else gates.read(self.gate)

    @property
    def inflight(self) -> int:
        """Requests handed an upstream and not yet ended, the front's included."""
        return self.granted if self.gates is None else self.granted + self.front[0]

    @property
    def reserved(self) -> int:
        """Admitted requests (queued or in flight), bounded by concurrencyLimit."""
        return self.admitted if self.gates is None else self.admitted + self.front[0]

    @property
    def last_use(self) -> float:
        """When the model last served (a request ended) or became ready."""
        return self.released_at if self.gates is None else max(self.released_at, self.front[1])

    def fits_one_more(self) -> bool:
        """Whether one more request fits under its concurrencyLimit (the front's counted)."""
        limit = self.config.concurrency_limit
        if self.gates is None:
            return self.admitted < limit
        return self.gates.admit(self.gate, limit, self.admitted)

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
