"""The scheduler's placement hands: the facts ``swapd.placement`` decides on, and what follows.

The pure policy (:func:`swapd.placement.place`) needs every device's total and *external* use,
the residents (models holding memory) and the starting model's need. This module gathers them:

- the latest inventory :class:`~swapd.inventory.Reading`, refreshed by a task in the scheduler's
  task group every ``placement.refresh`` seconds and kicked after every start and exit;
- swapd's own reservations, exact and immediate: a model holds ``max(need, measured)`` bytes on
  each of its assigned devices from the moment its start is decided until its engine exits
  (a sleeping model holds :data:`SLEEP_SHARE` of it);
- external use per device: what the reading saw used, less what swapd's models held when the
  reading was taken (so a reading taken before a stop does not count that model twice).

Decisions are synchronous (the cached reading plus the reservations). The placer also measures
what a ready engine really uses (its pid tree, through the inventory) and records the peak as
the model's learned need, and raises that need after an out-of-memory start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from swapd import demand as demands
from swapd import rayinventory
from swapd.assignment import Assignment
from swapd.config.model import Config, ModelConfig
from swapd.demand import LearnedStore
from swapd.inventory import Inventory, Reading, cluster_dict
from swapd.need import Demand, size
from swapd.placement import RAM, Decision, DeviceKey, DeviceState, Need, Resident, place
from swapd.slot import Slot
from swapd.views import State

log = logging.getLogger("swapd.placer")

Cost = Callable[[Slot, float], float]  # (slot, now) → what evicting it costs; higher = keep

SLEEP_SHARE = 0.1  # of its need a sleeping model still holds (weights offloaded, CUDA context kept)
BUSY_COST = 1e9  # a serving or starting model: the policy avoids it, the scheduler waits for it
MEASURE_AFTER = (1.0, 5.0, 30.0)  # seconds after ready at which an engine's use is measured
OOM_LINES = 40  # engine output lines searched for an out-of-memory signature
HOLDING = (State.STARTING, State.READY, State.STOPPING, State.SLEEPING)


def held(slot: Slot) -> dict[DeviceKey, int]:
    """The bytes ``slot`` holds on each device placement assigned it (nothing when unplaced)."""
    a = slot.assignment
    if a is None or slot.state not in HOLDING:
        return {}
    per_device = max(a.per_device, slot.measured)
    if slot.state is State.SLEEPING:
        per_device = int(per_device * SLEEP_SHARE)
    return {key: per_device for key in devices_of(a)}


def devices_of(assignment: Assignment) -> list[DeviceKey]:
    """The device keys of an assignment: its GPUs, or its node's RAM for a CPU engine."""
    indices = assignment.devices or (RAM,)
    return [(assignment.node, i) for i in indices]


