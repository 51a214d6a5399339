"""Fake GPUs: the spec file named by ``SWAPD_FAKE_GPUS`` and the memory fake engines hold.

The spec is JSON::

    {"nodes": {"a": {"gpus": [{"index": 0, "name": "Fake H100", "memory": 85899345920,
                               "external": 0}, ...],
                     "ram": 68719476736},
               "b": {...}},
     "allocations": "<dir>"}

``external`` (optional, bytes) simulates memory held by processes swapd does not manage;
``utilization`` (percent) and ``temperature`` (degrees C), both optional, are what ``swapd nodes``
shows for the device;
``ram`` (optional, bytes) gives a node system RAM for CPU engines (device index
:data:`swapd.placement.RAM`). A relative ``allocations`` folder is relative to the spec file.

A fake engine (``python -m swapd.echo --allocate 8GiB``) calls :func:`allocate`: on node
``SWAPD_NODE`` (default: the spec's first node) and devices ``CUDA_VISIBLE_DEVICES`` (or
``HIP_VISIBLE_DEVICES``; unset: device 0; empty or ``-1``: the node's RAM) it checks that each
device has its share free, then writes ``<allocations>/<pid>.json``
``{"node", "devices", "bytes_per_device", "started"}`` and holds it while it lives. Files of dead
processes (or of a pid since reused: ``started`` is the process start time) count for nothing and
are removed by the next reader. Check and write happen under a lock, so two engines starting at
once cannot both take the last free bytes.

Standard library only: the echo engine imports it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swapd.drivers.pidfile import alive
from swapd.placement import RAM

ENV = "SWAPD_FAKE_GPUS"
GIB = 1024**3


class FakeGpuError(Exception):
    """The spec or the environment does not name a usable fake device."""


class OutOfMemory(FakeGpuError):
    """Not enough free fake memory; the message reads like CUDA's."""


@dataclass(frozen=True, slots=True)
class FakeDevice:
    index: int  # RAM for the node's system memory
    name: str
    memory: int  # bytes
    external: int = 0  # bytes held by processes swapd does not manage
    utilization: float | None = None  # percent, for swapd nodes
    temperature: float | None = None  # degrees C, for swapd nodes


@dataclass(frozen=True, slots=True)
class FakeNode:
    name: str
    gpus: tuple[FakeDevice, ...]
    ram: int | None = None  # bytes of system RAM; None: the node has none to offer

    def device(self, index: int) -> FakeDevice | None:
        if index == RAM:
            return FakeDevice(RAM, "Fake RAM", self.ram) if self.ram is not None else None
        return next((g for g in self.gpus if g.index == index), None)


@dataclass(frozen=True, slots=True)
class Allocation:
    pid: int
    node: str
    devices: tuple[int, ...]
    bytes_per_device: int

    def on(self, node: str, index: int) -> int:
        """Bytes this allocation holds on ``node``'s device ``index``."""
        return self.bytes_per_device if node == self.node and index in self.devices else 0


