"""The Ray cluster's nodes in the placement inventory, and where a ``driver: ray`` model may go.

Ray knows each node's id, address, resources (``CPU``, ``GPU``, custom ones) and labels; the
memory of its GPUs it does not know. A tiny probe actor per node (``num_cpus=0``, pinned with
``NodeAffinitySchedulingStrategy``, owned by swapd's Ray job so it dies with swapd) runs
swapd's own probes there (:func:`read_here`: NVML, ``nvidia-smi``, ``rocm-smi``,
``/proc/meminfo``; or the node's ``SWAPD_FAKE_GPUS`` spec, so tests give each fake Ray node its
fake GPUs through the node's environment) and measures what an engine's process tree uses
(:func:`usage_here`). Every alive node becomes a :class:`~swapd.inventory.NodeReading` with
``cluster="ray"``, named by its Ray node id (what the Ray driver pins the actor to), with a
readable ``label`` (its ``ray.node`` label, else its ip and custom resource names) and its Ray
resources. A node whose probe does not answer keeps its Ray GPUs, of unknown memory, and says
why in its sources; the cluster not answering is one source error, never fatal.

swapd's placer decides on these nodes like on any other (:func:`eligible`: a model's
``ray.node`` pin and ``ray.resources`` narrow them; :func:`gpu_demand`: ``ray.resources.GPU``
is its device count); the driver gets the chosen node id in ``Assignment.node``.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from swapd import raycluster
from swapd.echo import gpu as fake
from swapd.errors import ClusterUnavailable
from swapd.hardware import Device, Source
from swapd.inventory import FakeInventory, HostInventory, NodeReading, Reading, _Cached
from swapd.raycluster import RayNode

if TYPE_CHECKING:
    from swapd.config.model import ModelConfig, RayClusterConfig
    from swapd.need import Demand

CLUSTER = "ray"  # NodeReading.cluster of a Ray node
LABEL_KEY = "ray.node"  # a node label naming the node readably (ray start --labels)
PROBE_TIMEOUT = 30.0  # seconds the probes of one reading may take (a cold actor included)
CONNECT_WAIT = 30.0  # seconds a reading waits for swapd's connection to the cluster
# Ray's own resources; the others are custom (they name a node's role: a100, box_a, …)
_BUILTIN = frozenset({"CPU", "GPU", "memory", "object_store_memory"})
_PREFIXES = ("node:", "accelerator_type:")


def label(node: RayNode) -> str:
    """``box-a`` (its ``ray.node`` label), else ``10.0.0.5`` or ``10.0.0.5/a100`` (its ip and
    custom resource names)."""
    if named := node.labels.get(LABEL_KEY):
        return named
    custom = sorted(custom_resources(node.total))
    return "/".join([node.ip, "+".join(custom)]) if custom else node.ip


def custom_resources(resources: Mapping[str, float]) -> dict[str, float]:
    """Resources other than Ray's own (``CPU``, ``GPU``, ``memory``, ``node:<ip>``, …)."""
    return {k: v for k, v in resources.items() if k not in _BUILTIN and not k.startswith(_PREFIXES)}


# ── on each node ────────────────────────────────────────────────────────────────────────────


def _fake_spec(environ: Mapping[str, str]) -> Path | None:
    spec = environ.get(fake.ENV)
    return Path(spec) if spec else None


def _fake_node(reading: Reading, node_id: str) -> NodeReading | None:
    """The spec's node named by this Ray node's id, else its first."""
    return reading.node(node_id) or next(iter(reading.nodes), None)


def read_here(node_id: str, environ: Mapping[str, str] | None = None) -> NodeReading:
    """This machine's devices, RAM and sources through swapd's probes (blocking): the fake
    spec of ``SWAPD_FAKE_GPUS`` when set (its node named ``node_id``, else its first)."""
    env = os.environ if environ is None else environ
    if (spec := _fake_spec(env)) is not None:
        found = _fake_node(FakeInventory(spec_path=spec).read_spec(), node_id)
        if found is not None:
            return found
        return NodeReading(node_id, (), None, (Source("fake", False, f"{spec}: no nodes"),))
    return HostInventory(local_name=node_id).read_local()


