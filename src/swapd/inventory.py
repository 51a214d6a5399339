"""The placement inventory: every node's devices with their total and used memory, and the
memory a set of processes uses, refreshed on a schedule and after every start and stop.

Built from ``swapd.hardware``'s probes: the local node asks NVML, ``nvidia-smi``, ``rocm-smi``
and ``/proc/meminfo``; a Docker node (``nodes:``) is asked through ``nvidia-smi`` over its
endpoint as before; ``nodes.<n>.gpus`` declares devices a probe cannot see. A source that fails
is reported in the reading, never fatal.

``SWAPD_FAKE_GPUS=<spec.json>`` replaces all of it with :class:`swapd.testing.FakeGpus`' fake
inventory (tests, plugin authors): fake nodes and devices whose used memory is what live fake
engines (``python -m swapd.echo --allocate SIZE``) hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from swapd.config.model import Config
from swapd.hardware import Device, Memory, Source
from swapd.placement import DeviceState

FAKE_ENV = "SWAPD_FAKE_GPUS"


@dataclass(frozen=True, slots=True)
class NodeReading:
    node: str
    devices: tuple[Device, ...]  # free_bytes as the source saw it
    memory: Memory | None  # system RAM (for CPU engines); None when unknown (remote node)
    sources: tuple[Source, ...]
    local: bool = True  # process-driver engines may run here
    driver_version: str | None = None  # e.g. NVIDIA driver "570.86.15" (recipes pick images)


@dataclass(frozen=True, slots=True)
class Reading:
    captured_at: float  # time.time()
    nodes: tuple[NodeReading, ...]

    def device_states(self) -> list[DeviceState]:
        """Each GPU and each node's RAM as a placement device; ``external`` here is all the
        used memory (the placer subtracts what swapd's own engines hold)."""
        raise NotImplementedError

    def as_dict(self) -> dict[str, Any]:
        raise NotImplementedError


class Inventory(Protocol):
    async def read(self, *, refresh: bool = False) -> Reading: ...

    async def usage(self, node: str, pids: Sequence[int]) -> dict[int, int]:
        """Bytes per device index (``placement.RAM`` for system RAM) used by ``pids`` and
        their descendants on ``node``; {} when it cannot be measured."""
        ...


def from_config(config: Config) -> Inventory:
    """The inventory for ``config``'s nodes (or the fake one when ``SWAPD_FAKE_GPUS`` is set)."""
    raise NotImplementedError
