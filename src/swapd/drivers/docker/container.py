"""A model's container: its labels, its config hash, and the docker-py ``containers.run`` arguments.

Containers are named ``swapd-<model>-<port>`` (``swapd.recipes.container_name``) and labelled
``swapd.model``, ``swapd.instance`` (the swapd that made it), ``swapd.node`` and
``swapd.config-hash`` (what an adopted container must still match).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
from collections.abc import Mapping
from typing import Any

from swapd.config.model import ModelConfig, NodeConfig
from swapd.nodes import endpoint_of
from swapd.nodes import is_local as node_is_local

LABEL_MODEL = "swapd.model"
LABEL_INSTANCE = "swapd.instance"
LABEL_NODE = "swapd.node"
LABEL_HASH = "swapd.config-hash"


def config_hash(model: ModelConfig, node: NodeConfig) -> str:
    data = {
        "spec": model.options,
        "env": dict(sorted(model.env.items())),
        "node": node.name,
        "endpoint": endpoint_of(node),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_kwargs(
    model: ModelConfig,
    spec: Mapping[str, Any],
    *,
    name: str,
    node: NodeConfig,
    instance: str,
    port: int | None,
) -> dict[str, Any]:
    """The ``containers.run`` keywords for ``model`` on ``node`` (creates missing local mounts)."""
    network = str(spec.get("network_mode", "host"))
    kwargs: dict[str, Any] = {
        "image": str(spec["image"]),
        "command": _argv(spec.get("command")),
        "name": name,
        "detach": True,
        "labels": {
            LABEL_MODEL: model.id,
            LABEL_INSTANCE: instance,
            LABEL_NODE: node.name,
            LABEL_HASH: config_hash(model, node),
        },
        "environment": {  # the model's `env:` list, then the spec's own env
            **model.env,
            **{str(k): str(v) for k, v in (spec.get("env") or {}).items()},
        },
        "volumes": [_volume(str(v), node_is_local(node)) for v in spec.get("volumes") or []],
        "user": str(spec.get("user") or f"{os.getuid()}:{os.getgid()}"),
        "network_mode": network,
    }
    if spec.get("entrypoint") is not None:
        kwargs["entrypoint"] = _argv(spec["entrypoint"])
    if requests := _device_requests(spec.get("gpus")):
        kwargs["device_requests"] = requests
    if spec.get("shm_size"):
        kwargs["shm_size"] = str(spec["shm_size"])
    if spec.get("ipc"):
        kwargs["ipc_mode"] = str(spec["ipc"])
    if network != "host" and spec.get("port") is not None and port is not None:
        kwargs["ports"] = {f"{spec['port']}/tcp": port}
    kwargs.update(spec.get("extra") or {})
    return kwargs


def _argv(value: Any) -> list[str] | None:
    if value is None:
        return None
    return shlex.split(value) if isinstance(value, str) else [str(a) for a in value]


def _device_requests(gpus: Any) -> list[Any]:
    from docker.types import DeviceRequest

    if gpus is None:
        return []
    if gpus == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if isinstance(gpus, int):
        return [DeviceRequest(count=gpus, capabilities=[["gpu"]])]
    return [DeviceRequest(device_ids=[str(g) for g in gpus], capabilities=[["gpu"]])]


def _volume(spec: str, local: bool) -> str:
    host, _, rest = spec.partition(":")
    host = os.path.expanduser(host)
    if local and host.startswith("/") and not os.path.exists(host):
        # Docker would create a missing source as root; make it as swapd's own user instead.
        with contextlib.suppress(OSError):
            os.makedirs(host, exist_ok=True)
    return f"{host}:{rest}"
