"""Rendering: a recipe → the ``docker`` driver's spec, and the equivalent ``docker run`` line.

``render`` produces the same ``DockerOptions`` a ``driver: docker`` model writes by hand in its
``docker:`` block; ``docker_run_line`` prints it as a command for humans (swapd uses docker-py).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from swapd.config.options import DockerOptions
from swapd.recipes.model import ENGINE_PORT, Recipe, RecipeError, spec_problems


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
) -> DockerOptions:
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
    try:
        return DockerOptions.model_validate(spec)
    except ValidationError:
        problems = "\n  ".join(spec_problems(spec))
        raise RecipeError(f"recipe {recipe.name} ({recipe.path}):\n  {problems}") from None


def container_name(model_id: str, port: int | None) -> str:
    """``swapd-<model>-<port>``, with characters Docker refuses replaced."""
    safe = "".join(c if c.isalnum() or c in "_.-" else "-" for c in model_id).strip("-.")
    return f"swapd-{safe or 'model'}-{port if port is not None else 0}"


def docker_run_line(spec: DockerOptions, name: str, user: str | None = None) -> str:
    """The ``docker run`` command equivalent to ``spec`` (for humans; swapd uses docker-py)."""
    argv = ["docker", "run", "-d", "--name", name]
    argv += ["--network", spec.network_mode]
    if spec.network_mode != "host" and spec.port is not None:
        argv += ["-p", f"{spec.host_port}:{spec.port}"]
    if user or spec.user:
        argv += ["--user", str(spec.user or user)]
    gpus = spec.gpus
    if isinstance(gpus, tuple):
        argv += ["--gpus", f"device={','.join(gpus)}"]
    elif gpus is not None:
        argv += ["--gpus", str(gpus)]
    if spec.ipc:
        argv += ["--ipc", spec.ipc]
    if spec.shm_size:
        argv += ["--shm-size", spec.shm_size]
    for key, value in spec.env.items():
        argv += ["-e", f"{key}={value}"]
    for volume in spec.volumes:
        host, _, rest = volume.partition(":")
        argv += ["-v", f"{os.path.expanduser(host)}:{rest}"]
    entry = spec.entrypoint
    if entry:
        argv += ["--entrypoint", entry[0]]
    argv.append(spec.image)
    if entry:
        argv += entry[1:]
    argv += spec.command
    return shlex.join(argv)
