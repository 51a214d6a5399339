"""Telemetry wiring: turns scheduler and proxy happenings into events, activity and metrics.

The scheduler calls :meth:`Observer.on_slot` on every state change (it is one of
``Scheduler.listeners``); the proxy calls :meth:`request_start` / :meth:`request_end` around each
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
from swapd.scheduler import Scheduler
from swapd.slot import Slot, State

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
        self, scheduler: Scheduler, swapd_log: LogRing, activity: ActivityLog | None = None
    ) -> None:
        self.scheduler = scheduler
        self.bus = EventBus()
        self.activity = activity or ActivityLog()
        self.metrics = Metrics(scheduler.snapshot)
        self._ids = itertools.count(1)
        self._watched: dict[str, LogRing] = {}  # model id -> the ring we subscribed to
        self._progress_at: dict[str, float] = {}
        scheduler.listeners.append(self.on_slot)
        scheduler.queue_listeners.append(self._queue)
        swapd_log.subscribe(self._log_pusher("swapd"))
        for slot in scheduler.slots.values():
            self._watch(slot)

    # ── models ──────────────────────────────────────────────────────────────────────────────

    def _watch(self, slot: Slot) -> None:
        if self._watched.get(slot.id) is not slot.log:  # new, or re-added by a reload
            self._watched[slot.id] = slot.log
            slot.log.subscribe(self._log_pusher(slot.id))

    def _log_pusher(self, source: str) -> Any:
        def push(line: str) -> bool:
            if self.bus.subscribers:
                self.bus.publish("log", {"source": source, "line": line})
                slot = self.scheduler.slots.get(source)
                if slot is not None and slot.state is State.STARTING:
                    now = anyio.current_time()
                    if now - self._progress_at.get(source, 0.0) >= PROGRESS_INTERVAL:
                        self._progress_at[source] = now
                        self.bus.publish("model", slot.info(now))
            return True

        return push

    def on_slot(self, slot: Slot) -> None:
        self._watch(slot)
        now = anyio.current_time()
        if slot.state is State.STARTING:
            self.metrics.swaps.labels(slot.id).inc()
        elif slot.state is State.READY and slot.started_at is not None and slot.ready_at:
            self.metrics.swap_duration.labels(slot.id).observe(slot.ready_at - slot.started_at)
        self.bus.publish("model", slot.info(now))

    def snapshot(self) -> list[dict[str, Any]]:
        return self.scheduler.snapshot()

    def _queue(self, slot: Slot) -> None:
        if self.bus.subscribers:
            self.bus.publish("queue", {"model": slot.id, "queued": slot.reserved - slot.inflight})

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
