"""Reservations: the placement groups holding Ray engines' resources, handed from a stopped
engine to the next one on its node.

Ray frees a removed placement group's resources asynchronously, and a new group asking for
them is placed only on a later retry of Ray's scheduler (backing off from 0.1 s: 0.7 s measured
for a swap between two models that need the same resources on one node). So a stop ``park``\\ s
its group for ``PARK`` seconds instead of removing it, and a reservation for the same bundle
(on the same node, when it names one) ``take``\\ s a parked one at once. A reservation that
finds none removes every parked group first (they may hold what it asks for); a parked group
not taken within ``PARK`` seconds is removed, so it keeps its resources from other Ray jobs no
longer than that.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PARK = 2.0  # seconds a stopped engine's reservation waits for the next engine on its node


@dataclass(eq=False)
class _Parked:
    group: Any
    node_id: str
    bundle: dict[str, float]
    timer: threading.Timer = field(init=False)


_lock = threading.Lock()
_parked: list[_Parked] = []


def create(bundle: Mapping[str, float], node_id: str | None) -> Any:
    """A new placement group of one bundle, on ``node_id`` if given (by its node-id label);
    blocking, not awaited ready."""
    from ray.util.placement_group import placement_group

    selector = [{"ray.io/node-id": node_id}] if node_id is not None else None
    return placement_group([dict(bundle)], strategy="STRICT_PACK", bundle_label_selector=selector)


def node_of(group: Any) -> str:
    """The node a ready group's bundle is on (blocking)."""
    from ray.util.placement_group import placement_group_table

    return str(placement_group_table(group)["bundles_to_node_id"][0])


def remove(group: Any) -> None:
    """Remove a group, freeing its resources (blocking)."""
    from ray.util.placement_group import remove_placement_group

    remove_placement_group(group)


def take(bundle: Mapping[str, float], node_id: str | None) -> tuple[Any, str] | None:
    """A parked group for ``bundle`` (on ``node_id``, if given) and its node; None when there
    is none, after removing every parked group (blocking)."""
    wanted = dict(bundle)
    with _lock:
        for parked in _parked:
            if parked.bundle == wanted and node_id in (None, parked.node_id):
                _parked.remove(parked)
                parked.timer.cancel()
                return parked.group, parked.node_id
    clear()
    return None


def park(group: Any, node_id: str, bundle: Mapping[str, float]) -> None:
    """Keep a stopped engine's ready group for the next reservation of ``bundle`` on
    ``node_id``; removed after ``PARK`` seconds if none takes it."""
    parked = _Parked(group, node_id, dict(bundle))
    parked.timer = threading.Timer(PARK, _expire, (parked,))
    parked.timer.daemon = True
    with _lock:
        _parked.append(parked)
    parked.timer.start()


def _expire(parked: _Parked) -> None:
    with _lock:
        if parked not in _parked:
            return  # taken
        _parked.remove(parked)
    with contextlib.suppress(Exception):  # Ray gone meanwhile: the group went with the job
        remove(parked.group)


def clear() -> None:
    """Remove every parked group (blocking)."""
    with _lock:
        gone = list(_parked)
        _parked.clear()
    for parked in gone:
        parked.timer.cancel()
        with contextlib.suppress(Exception):  # as in _expire
            remove(parked.group)
