"""A model's container: its labels, its config hash, and the docker-py ``containers.run`` arguments.

Containers are named ``swapd-<model>-<port>`` (``swapd.recipes.container_name``) and labelled
``swapd.model``, ``swapd.instance`` (the swapd that made it), ``swapd.node``,
``swapd.config-hash`` and ``swapd.devices`` (what an adopted container must still match).

Placement: an NVIDIA (or unknown-vendor) assignment requests exactly its device ids instead of
the spec's ``gpus``; inside the container they are numbered from 0, so no
``CUDA_VISIBLE_DEVICES`` is set there. An AMD assignment sets ``HIP_VISIBLE_DEVICES`` (the
spec maps ``/dev/kfd`` and ``/dev/dri``). A CPU assignment keeps the spec's ``gpus``. The late
macros (``${GPU}``, ``${GPU_MEMORY_FRACTION}``, …) are filled in the command, entrypoint and
environment; ``${GPU}``/``${GPUS}`` name the host's device indices.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

from swapd.assignment import Assignment, expand
from swapd.config.model import ModelConfig, NodeConfig
from swapd.config.options import DockerOptions
from swapd.nodes import endpoint_of
from swapd.nodes import is_local as node_is_local

LABEL_MODEL = "swapd.model"
LABEL_INSTANCE = "swapd.instance"
LABEL_NODE = "swapd.node"
LABEL_HASH = "swapd.config-hash"
LABEL_DEVICES = "swapd.devices"


def spec_of(model: ModelConfig) -> DockerOptions:
    """The container spec of a ``driver: docker`` model."""
    if not isinstance(model.options, DockerOptions):
        raise TypeError(f"model {model.id} (driver {model.driver}) has no docker options")
    return model.options


def host_port(model: ModelConfig) -> int | None:
    """The port swapd reaches the engine on: the spec's ``host_port``, else the model's."""
    port = spec_of(model).host_port
    return port if port is not None else model.port


def config_hash(model: ModelConfig, node: NodeConfig) -> str:
    data = {
        "spec": model.options.as_dict(),
        "env": dict(sorted(model.env.items())),
        "node": node.name,
        "endpoint": endpoint_of(node),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def devices_label(assignment: Assignment | None) -> str:
    """The ``swapd.devices`` label: the assigned device indices, "" without a GPU assignment."""
    if assignment is None:
        return ""
    return ",".join(str(d) for d in assignment.devices)


def run_kwargs(
    model: ModelConfig,
    spec: DockerOptions,
    *,
    name: str,
    node: NodeConfig,
    instance: str,
    port: int | None,
    assignment: Assignment | None = None,
    macros: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ``containers.run`` keywords for ``model`` on ``node`` (creates missing local mounts),
    on the devices of ``assignment`` when placement chose them, with the late ``macros``
    filled in."""
    values = macros or {}
    network = spec.network_mode
    env = {**model.env, **spec.env}  # the model's `env:` list, then the spec's
    if assignment is not None and assignment.vendor == "amd":
        env = {**assignment.env(), **env}
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "command": [expand(arg, values) for arg in spec.command],
        "name": name,
        "detach": True,
        "labels": {
            LABEL_MODEL: model.id,
            LABEL_INSTANCE: instance,
            LABEL_NODE: node.name,
            LABEL_HASH: config_hash(model, node),
            LABEL_DEVICES: devices_label(assignment),
        },
        "environment": {key: expand(value, values) for key, value in env.items()},
        "volumes": [_volume(v, node_is_local(node)) for v in spec.volumes],
        "user": spec.user or f"{os.getuid()}:{os.getgid()}",
        "network_mode": network,
    }
    if spec.entrypoint is not None:
        kwargs["entrypoint"] = [expand(arg, values) for arg in spec.entrypoint]
    if requests := _device_requests(spec.gpus, assignment):
        kwargs["device_requests"] = requests
    if spec.shm_size:
        kwargs["shm_size"] = spec.shm_size
    if spec.ipc:
        kwargs["ipc_mode"] = spec.ipc
    if network != "host" and spec.port is not None and port is not None:
        kwargs["ports"] = {f"{spec.port}/tcp": port}
    kwargs.update(spec.extra)
    return kwargs


def _device_requests(
    gpus: str | int | tuple[str, ...] | None, assignment: Assignment | None
) -> list[Any]:
    from docker.types import DeviceRequest

    if assignment is not None and assignment.devices:
        if assignment.vendor == "amd":
            return []  # AMD GPUs are device files plus HIP_VISIBLE_DEVICES, not a request
        ids = [str(d) for d in assignment.devices]
        return [DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]
    if gpus is None:
        return []
    if gpus == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if isinstance(gpus, int):
        return [DeviceRequest(count=gpus, capabilities=[["gpu"]])]
    return [DeviceRequest(device_ids=list(gpus), capabilities=[["gpu"]])]


def _volume(spec: str, local: bool) -> str:
    host, _, rest = spec.partition(":")
    host = os.path.expanduser(host)
    if local and host.startswith("/") and not os.path.exists(host):
        # Docker would create a missing source as root; make it as swapd's own user instead.
        with contextlib.suppress(OSError):
            os.makedirs(host, exist_ok=True)
    return f"{host}:{rest}"
