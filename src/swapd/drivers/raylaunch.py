"""Warm engine actors: one idle :class:`~swapd.drivers.rayengine.EngineActor` kept per Ray node.

Most of a Ray start is Ray starting a worker process for a new actor (0.5 to 0.7 s on a small
machine, against milliseconds to reserve the resources). A warm actor holds no Ray resources
(``num_cpus`` 0, pinned hard to its node): the engine's resources are reserved by a placement
group on that node (``swapd.drivers.ray``), so an idle one keeps nothing from anyone but a
worker process's memory. ``take`` hands out one of the node's warm actors (or a new one) and
makes new ones in the background. They belong to swapd's Ray
job like every actor: swapd gone, they are gone.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from swapd.drivers.rayengine import EngineActor

WARM = 2  # idle actors kept per node used: swaps back to back still find one

_lock = threading.Lock()
_idle: dict[str, list[Any]] = {}  # node id -> idle actors there
_making: dict[str, int] = {}  # node id -> warm actors being made


@functools.cache
def actor_class() -> Any:
    import ray

    return ray.remote(EngineActor)


def new(options: dict[str, Any], model_id: str) -> Any:
    """A new engine actor with these Ray options (blocking: the class is exported once)."""
    return actor_class().options(max_restarts=0, max_task_retries=0, **options).remote(model_id)


def _warm(node_id: str) -> Any:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    pin = NodeAffinitySchedulingStrategy(node_id, soft=False)
    return new({"num_cpus": 0, "scheduling_strategy": pin}, "")


def take(node_id: str) -> Any:
    """An actor on ``node_id`` (blocking): a warm one if there is one, else a new one; the node's
    warm ones are brought back to ``WARM`` in the background."""
    with _lock:
        idle = _idle.get(node_id)
        actor = idle.pop(0) if idle else None  # the oldest: the most likely to be up
    threading.Thread(target=_refill, args=(node_id,), name="swapd-ray-warm", daemon=True).start()
    return actor if actor is not None else _warm(node_id)


def _refill(node_id: str) -> None:
    while True:
        with _lock:
            if len(_idle.setdefault(node_id, [])) + _making.get(node_id, 0) >= WARM:
                return
            _making[node_id] = _making.get(node_id, 0) + 1
        try:
            spare = _warm(node_id)
        finally:
            with _lock:
                _making[node_id] -= 1
        with _lock:
            _idle.setdefault(node_id, []).append(spare)


def forget() -> None:
    """Drop the warm actors (when leaving the cluster: Ray ends them with the job)."""
    with _lock:
        _idle.clear()
