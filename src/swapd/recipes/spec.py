"""Rendering: a recipe → the ``docker`` driver's spec, and the equivalent ``docker run`` line.

``render`` produces the same mapping a ``driver: docker`` model writes by hand in its ``docker:``
block; ``docker_run_line`` prints it as a command for humans (swapd itself uses docker-py).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from swapd.recipes.model import ENGINE_PORT, Recipe, RecipeError


def values(
    recipe: Recipe, overrides: Mapping[str, Any], *, port: int, model_id: str | None = None
) -> dict[str, Any]:
    """Placeholder values: built-ins, then defaults, then ``overrides`` (checked)."""
    known = recipe.placeholders()
    for key in overrides:
        if key not in known:
            raise RecipeError(
                f"recipe {recipe.name}: unknown placeholder {key!r}; known: {', '.join(known)}"
            )
    served = recipe.served_model_name or recipe.model
    vals: dict[str, Any] = {
        "model": recipe.model,
        "served_model_name": served,
        "port": port,
        "host": "0.0.0.0",
        "model_id": model_id or served,
        **recipe.defaults,
    }
    vals.update(overrides)
    if "served_model_name" not in overrides and "model" in overrides:
        vals["served_model_name"] = recipe.served_model_name or vals["model"]
    return vals


def _fill(template: str, vals: Mapping[str, Any]) -> str:
    return template.format_map({k: "" if v is None else v for k, v in vals.items()})


def render(
    recipe: Recipe,
    overrides: Mapping[str, Any] | None = None,
    *,
    port: int | None = None,
    model_id: str | None = None,
    extra_args: Sequence[str] = (),
) -> dict[str, Any]:
    """The docker driver spec for ``recipe``: image, command, env, volumes, gpus, …"""
    port = port if port is not None else ENGINE_PORT.get(recipe.engine, 8000)
    vals = values(recipe, dict(overrides or {}), port=port, model_id=model_id)
    spec: dict[str, Any] = {
        "image": recipe.image,
        "command": [_fill(a, vals) for a in recipe.args] + list(extra_args),
    }
    if recipe.entrypoint is not None:
        spec["entrypoint"] = [_fill(a, vals) for a in recipe.entrypoint]
    spec["host_port"] = port
    if recipe.env:
        spec["env"] = {k: _fill(v, vals) for k, v in recipe.env.items()}
    if recipe.mounts:
        spec["volumes"] = list(recipe.mounts)
    if recipe.gpus is not None:
        spec["gpus"] = recipe.gpus
    spec["network_mode"] = "host"
    spec.update(recipe.docker)
    spec["health"] = recipe.health
    return spec


def container_name(model_id: str, port: int | None) -> str:
    """``swapd-<model>-<port>``, with characters Docker refuses replaced."""
    safe = "".join(c if c.isalnum() or c in "_.-" else "-" for c in model_id).strip("-.")
    return f"swapd-{safe or 'model'}-{port if port is not None else 0}"


def docker_run_line(spec: Mapping[str, Any], name: str, user: str | None = None) -> str:
    """The ``docker run`` command equivalent to ``spec`` (for humans; swapd uses docker-py)."""
    argv = ["docker", "run", "-d", "--name", name]
    network = spec.get("network_mode", "host")
    argv += ["--network", str(network)]
    if network != "host" and spec.get("port") is not None:
        argv += ["-p", f"{spec.get('host_port')}:{spec['port']}"]
    if user or spec.get("user"):
        argv += ["--user", str(spec.get("user") or user)]
    gpus = spec.get("gpus")
    if gpus is not None:
        value = ",".join(map(str, gpus)) if isinstance(gpus, list) else str(gpus)
        argv += ["--gpus", f"device={value}" if isinstance(gpus, list) else value]
    if spec.get("ipc"):
        argv += ["--ipc", str(spec["ipc"])]
    if spec.get("shm_size"):
        argv += ["--shm-size", str(spec["shm_size"])]
    for key, value in (spec.get("env") or {}).items():
        argv += ["-e", f"{key}={value}"]
    for volume in spec.get("volumes") or []:
        host, _, rest = str(volume).partition(":")
        argv += ["-v", f"{os.path.expanduser(host)}:{rest}"]
    entry = spec.get("entrypoint")
    if entry:
        argv += ["--entrypoint", str(entry[0])]
    argv.append(str(spec["image"]))
    if entry:
        argv += [str(a) for a in entry[1:]]
    command = spec.get("command") or []
    argv += [str(a) for a in (shlex.split(command) if isinstance(command, str) else command)]
    return shlex.join(argv)
