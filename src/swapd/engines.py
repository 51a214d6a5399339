"""Engine tasks: the scheduler's hands for the slow parts of a model's lifecycle.

Each coroutine here does I/O (a driver's pre-flight check, running an engine, putting it to
sleep, waking it) and reports the outcome back through :class:`Reports`, whose methods are the
synchronous state changes of ``swapd.lifecycle``. Nothing here changes a slot's state itself; a
report carries the slot's generation so that news from an engine that was already replaced is
ignored.
"""

from __future__ import annotations

from typing import Any, Protocol

import anyio

from swapd.config.model import ModelConfig
from swapd.drivers.base import Driver, Upstream
from swapd.errors import StartFailed, SwapdError
from swapd.slot import Slot


class Reports(Protocol):
    def on_prepared(
        self, slot: Slot, config: ModelConfig, driver: Driver, error: SwapdError | None
    ) -> None: ...

    def on_ready(self, slot: Slot, generation: int, upstream: Upstream) -> None: ...

    def on_exit(self, slot: Slot, generation: int, error: str | None, permanent: bool) -> None: ...

    def on_slept(self, slot: Slot, generation: int, error: str | None) -> None: ...

    def on_woken(self, slot: Slot, generation: int, error: str | None) -> None: ...


def describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, SwapdError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def is_permanent(exc: BaseException) -> bool:
    """A start failure that will repeat (missing file, bad program): don't retry it."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return bool(getattr(exc, "permanent", False))


async def preflight(reports: Reports, slot: Slot, config: ModelConfig, driver: Driver) -> None:
    """Run the driver's optional ``preflight()``: checks that would make the start fail.

    ``config`` is what the driver was made for: a reload may change the slot's meanwhile."""
    check: Any = getattr(driver, "preflight", None)
    error: SwapdError | None = None
    try:
        await check()
    except SwapdError as exc:
        error = exc
    except Exception as exc:
        error = StartFailed(slot.id, describe(exc), permanent=True)
    reports.on_prepared(slot, config, driver, error)


async def run(
    reports: Reports, slot: Slot, generation: int, driver: Driver, scope: anyio.CancelScope
) -> None:
    """Run one engine from spawn to exit; a stop is a cancel of ``scope``."""
    error: str | None = None
    permanent = False
    try:
        with scope:
            async with anyio.create_task_group() as tg:
                upstream: Upstream = await tg.start(driver.serve)
                reports.on_ready(slot, generation, upstream)
            if not scope.cancel_called:
                error = "engine exited unexpectedly"
    except Exception as exc:  # a driver's failure, reported to the waiting clients
        if not scope.cancel_called:
            error, permanent = describe(exc), is_permanent(exc)
    finally:
        reports.on_exit(slot, generation, error, permanent)


async def sleep(reports: Reports, slot: Slot, generation: int, level: int) -> None:
    try:
        await slot.driver.sleep(level)
    except Exception as exc:
        reports.on_slept(slot, generation, describe(exc))
    else:
        reports.on_slept(slot, generation, None)


async def wake(reports: Reports, slot: Slot, generation: int) -> None:
    try:
        await slot.driver.wake()
    except Exception as exc:
        reports.on_woken(slot, generation, describe(exc))
    else:
        reports.on_woken(slot, generation, None)


def can_sleep(slot: Slot) -> bool:
    d = slot.driver
    return (
        slot.config.sleep_level is not None
        and callable(getattr(d, "sleep", None))
        and callable(getattr(d, "wake", None))
    )
