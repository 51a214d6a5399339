"""A model's lifecycle: the commands that start, stop, sleep and wake engines, and the
handling of what the engine tasks report back.

The scheduler (``scheduler.py``) decides *what* happens — which request is granted, which model
starts, what is evicted; this module carries it out and turns outcomes into state: a start that
failed (retry or report), an engine that became ready, exited, slept or woke. Everything here is
synchronous; the slow parts run as tasks from ``engines.py`` in the scheduler's task group.

A placed model (``slot.assignment``, see ``swapd.placer``) keeps its devices while it runs or
sleeps and frees them when its engine exits. A start that fails with an out-of-memory
signature raises the model's learned need and is retried once (placement then evicts more or
picks other devices); a second one is final.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import anyio

from swapd import engines
from swapd.config.model import ModelConfig
from swapd.drivers.base import Driver
from swapd.errors import ModelUnloaded, StartFailed, SwapdError
from swapd.placer import Placer
from swapd.slot import Slot, Ticket
from swapd.upstream import Upstream
from swapd.views import ALIVE, State

log = logging.getLogger("swapd.scheduler")

_now = time.monotonic
START_ATTEMPTS = 3  # failed starts in a row before the queued requests get the error
RETRY_DELAY = 0.25  # seconds before the second attempt; doubles after each failure


class Owner(Protocol):
    """What the lifecycle needs of the scheduler that owns the slots."""

    slots: dict[str, Slot]
    placer: Placer

    def _drain(self) -> None: ...

    def _spawn(self, fn: Callable[..., Any], *args: Any, name: str) -> None: ...

    def _set_state(self, slot: Slot, state: State, swap_seconds: float | None = None) -> None: ...

    def _fail_queued(self, which: Callable[[Ticket], bool], error: SwapdError) -> None: ...

    def quiet(self, slot: Slot) -> bool: ...


class Lifecycle:
    def __init__(self, owner: Owner) -> None:
        self._owner = owner

    def prepare(self, slot: Slot, driver: Driver) -> None:
        """Run the driver's pre-flight check before anything is evicted for this start."""
        slot.preparing = True
        self._owner._spawn(
            engines.preflight, self, slot, slot.config, driver, name=f"preflight:{slot.id}"
        )

    # ── outcomes (the engine tasks report here) ───────────────────────────────────────────

    def on_prepared(
        self, slot: Slot, config: ModelConfig, driver: Driver, error: SwapdError | None
    ) -> None:
        slot.preparing = False
        if self._owner.slots.get(slot.id) is not slot or slot.state in ALIVE:
            return
        if config is not slot.config:  # a reload changed it meanwhile: check the new one
            self._owner._drain()
            return
        if error is not None:
            self.start_failed(slot, error.message, permanent=True)
        else:
            slot.prepared = driver
        self._owner._drain()

    def start_failed(self, slot: Slot, error: str, *, permanent: bool) -> None:
        """A start failed: retry it for the queued requests, unless it will fail again."""
        if self._owner.placer.is_oom(slot, error):
            error, permanent = self._owner.placer.out_of_memory(slot, error)
        elif self._owner.placer.is_crowded(slot, error):
            error, permanent = self._owner.placer.no_capacity(slot, error)
        slot.error = error
        slot.failures += 1
        log.warning("%s failed to start: %s", slot.id, error.splitlines()[0])
        self._owner._set_state(slot, State.FAILED)
        now = _now()
        if permanent or slot.failures >= START_ATTEMPTS:
            slot.failures = 0
            self._owner._fail_queued(lambda t: t.slot is slot, StartFailed(slot.id, error))
            return
        too_old = now - slot.config.health_check_timeout
        self._owner._fail_queued(
            lambda t: t.slot is slot and t.created < too_old, StartFailed(slot.id, error)
        )
        delay = RETRY_DELAY * 2 ** (slot.failures - 1)
        slot.backing_off = True
        slot.log.write(f"[swapd] {slot.id} failed to start; retrying in {delay:g}s")
        self._owner._spawn(self._retry_later, slot, delay, name=f"retry:{slot.id}")

    async def _retry_later(self, slot: Slot, delay: float) -> None:
        await anyio.sleep(delay)
        slot.backing_off = False
        self._owner._drain()

    def on_ready(self, slot: Slot, generation: int, upstream: Upstream) -> None:
        if generation != slot.generation or slot.state is not State.STARTING:
            return
        now = _now()
        slot.upstream = upstream
        slot.ready_at = slot.released_at = now
        slot.failures = 0
        slot.oom_retried = False
        slot.crowded = None
        took = now - (slot.started_at or now)
        slot.reload_seconds = took
        slot.log.write(f"[swapd] {slot.id} ready in {took:.3f}s at {upstream.base_url}")
        log.info("%s ready in %.3fs", slot.id, took)
        self._owner._set_state(slot, State.READY, swap_seconds=took)
        self.retire_if_idle(slot)
        self._owner._drain()

    def on_exit(self, slot: Slot, generation: int, error: str | None, permanent: bool) -> None:
        if generation != slot.generation:
            return
        previous = slot.state
        slot.upstream = slot.scope = slot.ready_at = slot.driver = None
        slot.going_to_sleep = False
        if slot.next_config is not None:
            slot.config, slot.next_config = slot.next_config, None
        slot.unloading = False
        if previous is State.STARTING and error is not None:
            self.start_failed(slot, error, permanent=permanent)
        else:
            if previous is State.READY:
                slot.error = error
                log.warning("%s: %s", slot.id, error or "engine stopped")
                slot.log.write(f"[swapd] {slot.id}: {error or 'engine stopped'}")
            self._owner._set_state(slot, State.STOPPED)
        slot.assignment = None  # its devices are free again
        if slot.removed and self._owner.slots.get(slot.id) is slot:
            del self._owner.slots[slot.id]
            self._owner._fail_queued(
                lambda t: t.slot is slot,
                ModelUnloaded(slot.id, f"model {slot.id!r} was removed from the config"),
            )
        slot.stopped.set()
        self._owner._drain()

    def on_slept(self, slot: Slot, generation: int, error: str | None) -> None:
        if generation != slot.generation or not slot.going_to_sleep:
            return
        if error is not None:
            slot.log.write(f"[swapd] sleep failed ({error}); stopping {slot.id}")
            self.stop(slot)
            return
        slot.going_to_sleep = False
        slot.log.write(f"[swapd] {slot.id} is sleeping (level {slot.config.sleep_level or 1})")
        self._owner._set_state(slot, State.SLEEPING)
        self.retire_if_idle(slot)
        self._owner._drain()

    def on_woken(self, slot: Slot, generation: int, error: str | None) -> None:
        if generation != slot.generation or slot.state is not State.STARTING:
            return
        if error is not None:
            slot.log.write(f"[swapd] wake failed ({error}); restarting {slot.id}")
            log.warning("%s: wake failed, restarting: %s", slot.id, error)
            self.stop(slot)  # the queued requests start it again once it has stopped
        elif slot.upstream is not None:
            self.on_ready(slot, generation, slot.upstream)

    # ── commands (the scheduler decides, these act) ───────────────────────────────────────

    def start(self, slot: Slot) -> None:
        driver, slot.prepared = slot.prepared, None
        slot.generation += 1
        slot.error = None
        slot.stopped = anyio.Event()
        slot.started_at = _now()
        slot.scope = anyio.CancelScope()
        slot.swaps += 1
        slot.driver = driver
        self._owner._set_state(slot, State.STARTING)
        slot.log.write(f"[swapd] starting {slot.id}: {' '.join(slot.config.cmd)}")
        self._owner._spawn(
            engines.run, self, slot, slot.generation, driver, slot.scope, name=f"engine:{slot.id}"
        )

    def retire_if_idle(self, slot: Slot) -> None:
        """A retiring model (reload, unload) stops once its requests in flight are done."""
        if slot.retiring and self._owner.quiet(slot) and slot.granted == 0:
            self.stop(slot)

    def stop(self, slot: Slot) -> None:
        if slot.state in (State.STARTING, State.READY, State.SLEEPING) or slot.going_to_sleep:
            slot.going_to_sleep = False
            if slot.state is not State.STOPPING:
                self._owner._set_state(slot, State.STOPPING)
            assert slot.scope is not None
            slot.scope.cancel()

    def evict(self, slot: Slot) -> None:
        """Make room: put a ready model to sleep if it can, else stop it."""
        if slot.state is State.READY and engines.can_sleep(slot):
            slot.going_to_sleep = True
            self._owner._set_state(slot, State.STOPPING)
            level = slot.config.sleep_level or 1
            self._owner._spawn(
                engines.sleep, self, slot, slot.generation, level, name=f"sleep:{slot.id}"
            )
        else:
            self.stop(slot)

    def wake(self, slot: Slot) -> None:
        slot.started_at = _now()
        self._owner._set_state(slot, State.STARTING)
        slot.log.write(f"[swapd] waking {slot.id}")
        self._owner._spawn(engines.wake, self, slot, slot.generation, name=f"wake:{slot.id}")