@dataclass(frozen=True, slots=True)
class Spec:
    nodes: Mapping[str, FakeNode]
    allocations: Path  # folder of <pid>.json files

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Spec:
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FakeGpuError(f"fake GPU spec {path}: {exc}") from exc
        try:
            return cls._parse(raw, path)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FakeGpuError(f"fake GPU spec {path}: not the expected shape ({exc!r})") from exc

    @classmethod
    def _parse(cls, raw: Any, path: Path) -> Spec:
        nodes = {}
        for name, node in raw["nodes"].items():
            gpus = tuple(
                FakeDevice(
                    index=int(gpu.get("index", i)),
                    name=str(gpu.get("name", "Fake GPU")),
                    memory=int(gpu["memory"]),
                    external=int(gpu.get("external", 0)),
                    utilization=_optional(gpu.get("utilization")),
                    temperature=_optional(gpu.get("temperature")),
                )
                for i, gpu in enumerate(node.get("gpus", ()))
            )
            ram = node.get("ram")
            nodes[str(name)] = FakeNode(str(name), gpus, int(ram) if ram is not None else None)
        folder = Path(raw.get("allocations") or "allocations")
        return cls(nodes, folder if folder.is_absolute() else path.parent / folder)

    def as_json(self) -> dict[str, Any]:
        """The spec file's content."""
        return {
            "nodes": {
                node.name: {
                    "gpus": [
                        {
                            "index": g.index,
                            "name": g.name,
                            "memory": g.memory,
                            "external": g.external,
                            **({"utilization": g.utilization} if g.utilization is not None else {}),
                            **({"temperature": g.temperature} if g.temperature is not None else {}),
                        }
                        for g in node.gpus
                    ],
                    **({"ram": node.ram} if node.ram is not None else {}),
                }
                for node in self.nodes.values()
            },
            "allocations": str(self.allocations),
        }

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the spec atomically (a reader never sees half a file) and make the folder."""
        self.allocations.mkdir(parents=True, exist_ok=True)
        _write_atomic(Path(path), self.as_json())

    def live(self) -> list[Allocation]:
        """Allocations of processes still alive; files of dead ones are removed."""
        found = []
        with contextlib.suppress(FileNotFoundError):
            for file in sorted(self.allocations.glob("*.json")):
                allocation = _read_allocation(file)
                if allocation is not None:
                    found.append(allocation)
        return found

    def held(self, node: str, index: int, allocations: Sequence[Allocation] | None = None) -> int:
        """Bytes live fake engines hold on ``node``'s device ``index``."""
        return sum(a.on(node, index) for a in (self.live() if allocations is None else allocations))

    def free(self, node: str, index: int, allocations: Sequence[Allocation] | None = None) -> int:
        device = self._device(node, index)
        return max(0, device.memory - device.external - self.held(node, index, allocations))

    def _device(self, node: str, index: int) -> FakeDevice:
        spec = self.nodes.get(node)
        if spec is None:
            raise FakeGpuError(f"fake GPU: no node {node!r} (the spec has {', '.join(self.nodes)})")
        device = spec.device(index)
        if device is None:
            what = "RAM" if index == RAM else f"device {index}"
            have = ", ".join(str(g.index) for g in spec.gpus) or "none"
            raise FakeGpuError(f"fake GPU: node {node} has no {what} (GPUs: {have})")
        return device

    def allocate(self, node: str, devices: Sequence[int], total: int, pid: int) -> Allocation:
        """Take ``total`` bytes split evenly over ``devices`` of ``node`` for ``pid``; raises
        :class:`OutOfMemory` naming the first device without room."""
        if not devices:
            raise FakeGpuError("fake GPU: no device to allocate on")
        share = -(-total // len(devices))  # ceiling: every device holds its full share
        with self._locked():
            allocations = self.live()
            for index in devices:
                free = self.free(node, index, allocations)
                if free < share:
                    where = f"fake RAM {node}" if index == RAM else f"fake GPU {node}:{index}"
                    raise OutOfMemory(
                        f"CUDA error: out of memory ({where}: tried to allocate {size(share)}, "
                        f"free {size(free)})"
                    )
            allocation = Allocation(pid, node, tuple(devices), share)
            _write_atomic(
                self.allocations / f"{pid}.json",
                {
                    "node": node,
                    "devices": list(devices),
                    "bytes_per_device": share,
                    "started": _start_time(pid),
                },
            )
        return allocation

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.allocations.mkdir(parents=True, exist_ok=True)
        with open(self.allocations / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def size(n: int) -> str:
    """``10.00 GiB``, ``512.00 MiB``: how CUDA-ish errors print sizes."""
    for unit, scale in (("GiB", GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def visible_devices(env: Mapping[str, str], node: FakeNode) -> tuple[int, ...]:
    """The devices an engine sees: ``CUDA_VISIBLE_DEVICES`` (or ``HIP_VISIBLE_DEVICES``) as
    indexes; unset: device 0 (or RAM on a node without GPUs); empty or ``-1``: RAM."""
    raw = env.get("CUDA_VISIBLE_DEVICES", env.get("HIP_VISIBLE_DEVICES"))
    if raw is None:
        return (node.gpus[0].index,) if node.gpus else (RAM,)
    if raw.strip() in ("", "-1"):
        return (RAM,)
    try:
        return tuple(int(part) for part in raw.split(","))
    except ValueError as exc:
        raise FakeGpuError(
            f"fake GPU: CUDA_VISIBLE_DEVICES={raw!r} is not a list of indexes"
        ) from exc


def allocate_from_env(total: int, env: Mapping[str, str] | None = None) -> tuple[Spec, Allocation]:
    """What ``--allocate`` does: read the spec, node and devices from the environment and take
    ``total`` bytes for this process."""
    env = os.environ if env is None else env
    spec_path = env.get(ENV)
    if not spec_path:
        raise FakeGpuError(f"fake GPU: --allocate needs {ENV}=<spec.json> in the environment")
    spec = Spec.load(spec_path)
    if not spec.nodes:
        raise FakeGpuError(f"fake GPU spec {spec_path}: no nodes")
    name = env.get("SWAPD_NODE") or next(iter(spec.nodes))
    node = spec.nodes.get(name)
    if node is None:
        raise FakeGpuError(f"fake GPU: no node {name!r} (the spec has {', '.join(spec.nodes)})")
    return spec, spec.allocate(name, visible_devices(env, node), total, os.getpid())


def release(spec: Spec, pid: int) -> None:
    """Drop ``pid``'s allocation (at exit; a crash leaves it to the readers)."""
    with contextlib.suppress(OSError):
        (spec.allocations / f"{pid}.json").unlink()


def _start_time(pid: int) -> int | None:
    """The process start time in clock ticks (``/proc/<pid>/stat`` field 22): tells a pid
    reused by a new process from the one that wrote the file."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        return int(stat.rpartition(")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _read_allocation(file: Path) -> Allocation | None:
    try:
        pid = int(file.stem)
        raw = json.loads(file.read_text(encoding="utf-8"))
        allocation = Allocation(
            pid,
            str(raw["node"]),
            tuple(int(i) for i in raw["devices"]),
            int(raw["bytes_per_device"]),
        )
        started = raw.get("started")
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not ours, or gone meanwhile
    if alive(pid) and (started is None or _start_time(pid) in (None, started)):
        return allocation
    with contextlib.suppress(OSError):
        file.unlink()
    return None


def _write_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def _optional(value: Any) -> float | None:
    return None if value is None else float(value)