def per_device(need: Demand, count: int, device_total: int) -> int:
    """Bytes ``need`` takes on each of ``count`` devices of ``device_total`` bytes: a fraction
    resolved against the device, a ``gpus: all`` total divided over the devices."""
    if need.fraction is not None and device_total:
        return need.bytes_on(device_total)
    if need.all_gpus and count > 0:
        return -(-need.per_device // count)
    return need.per_device


def where(assignment: Assignment) -> str:
    """``node:0,1`` (or ``node:RAM``) for log lines and messages."""
    return f"{assignment.node}:{','.join(map(str, assignment.devices)) or 'RAM'}"


def recent_output(slot: Slot) -> list[str]:
    """The engine's output since its latest start (older attempts' lines excluded)."""
    lines = slot.log.tail(OOM_LINES)
    marks = (f"[swapd] starting {slot.id}:", f"[swapd] waking {slot.id}")
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith(marks):
            return lines[i + 1 :]
    return lines


@dataclass(frozen=True, slots=True)
class Choice:
    """Placement's answer for one start: the decision, the model's need, and the option
    placed (its ``per_device`` is what the model reserves); ``need`` None when unplaced."""

    decision: Decision
    demand: Demand
    need: Need | None = None


class Placer:
    """Placement state owned by the scheduler: the cached reading and the learned needs."""

    def __init__(
        self,
        slots: Mapping[str, Slot],
        config: Callable[[], Config],
        cost: Cost,
        *,
        inventory: Inventory | None,
        learned: LearnedStore | None,
    ) -> None:
        self.slots = slots
        self._config = config
        self._cost = cost
        self.inventory = inventory
        self.learned = learned if learned is not None or inventory is None else LearnedStore(None)
        self.reading: Reading | None = None
        self._held_at_reading: dict[DeviceKey, int] = {}
        self._declared: tuple[Config, bool] | None = None  # (config, any model declares memory)

    # ── state ─────────────────────────────────────────────────────────────────────────────

    def active(self, config: Config) -> bool:
        """Placement decides (rather than the implicit one-at-a-time group): enabled, or auto
        and the inventory shows a GPU or a model declares its memory. Never without an
        inventory."""
        if self.inventory is None:
            return False
        if config.placement.enabled is not None:
            return config.placement.enabled
        if self._declared is None or self._declared[0] is not config:
            declared = any(m.resources.memory for m in config.models.values())
            self._declared = (config, declared)
        if self._declared[1]:
            return True
        reading = self.reading
        return reading is not None and any(n.devices for n in reading.nodes)

    def labels(self) -> dict[str, str]:
        """The readable names of the nodes that go by an id (Ray nodes), from the reading."""
        reading = self.reading
        return {n.node: n.label for n in reading.nodes if n.label} if reading else {}

    def holding(self) -> dict[DeviceKey, int]:
        """What swapd's models hold now, per device."""
        out: dict[DeviceKey, int] = {}
        for slot in self.slots.values():
            for key, n in held(slot).items():
                out[key] = out.get(key, 0) + n
        return out

    async def refresh(self) -> None:
        """Read the inventory again. What swapd held is taken before and after the read, and the
        smaller figure per device kept: a model that started or stopped meanwhile then counts
        as external until the next reading, never as free."""
        if self.inventory is None:
            return
        before = self.holding()
        try:
            reading = await self.inventory.read(refresh=True)
        except Exception:  # sources report their own failures; this guards the loop
            log.exception("inventory read failed")
            return
        after = self.holding()
        self._held_at_reading = {k: min(v, after.get(k, 0)) for k, v in before.items()}
        self.reading = reading

    def devices(self) -> list[DeviceState]:
        """Every device of the reading, with ``external`` less what swapd held at the time."""
        if self.reading is None:
            return []
        return [
            replace(d, external=max(0, d.external - self._held_at_reading.get(d.key, 0)))
            for d in self.reading.device_states()
        ]

    # ── decisions ─────────────────────────────────────────────────────────────────────────

    def demand(self, slot: Slot) -> Demand:
        """The need ``slot`` is placed with: learned, declared or estimated (swapd.demand)."""
        if slot.state is State.SLEEPING and slot.demand is not None:
            return slot.demand  # it wakes where it sleeps, with the need it was placed with
        try:
            return rayinventory.gpu_demand(
                slot.config, demands.demand_of(slot.config, self.learned)
            )
        except Exception as exc:  # a bad estimate must not stop the scheduler
            log.warning("%s: cannot work out its memory need: %s", slot.id, exc)
            count = slot.config.resources.gpus or 0
            return Demand(count, 0, "unknown", f"estimate failed: {exc}")

    def residents(self, target: Slot, now: float) -> list[Resident]:
        groups = self._config().groups
        out = []
        for slot in self.slots.values():
            holds = held(slot)
            if slot is target or not holds:
                continue
            busy = slot.state is State.STARTING or slot.inflight > 0
            group = groups.get(slot.config.group)
            if slot.state is State.STOPPING:  # going anyway: waiting for it costs nothing
                evictable, cost = True, 0.0
            else:
                evictable = slot.config.swappable and not (group is not None and group.persistent)
                cost = BUSY_COST if busy else self._cost(slot, now)
            out.append(Resident(slot.id, holds, busy, evictable, cost))
        return out

    def decide(self, slot: Slot, now: float) -> Choice:
        """Where ``slot`` goes now and what must go first; ``reason`` when it fits nowhere."""
        need = self.demand(slot)
        devices = self.devices()
        residents = self.residents(slot, now)
        costs = {r.model: r.cost for r in residents}
        headroom = self._config().placement.headroom
        best: Choice | None = None
        for option in self.needs(slot, need, devices):
            decision = place(option, devices, residents, headroom=headroom)
            if best is None or _rank(decision, costs) < _rank(best.decision, costs):
                best = Choice(decision, need, option)
        if best is None:
            nodes = ", ".join(self.nodes(slot.config)) or "none"
            return Choice(Decision(reason=f"no device to place it on (nodes: {nodes})"), need)
        return best

    def nodes(self, model: ModelConfig) -> tuple[str, ...]:
        """Where a model may run: a Ray model on the Ray nodes its options allow; else its
        pinned node, its Docker nodes, else the local nodes."""
        reading = self.reading
        if rayinventory.is_ray(model):
            return rayinventory.eligible(model, reading.nodes) if reading else ()
        if model.node:
            return (model.node,)
        if model.nodes:
            return tuple(n.name for n in model.nodes)
        return tuple(n.node for n in reading.nodes if n.local) if reading else ()

    def needs(self, slot: Slot, need: Demand, devices: list[DeviceState]) -> list[Need]:
        """The needs to try: one, or one per node (``gpus: all``), per device size (a fraction
        of the device, vLLM-style) or per device (an unknown need: see :meth:`whole`)."""
        a = slot.assignment
        if slot.state is State.SLEEPING and a is not None:
            keys = frozenset(devices_of(a)) if a.devices else None
            return [Need(slot.id, len(a.devices), a.per_device, keys, (a.node,))]
        model = slot.config
        nodes = self.nodes(model)
        crowded = slot.crowded if slot.crowded in nodes else None
        if crowded is not None:  # the retry: elsewhere as usual, or the whole of that node
            nodes = tuple(n for n in nodes if n != crowded)
        per_node = [(n,) for n in nodes] if need.all_gpus or not nodes else [nodes]
        out = []
        for names in per_node:
            gpus = [d for d in devices if d.node in names and d.index != RAM]
            if model.resources.devices:
                gpus = [d for d in gpus if d.index in model.resources.devices]
            count = len(gpus) if need.all_gpus else need.count
            if need.all_gpus and count == 0:
                continue
            allowed = frozenset(d.key for d in gpus) if model.resources.devices else None
            if count > 0 and need.fraction is None and need.per_device <= 0:
                out.extend(self.whole(model.id, count, gpus))
                continue
            if need.fraction is None or count == 0:
                out.append(Need(model.id, count, per_device(need, count, 0), allowed, names))
                continue
            for total in sorted({d.total for d in gpus}):
                same = frozenset(d.key for d in gpus if d.total == total)
                out.append(Need(model.id, count, per_device(need, count, total), same, names))
        if crowded is not None:
            gpus = [d for d in devices if d.node == crowded and d.index != RAM]
            out.extend(self.whole(model.id, need.count or len(gpus), gpus))
        return out

    def whole(self, model_id: str, count: int, gpus: list[DeviceState]) -> list[Need]:
        """An unknown need on GPUs: devices to itself (all that is free there with no other
        swapd model), as a one-model-per-GPU swapper would, until it has been measured."""
        headroom = self._config().placement.headroom

        def room(d: DeviceState) -> int:
            return max(1, d.total - headroom - d.external)

        if count == 1:
            return [Need(model_id, 1, room(d), frozenset({d.key}), (d.node,)) for d in gpus]
        by_node: dict[str, list[DeviceState]] = {}
        for d in gpus:
            by_node.setdefault(d.node, []).append(d)
        return [
            Need(model_id, count, min(map(room, ds)), frozenset(d.key for d in ds), (node,))
            for node, ds in by_node.items()
            if len(ds) >= count
        ]

    def assignment(self, choice: Choice) -> Assignment:
        """What the driver gets for a placed decision."""
        assert choice.need is not None
        devices = choice.decision.devices
        node = devices[0][0]
        gpus = [k for k in devices if k[1] != RAM]
        by_key = {d.key: d for d in self.devices()}
        return Assignment(
            node=node,
            devices=tuple(i for _, i in gpus),
            vendor=self._vendor(node, [i for _, i in gpus]),
            device_totals=tuple(by_key[k].total if k in by_key else 0 for k in gpus),
            per_device=choice.need.per_device,
            label=found.label if self.reading and (found := self.reading.node(node)) else "",
        )

    def _vendor(self, node: str, indices: list[int]) -> str:
        for reading in self.reading.nodes if self.reading else ():
            if reading.node == node:
                for d in reading.devices:
                    if d.index in indices:
                        return d.vendor
        return ""

    # ── learning ──────────────────────────────────────────────────────────────────────────

    async def measure(self, slot: Slot) -> None:
        """Measure what a ready engine uses on its devices; keep the peak (slot and store)."""
        a, upstream = slot.assignment, slot.upstream
        if self.inventory is None or a is None or upstream is None or upstream.pid is None:
            return
        generation = slot.generation
        try:
            usage = await self.inventory.usage(a.node, [upstream.pid])
        except Exception:
            log.exception("%s: measuring its memory failed", slot.id)
            return
        if slot.generation != generation or slot.assignment is not a:
            return  # it stopped meanwhile
        peak = max((usage.get(i, 0) for _, i in devices_of(a)), default=0)
        if peak <= slot.measured:
            return
        slot.measured = peak
        if slot.demand is not None and slot.demand.source == "unknown":
            slot.assignment = replace(a, per_device=peak)  # no longer the whole device
        if self.learned is not None:
            fingerprint = slot.config.fingerprint()
            detail = f"peak measured on {where(a)}"
            if self.learned.record(fingerprint, len(a.devices), peak, detail=detail):
                log.info(
                    "%s: learned a need of %s per device on %s",
                    slot.id,
                    size(peak),
                    where(a),
                )

    def out_of_memory(self, slot: Slot, error: str) -> tuple[str, bool]:
        """A start of a placed model failed with an out-of-memory signature: raise its learned
        need; the first time it is retried (evicting more), the second time the failure is
        final. Returns the error to report and whether it is permanent."""
        a = slot.assignment
        assert a is not None
        current = slot.demand or Demand(len(a.devices), a.per_device, "unknown")
        if current.source == "unknown":  # it was given what was free: it needs more than that
            current = replace(current, per_device=a.per_device)
        total = min(a.device_totals) if a.device_totals else None
        raised = current
        if self.learned is not None:
            raised = self.learned.after_oom(slot.config.fingerprint(), current, total)
        if not slot.oom_retried:
            slot.oom_retried = True
            line = (
                f"[swapd] {slot.id} ran out of memory on {where(a)}; needs more than "
                f"{size(a.per_device)}; evicting more and retrying once"
            )
            slot.log.write(line)
            log.warning("%s", line.removeprefix("[swapd] "))
            return error, False
        message = (
            f"{slot.id} ran out of GPU memory twice on {where(a)}; its learned need is now "
            f"{size(raised.per_device)}; set resources.memory or free memory"
        )
        slot.log.write(f"[swapd] {message}")
        slot.oom_retried = False  # a later request tries again, with the raised need
        return message, True

    def no_capacity(self, slot: Slot, error: str) -> tuple[str, bool]:
        """Ray could not place a Ray model's actor on the node placement chose (its resources
        taken, the node gone): retry once, elsewhere or on the whole of that node (evicting
        the idle models there by the usual rules); a second refusal is final. Returns the
        error to report and whether it is permanent."""
        a = slot.assignment
        assert a is not None
        if slot.crowded is None:
            slot.crowded = a.node
            line = (
                f"[swapd] {slot.id}: no capacity on Ray node {a.label or a.node}; "
                "evicting there or trying another node, once"
            )
            slot.log.write(line)
            log.warning("%s", line.removeprefix("[swapd] "))
            return error, False
        slot.crowded = None
        return error, True

    def is_crowded(self, slot: Slot, error: str) -> bool:
        """A placed Ray model's start that Ray refused (``no capacity on …``)."""
        placed = slot.assignment is not None and rayinventory.is_ray(slot.config)
        return placed and "no capacity on" in error

    def is_oom(self, slot: Slot, error: str) -> bool:
        return slot.assignment is not None and demands.is_oom([*recent_output(slot), error])

    # ── views ─────────────────────────────────────────────────────────────────────────────

    def view(self) -> dict[str, Any]:
        """The inventory as placement sees it, for ``/api/hardware`` (see docs/placement.md)."""
        config = self._config()
        reading = self.reading
        out: dict[str, Any] = {
            "active": self.active(config),
            "headroom": config.placement.headroom,
            "captured_at": reading.captured_at if reading else None,
            "nodes": [],
        }
        if reading is None:
            return out
        residents: dict[DeviceKey, list[dict[str, Any]]] = {}
        for slot in sorted(self.slots.values(), key=lambda s: s.id):
            for key, n in held(slot).items():
                entry = {"model": slot.id, "bytes": n, "state": str(slot.state)}
                residents.setdefault(key, []).append(entry)
        used = {d.key: d.external for d in reading.device_states()}
        devices = self.devices()
        for node in reading.nodes:
            mine = sorted((d for d in devices if d.node == node.node), key=_device_order)
            out["nodes"].append(
                {
                    "node": node.node,
                    "local": node.local,
                    "driver_version": node.driver_version,
                    **cluster_dict(node),
                    "sources": [
                        {"name": s.name, "ok": s.ok, "error": s.error} for s in node.sources
                    ],
                    "devices": [
                        _device_view(d, used[d.key], residents.get(d.key, [])) for d in mine
                    ],
                }
            )
        return out


def _rank(decision: Decision, costs: Mapping[str, float]) -> tuple[bool, float, int]:
    """Placed first, then the cheapest eviction set, then the smallest."""
    return (
        not decision.placed,
        sum(costs.get(m, 0.0) for m in decision.evict),
        len(decision.evict),
    )


def _device_order(d: DeviceState) -> tuple[bool, int]:
    return (d.index == RAM, d.index)  # GPUs by index, then RAM


def _device_view(d: DeviceState, used: int, models: Iterable[dict[str, Any]]) -> dict[str, Any]:
    listed = list(models)
    reserved = sum(m["bytes"] for m in listed)
    ram = d.index == RAM
    return {
        "index": d.index,
        "kind": "ram" if ram else "gpu",
        "name": d.name or ("RAM" if ram else f"GPU {d.index}"),
        "total": d.total,
        "used": used,
        "reserved": reserved,
        "free": max(0, d.total - d.external - reserved),
        "models": listed,
    }
