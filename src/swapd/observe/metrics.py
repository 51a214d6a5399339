"""Prometheus metrics (``GET /metrics``), on a registry of swapd's own.

Counters and histograms are updated when a request ends or a model changes state; the gauges
(state, queue length, in-flight requests) are read from the scheduler at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from swapd.views import State

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
SWAP_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)

disable_created_metrics()  # type: ignore[no-untyped-call] # no *_created series: swapd's own registry, one process

Snapshot = Callable[[], Iterable[dict[str, Any]]]


class _Gauges(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "swapd_model_state", "1 for the model's current state", labels=["model", "state"]
        )
        queue = GaugeMetricFamily(
            "swapd_queue_length", "requests waiting for the model", labels=["model"]
        )
        inflight = GaugeMetricFamily(
            "swapd_inflight_requests", "requests being served by the model", labels=["model"]
        )
        for info in self._snapshot():
            model = info["id"]
            for s in State:
                state.add_metric([model, str(s)], 1.0 if info["state"] == s else 0.0)
            queue.add_metric([model], float(info["queued"]))
            inflight.add_metric([model], float(info["inflight"]))
        yield state
        yield queue
        yield inflight


class Metrics:
    def __init__(self, snapshot: Snapshot) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "swapd_requests", "proxied requests", ["model", "status"], registry=r
        )
        self.duration = Histogram(
            "swapd_request_duration_seconds",
            "request duration, arrival to last byte",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttfb = Histogram(
            "swapd_time_to_first_byte_seconds",
            "arrival to the engine's first response byte (includes any model start)",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter("swapd_tokens", "tokens by kind", ["model", "kind"], registry=r)
        self.swaps = Counter("swapd_swaps", "model starts", ["model"], registry=r)
        self.swap_duration = Histogram(
            "swapd_swap_duration_seconds",
            "time from spawning an engine to ready",
            ["model"],
            buckets=SWAP_BUCKETS,
            registry=r,
        )
        r.register(_Gauges(snapshot))

    def request(
        self,
        model: str,
        status: int,
        duration: float,
        ttfb: float | None,
        tokens: dict[str, int | None],
    ) -> None:
        self.requests.labels(model, str(status)).inc()
        self.duration.labels(model).observe(duration)
        if ttfb is not None:
            self.ttfb.labels(model).observe(ttfb)
        for kind, n in tokens.items():
            if n:
                self.tokens.labels(model, kind).inc(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
