"""The docker driver's state for one swapd, and the steps around all of its engines.

A :class:`DockerRuntime` owns what used to be module globals: this swapd's instance label, the
containers found at startup to adopt, the containers adopted, the docker-py clients (one per
endpoint) and the GPU placements of the models on each node. Its :meth:`~DockerRuntime.spec` is
the driver spec the registry hands out; every driver made by that spec shares the runtime.

At startup ``reconcile`` removes containers labelled by earlier swapd processes, except healthy
ones whose model and config hash still match, which are adopted; after shutdown ``cleanup``
removes whatever this runtime created or adopted.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import uuid
from typing import Any

import anyio

from swapd.config.model import Config, ModelConfig, NodeConfig
from swapd.drivers.base import DriverSpec, LogSink
from swapd.drivers.docker.clients import Clients
from swapd.drivers.docker.container import (
    LABEL_HASH,
    LABEL_INSTANCE,
    LABEL_MODEL,
    config_hash,
    host_port,
)
from swapd.drivers.docker.driver import DockerDriver
from swapd.nodes import Placements, endpoint_of
from swapd.recipes import container_name

log = logging.getLogger("swapd.docker")

DESCRIPTION = "an engine in a Docker container (vLLM, TensorRT-LLM, llama.cpp, SGLang images)"


class DockerRuntime:
    """What the docker driver's engines share within one swapd (see the module docstring)."""

    def __init__(self, placements: Placements | None = None) -> None:
        self.instance = uuid.uuid4().hex[:12]  # containers labelled otherwise are stale
        self.adoptable: dict[str, str] = {}  # model id -> node name, found by reconcile()
        self.adopted: set[tuple[str, str]] = set()  # (node endpoint, container name)
        self.clients = Clients()
        self.placements = Placements() if placements is None else placements

    def spec(self) -> DriverSpec:
        """The ``docker`` driver spec whose engines share this runtime."""
        return DriverSpec(
            name="docker",
            factory=self.create,
            description=DESCRIPTION,
            reconcile=self.reconcile,
            cleanup=self.cleanup,
        )

    def create(self, model: ModelConfig, logs: LogSink) -> DockerDriver:
        return DockerDriver(model, logs, self)

    async def reconcile(self, config: Config) -> list[str]:
        """Remove containers of earlier swapd processes; return the models whose container is
        healthy and unchanged (to be adopted by starting them)."""
        models = {m.id: m for m in _docker_models(config)}
        adopt: list[str] = []
        for node in _nodes(config):
            try:
                found = await anyio.to_thread.run_sync(self._list, node)
            except Exception as exc:
                log.warning(
                    "node %s (%s): cannot list containers: %s", node.name, endpoint_of(node), exc
                )
                continue
            for c in found:
                labels = c.labels or {}
                if labels.get(LABEL_INSTANCE) == self.instance:
                    continue
                model = models.get(labels.get(LABEL_MODEL, ""))
                keep = (
                    model is not None
                    and c.status == "running"
                    and c.name == container_name(model.id, host_port(model))
                    and labels.get(LABEL_HASH) == config_hash(model, node)
                    and model.id not in adopt
                    and node in model.nodes
                )
                if keep and model is not None:
                    adopt.append(model.id)
                    self.adoptable[model.id] = node.name
                    log.info("node %s: adopting container %s of %s", node.name, c.name, model.id)
                else:
                    log.info("node %s: removing stale container %s", node.name, c.name)
                    with contextlib.suppress(Exception):
                        await anyio.to_thread.run_sync(functools.partial(c.remove, force=True))
        return adopt

    async def cleanup(self, config: Config) -> None:
        """After every engine stopped: remove what this runtime created or adopted, if any is
        left."""
        for node in _nodes(config):
            try:
                found = await anyio.to_thread.run_sync(self._list, node)
            except Exception:
                continue
            for c in found:
                ours = (c.labels or {}).get(LABEL_INSTANCE) == self.instance
                if ours or (endpoint_of(node), c.name) in self.adopted:
                    log.info("node %s: removing leftover container %s", node.name, c.name)
                    with contextlib.suppress(Exception):
                        await anyio.to_thread.run_sync(functools.partial(c.remove, force=True))

    def _list(self, node: NodeConfig) -> list[Any]:
        containers = self.clients.get(node).containers
        return list(containers.list(all=True, filters={"label": LABEL_MODEL}))


def _docker_models(config: Config) -> list[ModelConfig]:
    return [m for m in config.models.values() if m.driver == "docker"]


def _nodes(config: Config) -> list[NodeConfig]:
    seen: dict[str, NodeConfig] = {}
    for m in _docker_models(config):
        for n in m.nodes:
            seen.setdefault(f"{n.name}@{endpoint_of(n)}", n)
    return list(seen.values())
