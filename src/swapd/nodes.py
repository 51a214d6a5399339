"""Nodes: where Docker engines run, what GPU memory they have, and which model sits where.

``nodes:`` in the config maps a name to ``{docker: ENDPOINT, gpus: [{index, memory}]}`` with
ENDPOINT ``unix://…``, ``tcp://host:port`` or ``ssh://user@host``. Without ``nodes:`` there is one
node, ``local``, on the default Docker socket. GPUs that are not declared are discovered with
``nvidia-smi --query-gpu=index,memory.total,memory.used --format=csv`` (locally, or over ``ssh``
for an ``ssh://`` node); a node whose GPUs are unknown accepts any model.

``Placements`` is the docker driver's own, deliberately simple choice when memory-aware
placement (``swapd.placement``) is inactive: a model pinned with ``node:`` goes there; otherwise
to the first node whose free GPU memory (total minus the models placed there that are not asleep)
fits ``resources.memory``. When placement is active the driver is assigned its node and devices
(``swapd.assignment``) and only records them here.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from swapd.config.model import GpuConfig, NodeConfig
from swapd.config.schema import parse_size
from swapd.placement import gib

log = logging.getLogger("swapd.nodes")

LOCAL = "local"
DEFAULT_ENDPOINT = "unix:///var/run/docker.sock"
MIB = 1024 * 1024
_QUERY = ["--query-gpu=index,memory.total,memory.used", "--format=csv"]
_NUMBER = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(MiB|GiB|KiB|B)?\s*\Z", re.IGNORECASE)
_UNITS = {"b": 1, "kib": 1024, "mib": MIB, "gib": 1024 * MIB}

ErrorAt = Callable[[tuple[str | int, ...], str], None]


# ── config ──────────────────────────────────────────────────────────────────────────────────


def build_nodes(raw: Mapping[str, Any] | None, error: ErrorAt) -> dict[str, NodeConfig]:
    """``NodeConfig`` per name from the validated ``nodes:`` block (``local`` when absent)."""
    if not raw:
        return {LOCAL: NodeConfig(LOCAL, "")}
    nodes: dict[str, NodeConfig] = {}
    for name, node in raw.items():
        endpoint = node.docker.strip()
        scheme = urlsplit(endpoint).scheme if endpoint else "unix"
        if scheme not in ("unix", "tcp", "ssh", "http", "https"):
            error(
                ("nodes", name, "docker"),
                f"nodes.{name}.docker: expected unix://…, tcp://host:port or ssh://user@host, "
                f"got {endpoint!r}",
            )
        gpus: list[GpuConfig] | None = None
        if node.gpus is not None:
            gpus = []
            for i, gpu in enumerate(node.gpus):
                size = parse_size(gpu.memory)
                if size is None:
                    error(
                        ("nodes", name, "gpus", i, "memory"),
                        f"nodes.{name}.gpus[{i}].memory: expected a size like 80GiB, "
                        f"got {gpu.memory!r}",
                    )
                gpus.append(GpuConfig(gpu.index, size or 0))
        nodes[name] = NodeConfig(name, endpoint, None if gpus is None else tuple(gpus))
    return nodes


def endpoint_of(node: NodeConfig) -> str:
    return node.docker or DEFAULT_ENDPOINT


def host_of(node: NodeConfig) -> str:
    """The address engines on ``node`` are reached at (host networking)."""
    parts = urlsplit(endpoint_of(node))
    if parts.scheme in ("tcp", "ssh", "http", "https") and parts.hostname:
        return parts.hostname
    return "127.0.0.1"


def is_local(node: NodeConfig) -> bool:
    return host_of(node) in ("127.0.0.1", "localhost", "::1")


# ── GPU discovery ───────────────────────────────────────────────────────────────────────────


def _mem(text: str) -> int | None:
    m = _NUMBER.match(text)
    if m is None:
        return None
    unit = (m.group(2) or "MiB").lower()  # nvidia-smi's nounits form is MiB
    return int(float(m.group(1)) * _UNITS[unit])


@dataclass(frozen=True, slots=True)
class GpuReading:
    index: int
    total: int | None  # bytes; None where nvidia-smi says N/A (DGX Spark's unified memory)
    used: int | None  # bytes; None where nvidia-smi says N/A


def parse_nvidia_smi(text: str) -> list[GpuReading]:
    """Parse ``nvidia-smi --query-gpu=index,memory.total,memory.used --format=csv[,nounits]``.

    Tolerates a missing header, ``[N/A]`` / ``[Not Supported]`` values and blank lines;
    rejects output that is not that CSV (``ValueError`` naming the line)."""
    rows = [r for r in csv.reader(io.StringIO(text.strip())) if any(c.strip() for c in r)]
    out: list[GpuReading] = []
    for n, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if cells and cells[0].lower() == "index":
            continue  # the header
        if len(cells) != 3 or not cells[0].isdigit():
            raise ValueError(f"nvidia-smi output line {n}: unexpected {','.join(cells)!r}")
        total, used = _mem(cells[1]), _mem(cells[2])
        for value, text in ((total, cells[1]), (used, cells[2])):
            if value is None and not text.startswith("["):  # [N/A], [Not Supported]
                raise ValueError(f"nvidia-smi output line {n}: unexpected value {text!r}")
        out.append(GpuReading(int(cells[0]), total, used))
    return out


def command_prefix(node: NodeConfig) -> list[str] | None:
    """How to run a command on ``node``'s machine: ``ssh …`` for an ``ssh://`` node, nothing
    for this machine; None when there is no way (a remote ``tcp://`` Docker endpoint)."""
    parts = urlsplit(endpoint_of(node))
    if parts.scheme == "ssh":
        target = parts.netloc.rsplit(":", 1)[0] if parts.port else parts.netloc
        return ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", target]
    return [] if is_local(node) else None


def discover_gpus(node: NodeConfig, *, timeout: float = 10.0) -> tuple[GpuConfig, ...] | None:
    """GPUs of ``node`` through ``nvidia-smi`` (local or ``ssh``); None when unknown. Blocking."""
    prefix = command_prefix(node)
    if prefix is None or (not prefix and not shutil.which("nvidia-smi")):
        return None
    argv = [*prefix, "nvidia-smi"]
    try:
        proc = subprocess.run(
            [*argv, *_QUERY], capture_output=True, text=True, timeout=timeout, check=True
        )
        readings = parse_nvidia_smi(proc.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        log.warning("node %s: GPU discovery failed: %s", node.name, exc)
        return None
    if not readings or any(r.total is None for r in readings):
        return None  # unknown capacity (e.g. unified memory): the node accepts any model
    return tuple(GpuConfig(r.index, r.total) for r in readings if r.total is not None)


# ── placement ───────────────────────────────────────────────────────────────────────────────


@dataclass(slots=True)
class Placement:
    model: str
    node: str
    memory: int
    asleep: bool = False


class Placements:
    """Which model runs on which node, with how much GPU memory (thread-safe; one per docker
    driver runtime)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_owner: dict[int, Placement] = {}
        self._gpus: dict[str, tuple[GpuConfig, ...] | None] = {}

    def gpus(self, node: NodeConfig) -> tuple[GpuConfig, ...] | None:
        """Declared GPUs, else discovered ones (remembered per node name + endpoint)."""
        if node.gpus is not None:
            return node.gpus
        key = f"{node.name}@{endpoint_of(node)}"
        if key not in self._gpus:
            self._gpus[key] = discover_gpus(node)
        return self._gpus[key]

    def used(self, node: str) -> int:
        with self._lock:
            return sum(p.memory for p in self._by_owner.values() if p.node == node and not p.asleep)

    def free(self, node: NodeConfig) -> int | None:
        gpus = self.gpus(node)
        if gpus is None:
            return None
        return sum(g.memory for g in gpus) - self.used(node.name)

    def choose(self, model: str, memory: int, candidates: Iterable[NodeConfig]) -> NodeConfig:
        """The first candidate whose free GPU memory fits ``memory`` (blocking: discovery)."""
        reasons = []
        candidates = list(candidates)
        for node in candidates:
            free = self.free(node)
            if free is None or memory <= free:
                return node
            reasons.append(f"{node.name}: {gib(free)} free")
        raise LookupError(
            f"no node has {gib(memory)} of free GPU memory for {model} ({'; '.join(reasons)})"
        )

    def place(self, owner: object, model: str, node: str, memory: int) -> None:
        with self._lock:
            self._by_owner[id(owner)] = Placement(model, node, memory)

    def set_asleep(self, owner: object, asleep: bool) -> None:
        with self._lock:
            p = self._by_owner.get(id(owner))
            if p is not None:
                p.asleep = asleep

    def release(self, owner: object) -> None:
        with self._lock:
            self._by_owner.pop(id(owner), None)

    def snapshot(self) -> list[Placement]:
        with self._lock:
            return [Placement(p.model, p.node, p.memory, p.asleep) for p in self._by_owner.values()]
