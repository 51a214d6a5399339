"""Telemetry wiring: turns scheduler and proxy happenings into events, activity and metrics.

The scheduler calls :meth:`Observer.on_slot` with a :class:`~swapd.views.SlotView` on every
state change (it is one of the scheduler's ``listeners``); the proxy calls
:meth:`request_start` / :meth:`request_end` around each
proxied request and feeds the request's :class:`~swapd.observe.activity.Meter` as bytes pass.
Log lines reach the bus only while a subscriber asked for them.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import anyio

from swapd.observe.activity import ActivityLog, Meter, Record, parse_usage
from swapd.observe.events import EventBus
from swapd.observe.logs import LogRing
from swapd.observe.metrics import Metrics
from swapd.views import ModelViews, SlotView, State

PROGRESS_INTERVAL = 0.25  # seconds between progress events for one loading model


@dataclass(slots=True)
class Request:
    id: str
    model: str
    path: str
    time: float
    meter: Meter


class Observer:
    def __init__(
        self, models: ModelViews, swapd_log: LogRing, activity: ActivityLog | None = None
    ) -> None:
        self.models = models
        self.bus = EventBus()
        self.activity = activity or ActivityLog()
        self.metrics = Metrics(models.snapshot)
        self._ids = itertools.count(1)
        self._watched: dict[str, LogRing] = {}  # model id -> the ring we subscribed to
        self._progress_at: dict[str, float] = {}
        models.listeners.append(self.on_slot)
        models.queue_listeners.append(self._queue)
        swapd_log.subscribe(self._log_pusher("swapd"))
        for ring in models.rings():
            self._watch(ring)

    # ── models ──────────────────────────────────────────────────────────────────────────────

    def _watch(self, ring: LogRing) -> None:
        if self._watched.get(ring.name) is not ring:  # new, or re-added by a reload
            self._watched[ring.name] = ring
            ring.subscribe(self._log_pusher(ring.name))

    def _log_pusher(self, source: str) -> Any:
        def push(line: str) -> bool:
            if self.bus.subscribers:
                self.bus.publish("log", {"source": source, "line": line})
                if self.models.state(source) is State.STARTING:
                    now = anyio.current_time()
                    info = self.models.info(source)
                    if info and now - self._progress_at.get(source, 0.0) >= PROGRESS_INTERVAL:
                        self._progress_at[source] = now
                        self.bus.publish("model", info)
            return True

        return push

    def on_slot(self, view: SlotView) -> None:
        self._watch(view.log)
        if view.state is State.STARTING:
            self.metrics.swaps.labels(view.id).inc()
        elif view.state is State.READY and view.swap_seconds is not None:
            self.metrics.swap_duration.labels(view.id).observe(view.swap_seconds)
        self.bus.publish("model", dict(view.info))

    def snapshot(self) -> list[dict[str, Any]]:
        return self.models.snapshot()

    def _queue(self, model: str, queued: int) -> None:
        if self.bus.subscribers:
            self.bus.publish("queue", {"model": model, "queued": queued})

    # ── requests ────────────────────────────────────────────────────────────────────────────

    def request_start(self, model: str, path: str) -> Request:
        req = Request(f"req-{next(self._ids)}", model, path, time.time(), Meter(time.monotonic()))
        if self.bus.subscribers:
            self.bus.publish(
                "request", {"phase": "start", "id": req.id, "model": model, "path": path}
            )
        return req

    def request_end(self, req: Request, status: int) -> Record:
        meter = req.meter
        duration = time.monotonic() - meter.began
        ttfb = meter.first_byte - meter.began if meter.first_byte is not None else None
        usage = parse_usage(meter) if meter.size else None
        tps = usage.tokens_per_second if usage else None
        if usage and tps is None and usage.completion_tokens and meter.first_byte is not None:
            generating = time.monotonic() - meter.first_byte
            if generating > 0.001 and usage.completion_tokens > 1:
                tps = round(usage.completion_tokens / generating, 2)
        record = Record(
            id=req.id,
            time=round(req.time, 3),
            model=req.model,
            path=req.path,
            status=status,
            duration=round(duration, 4),
            ttfb=round(ttfb, 4) if ttfb is not None else None,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            cached_tokens=usage.cached_tokens if usage else None,
            tokens_per_second=tps,
        )
        self.activity.add(record)
        self.metrics.request(
            req.model,
            status,
            duration,
            ttfb,
            {
                "prompt": record.prompt_tokens,
                "completion": record.completion_tokens,
                "cached": record.cached_tokens,
            },
        )
        if self.bus.subscribers:
            data = {"phase": "end", **record.as_dict()}
            del data["time"]
            self.bus.publish("request", data)
        return record