def usage_here(
    node_id: str,
    pids: Sequence[int],
    devices: Sequence[Device],
    environ: Mapping[str, str] | None = None,
) -> dict[int, int]:
    """Bytes per device index that ``pids`` and their descendants use on this machine
    (blocking); ``devices`` are its devices as :func:`read_here` saw them."""
    env = os.environ if environ is None else environ
    if (spec := _fake_spec(env)) is not None:
        inventory = FakeInventory(spec_path=spec)
        node = _fake_node(inventory.read_spec(), node_id)
        return inventory.usage_now(node.node, list(pids)) if node is not None else {}
    nvidia = [d for d in devices if d.vendor == "nvidia"]
    return HostInventory(local_name=node_id).usage_now(list(pids), nvidia)


class Probe:
    """The per-node probe actor's class (made remote by :func:`_probe_class`)."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.devices: tuple[Device, ...] = ()

    def read(self) -> NodeReading:
        reading = read_here(self.node_id)
        self.devices = reading.devices
        return reading

    def usage(self, pids: list[int]) -> dict[int, int]:
        return usage_here(self.node_id, pids, self.devices)


_remote_probe: Any = None


def _probe_class() -> Any:
    global _remote_probe
    if _remote_probe is None:
        import ray

        _remote_probe = ray.remote(num_cpus=0, max_restarts=0)(Probe)
    return _remote_probe


# ── in swapd ────────────────────────────────────────────────────────────────────────────────


@dataclass
class RayInventory(_Cached):
    """The Ray cluster's alive nodes, each read by its probe actor, once swapd is connected
    (``swapd.raycluster``; a reading waits up to :data:`CONNECT_WAIT` for that)."""

    settings: RayClusterConfig | None = None  # cluster.ray: where to connect, if first
    nodes: Callable[[], Sequence[RayNode]] = raycluster.nodes
    timeout: float = PROBE_TIMEOUT
    _probes: dict[str, Any] = field(default_factory=dict, repr=False)  # node id → actor

    async def _read_now(self) -> Reading:
        raycluster.start(self.settings)  # the driver may not have begun connecting yet
        try:
            with anyio.fail_after(CONNECT_WAIT):
                await raycluster.connected()
        except (ClusterUnavailable, TimeoutError) as exc:
            why = str(exc) or f"not connected within {CONNECT_WAIT:g}s"
            return _unreachable(why)
        return await anyio.to_thread.run_sync(self.read_now)

    def read_now(self) -> Reading:
        """Every alive node of the cluster now (blocking); never raises."""
        try:
            nodes = [n for n in self.nodes() if n.alive]
        except Exception as exc:  # the cluster is unreachable: one source says so
            failed = Source(CLUSTER, False, f"{type(exc).__name__}: {exc}")
            return Reading(
                time.time(), (NodeReading(CLUSTER, (), None, (failed,), False, cluster=CLUSTER),)
            )
        for gone in set(self._probes) - {n.node_id for n in nodes}:
            self._kill(gone)
        answers = self._ask([n.node_id for n in nodes], "read")
        readings = tuple(_node_reading(n, answers.get(n.node_id)) for n in nodes)
        return Reading(time.time(), readings)

    def _ask(self, node_ids: Iterable[str], method: str, *args: Any) -> dict[str, Any]:
        """Call ``method`` on each node's probe at once; an answer, or the exception, per node."""
        import ray

        pending: dict[Any, str] = {}
        out: dict[str, Any] = {}
        for node_id in node_ids:
            try:
                ref = getattr(self._probe(node_id), method).remote(*args)
            except Exception as exc:
                out[node_id] = exc
            else:
                pending[ref] = node_id
        ready, late = ray.wait(list(pending), num_returns=len(pending), timeout=self.timeout)
        for ref in ready:
            try:
                out[pending[ref]] = ray.get(ref)
            except Exception as exc:  # the actor died (node gone) or the probe failed
                out[pending[ref]] = exc
                self._kill(pending[ref])
        for ref in late:
            out[pending[ref]] = TimeoutError(f"no answer within {self.timeout:g}s")
        return out

    def _probe(self, node_id: str) -> Any:
        actor = self._probes.get(node_id)
        if actor is None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
            actor = _probe_class().options(scheduling_strategy=strategy).remote(node_id)
            self._probes[node_id] = actor
        return actor

    def _kill(self, node_id: str) -> None:
        actor = self._probes.pop(node_id, None)
        if actor is not None:
            import ray

            with contextlib.suppress(Exception):  # already gone with its node
                ray.kill(actor)

    async def usage(self, node: str, pids: Sequence[int]) -> dict[int, int]:
        """What ``pids`` (and their descendants) use on Ray node ``node``, from its probe."""
        if node not in self._probes or not pids:
            return {}
        answer = (await anyio.to_thread.run_sync(self._ask, [node], "usage", list(pids)))[node]
        return answer if isinstance(answer, dict) else {}

    def close(self) -> None:
        for node_id in list(self._probes):
            self._kill(node_id)


