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
   persistent group) that makes it fit, ties to fewer models, then fewer bytes; a busy
   resident may be in the set (its cost is high): the scheduler then waits for it, never
   evicting it while it serves;
3. else no placement: ``Decision.reason`` says why (too big for any device, or held by
   models that are never evicted).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

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


def eviction_cost(
    *, idle_seconds: float, reload_seconds: float, priority: int = 0, held_bytes: int = 0
) -> float:
    """Default cost of evicting an idle resident: what reloading it will cost, weighted by how
    recently it was used (LRU) and its ``fifo.priority``. Higher = keep."""
    raise NotImplementedError


def place(
    need: Need,
    devices: Iterable[DeviceState],
    residents: Iterable[Resident],
    *,
    headroom: int = 0,
) -> Decision:
    """Where ``need`` goes and what must be evicted first (see the module docstring)."""
    raise NotImplementedError
