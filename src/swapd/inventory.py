"""The placement inventory: every node's devices with their total and used memory, and the
memory a set of processes uses, refreshed on a schedule and after every start and stop.

Built from ``swapd.hardware``'s probes: this machine (the node named ``local``, or the
``nodes:`` entry whose endpoint is on this machine) asks NVML, ``nvidia-smi``, ``rocm-smi`` and
``/proc/meminfo``; every other node of ``nodes:`` is asked through ``nvidia-smi`` over its
``ssh://`` endpoint as before; ``nodes.<n>.gpus`` declares devices when no probe answers. A
source that fails is reported in the reading (``Source(ok=False, error=…)``), never fatal.
Readings are reused for ``placement.refresh`` seconds unless ``refresh=True``.

``SWAPD_FAKE_GPUS=<spec.json>`` replaces all of it with :class:`swapd.testing.FakeGpus`' fake
inventory (tests, plugin authors): fake nodes and devices whose used memory is what live fake
engines (``python -m swapd.echo --allocate SIZE``) hold; every fake node is local, so e2e tests
can run several "nodes" of local processes.

When a model runs on Ray (``driver: ray``), the Ray cluster's nodes join the reading
(:class:`Joined` with ``swapd.rayinventory``): ``cluster="ray"``, named by Ray node id, with a
readable ``label`` and the node's Ray ``resources``; their devices come from the same probes,
run on each node by a probe actor.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio

from swapd import hardware
from swapd.config.model import Config, GpuConfig, NodeConfig
from swapd.echo import gpu as fake
from swapd.hardware import Device, Memory, ProbeError, Runner, Source
from swapd.nodes import LOCAL, command_prefix, is_local
from swapd.placement import RAM, DeviceState

FAKE_ENV = fake.ENV  # "SWAPD_FAKE_GPUS"


@dataclass(frozen=True, slots=True)
class NodeReading:
    node: str
    devices: tuple[Device, ...]  # free_bytes as the source saw it
    memory: Memory | None  # system RAM (for CPU engines); None when unknown (remote node)
    sources: tuple[Source, ...]
    local: bool = True  # process-driver engines may run here
    driver_version: str | None = None  # e.g. NVIDIA driver "570.86.15" (recipes pick images)
    cluster: str = ""  # "ray": a node of the Ray cluster (driver: ray models run there)
    label: str = ""  # a readable name where ``node`` is an id (a Ray node: its ip or label)
    aliases: tuple[str, ...] = ()  # other names meaning it (a Ray node: ip, label values)
    resources: Mapping[str, float] = field(default_factory=dict)  # Ray resources (totals)


@dataclass(frozen=True, slots=True)
class Reading:
    captured_at: float  # time.time()
    nodes: tuple[NodeReading, ...]

    def device_states(self) -> list[DeviceState]:
        """Each GPU and each node's RAM as a placement device; ``external`` here is all the
        used memory (the placer subtracts what swapd's own engines hold). GPUs of unknown
        size (unified memory reported as ``[N/A]``) are left out; unknown free memory counts
        as none used."""
        states: list[DeviceState] = []
        seen: set[tuple[str, int]] = set()
        for node in self.nodes:
            for device in node.devices:
                key = (node.node, device.index)
                if device.total_bytes is None or key in seen:
                    continue  # unknown size; or a second vendor's device of the same index
                seen.add(key)
                used = 0 if device.free_bytes is None else device.total_bytes - device.free_bytes
                states.append(DeviceState(key, device.total_bytes, max(0, used), device.name))
            if node.memory is not None:
                total, available = node.memory.total_bytes, node.memory.available_bytes
                used = 0 if available is None else total - available
                states.append(DeviceState((node.node, RAM), total, max(0, used), "RAM"))
        return states

    def node(self, name: str) -> NodeReading | None:
        return next((n for n in self.nodes if n.node == name), None)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for ``GET /api/hardware`` and ``swapd hardware``."""
        return {
            "captured_at": self.captured_at,
            "nodes": [
                {
                    "node": node.node,
                    "local": node.local,
                    "driver_version": node.driver_version,
                    **cluster_dict(node),
                    "sources": [asdict(s) for s in node.sources],
                    "devices": [_device_dict(d) for d in node.devices],
                    "memory": asdict(node.memory) if node.memory is not None else None,
                }
                for node in self.nodes
            ],
        }


def cluster_dict(node: NodeReading) -> dict[str, Any]:
    """A cluster node's ``cluster``, ``label`` and ``resources`` (nothing for other nodes)."""
    if not node.cluster:
        return {}
    return {"cluster": node.cluster, "label": node.label, "resources": dict(node.resources)}


def _device_dict(device: Device) -> dict[str, Any]:
    total, free = device.total_bytes, device.free_bytes
    return {
        "index": device.index,
        "name": device.name,
        "vendor": device.vendor,
        "uuid": device.uuid,
        "total_bytes": total,
        "free_bytes": free,
        "used_bytes": total - free if total is not None and free is not None else None,
        "source": device.source,
    }


class Inventory(Protocol):
    async def read(self, *, refresh: bool = False) -> Reading: ...

    async def usage(self, node: str, pids: Sequence[int]) -> dict[int, int]:
        """Bytes per device index (``placement.RAM`` for system RAM) used by ``pids`` and
        their descendants on ``node``; {} when it cannot be measured."""
        ...


def from_config(config: Config, environ: Mapping[str, str] | None = None) -> Inventory:
    """The inventory for ``config``'s nodes (or the fake one when ``SWAPD_FAKE_GPUS`` is set),
    joined with the Ray cluster's nodes (``swapd.rayinventory``) when a model runs on Ray."""
    env = os.environ if environ is None else environ
    refresh = config.placement.refresh
    base: Inventory
    if spec := env.get(FAKE_ENV):
        base = FakeInventory(refresh=refresh, spec_path=Path(spec))
    else:
        base = HostInventory.for_nodes(config.nodes.values(), refresh=refresh)
    if not reads(config)[1]:
        return base
    from swapd.rayinventory import RayInventory  # it builds on this module

    return Joined((base, RayInventory(refresh=refresh, settings=config.cluster.ray)))


def reads(config: Config) -> tuple[Mapping[str, NodeConfig], bool]:
    """What the inventory of ``config`` asks: its nodes, and whether the Ray cluster's (a
    reload that changes this needs a new inventory)."""
    return config.nodes, any(m.driver == "ray" for m in config.models.values())


@dataclass
class Joined:
    """Several inventories read at once as one: their nodes side by side (names must not
    clash: a Ray node is named by its id). ``usage`` asks the one whose reading has the node."""

    parts: tuple[Inventory, ...]
    _owner: dict[str, Inventory] = field(default_factory=dict, repr=False)

    async def read(self, *, refresh: bool = False) -> Reading:
        readings: list[Reading | None] = [None] * len(self.parts)

        async def one(i: int) -> None:
            readings[i] = await self.parts[i].read(refresh=refresh)

        async with anyio.create_task_group() as tg:
            for i in range(len(self.parts)):
                tg.start_soon(one, i)
        done = [r for r in readings if r is not None]
        self._owner = {
            n.node: part for part, r in zip(self.parts, done, strict=True) for n in r.nodes
        }
        captured = min((r.captured_at for r in done), default=time.time())
        return Reading(captured, tuple(n for r in done for n in r.nodes))

    async def usage(self, node: str, pids: Sequence[int]) -> dict[int, int]:
        part = self._owner.get(node)
        return {} if part is None else await part.usage(node, pids)


# ── caching ─────────────────────────────────────────────────────────────────────────────────


@dataclass
class _Cached:
    """A reading reused for ``refresh`` seconds; one read at a time, and a caller that waited
    for a read begun after it asked takes that one, even with ``refresh=True``. Subclasses say
    how to read."""

    refresh: float = 10.0
    _reading: Reading | None = field(default=None, repr=False)
    _read_at: float = field(default=float("-inf"), repr=False)  # monotonic start of _reading
    _lock: anyio.Lock = field(default_factory=anyio.Lock, repr=False)

    async def read(self, *, refresh: bool = False) -> Reading:
        asked = time.monotonic()
        async with self._lock:
            cached = self._reading
            if cached is not None and (
                self._read_at >= asked or (not refresh and asked - self._read_at < self.refresh)
            ):
                return cached
            started = time.monotonic()
            reading = await self._read_now()
            self._reading, self._read_at = reading, started
            return reading

    async def _read_now(self) -> Reading:
        raise NotImplementedError


# ── this machine and the configured nodes ───────────────────────────────────────────────────


@dataclass
class HostInventory(_Cached):
    """This machine through :class:`swapd.hardware.Inventory`'s probes (node ``local_name``,
    ``local=True``) and the other nodes through ``nvidia-smi`` on their machine
    (``local=False``). ``run`` runs the remote tools (tests pass failing or recorded ones)."""

    local_name: str = LOCAL
    local_gpus: tuple[GpuConfig, ...] | None = None  # declared for this machine
    remotes: tuple[NodeConfig, ...] = ()
    probes: hardware.Inventory = field(default_factory=hardware.Inventory)
    run: Runner = hardware.run_tool
    proc: Path = Path("/proc")

    @classmethod
    def for_nodes(cls, nodes: Iterable[NodeConfig], *, refresh: float = 10.0) -> HostInventory:
        """This machine is the first node whose endpoint is on it (``local`` when none is);
        the others are remote."""
        nodes = list(nodes)
        here = next((n for n in nodes if is_local(n)), None)
        return cls(
            refresh=refresh,
            local_name=here.name if here is not None else LOCAL,
            local_gpus=here.gpus if here is not None else None,
            remotes=tuple(n for n in nodes if n is not here),
        )

    async def _read_now(self) -> Reading:
        """Every node at once, each in a worker thread (remote tools may take their full
        timeout)."""
        slots: list[NodeReading | None] = [None] * (1 + len(self.remotes))

        async def one(i: int) -> None:
            if i == 0:
                slots[0] = await anyio.to_thread.run_sync(self.read_local)
            else:
                slots[i] = await anyio.to_thread.run_sync(
                    read_remote, self.remotes[i - 1], self.run
                )

        async with anyio.create_task_group() as tg:
            for i in range(len(slots)):
                tg.start_soon(one, i)
        return Reading(time.time(), tuple(r for r in slots if r is not None))

    def read_local(self) -> NodeReading:
        """This machine now (blocking)."""
        snap = self.probes.detect()
        devices, sources = snap.devices, snap.sources
        if not devices and self.local_gpus is not None:
            devices = _declared(self.local_gpus)
            sources = (*sources, Source("declared", True))
        return NodeReading(
            self.local_name, devices, snap.memory, sources, True, snap.driver_version
        )

    async def usage(self, node: str, pids: Sequence[int]) -> dict[int, int]:
        """This machine only: GPU memory of the pid tree per device (NVML, else
        ``nvidia-smi``) and its resident RAM."""
        if node != self.local_name or not pids:
            return {}
        reading = (await self.read()).node(self.local_name)
        nvidia = [d for d in reading.devices if d.vendor == "nvidia"] if reading else []
        return await anyio.to_thread.run_sync(self.usage_now, list(pids), nvidia)

    def usage_now(self, pids: list[int], nvidia: list[Device]) -> dict[int, int]:
        """What :meth:`usage` answers, blocking; ``nvidia`` are this machine's NVIDIA devices
        (their uuids name the devices of ``nvidia-smi``'s process list)."""
        tree = hardware.pid_tree(pids, self.proc)
        used: dict[int, int] = {}
        if nvidia:
            try:
                processes = hardware.gpu_processes(nvidia, self.probes.run)
            except ProbeError:
                processes = []
            for p in processes:
                if p.pid in tree and p.index is not None and p.used_bytes:
                    used[p.index] = used.get(p.index, 0) + p.used_bytes
        if rss := hardware.rss_bytes(tree, self.proc):
            used[RAM] = rss
        return used


def read_remote(node: NodeConfig, run: Runner = hardware.run_tool) -> NodeReading:
    """A remote node through ``nvidia-smi`` on its machine (``ssh``), else its declared GPUs.
    Blocking; never raises."""
    sources: list[Source] = []
    devices: tuple[Device, ...] = ()
    version = None
    prefix = command_prefix(node)
    if prefix is not None:
        try:
            answer = hardware.probe_nvidia_smi(lambda argv: run([*prefix, *argv]))
        except ProbeError as exc:
            sources.append(Source("nvidia-smi", False, str(exc)))
        except Exception as exc:  # a source must never take the others down
            sources.append(Source("nvidia-smi", False, f"{type(exc).__name__}: {exc}"))
        else:
            sources.append(Source("nvidia-smi", True))
            devices, version = tuple(answer.devices), answer.driver_version
    elif node.gpus is None:
        why = f"no way to run nvidia-smi on {node.docker}: declare nodes.{node.name}.gpus"
        sources.append(Source("nvidia-smi", False, why))
    if not devices and node.gpus is not None:
        devices = _declared(node.gpus)
        sources.append(Source("declared", True))
    return NodeReading(node.name, devices, None, tuple(sources), False, version)


def _declared(gpus: Iterable[GpuConfig]) -> tuple[Device, ...]:
    return tuple(
        Device(g.index, "nvidia", f"GPU {g.index}", g.memory, None, source="declared") for g in gpus
    )


# ── fake GPUs (SWAPD_FAKE_GPUS) ─────────────────────────────────────────────────────────────


@dataclass
class FakeInventory(_Cached):
    """The nodes of a fake GPU spec (see :mod:`swapd.echo.gpu`), all local: a device's free
    memory is its total less its ``external`` bytes and what live fake engines hold; a node
    has RAM only when the spec gives ``ram``. The spec is read again on every refresh."""

    spec_path: Path = Path()
    proc: Path = Path("/proc")

    async def _read_now(self) -> Reading:
        return await anyio.to_thread.run_sync(self.read_spec)

    def read_spec(self) -> Reading:
        """Every node of the spec now (blocking)."""
        try:
            spec = fake.Spec.load(self.spec_path)
        except fake.FakeGpuError as exc:
            failed = NodeReading(LOCAL, (), None, (Source("fake", False, str(exc)),))
            return Reading(time.time(), (failed,))
        live = spec.live()
        nodes = []
        for node in spec.nodes.values():
            devices = tuple(
                Device(
                    index=g.index,
                    vendor="nvidia",
                    name=g.name,
                    total_bytes=g.memory,
                    free_bytes=spec.free(node.name, g.index, live),
                    uuid=f"GPU-fake-{node.name}-{g.index}",
                    source="fake",
                )
                for g in node.gpus
            )
            memory = None
            if node.ram is not None:
                memory = Memory(node.ram, spec.free(node.name, RAM, live))
            nodes.append(NodeReading(node.name, devices, memory, (Source("fake", True),)))
        return Reading(time.time(), tuple(nodes))

    async def usage(self, node: str, pids: Sequence[int]) -> dict[int, int]:
        """What the fake engines among ``pids`` and their descendants hold on ``node``."""
        return await anyio.to_thread.run_sync(self.usage_now, node, list(pids))

    def usage_now(self, node: str, pids: list[int]) -> dict[int, int]:
        """What :meth:`usage` answers, blocking."""
        try:
            spec = fake.Spec.load(self.spec_path)
        except fake.FakeGpuError:
            return {}
        tree = hardware.pid_tree(pids, self.proc)
        used: dict[int, int] = {}
        for allocation in spec.live():
            if allocation.pid in tree and allocation.node == node:
                for index in allocation.devices:
                    used[index] = used.get(index, 0) + allocation.bytes_per_device
        return used