def _unreachable(why: str) -> Reading:
    """The reading of a cluster that cannot be asked: one entry named ``ray`` saying why."""
    failed = NodeReading(CLUSTER, (), None, (Source(CLUSTER, False, why),), False, cluster=CLUSTER)
    return Reading(time.time(), (failed,))


def _node_reading(node: RayNode, answer: object) -> NodeReading:
    """The probe's reading as the node Ray lists; without one, Ray's GPUs of unknown memory."""
    reading = answer
    if not isinstance(reading, NodeReading):
        why = f"{type(answer).__name__}: {answer}" if answer is not None else "no answer"
        gpus = range(int(node.total.get("GPU", 0)))
        devices = tuple(Device(i, "nvidia", f"GPU {i}", None, None, source=CLUSTER) for i in gpus)
        reading = NodeReading(node.node_id, devices, None, (Source("probe", False, why),))
    return replace(
        reading,
        node=node.node_id,
        local=False,
        cluster=CLUSTER,
        label=label(node),
        aliases=(node.ip, *node.labels.values()),
        resources=dict(node.total),
    )


# ── placement on Ray nodes ──────────────────────────────────────────────────────────────────


def is_ray(model: ModelConfig) -> bool:
    return model.driver == CLUSTER


def _options(model: ModelConfig) -> tuple[Mapping[str, float], str | None]:
    options = model.options
    return getattr(options, "resources", {}), getattr(options, "node", None)


def pinned(node: NodeReading, pin: str) -> bool:
    """Whether ``ray.node: pin`` names ``node``: its id, label, ip or a label value (as
    :meth:`swapd.raycluster.RayNode.named` says)."""
    return pin in (node.node, node.label, *node.aliases)


def eligible(model: ModelConfig, nodes: Iterable[NodeReading]) -> tuple[str, ...]:
    """The Ray nodes a ``driver: ray`` model may run on: its pin, and every resource it asks
    for within the node's totals (what is free Ray says at start: ``no capacity on <node>``)."""
    wanted, pin = _options(model)
    return tuple(
        n.node
        for n in nodes
        if n.cluster == CLUSTER
        and n.node != CLUSTER  # the cluster's own error entry
        and (pin is None or pinned(n, pin))
        and all(n.resources.get(k, 0.0) >= v for k, v in wanted.items())
    )


def gpu_demand(model: ModelConfig, need: Demand) -> Demand:
    """A Ray model's device count is its ``ray.resources.GPU`` (rounded up: a fraction shares a
    device by memory) unless ``resources.gpus`` or ``devices`` say; none asked: a CPU engine."""
    res = model.resources
    if not is_ray(model) or res.gpus is not None or res.devices:
        return need
    gpus = _options(model)[0].get("GPU", 0.0)
    count = math.ceil(gpus)
    per_device = need.per_device
    if need.source == "declared":
        per_device = -(-res.memory // max(1, count))
    return replace(need, count=count, per_device=per_device, all_gpus=False)
