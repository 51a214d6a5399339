"""Warm engine actors: idle :class:`~swapd.drivers.rayengine.EngineActor`\\ s kept per Ray node.

Most of a Ray start is Ray starting a worker process for a new actor (0.5 to 0.8 s on a small
machine, against milliseconds to reserve the resources). A warm actor holds no Ray resources
(``num_cpus`` 0, pinned hard to its node): the engine's resources are reserved by a placement
group on that node (``swapd.drivers.ray``), so an idle one keeps nothing from anyone but a
worker process's memory.

``take`` hands out one of the node's idle actors (or a new one). An actor whose engine stopped
cleanly comes back with ``give_back`` and serves the next engine on that node: a swap between
two models on one node reuses the stopped engine's actor, and Ray starts no worker at all.
``refill`` (called once an engine is healthy, so a new worker never competes with an engine's
start for the node's CPUs) makes new ones in the background until the node has ``WARM`` idle.
``drop`` forgets a node's idle actors once one of its actors is found dead. They belong to
swapd's Ray job like every actor: swapd gone, they are gone.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from typing import Any

from swapd.drivers.rayengine import EngineActor

WARM = 1  # idle actors a used node gets back to once its engine is healthy
KEEP = 2  # idle actors a node keeps at most (a swap gives one back before it takes one)

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


def kill(actor: Any) -> None:
    import ray
    from ray.exceptions import RayError

    with contextlib.suppress(RayError):  # already gone
        ray.kill(actor, no_restart=True)


def take(node_id: str) -> Any:
    """An actor on ``node_id`` (blocking): an idle one if there is one (the longest idle: the
    most likely to be up), else a new one."""
    with _lock:
        idle = _idle.get(node_id)
        actor = idle.pop(0) if idle else None
    return actor if actor is not None else _warm(node_id)


def give_back(node_id: str, actor: Any) -> None:
    """An actor taken on ``node_id`` whose engine has stopped and been reaped: idle again, or
    killed when the node keeps ``KEEP`` already (blocking)."""
    with _lock:
        idle = _idle.setdefault(node_id, [])
        kept = len(idle) < KEEP
        if kept:
            idle.append(actor)
    if not kept:
        kill(actor)


def refill(node_id: str) -> None:
    """Bring ``node_id``'s idle actors back to ``WARM``, in a background thread."""
    threading.Thread(target=_refill, args=(node_id,), name="swapd-ray-warm", daemon=True).start()


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


def drop(node_id: str) -> None:
    """Forget ``node_id``'s idle actors (one of its actors died: its node may be gone); Ray
    ends those that still live with the job, or sooner if their node is gone."""
    with _lock:
        gone = _idle.pop(node_id, [])
    for actor in gone:
        kill(actor)


def forget() -> None:
    """Drop the warm actors (when leaving the cluster: Ray ends them with the job)."""
    with _lock:
        _idle.clear()
