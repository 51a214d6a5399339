"""Memory-aware placement: where a model fits, and the cheapest idle set to evict when nothing
does. Pure: no I/O, no clocks; the scheduler gathers the facts (``swapd.placer``) and calls
:func:`place`.

A *device* is one GPU of one node (``DeviceKey = (node, index)``), or a node's system RAM
(index :data:`RAM`) for CPU engines. A model needs ``per_device`` bytes on each of ``count``
devices of one node. A device's room is ``total - headroom - external - held``, where
``external`` is memory used by things swapd does not manage and ``held`` the sum of what the
residents (models running, starting or asleep there) hold.

The decision, in order of preference:
1. a set of devices where the need fits with no eviction (best fit: least room left);
2. else the eviction set of lowest total cost among *evictable* residents (swappable, not in a
   persistent group) that makes it fit, ties to fewer models, then fewer bytes. Evicting a
   resident frees what it holds on every device. A busy resident may be in the set: the
   scheduler then waits for it, never evicting it while it serves; a set with fewer busy
   residents always wins over a cheaper one with more. The search is exact up to
   :data:`EXACT_LIMIT` candidates per device set, greedy (cheapest per byte, then pruned) above;
3. else no placement: ``Decision.reason`` says why (too big for any device, or held by
   models that are never evicted).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import combinations

DeviceKey = tuple[str, int]  # (node, device index)
RAM = -1  # the device index of a node's system RAM


@dataclass(frozen=True, slots=True)
class DeviceState:
    key: DeviceKey
    total: int  # bytes
    external: int = 0  # bytes used by processes swapd does not manage
    name: str = ""

    @property
    def node(self) -> str:
        return self.key[0]

    @property
    def index(self) -> int:
        return self.key[1]


@dataclass(frozen=True, slots=True)
class Resident:
    """A model holding memory: running, starting, stopping or asleep."""

    model: str
    held: Mapping[DeviceKey, int]  # bytes per device
    busy: bool = False  # serving or starting: may be waited for, never evicted now
    evictable: bool = True  # False: swappable: false, or a persistent group
    cost: float = 1.0  # what evicting it costs (see :func:`eviction_cost`)


@dataclass(frozen=True, slots=True)
class Need:
    model: str
    count: int  # devices, all on one node; 0 → the node's RAM (index RAM)
    per_device: int  # bytes on each device
    allowed: frozenset[DeviceKey] | None = None  # None: any device of the right kind
    nodes: tuple[str, ...] | None = None  # None: any node


@dataclass(frozen=True, slots=True)
class Decision:
    devices: tuple[DeviceKey, ...] = ()  # where it goes (empty when no placement)
    evict: frozenset[str] = frozenset()  # residents to evict first (busy ones: wait for them)
    reason: str = ""  # set when there is no placement at all

    @property
    def placed(self) -> bool:
        return bool(self.devices)


def gib(n: int | float) -> str:
    """``n`` bytes as GiB with one decimal, e.g. ``"40.0GiB"`` (for messages and tables)."""
    return f"{n / 2**30:.1f}GiB"


def device_name(key: DeviceKey) -> str:
    """``"a:0"`` for GPU 0 of node ``a``, ``"a:ram"`` for its system RAM."""
    node, index = key
    return f"{node}:ram" if index == RAM else f"{node}:{index}"


LOAD_RATE = 2**30  # bytes/s assumed to reload a model whose reload time was never measured
RECENT = 60.0  # seconds idle after which the recency bonus of :func:`eviction_cost` has halved


def eviction_cost(
    *, idle_seconds: float, reload_seconds: float, priority: int = 0, held_bytes: int = 0
) -> float:
    """Default cost of evicting an idle resident: what reloading it will cost, weighted by how
    recently it was used (LRU) and its ``fifo.priority``. Higher = keep.

    ``cost = (reload + 1) * (1 + 60 / (60 + idle)) * 2 ** priority`` where ``reload`` is
    ``reload_seconds``, or ``held_bytes / 1GiB`` seconds when no reload was measured yet (0), and
    ``idle`` is ``idle_seconds`` (at least 0). The recency factor falls from 2 (just used) towards
    1 (long idle); each priority step doubles the cost, a negative priority halves it."""
    reload = reload_seconds if reload_seconds > 0 else held_bytes / LOAD_RATE
    idle = max(idle_seconds, 0.0)
    return (reload + 1.0) * (1.0 + RECENT / (RECENT + idle)) * 2.0**priority


@dataclass(frozen=True, slots=True)
class _Candidate:
    """An evictable resident as the search sees it: what it frees on each chosen device."""

    resident: Resident
    freed: tuple[int, ...]  # bytes freed on each device of the set, in the set's order
    cost: float  # never below 0, so adding a member never makes a set cheaper

    @property
    def busy(self) -> int:
        return int(self.resident.busy)


@dataclass(frozen=True, slots=True)
class _Plan:
    """One way to place the need by eviction, ordered by :attr:`rank` (lower is better)."""

    rank: tuple[int, float, int, int, int, int, tuple[int, ...], tuple[str, ...]]
    devices: tuple[DeviceKey, ...]
    evict: frozenset[str]


EXACT_LIMIT = 14  # candidates per device set up to which the eviction search is exhaustive
_TOLERANCE = 1e-9  # relative slack when comparing float cost sums during the search


class _Room:
    """The candidate devices of a need, grouped by node (inventory order), with each device's
    room and what the never-evicted residents hold there."""

    def __init__(
        self, need: Need, devices: Iterable[DeviceState], residents: list[Resident], headroom: int
    ) -> None:
        self.need = need
        self.everyone = residents
        self.headroom = headroom
        self.by_node: dict[str, list[DeviceState]] = {}
        seen: set[DeviceKey] = set()
        for device in devices:
            if device.key in seen or not self._wanted(device):
                continue
            seen.add(device.key)
            self.by_node.setdefault(device.node, []).append(device)
        for members in self.by_node.values():
            members.sort(key=lambda d: d.index)
        self.rank = {node: i for i, node in enumerate(self.by_node)}
        self.room: dict[DeviceKey, int] = {}
        self.pinned: dict[DeviceKey, int] = dict.fromkeys(seen, 0)
        held = dict.fromkeys(seen, 0)
        for resident in residents:
            for key, n in resident.held.items():
                if key in held:
                    held[key] += n
                    if not resident.evictable:
                        self.pinned[key] += n
        for members in self.by_node.values():
            for d in members:
                self.room[d.key] = d.total - headroom - d.external - held[d.key]

    def _wanted(self, device: DeviceState) -> bool:
        need = self.need
        if (device.index == RAM) != (need.count == 0):
            return False
        if need.allowed is not None and device.key not in need.allowed:
            return False
        return need.nodes is None or device.node in need.nodes

    def reach(self, device: DeviceState) -> int:
        """The room ``device`` would have with every evictable resident gone."""
        return device.total - self.headroom - device.external - self.pinned[device.key]


def place(
    need: Need,
    devices: Iterable[DeviceState],
    residents: Iterable[Resident],
    *,
    headroom: int = 0,
) -> Decision:
    """Where ``need`` goes and what must be evicted first (see the module docstring).

    Among eviction sets, one that waits for fewer busy residents always wins; then the lowest
    total cost (costs below 0 count as 0), fewer models, fewer bytes freed (summed over every
    device the evicted residents hold), least room left on the chosen devices, node order as
    given, device index, model names."""
    everyone = list(residents)
    room = _Room(need, devices, everyone, headroom)
    count = max(need.count, 1)
    if all(len(members) < count for members in room.by_node.values()):
        return Decision(reason=_shortage(room))
    if need.per_device <= 0:
        return Decision(devices=_spread(room, count))
    fit = _best_fit(room, count)
    if fit is not None:
        return Decision(devices=fit)
    plan = _cheapest_eviction(room, count, everyone)
    if plan is not None:
        return Decision(devices=plan.devices, evict=plan.evict)
    return Decision(reason=_no_room(room, count))


def _spread(room: _Room, count: int) -> tuple[DeviceKey, ...]:
    """For a need of unknown size: the devices with the most room, so unknown models spread."""
    best: tuple[tuple[int, int, int], tuple[DeviceKey, ...]] | None = None
    for node, members in room.by_node.items():
        if len(members) < count:
            continue
        chosen = sorted(members, key=lambda d: (-room.room[d.key], d.index))[:count]
        rooms = [room.room[d.key] for d in chosen]
        rank = (-min(rooms), -sum(rooms), room.rank[node])
        if best is None or rank < best[0]:
            best = (rank, tuple(sorted(d.key for d in chosen)))
    assert best is not None  # place() checked that some node has enough devices
    return best[1]


def _best_fit(room: _Room, count: int) -> tuple[DeviceKey, ...] | None:
    """The fitting devices that leave the least room, or None when no node has enough."""
    best: tuple[tuple[int, int], tuple[DeviceKey, ...]] | None = None
    for node, members in room.by_node.items():
        fitting = [d for d in members if room.room[d.key] >= room.need.per_device]
        if len(fitting) < count:
            continue
        chosen = sorted(fitting, key=lambda d: (room.room[d.key], d.index))[:count]
        left = sum(room.room[d.key] - room.need.per_device for d in chosen)
        rank = (left, room.rank[node])
        if best is None or rank < best[0]:
            best = (rank, tuple(sorted(d.key for d in chosen)))
    return None if best is None else best[1]


def _cheapest_eviction(room: _Room, count: int, residents: list[Resident]) -> _Plan | None:
    """The best eviction plan over every node and every set of ``count`` of its devices that
    could fit once all evictable residents are gone."""
    per_device = room.need.per_device
    touching: dict[DeviceKey, list[Resident]] = {}
    for resident in residents:
        if resident.evictable:
            for key, n in resident.held.items():
                if n > 0:
                    touching.setdefault(key, []).append(resident)
    best: _Plan | None = None
    for node, members in room.by_node.items():
        possible = [d for d in members if room.reach(d) >= per_device]
        for chosen in combinations(possible, count):
            keys = tuple(d.key for d in chosen)
            deficit = tuple(per_device - room.room[k] for k in keys)
            near = {id(r): r for k in keys for r in touching.get(k, ())}
            candidates = _candidates(keys, near.values())
            bound = None if best is None else (best.rank[0], best.rank[1])
            if len(candidates) <= EXACT_LIMIT:
                picked = _exact(deficit, candidates, bound)
            else:
                picked = _greedy(deficit, candidates)
            if picked is None:
                continue
            plan = _plan(room, node, keys, picked)
            if best is None or plan.rank < best.rank:
                best = plan
    return best


def _candidates(keys: tuple[DeviceKey, ...], near: Iterable[Resident]) -> list[_Candidate]:
    """The evictable residents holding memory on ``keys`` (``near``), cheapest first."""
    found = [_Candidate(r, tuple(r.held.get(k, 0) for k in keys), max(r.cost, 0.0)) for r in near]
    found.sort(key=lambda c: (c.busy, c.cost, -sum(c.freed), c.resident.model))
    return found


def _worse(score: tuple[int, float], bound: tuple[int, float] | None) -> bool:
    """Whether a partial set scoring ``score`` (busy, cost) can no longer tie ``bound``."""
    if bound is None:
        return False
    busy, cost = score
    if busy != bound[0]:
        return busy > bound[0]
    return cost > bound[1] + _TOLERANCE * max(1.0, abs(bound[1]))


def _exact(
    deficit: tuple[int, ...], candidates: list[_Candidate], bound: tuple[int, float] | None
) -> list[_Candidate] | None:
    """The best subset of ``candidates`` (fewest busy, cost, models, bytes, names) that covers
    ``deficit`` on every device, by branch and bound; None when none does (or none beats
    ``bound``)."""
    size = len(candidates)
    width = len(deficit)
    left = [[0] * width for _ in range(size + 1)]  # what candidates i.. could still free
    for i in range(size - 1, -1, -1):
        left[i] = [a + b for a, b in zip(left[i + 1], candidates[i].freed, strict=True)]
    best: list[_Candidate] | None = None
    best_rank: tuple[int, float, int, int, tuple[str, ...]] | None = None
    chosen: list[_Candidate] = []

    def visit(i: int, short: tuple[int, ...], busy: int, cost: float) -> None:
        nonlocal best, best_rank, bound
        if all(n <= 0 for n in short):
            rank = _subset_rank(chosen)
            if best_rank is None or rank < best_rank:
                best, best_rank = list(chosen), rank
                bound = (rank[0], rank[1])
            return
        if i == size or _worse((busy, cost), bound):
            return
        if any(n > free for n, free in zip(short, left[i], strict=True)):
            return
        candidate = candidates[i]
        if any(n > 0 and free > 0 for n, free in zip(short, candidate.freed, strict=True)):
            chosen.append(candidate)
            after = tuple(n - free for n, free in zip(short, candidate.freed, strict=True))
            visit(i + 1, after, busy + candidate.busy, cost + candidate.cost)
            chosen.pop()
        visit(i + 1, short, busy, cost)

    visit(0, deficit, 0, 0.0)
    return best


def _greedy(deficit: tuple[int, ...], candidates: list[_Candidate]) -> list[_Candidate] | None:
    """Too many candidates to search: take the cheapest per useful byte freed until the need
    fits, then drop members (dearest first) that turn out not to be needed."""
    short = list(deficit)
    chosen: list[_Candidate] = []
    rest = list(candidates)
    while any(n > 0 for n in short):
        scored = []
        for c in rest:
            useful = sum(min(free, n) for free, n in zip(c.freed, short, strict=True) if n > 0)
            if useful > 0:
                scored.append(((c.busy, c.cost / useful, c.resident.model), c))
        if not scored:
            return None
        pick = min(scored, key=lambda s: s[0])[1]
        rest.remove(pick)
        chosen.append(pick)
        short = [n - free for n, free in zip(short, pick.freed, strict=True)]
    for c in sorted(chosen, key=lambda c: (-c.busy, -c.cost, c.resident.model)):
        others = [o for o in chosen if o is not c]
        if _covers(deficit, others):
            chosen = others
    return chosen


def _covers(deficit: tuple[int, ...], chosen: list[_Candidate]) -> bool:
    return all(n <= sum(c.freed[j] for c in chosen) for j, n in enumerate(deficit) if n > 0)


def _subset_rank(chosen: list[_Candidate]) -> tuple[int, float, int, int, tuple[str, ...]]:
    return (
        sum(c.busy for c in chosen),
        math.fsum(c.cost for c in chosen),
        len(chosen),
        sum(sum(c.resident.held.values()) for c in chosen),
        tuple(sorted(c.resident.model for c in chosen)),
    )


def _plan(room: _Room, node: str, keys: tuple[DeviceKey, ...], picked: list[_Candidate]) -> _Plan:
    busy, cost, size, freed, names = _subset_rank(picked)
    released = [sum(c.freed[j] for c in picked) for j in range(len(keys))]
    left = sum(room.room[k] + released[j] - room.need.per_device for j, k in enumerate(keys))
    rank = (busy, cost, size, freed, left, room.rank[node], tuple(k[1] for k in keys), names)
    return _Plan(rank, keys, frozenset(names))


def _scope(need: Need) -> str:
    parts = []
    if need.nodes is not None:
        parts.append("nodes " + ", ".join(need.nodes))
    if need.allowed is not None:
        parts.append("devices " + ", ".join(device_name(k) for k in sorted(need.allowed)))
    return f" (allowed: {'; '.join(parts)})" if parts else ""


def _shortage(room: _Room) -> str:
    """Why no node has enough devices of the right kind."""
    need = room.need
    scope = _scope(need)
    if need.count == 0:
        return f"needs {gib(need.per_device)} of system RAM; no node reports its RAM{scope}"
    most = max((len(m) for m in room.by_node.values()), default=0)
    if most == 0:
        return f"needs {_gpus(need.count)}; no GPU is available{scope}"
    return f"needs {_gpus(need.count)} on one node; the most on one node is {most}{scope}"


def _gpus(count: int) -> str:
    return "1 GPU" if count == 1 else f"{count} GPUs"


def _no_room(room: _Room, count: int) -> str:
    """Why the need fits nowhere even with every evictable resident gone: described on the
    device that limits the best node (its ``count``-th best device)."""
    need = room.need
    worst: list[DeviceState] = []
    for members in room.by_node.values():
        if len(members) >= count:
            ranked = sorted(members, key=lambda d: (-room.reach(d), -d.total, d.index))
            worst.append(ranked[count - 1])
    device = max(worst, key=lambda d: (room.reach(d), d.total))
    if need.count == 0:
        wants = f"{gib(need.per_device)} of system RAM"
    elif need.count == 1:
        wants = gib(need.per_device)
    else:
        wants = f"{need.count} \N{MULTIPLICATION SIGN} {gib(need.per_device)}"
    label = "best device"
    if all(d.total - room.headroom < need.per_device for d in worst):
        label = "largest device"
    facts = [f"{device_name(device.key)} {gib(device.total)} total"]
    pinned = room.pinned[device.key]
    if pinned:
        names = sorted(
            r.model for r in room.everyone if not r.evictable and r.held.get(device.key, 0) > 0
        )
        facts.append(f"{gib(pinned)} held by non-evictable models ({', '.join(names)})")
    if device.external:
        facts.append(f"{gib(device.external)} used by other processes")
    if room.headroom:
        facts.append(f"{gib(room.headroom)} headroom")
    return f"needs {wants}; {label}: {', '.join(facts)}"
