"""JSON-ready views of a slot, for /running, the admin API, events and loading progress.

Kept apart from the lifecycle record (``slot.py``): the scheduler mutates slots; this only reads
them, and is what the scheduler's read-only methods and listeners hand out.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from swapd.placer import held
from swapd.slot import Slot
from swapd.views import SlotView, State


def view(
    slot: Slot,
    now: float,
    *,
    swap_seconds: float | None = None,
    labels: Mapping[str, str] | None = None,
) -> SlotView:
    """What listeners get on a state change."""
    return SlotView(slot.id, slot.state, slot.log, info(slot, now, labels), swap_seconds)


def info(slot: Slot, now: float, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A JSON-ready view of the slot for /running and the admin API; ``labels`` are the
    readable names of nodes that go by an id (Ray nodes: ``Placer.labels``)."""
    c = slot.config
    ttl, ttl_left = slot.ttl, None
    if slot.state is State.READY and ttl > 0 and slot.inflight == 0:
        ttl_left = max(0.0, round(ttl - (now - slot.last_use), 1))
    return {
        "id": c.id,
        "model": c.id,
        "name": c.name,
        "description": c.description,
        "state": str(slot.state),
        "aliases": list(c.aliases),
        "group": c.group,
        "driver": c.driver,
        "cmd": " ".join(c.cmd),
        "proxy": c.proxy,
        "port": c.port,
        "pid": slot.upstream.pid if slot.upstream else None,
        "ttl": ttl,
        "ttl_left": ttl_left,
        "inflight": slot.inflight,
        "queued": slot.reserved - slot.inflight,
        "uptime": round(now - slot.ready_at, 1)
        if slot.ready_at and slot.state is State.READY
        else None,
        "error": slot.error,
        "node": node(slot),
        "container": slot.upstream.container if slot.upstream else None,
        "last_use": round(time.time() - (now - slot.last_use), 3) if slot.last_use else None,
        "progress": progress(slot, now),
        "unlisted": c.unlisted,
        "sleep_level": c.sleep_level,  # None: no `sleep:`, so the model cannot sleep
        "placement": placement(slot),
        **label(slot, labels),
    }


def node(slot: Slot) -> str:
    """Where the model runs: placement's node, else its engine's, else the configured one."""
    return (
        (slot.assignment.node if slot.assignment else None)
        or (slot.upstream.node if slot.upstream else None)
        or slot.config.node
        or "local"
    )


def placement(slot: Slot) -> dict[str, Any] | None:
    """Where placement put the model and what it holds there (per device), or what its start
    waits for; None when placement has nothing to say about it."""
    a, need = slot.assignment, slot.demand
    if a is None and not slot.blocked_by:
        return None
    holds = held(slot)
    return {
        "node": a.node if a else None,
        "devices": list(a.devices) if a else [],
        "need_bytes": a.per_device if a else (need.per_device if need else 0),
        "held_bytes": max(holds.values(), default=0),
        "measured_bytes": slot.measured,
        "source": need.source if need else None,
        "detail": need.detail if need else "",
        "blocked_by": list(slot.blocked_by),
        **label(slot),
    }


def label(slot: Slot, labels: Mapping[str, str] | None = None) -> dict[str, str]:
    """``node_label``: the readable name of a node that goes by an id (a Ray node), if any:
    placement's, else the latest reading's (an engine Ray placed with placement off)."""
    a = slot.assignment
    name = a.label if a is not None and a.label else (labels or {}).get(node(slot), "")
    return {"node_label": name} if name else {}


def progress(slot: Slot, now: float) -> dict[str, Any] | None:
    """Load/unload progress: phase, seconds in it, and the engine's latest log line.

    A driver that knows its engine's load phases (llama-server's) says so through the
    optional ``load_progress() -> (phase, detail) | None`` capability.
    """
    if slot.state not in (State.STARTING, State.STOPPING):
        return None
    tail = slot.log.tail(1)
    phase, detail = str(slot.state), tail[0] if tail else None
    reporter = getattr(slot.driver, "load_progress", None)
    if slot.state is State.STARTING and callable(reporter):
        known = reporter()
        if known is not None:
            phase, detail = known
    return {"phase": phase, "elapsed": round(now - slot.changed_at, 1), "detail": detail}
