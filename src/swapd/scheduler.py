"""The scheduler: the single owner of all model state.

Every mutation happens in short synchronous sections on the event loop (never across an
``await``), so there are no locks: requests are admitted (``admit``), queued, and granted by
``_drain``, which re-evaluates the queue after every event (engine ready, engine exited, request
released, config changed). Slow work — starting and stopping engines — runs in engine tasks inside
the scheduler's own task group; they report back through ``_on_ready`` / ``_on_exit``.

Batching: requests for a model that is ready are granted even while a request for another model
waits to evict it (A B A B → A A B B), but only for ``BATCH_WINDOW`` seconds; after that the
waiting request holds new grants back so that the busy model drains and the swap happens.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from swapd import policy
from swapd.config.model import Config, ModelConfig
from swapd.drivers import registry
from swapd.drivers.base import Driver, LogSink, Upstream
from swapd.errors import (
    Conflict,
    ModelUnloaded,
    NotFound,
    ShuttingDown,
    StartFailed,
    SwapdError,
    TooManyRequests,
)
from swapd.observe.logs import LogRing
from swapd.slot import ALIVE, RUNNING, Slot, State, Ticket

log = logging.getLogger("swapd.scheduler")

_now = time.monotonic  # the asyncio clock, without anyio's backend lookup on the hot path
BATCH_WINDOW = 2.0  # seconds a swap may be held back while the loaded model serves its queue
TTL_TICK = 0.5

DriverFactory = Callable[[ModelConfig, LogSink], Driver]
Listener = Callable[[Slot], None]


def _driver_from_registry(model: ModelConfig, sink: LogSink) -> Driver:
    return registry.load(model.driver).factory(model, sink)


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, SwapdError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


class Scheduler:
    def __init__(
        self,
        config: Config,
        *,
        driver_factory: DriverFactory = _driver_from_registry,
        ring_bytes: int = 100 * 1024,
        echo_logs: bool = False,
    ) -> None:
        self.config = config
        self._driver_factory = driver_factory
        self._ring_bytes = ring_bytes
        self._echo_logs = echo_logs
        self.slots: dict[str, Slot] = {}
        self.listeners: list[Listener] = []  # called on every state change of a slot
        self.queue_listeners: list[Listener] = []  # called when a slot's admitted count changes
        self._queue: list[Ticket] = []
        self._seq = itertools.count()
        self._tg: TaskGroup | None = None
        self._closing = False
        for model in config.models.values():
            self.slots[model.id] = self._new_slot(model)

    def _new_slot(self, model: ModelConfig) -> Slot:
        ring = LogRing(model.id, capacity=self._ring_bytes, echo=self._echo_logs)
        return Slot(config=model, log=ring)

    # ── lifetime ────────────────────────────────────────────────────────────────────────────

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the engines' task group until cancelled; engines are stopped on the way out."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._ttl_loop, name="scheduler:ttl")
                task_status.started()
                await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop_all_now()

    async def _stop_all_now(self) -> None:
        """Called on cancellation: the task group already cancelled every engine task."""
        self._closing = True
        self._fail_queued(lambda t: True, ShuttingDown("swapd is shutting down"))

    async def shutdown(self) -> None:
        """Refuse new requests, fail queued ones, stop every engine and wait for it."""
        self._closing = True
        self._fail_queued(lambda t: True, ShuttingDown("swapd is shutting down"))
        await self.unload(None)

    def _spawn(self, fn: Callable[..., Any], *args: Any, name: str) -> None:
        if self._tg is None:
            raise RuntimeError("scheduler is not running")
        self._tg.start_soon(fn, *args, name=name)

    # ── requests ────────────────────────────────────────────────────────────────────────────

    def admit(self, model_id: str) -> Ticket:
        """Admit a request for ``model_id`` (a real id) or raise before any byte is written."""
        if self._closing:
            raise ShuttingDown("swapd is shutting down")
        slot = self.slots.get(model_id)
        if slot is None or slot.removed:
            raise NotFound(f"model {model_id!r} not found")
        if slot.reserved >= slot.config.concurrency_limit:
            raise TooManyRequests(
                f"too many requests for model {model_id!r} "
                f"(concurrencyLimit {slot.config.concurrency_limit})"
            )
        slot.reserved += 1
        self._queue_changed(slot)
        now = _now()
        ticket = Ticket(model=model_id, seq=next(self._seq), created=now)
        if slot.state is State.READY and not self._held_back(ticket, now):
            self._grant(ticket, slot)
        else:
            self._queue.append(ticket)
            self._drain()
        return ticket

    async def wait(self, ticket: Ticket) -> Upstream:
        if ticket.upstream is None and ticket.error is None:
            await ticket.event.wait()
        if ticket.error is not None:
            raise ticket.error
        assert ticket.upstream is not None
        return ticket.upstream

    def release(self, ticket: Ticket) -> None:
        """End of the request (served, failed or abandoned); idempotent."""
        if ticket.released:
            return
        ticket.released = True
        if ticket in self._queue:
            self._queue.remove(ticket)
        slot = self.slots.get(ticket.model)
        if slot is not None:
            slot.reserved -= 1
            if ticket.granted:
                slot.inflight -= 1
                slot.last_use = _now()
            self._queue_changed(slot)
        self._drain()

    @asynccontextmanager
    async def lease(self, model_id: str) -> AsyncIterator[Upstream]:
        """Hold ``model_id`` ready for the duration of the block."""
        ticket = self.admit(model_id)
        try:
            yield await self.wait(ticket)
        finally:
            self.release(ticket)

    def start(self, model_id: str) -> Ticket:
        """Start ``model_id`` in the background (a lease held until ready or failed).

        The returned ticket's event is set once the model is ready (``ticket.error`` is None)
        or the start failed. The lease is released then, so the model's TTL applies.
        """
        ticket = self.admit(model_id)
        self._spawn(self._hold, ticket, name=f"start:{model_id}")
        return ticket

    async def _hold(self, ticket: Ticket) -> None:
        try:
            await ticket.event.wait()
        finally:
            self.release(ticket)

    def _grant(self, ticket: Ticket, slot: Slot) -> None:
        ticket.granted = True
        ticket.upstream = slot.upstream
        ticket.position = 0
        slot.inflight += 1
        ticket.event.set()
        self._queue_changed(slot)

    def _fail(self, ticket: Ticket, error: SwapdError) -> None:
        if ticket in self._queue:
            self._queue.remove(ticket)
        ticket.error = error
        ticket.position = 0
        ticket.event.set()

    def _fail_queued(self, which: Callable[[Ticket], bool], error: SwapdError) -> None:
        for ticket in [t for t in self._queue if which(t)]:
            self._fail(ticket, error)

    # ── the decision loop ───────────────────────────────────────────────────────────────────

    def _running(self) -> list[str]:
        return [s.id for s in self.slots.values() if s.state in RUNNING]

    def _evictions(self, model_id: str) -> frozenset[str]:
        models = {s.id: s.config for s in self.slots.values()}
        return policy.evictions(model_id, self._running(), models, self.config.groups)

    def _held_back(self, ticket: Ticket, now: float) -> bool:
        """Whether an older request, starved past BATCH_WINDOW, needs this model evicted."""
        for other in self._queue:
            if other.seq >= ticket.seq:
                break
            if other.model == ticket.model or now - other.created < BATCH_WINDOW:
                continue
            if self.slots[other.model].state is State.READY:
                continue
            if ticket.model in self._evictions(other.model):
                return True
        return False

    def _drain(self) -> None:
        now = _now()
        for ticket in list(self._queue):
            slot = self.slots[ticket.model]
            if slot.state is State.READY:
                if not self._held_back(ticket, now):
                    self._queue.remove(ticket)
                    self._grant(ticket, slot)
            elif slot.state in (State.STOPPED, State.FAILED, State.SLEEPING) and not self._closing:
                self._try_start(slot)
        for position, ticket in enumerate(self._queue, start=1):
            ticket.position = position

    def _try_start(self, slot: Slot) -> None:
        evict = [self.slots[name] for name in self._evictions(slot.id)]
        if any(e.state is State.STARTING or e.inflight > 0 for e in evict):
            return  # never evict a busy model, nor collide with another start
        for e in evict:
            if e.state is State.READY:
                log.info("evicting %s to start %s", e.id, slot.id)
                self._evict(e)
        if any(e.state is State.STOPPING for e in evict):
            return  # start once the evicted engines are gone
        if slot.state is State.SLEEPING:
            self._wake(slot)
        else:
            self._start(slot)

    # ── engines ─────────────────────────────────────────────────────────────────────────────

    def _queue_changed(self, slot: Slot) -> None:
        for listener in self.queue_listeners:
            listener(slot)

    def _set_state(self, slot: Slot, state: State) -> None:
        slot.state = state
        slot.changed_at = anyio.current_time()
        for listener in self.listeners:
            listener(slot)

    def _start(self, slot: Slot) -> None:
        slot.generation += 1
        slot.error = None
        slot.stopped = anyio.Event()
        slot.started_at = _now()
        slot.scope = anyio.CancelScope()
        slot.swaps += 1
        self._set_state(slot, State.STARTING)
        slot.log.write(f"[swapd] starting {slot.id}: {' '.join(slot.config.cmd)}")
        driver = slot.driver = self._driver_factory(slot.config, slot.log)
        self._spawn(
            self._engine, slot, slot.generation, driver, slot.scope, name=f"engine:{slot.id}"
        )

    async def _engine(
        self, slot: Slot, generation: int, driver: Driver, scope: anyio.CancelScope
    ) -> None:
        error: str | None = None
        try:
            with scope:
                async with anyio.create_task_group() as tg:
                    upstream: Upstream = await tg.start(driver.serve)
                    self._on_ready(slot, generation, upstream)
                if not scope.cancel_called:
                    error = "engine exited unexpectedly"
        except Exception as exc:  # a driver's failure, reported to the waiting clients
            error = _describe(exc)
        finally:
            self._on_exit(slot, generation, error)

    def _on_ready(self, slot: Slot, generation: int, upstream: Upstream) -> None:
        if generation != slot.generation or slot.state is not State.STARTING:
            return
        now = _now()
        slot.upstream = upstream
        slot.ready_at = slot.last_use = now
        took = now - (slot.started_at or now)
        slot.log.write(f"[swapd] {slot.id} ready in {took:.3f}s at {upstream.base_url}")
        log.info("%s ready in %.3fs", slot.id, took)
        self._set_state(slot, State.READY)
        self._drain()

    def _on_exit(self, slot: Slot, generation: int, error: str | None) -> None:
        if generation != slot.generation:
            return
        previous = slot.state
        slot.upstream = None
        slot.scope = None
        slot.ready_at = None
        slot.driver = None
        slot.going_to_sleep = False
        if previous is State.STARTING and error is not None:
            slot.error = error
            log.warning("%s failed to start: %s", slot.id, error.splitlines()[0])
            self._set_state(slot, State.FAILED)
            self._fail_queued(lambda t: t.model == slot.id, StartFailed(slot.id, error))
        elif previous is State.READY:
            slot.error = error
            log.warning("%s: %s", slot.id, error or "engine stopped")
            slot.log.write(f"[swapd] {slot.id}: {error or 'engine stopped'}")
            self._set_state(slot, State.STOPPED)
        else:
            self._set_state(slot, State.STOPPED)
        if slot.next_config is not None:
            slot.config, slot.next_config = slot.next_config, None
        if slot.removed:
            del self.slots[slot.id]
        slot.stopped.set()
        self._drain()

    def _stop(self, slot: Slot) -> None:
        if slot.state in (State.STARTING, State.READY, State.SLEEPING) or slot.going_to_sleep:
            slot.going_to_sleep = False
            if slot.state is not State.STOPPING:
                self._set_state(slot, State.STOPPING)
            assert slot.scope is not None
            slot.scope.cancel()

    # ── sleep / wake: an optional driver capability (``sleep(level)``, ``wake()``) ──────────

    def _can_sleep(self, slot: Slot) -> bool:
        d = slot.driver
        return (
            slot.config.sleep_level is not None
            and callable(getattr(d, "sleep", None))
            and callable(getattr(d, "wake", None))
        )

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

        def watch(changed: Slot) -> None:
            if changed is slot and slot.upstream is not upstream:
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
        if slot.state is not State.READY or not self._can_sleep(slot):
            raise Conflict(f"model {model_id} is {slot.state}, not ready to sleep")
        if slot.reserved:
            raise Conflict(f"model {model_id} is serving requests")
        settled = anyio.Event()

        def watch(changed: Slot) -> None:
            if changed is slot and not slot.going_to_sleep:
                settled.set()

        self.listeners.append(watch)
        try:
            self._evict(slot)
            await settled.wait()
        finally:
            self.listeners.remove(watch)
        if slot.state is not State.SLEEPING:  # type: ignore[comparison-overlap]  # set by _sleeper
            raise Conflict(f"model {model_id} could not sleep and was stopped: {slot.error}")

    def _evict(self, slot: Slot) -> None:
        """Make room: put a ready model to sleep if it can, else stop it."""
        if slot.state is State.READY and self._can_sleep(slot):
            slot.going_to_sleep = True
            self._set_state(slot, State.STOPPING)
            self._spawn(self._sleeper, slot, slot.generation, name=f"sleep:{slot.id}")
        else:
            self._stop(slot)

    async def _sleeper(self, slot: Slot, generation: int) -> None:
        level = slot.config.sleep_level or 1
        try:
            await slot.driver.sleep(level)
        except Exception as exc:
            if generation == slot.generation and slot.going_to_sleep:
                slot.log.write(f"[swapd] sleep failed ({_describe(exc)}); stopping {slot.id}")
                self._stop(slot)
            return
        if generation == slot.generation and slot.going_to_sleep:
            slot.going_to_sleep = False
            slot.log.write(f"[swapd] {slot.id} is sleeping (level {level})")
            self._set_state(slot, State.SLEEPING)
            self._drain()

    def _wake(self, slot: Slot) -> None:
        slot.started_at = _now()
        self._set_state(slot, State.STARTING)
        slot.log.write(f"[swapd] waking {slot.id}")
        self._spawn(self._waker, slot, slot.generation, name=f"wake:{slot.id}")

    async def _waker(self, slot: Slot, generation: int) -> None:
        try:
            await slot.driver.wake()
        except Exception as exc:
            if generation == slot.generation and slot.state is State.STARTING:
                slot.log.write(f"[swapd] wake failed ({_describe(exc)}); restarting {slot.id}")
                log.warning("%s: wake failed, restarting: %s", slot.id, _describe(exc))
                self._stop(slot)  # the queued requests start it again once it has stopped
            return
        if slot.upstream is not None:
            self._on_ready(slot, generation, slot.upstream)

    async def unload(self, model_ids: Iterable[str] | None = None) -> list[str]:
        """Stop the given models (all when None) and wait until they are stopped.

        Requests still queued for them fail; requests in flight are not waited for.
        """
        ids = list(self.slots) if model_ids is None else list(model_ids)
        slots = [self.slots[i] for i in ids if i in self.slots]
        targets = {s.id for s in slots}
        for model_id in targets:
            self._fail_queued(
                lambda t, m=model_id: t.model == m,  # type: ignore[misc]
                ModelUnloaded(
                    model_id, f"model {model_id!r} was unloaded while the request waited"
                ),
            )
        stopping = []
        for slot in slots:
            if slot.state in ALIVE:
                self._stop(slot)
                stopping.append(slot)
        with anyio.CancelScope(shield=True):
            for slot in stopping:
                await slot.stopped.wait()
        return [s.id for s in stopping]

    async def _ttl_loop(self) -> None:
        while True:
            await anyio.sleep(TTL_TICK)
            now = _now()
            for slot in list(self.slots.values()):
                ttl = slot.config.ttl
                if (
                    slot.state is State.READY
                    and ttl > 0
                    and slot.reserved == 0
                    and now - slot.last_use >= ttl
                ):
                    slot.log.write(f"[swapd] unloading {slot.id}: idle for {ttl:g}s (ttl)")
                    log.info("unloading %s, TTL of %gs reached", slot.id, ttl)
                    self._evict(slot)

    # ── reload ──────────────────────────────────────────────────────────────────────────────

    def update(self, config: Config) -> dict[str, list[str]]:
        """Adopt a new config. Engines whose effective config did not change keep running."""
        changes: dict[str, list[str]] = {"added": [], "removed": [], "restarted": [], "kept": []}
        self.config = config
        for model_id, slot in list(self.slots.items()):
            new = config.models.get(model_id)
            if new is None:
                slot.removed = True
                changes["removed"].append(model_id)
                self._fail_queued(
                    lambda t, m=model_id: t.model == m,  # type: ignore[misc]
                    ModelUnloaded(model_id, f"model {model_id!r} was removed from the config"),
                )
                if slot.state in ALIVE:
                    self._stop(slot)
                else:
                    del self.slots[model_id]
            elif new.fingerprint() != slot.config.fingerprint() and slot.state in ALIVE:
                slot.next_config = new
                changes["restarted"].append(model_id)
                self._stop(slot)
            else:
                slot.config = new
                changes["kept"].append(model_id)
        for model_id, model in config.models.items():
            if model_id not in self.slots:
                self.slots[model_id] = self._new_slot(model)
                changes["added"].append(model_id)
        self._drain()
        return changes

    # ── views ───────────────────────────────────────────────────────────────────────────────

    def snapshot(self) -> list[dict[str, Any]]:
        now = _now()
        return [self.slots[k].info(now) for k in sorted(self.slots)]

    def ring(self, model_id: str) -> LogRing | None:
        slot = self.slots.get(model_id)
        return slot.log if slot else None
