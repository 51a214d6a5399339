"""Prometheus metrics (``GET /metrics``), on a registry of swapd's own.

Counters and histograms are updated when a request ends or a model changes state; the gauges
(state, queue length, in-flight requests, memory) are read from the scheduler at scrape time:
``swapd_gpu_memory_bytes{node,gpu,kind}`` from the placement view (each GPU's ``total``, ``used``
by anything, ``reserved`` by swapd's engines; system RAM is not a GPU and is left out) and
``swapd_model_memory_bytes{model,source}`` from each model's ``placement`` (the bytes swapd plans
for it on all its devices together, and where that figure came from: learned, declared,
estimated, unknown).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    ProcessCollector,
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
PlacementView = Callable[[], Mapping[str, Any]]
GPU_KINDS = ("total", "used", "reserved")
OBSERVED_MAX = 4096  # histogram observations held before they are applied


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
        memory = GaugeMetricFamily(
            "swapd_model_memory_bytes",
            "memory swapd plans for the model (all its devices), by where the figure came from",
            labels=["model", "source"],
        )
        for info in self._snapshot():
            model = info["id"]
            for s in State:
                state.add_metric([model, str(s)], 1.0 if info["state"] == s else 0.0)
            queue.add_metric([model], float(info["queued"]))
            inflight.add_metric([model], float(info["inflight"]))
            if placement := info.get("placement"):
                total = placement["need_bytes"] * max(1, len(placement["devices"]))
                memory.add_metric([model, placement["source"] or "unknown"], float(total))
        yield state
        yield queue
        yield inflight
        yield memory


class _Devices(Collector):
    """Each GPU's memory from the scheduler's placement view; none until :attr:`view` is set."""

    def __init__(self) -> None:
        self.view: PlacementView | None = None

    def collect(self) -> Iterator[Metric]:
        gpu = GaugeMetricFamily(
            "swapd_gpu_memory_bytes",
            "GPU memory: total, used (by any process), reserved (held by swapd's engines)",
            labels=["node", "gpu", "kind"],
        )
        for node in self.view()["nodes"] if self.view else ():
            for device in node["devices"]:
                if device["kind"] != "gpu":
                    continue
                for kind in GPU_KINDS:
                    gpu.add_metric([node["node"], str(device["index"]), kind], device[kind])
        yield gpu


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
        # The process's own figures (CPU seconds, resident memory, open fds) and the garbage
        # collector's: objects collected per generation, which a request should never add to.
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        self._children: dict[tuple[Any, ...], Any] = {}  # (metric, labels) → its child
        # Counter increments per (metric, labels), added when read: a dict update per request
        # instead of prometheus_client's locked inc (~1 µs each, up to four per request).
        self._counts: dict[tuple[Any, ...], int] = {}
        # Histogram observations likewise, applied when read (or once OBSERVED_MAX are held):
        # an append per request instead of a locked observe (~3 µs each, two per request).
        self._observed: list[tuple[Any, str, float]] = []
        self._devices = _Devices()
        r.register(self._devices)

    def watch_devices(self, view: PlacementView) -> None:
        """Read ``swapd_gpu_memory_bytes`` from ``view`` (the scheduler's placement view)."""
        self._devices.view = view

    def request(
        self,
        model: str,
        status: int,
        duration: float,
        ttfb: float | None,
        tokens: dict[str, int | None],
    ) -> None:
        counts = self._counts
        key: tuple[Any, ...] = (self.requests, model, str(status))
        counts[key] = counts.get(key, 0) + 1
        observed = self._observed
        observed.append((self.duration, model, duration))
        if ttfb is not None:
            observed.append((self.ttfb, model, ttfb))
        if len(observed) >= OBSERVED_MAX:
            self._apply()
        for kind, n in tokens.items():
            if n:
                key = (self.tokens, model, kind)
                counts[key] = counts.get(key, 0) + n

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, kept: prometheus_client validates and locks on each
        call, a few µs per proxied request (no series is ever removed)."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _apply(self) -> None:
        counts, self._counts = self._counts, {}
        for (metric, *labels), n in counts.items():
            self._child(metric, *labels).inc(n)
        observed, self._observed = self._observed, []
        for metric, model, value in observed:
            self._child(metric, model).observe(value)

    def render(self) -> bytes:
        self._apply()
        return generate_latest(self.registry)
