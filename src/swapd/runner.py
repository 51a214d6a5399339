"""``swapd run``: one model in the foreground, no HTTP server (a recipe runner).

The engine runs under a scheduler of its own, its output goes to stdout, and SIGINT/SIGTERM
stop it — the same cleanup path as ``swapd serve`` (process group signalled, reaped).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import anyio

from swapd.config import load_config, load_demo
from swapd.errors import NotFound, SwapdError
from swapd.extensions import standard
from swapd.scheduler import Scheduler
from swapd.views import SlotView, State


class EngineExited(SwapdError):
    """The engine stopped on its own while ``swapd run`` was holding it."""


async def run_model(config_path: Path | None, name: str, config_dir: Path | None = None) -> None:
    if config_path is None and config_dir is None:
        config = load_demo()  # as ``swapd serve`` without a config
    else:
        config = load_config(config_path, config_dir, extensions=standard())
    model = config.resolve(name)
    if model is None:
        known = ", ".join(sorted(config.models)) or "(none configured)"
        raise NotFound(f"model {name!r} not found; available models: {known}")
    scheduler = Scheduler(config, echo_logs=True)
    gone = anyio.Event()

    def on_change(view: SlotView) -> None:
        if view.id == model.id and view.state in (State.STOPPED, State.FAILED):
            gone.set()

    async with anyio.create_task_group() as tg:
        await tg.start(scheduler.run)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

            async def until_signal() -> None:
                async for _ in signals:
                    break
                tg.cancel_scope.cancel()

            tg.start_soon(until_signal)
            try:
                async with scheduler.lease(model.id) as upstream:
                    scheduler.listeners.append(on_change)
                    print(f"swapd: {model.id} ready at {upstream.base_url} (Ctrl-C stops it)")
                    sys.stdout.flush()
                    await gone.wait()
                    why = (scheduler.info(model.id) or {}).get("error") or "engine stopped"
                    raise EngineExited(f"{model.id}: {why}")
            finally:
                with anyio.CancelScope(shield=True):
                    await scheduler.shutdown()
                    print(f"swapd: {model.id} stopped")
                tg.cancel_scope.cancel()
