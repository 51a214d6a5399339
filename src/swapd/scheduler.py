"""The scheduler: the single owner of all model state, and its decision loop.

Every mutation happens in short synchronous sections on the event loop (never across an
``await``), so there are no locks and every call either completes or raises having changed
nothing. Requests are admitted (``admit``, 429 before any byte), queued, and granted by
``_drain``, which re-evaluates the queue after every event (engine ready, engine exited, request
released, config changed). Its decisions are carried out by ``swapd.lifecycle`` (start, stop,
sleep, wake, and what the engines report back), whose slow parts run as ``swapd.engines`` tasks
in the scheduler's task group.

Batching (A B A B → A A B B): while a model is ready, its requests are granted even though a
request for another model waits to evict it — until that waiting request has been starved for
``batch_window`` seconds *while the ready model served*, i.e. counted from the later of its
arrival and the ready model becoming ready. Then new grants are held back, the busy model drains
and the swap happens. A model never loses the swap it just won to requests that queued while it
was starting.

Priorities (``fifo.priority``): a queued request goes before the first queued request with a
strictly lower priority; equal priorities keep arrival order. Only the queue order changes: a
ready model's requests still take the fast path, and the batching window still applies.

Retiring (reload changed or removed a model, an unload): no new grants, the requests in flight
finish, then the engine stops; requests still queued start it again.

Memory-aware placement (``swapd.placer``, when active): what a start evicts is the group/matrix
evictions (the implicit ``(default)`` group relaxed: memory decides for ungrouped models) plus
what placement needs gone for the model to fit; a busy model among them is waited for
(``slot.blocked_by``), never evicted; a model that fits nowhere fails its queued requests with
``NoCapacity``. The chosen devices go to the driver (``assign``) before the engine starts.

Gates (``attach_gates``, for a native front that serves requests with no Python per request;
docs/dataplane.md, option C): a model's gate is open while a request for it would be granted
at once. Whatever would stop, sleep or evict a model first closes its gate and finds it empty
(``quiet``); the front's requests count as in flight, reserved and use for every rule above.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from swapd import engines, placement, policy, reload, slotinfo
from swapd.config.model import Config, ModelConfig
from swapd.demand import LearnedStore
from swapd.drivers import registry
from swapd.drivers.base import Driver, LogSink, Upstream
from swapd.errors import (
    Conflict,
    ModelUnloaded,
    NoCapacity,
    NotFound,
    ShuttingDown,
    SwapdError,
    TooManyRequests,
)
from swapd.inventory import Inventory
from swapd.lease import Lease
from swapd.lifecycle import Lifecycle
from swapd.observe.logs import LogRing
from swapd.placer import MEASURE_AFTER, Choice, Cost, Placer, held
from swapd.slot import Slot, Ticket
from swapd.views import ALIVE, RUNNING, SlotView, State

if TYPE_CHECKING:
    from swapd.native import Gates

log = logging.getLogger("swapd.scheduler")

_now = time.monotonic  # the asyncio clock, without anyio's backend lookup on the hot path
BATCH_WINDOW = 2.0  # seconds a swap may be held back while the loaded model serves its queue
TTL_TICK = 0.5
FIRST_READING_WAIT = 3.0  # seconds run() waits for the first inventory reading
RELOAD_SECONDS = 5.0  # assumed reload time of a model never started (eviction cost)

DriverFactory = Callable[[ModelConfig, LogSink], Driver]
Listener = Callable[[SlotView], None]
QueueListener = Callable[[str, int], None]  # model id, requests waiting for it


def _driver_from_registry(model: ModelConfig, sink: LogSink) -> Driver:
    return registry.load(model.driver).factory(model, sink)


class Scheduler:
    def __init__(
        self,
        config: Config,
        *,
        driver_factory: DriverFactory = _driver_from_registry,
        ring_bytes: int = 100 * 1024,
        echo_logs: bool = False,
        batch_window: float = BATCH_WINDOW,
        inventory: Inventory | None = None,
        learned: LearnedStore | None = None,
        cost: Cost | None = None,
    ) -> None:
        self.config = config
        self.batch_window = batch_window
        self._driver_factory = driver_factory
        self._ring_bytes = ring_bytes
        self._echo_logs = echo_logs
        self.slots: dict[str, Slot] = {}
        self.listeners: list[Listener] = []  # called on every state change of a model
        self.queue_listeners: list[QueueListener] = []  # called when a queue length changes
        self._queue: list[Ticket] = []  # in priority order, then arrival order
        self._announced: set[str] = set()  # models whose matrix swap was logged, not yet started
        self._seq = itertools.count()
        self._tg: TaskGroup | None = None
        self._closing = False
        self.gates: Gates | None = None  # a native front's (attach_gates)
        self._gates_given = 0
        self.lifecycle = Lifecycle(self)  # the hands: start, stop, sleep, wake; their outcomes
        self.placer = Placer(
            self.slots,
            lambda: self.config,
            cost or self._eviction_cost,
            inventory=inventory,
            learned=learned,
        )
        self._kicked: anyio.Event | None = None  # set: refresh the inventory reading now
        for model in config.models.values():
            self.slots[model.id] = self._new_slot(model)

    def _new_slot(self, model: ModelConfig) -> Slot:
        ring = LogRing(model.id, capacity=self._ring_bytes, echo=self._echo_logs)
        slot = Slot(config=model, log=ring)
        self._give_gate(slot)
        return slot

    # ── a native front's gates ──────────────────────────────────────────────────────────────

    def attach_gates(self, gates: Gates) -> None:
        """A native front serves ready models' requests with no Python per request, through
        ``gates`` (swapd.native): a model's gate is open while a request for it would be
        granted at once (ready, not retiring, not wanted gone by a queued request) and
        closed otherwise; before a model is stopped, put to sleep or evicted its gate is
        closed and found empty (:meth:`quiet`). The front's requests count as in flight
        (``Slot.inflight``, ``reserved``, ``last_use``) for every other rule. Models get a
        gate each while there are gates left; a model without one is never the front's."""
        self.gates = gates
        for slot in self.slots.values():
            self._give_gate(slot)
        self._sync_gates()

    def _give_gate(self, slot: Slot) -> None:
        gates = self.gates
        if gates is not None and slot.gates is None and self._gates_given < gates.size:
            slot.gates, slot.gate = gates, self._gates_given  # never reused: never refilled
            self._gates_given += 1

    def quiet(self, slot: Slot) -> bool:
        """Close ``slot``'s gate; True when no front request is in flight (none can start
        until the gate opens again, which :meth:`_sync_gates` does only for a model that
        may serve). Python's own requests are the caller's to check."""
        return slot.gates is None or slot.gates.close(slot.gate) == 0

    def front_emptied(self) -> None:
        """A front request's end left a closed gate empty: a stop or a swap may go on."""
        for slot in list(self.slots.values()):
            self.lifecycle.retire_if_idle(slot)
        self._drain()

    def _sync_gates(self) -> None:
        if self.gates is None:
            return
        wanted: set[str] = set()  # models a queued request waits to see gone
        for ticket in self._queue:
            if ticket.slot.state is not State.READY:
                wanted |= self._evictions(ticket.slot)
        for slot in self.slots.values():
            if slot.gates is None:
                continue
            if (
                slot.state is State.READY
                and not slot.retiring
                and not self._closing
                and slot.id not in wanted
            ):
                slot.gates.open(slot.gate, slot.config.concurrency_limit - slot.admitted)
            else:
                slot.gates.close(slot.gate)

    # ── lifetime ────────────────────────────────────────────────────────────────────────────

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the engines' task group until cancelled; engines are stopped on the way out."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._ttl_loop, name="scheduler:ttl")
                if self.placer.inventory is not None:
                    first = anyio.Event()
                    tg.start_soon(self._placement_loop, first, name="scheduler:placement")
                    with anyio.move_on_after(FIRST_READING_WAIT):
                        await first.wait()
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self.close()  # the task group already cancelled every engine task

    def close(self) -> None:
        """Refuse new requests, fail queued ones, and interrupt starts at once."""
        if self._closing:
            return
        self._closing = True
        self._sync_gates()
        self._fail_queued(lambda t: True, ShuttingDown("swapd is shutting down"))
        for slot in self.slots.values():
            if slot.state is State.STARTING:
                self.lifecycle.stop(slot)

    async def shutdown(self) -> None:
        """``close``, then stop every engine (requests in flight finish first) and wait."""
        self.close()
        await self.unload(None)

    def _spawn(self, fn: Callable[..., Any], *args: Any, name: str) -> None:
        if self._tg is None:
            raise RuntimeError("scheduler is not running")
        self._tg.start_soon(fn, *args, name=name)

    # ── requests ────────────────────────────────────────────────────────────────────────────

    def admit(self, model_id: str) -> Ticket:
        """Admit a request for ``model_id`` (a real id) or raise, having changed nothing."""
        if self._closing:
            raise ShuttingDown("swapd is shutting down")
        slot = self.slots.get(model_id)
        if slot is None or slot.removed:
            raise NotFound(f"model {model_id!r} not found")
        if not slot.fits_one_more():
            raise TooManyRequests(
                f"too many requests for model {model_id!r} "
                f"(concurrencyLimit {slot.config.concurrency_limit}, queued and in flight)"
            )
        now = _now()
        priority = self.config.priorities.get(model_id, 0)
        ticket = Ticket(
            model=model_id, slot=slot, seq=next(self._seq), created=now, priority=priority
        )
        slot.admitted += 1
        if slot.state is State.READY and not slot.retiring and not self._held_back(ticket, now):
            self._grant(ticket, slot)
        else:
            self._enqueue(ticket)
            self._queue_changed(slot)
            self._drain()
        return ticket

    async def wait(self, ticket: Ticket) -> Upstream:
        if ticket.upstream is None and ticket.error is None:
            await ticket.wait()
        if ticket.error is not None:
            raise ticket.error
        assert ticket.upstream is not None
        return ticket.upstream

    def release(self, ticket: Ticket) -> None:
        """End of the request (served, failed or abandoned); idempotent."""
        if ticket.released:
            return
        ticket.released = True
        queued = ticket in self._queue
        if queued:
            self._queue.remove(ticket)
        slot = ticket.slot
        slot.admitted -= 1
        if ticket.granted:
            slot.granted -= 1
            slot.released_at = _now()
        self._queue_changed(slot)
        self.lifecycle.retire_if_idle(slot)
        if ticket.granted or queued:
            self._drain()

    def lease(self, model_id: str) -> Lease:
        """Admit a request now (or raise); ``async with`` it to hold the model ready."""
        return Lease(self, self.admit(model_id))

    def start(self, model_id: str) -> Lease:
        """Start ``model_id`` in the background: a lease held until ready or failed.

        Await ``lease.settled()`` to learn the outcome; the lease is released then, so the
        model's TTL applies.
        """
        lease = self.lease(model_id)
        self._spawn(self._hold, lease, name=f"start:{model_id}")
        return lease

    async def _hold(self, lease: Lease) -> None:
        try:
            await lease.settled()
        finally:
            lease.release()

    def _enqueue(self, ticket: Ticket) -> None:
        """Queue before the first ticket of a strictly lower priority (FIFO among equals)."""
        queue = self._queue
        if not queue or queue[-1].priority >= ticket.priority:
            queue.append(ticket)  # the common case: no priorities configured
            return
        at = next(i for i, other in enumerate(queue) if other.priority < ticket.priority)
        queue.insert(at, ticket)

    def _grant(self, ticket: Ticket, slot: Slot) -> None:
        ticket.granted = True
        ticket.upstream = slot.upstream
        ticket.position = 0
        slot.granted += 1
        ticket.settle()

    def _fail(self, ticket: Ticket, error: SwapdError) -> None:
        if ticket in self._queue:
            self._queue.remove(ticket)
        ticket.error = error
        ticket.position = 0
        ticket.settle()

    def _fail_queued(self, which: Callable[[Ticket], bool], error: SwapdError) -> None:
        for ticket in [t for t in self._queue if which(t)]:
            self._fail(ticket, error)

    # ── the decision loop ───────────────────────────────────────────────────────────────────

    def _placing(self) -> bool:
        return self.placer.active(self.config)

    def _evictions(self, slot: Slot) -> frozenset[str]:
        """What must go before ``slot`` starts: group/matrix evictions, and under placement
        what it needs gone to fit (see ``_plan``)."""
        return self._plan(slot)[0]

    def _plan(self, slot: Slot) -> tuple[frozenset[str], Choice | None]:
        """The evictions for starting ``slot``, and placement's choice (None when placement
        is inactive, or has no inventory reading yet)."""
        running = [s.id for s in self.slots.values() if s.state in RUNNING]
        models = {s.id: s.config for s in self.slots.values()}
        placing = self._placing()
        evict = policy.evictions(slot.id, running, models, self.config, memory_aware=placing)
        if not placing or self.placer.reading is None:
            return evict, None
        choice = self.placer.decide(slot, _now())
        return evict | choice.decision.evict, choice

    def _eviction_cost(self, slot: Slot, now: float) -> float:
        return placement.eviction_cost(
            idle_seconds=max(0.0, now - slot.last_use),
            reload_seconds=slot.reload_seconds
            if slot.reload_seconds is not None
            else RELOAD_SECONDS,
            priority=self.config.priorities.get(slot.id, 0),
            held_bytes=sum(held(slot).values()),
        )

    def _announce_swap(self, slot: Slot, *, starting: bool) -> None:
        """Log the matrix decision once per swap: when its evictions begin, or at the start
        when there is nothing to evict."""
        matrix = self.config.matrix
        if self.config.router != "matrix" or matrix is None:
            return
        if slot.id in self._announced:
            if starting:
                self._announced.discard(slot.id)  # the next swap logs again
            return
        if not starting:
            self._announced.add(slot.id)
        running = [s.id for s in self.slots.values() if s.state in RUNNING]
        if not running:
            log.info("matrix: model=%s starting (no models running)", slot.id)
            return
        choice = policy.matrix_choice(slot.id, running, matrix)
        log.log(
            logging.INFO if choice.evict else logging.DEBUG,
            "matrix: model=%s set=%s evict=[%s] cost=%d",
            slot.id,
            choice.set_name or "(none: runs alone)",
            ", ".join(sorted(choice.evict)),
            choice.cost,
        )

    def _held_back(self, ticket: Ticket, now: float) -> bool:
        """Whether a request queued ahead of this one (older, or of a higher priority), starved
        while this ready model served, needs it gone."""
        ready_at = ticket.slot.ready_at or now
        for other in self._queue:
            if other is ticket or other.priority < ticket.priority:
                break
            if (
                other.model == ticket.model
                or now - max(other.created, ready_at) < self.batch_window
            ):
                continue
            if other.slot.state is State.READY:
                continue
            if ticket.model in self._evictions(other.slot):
                return True
        return False

    def _starting_allowed(self) -> bool:
        """False once closing, or once the task group is torn down (cancelled from outside):
        an engine spawned then would be cancelled at once, exit, and be started again."""
        return not self._closing and not (
            self._tg is not None and self._tg.cancel_scope.cancel_called
        )

    def _drain(self) -> None:
        now = _now()
        starting_allowed = self._starting_allowed()
        for ticket in list(self._queue):
            if ticket.done:
                continue  # failed by an earlier step of this pass
            slot = ticket.slot
            if self.slots.get(ticket.model) is not slot:
                self._fail(ticket, NotFound(f"model {ticket.model!r} not found"))
            elif slot.state is State.READY and not slot.retiring:
                if not self._held_back(ticket, now):
                    self._queue.remove(ticket)
                    self._grant(ticket, slot)
                    self._queue_changed(slot)
            elif slot.state in (State.STOPPED, State.FAILED, State.SLEEPING) and starting_allowed:
                self._try_start(slot)
        for position, ticket in enumerate(self._queue, start=1):
            ticket.position = position
        self._sync_gates()

    def _try_start(self, slot: Slot) -> None:
        if slot.preparing or slot.backing_off:
            return
        if slot.state is not State.SLEEPING and slot.prepared is None:
            try:
                driver = self._driver_factory(slot.config, slot.log)
            except SwapdError as exc:
                self.lifecycle.start_failed(slot, exc.message, permanent=True)
                return
            if callable(getattr(driver, "preflight", None)):
                self.lifecycle.prepare(slot, driver)  # evict nothing before the checks pass
                return
            slot.prepared = driver
        if self._placing() and self.placer.reading is None:
            return  # placement has no inventory reading yet: the first one drains again
        names, choice = self._plan(slot)
        if choice is not None and not choice.decision.placed:
            self._no_capacity(slot, f"not enough memory for {slot.id}: {choice.decision.reason}")
            return
        evict = [self.slots[name] for name in sorted(names)]
        slot.blocked_by = tuple(
            e.id for e in evict if e.state is State.STARTING or e.granted or not self.quiet(e)
        )
        if slot.blocked_by:
            if choice is not None:
                slot.demand = choice.demand  # shown with what it waits for
            return  # never evict a busy model, nor collide with another start
        if any(e.state is State.READY for e in evict):
            self._announce_swap(slot, starting=False)
        for e in evict:
            if e.state is State.READY:
                log.info("evicting %s to start %s", e.id, slot.id)
                self.lifecycle.evict(e)
            elif e.state is State.SLEEPING:  # asleep, it still holds some memory: stop it
                log.info("stopping sleeping %s to start %s", e.id, slot.id)
                self.lifecycle.stop(e)
        if any(e.state is State.STOPPING for e in evict):
            return  # start once the evicted engines are gone
        self._announce_swap(slot, starting=True)
        if slot.state is State.SLEEPING:
            self.lifecycle.wake(slot)
            return
        if choice is not None:
            self._assign(slot, choice)
        self.lifecycle.start(slot)

    def _assign(self, slot: Slot, choice: Choice) -> None:
        """Reserve the devices placement chose and tell the driver, before it starts."""
        assignment = self.placer.assignment(choice)
        slot.demand, slot.assignment, slot.measured = choice.demand, assignment, 0
        assign = getattr(slot.prepared, "assign", None)
        if callable(assign):
            assign(assignment)

    def _no_capacity(self, slot: Slot, reason: str) -> None:
        """Nothing fits, even with every evictable model gone: the queued requests fail (new
        ones decide again)."""
        slot.blocked_by = ()
        if slot.error != reason:
            log.warning("%s", reason)
            slot.log.write(f"[swapd] {reason}")
        slot.error = reason
        self._fail_queued(lambda t: t.slot is slot, NoCapacity(slot.id, reason))

    def _queue_changed(self, slot: Slot) -> None:
        if slot.blocked_by and slot.reserved == slot.inflight:
            slot.blocked_by = ()  # nothing waits for a start any more
        if self.queue_listeners:
            waiting = slot.reserved - slot.inflight
            for listener in self.queue_listeners:
                listener(slot.id, waiting)

    def _set_state(self, slot: Slot, state: State, swap_seconds: float | None = None) -> None:
        slot.state = state
        slot.changed_at = anyio.current_time()
        self._sync_gates()
        if slot.assignment is not None and state is not State.STOPPING:
            self._placement_changed(slot, state)
        if self.listeners:
            labels = self.placer.labels()
            view = slotinfo.view(slot, _now(), swap_seconds=swap_seconds, labels=labels)
            for listener in self.listeners:
                listener(view)

    async def engine_gone(self, model_id: str, upstream: Upstream, limit: float = 2.0) -> None:
        """Wait (bounded) until the scheduler has seen ``upstream``'s engine exit.

        Called when a granted engine refused a connection: it most likely died just before the
        request, and its exit is about to be processed. Afterwards a new admission starts a
        fresh engine instead of being handed the dead one again.
        """
        slot = self.slots.get(model_id)
        if slot is None or slot.upstream is not upstream:
            return
        gone = anyio.Event()

        def watch(view: SlotView) -> None:
            if slot.upstream is not upstream:
                gone.set()

        self.listeners.append(watch)
        try:
            with anyio.move_on_after(limit):
                await gone.wait()
        finally:
            self.listeners.remove(watch)

    async def sleep(self, model_id: str) -> None:
        """Put a ready, idle model to sleep now (admin API); waits until it sleeps."""
        slot = self.slots.get(model_id)
        if slot is None:
            raise NotFound(f"model {model_id!r} not found")
        if slot.config.sleep_level is None:
            raise Conflict(f"model {model_id} does not support sleep (no sleep: in its config)")
        if slot.state is State.SLEEPING:
            return
        if slot.state is not State.READY or not engines.can_sleep(slot):
            raise Conflict(f"model {model_id} is {slot.state}, not ready to sleep")
        if slot.admitted or not self.quiet(slot):
            self._sync_gates()
            raise Conflict(f"model {model_id} is serving requests")
        settled = anyio.Event()

        def watch(view: SlotView) -> None:
            if view.id == model_id and not slot.going_to_sleep:
                settled.set()

        self.listeners.append(watch)
        try:
            self.lifecycle.evict(slot)
            await settled.wait()
        finally:
            self.listeners.remove(watch)
        if slot.state is not State.SLEEPING:  # type: ignore[comparison-overlap]  # on_slept
            raise Conflict(f"model {model_id} could not sleep and was stopped: {slot.error}")

    async def unload(self, model_ids: Iterable[str] | None = None) -> list[str]:
        """Stop the given models (all when None) once their requests in flight are done.

        Waits until they are stopped. Requests still queued for them are not failed: they start
        the model again after the unload (an unload frees memory now; it doesn't cancel demand).
        """
        ids = list(self.slots) if model_ids is None else list(model_ids)
        slots = [self.slots[i] for i in ids if i in self.slots]
        stopping = [s for s in slots if s.state in ALIVE]
        events = [s.stopped for s in stopping]
        for slot in stopping:
            slot.unloading = True
            self.lifecycle.retire_if_idle(slot)
        self._sync_gates()
        for event in events:
            await event.wait()
        return [s.id for s in stopping]

    # ── placement ───────────────────────────────────────────────────────────────────────────

    def _placement_changed(self, slot: Slot, state: State) -> None:
        """A placed model started, became ready, slept or exited: read the inventory again
        soon; measure a ready engine's use a few times."""
        if self._kicked is not None:
            self._kicked.set()
        if state is State.READY and self._tg is not None:
            self._spawn(self._measure_ready, slot, slot.generation, name=f"measure:{slot.id}")

    async def _placement_loop(self, first: anyio.Event) -> None:
        """Refresh the inventory reading every ``placement.refresh`` seconds, or when kicked;
        measure the ready engines; re-evaluate the queue with the new facts."""
        while True:
            self._kicked = anyio.Event()
            await self.placer.refresh()
            first.set()
            self._drain()
            for slot in [s for s in self.slots.values() if s.state is State.READY]:
                await self.placer.measure(slot)
            with anyio.move_on_after(self.config.placement.refresh):
                await self._kicked.wait()

    async def _measure_ready(self, slot: Slot, generation: int) -> None:
        waited = 0.0
        for at in MEASURE_AFTER:
            await anyio.sleep(at - waited)
            waited = at
            if slot.generation != generation or slot.state is not State.READY:
                return
            await self.placer.measure(slot)

    def placement_view(self) -> dict[str, Any]:
        """Devices, their memory and the models on them, for ``/api/hardware``."""
        return self.placer.view()

    async def _ttl_loop(self) -> None:
        while True:
            await anyio.sleep(TTL_TICK)
            now = _now()
            for slot in list(self.slots.values()):
                ttl = slot.ttl
                if (
                    slot.state is State.READY
                    and ttl > 0
                    and slot.reserved == 0
                    and now - slot.last_use >= ttl
                    and self.quiet(slot)
                ):
                    slot.log.write(f"[swapd] unloading {slot.id}: idle for {ttl:g}s (ttl)")
                    log.info("unloading %s, TTL of %gs reached", slot.id, ttl)
                    self.lifecycle.evict(slot)
            self._sync_gates()  # reopen what a look that found a front request closed

    def keep_alive(self, model_id: str, seconds: float | None) -> None:
        """Set ``model_id``'s idle TTL for its running load (0: never unload; None: the
        config's again), as Ollama's ``keep_alive`` does; its next start forgets it."""
        slot = self.slots.get(model_id)
        if slot is not None:
            slot.keep_alive = None if seconds is None else (slot.generation, seconds)

    # ── reload ──────────────────────────────────────────────────────────────────────────────

    def update(self, config: Config) -> dict[str, list[str]]:
        """Adopt a new config (see ``swapd.reload``): unchanged engines keep running; changed
        and removed ones finish their requests in flight first."""
        current = {i: reload.Current(s.config, s.state in ALIVE) for i, s in self.slots.items()}
        steps = reload.plan(current, config)
        self.config = config
        for step in steps:
            slot = self.slots.get(step.model)
            if step.action is reload.Action.ADD:
                assert step.config is not None
                self.slots[step.model] = self._new_slot(step.config)
                continue
            assert slot is not None
            slot.prepared = None  # checked against the old config
            if step.action in (reload.Action.REMOVE, reload.Action.DROP):
                slot.removed, slot.next_config = True, None
                self._fail_queued(
                    lambda t, s=slot: t.slot is s,  # type: ignore[misc]
                    ModelUnloaded(step.model, f"model {step.model!r} was removed from the config"),
                )
                if step.action is reload.Action.DROP:
                    del self.slots[step.model]
            else:
                assert step.config is not None
                slot.removed = False
                if step.action is reload.Action.RESTART:
                    slot.next_config = step.config
                else:
                    slot.config, slot.next_config = step.config, None
            self.lifecycle.retire_if_idle(slot)
        self._drain()
        return reload.report(steps)

    # ── views ───────────────────────────────────────────────────────────────────────────────

    def snapshot(self) -> list[dict[str, Any]]:
        now, labels = _now(), self.placer.labels()
        return [slotinfo.info(self.slots[k], now, labels) for k in sorted(self.slots)]

    def info(self, model_id: str) -> dict[str, Any] | None:
        slot = self.slots.get(model_id)
        return slotinfo.info(slot, _now(), self.placer.labels()) if slot else None

    def state(self, model_id: str) -> State | None:
        slot = self.slots.get(model_id)
        return slot.state if slot else None

    def upstream(self, model_id: str) -> Upstream | None:
        """Where a ready model serves now, for connections that bypass leases
        (``compat.ignoreWebsockets``); None unless it is ready."""
        slot = self.slots.get(model_id)
        return slot.upstream if slot is not None and slot.state is State.READY else None

    def progress(self, model_id: str) -> dict[str, Any] | None:
        slot = self.slots.get(model_id)
        return slotinfo.progress(slot, anyio.current_time()) if slot else None

    def ring(self, model_id: str) -> LogRing | None:
        slot = self.slots.get(model_id)
        return slot.log if slot else None

    def rings(self) -> list[LogRing]:
        return [s.log for s in self.slots.values()]
