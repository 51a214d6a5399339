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
from swapd.recipes import cuda
from swapd.recipes.model import ENGINE_PORT, Recipe, RecipeError, fields_of, spec_problems

LOCAL_HOST = "127.0.0.1"  # {host} on the local node: engines are reached through swapd only


def values(
    recipe: Recipe,
    overrides: Mapping[str, Any],
    *,
    port: int | str,
    model_id: str | None = None,
    host: str = LOCAL_HOST,
) -> dict[str, Any]:
    """Placeholder values: built-ins, then defaults, then ``overrides`` (checked); ``port`` is
    a number, or ``${PORT}`` for a process recipe (allocated when the config loads)."""
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
        "host": host,
        "model_id": model_id or served,
        **recipe.defaults,
    }
    vals.update(overrides)
    if "served_model_name" not in overrides and "model" in overrides:
        vals["served_model_name"] = recipe.served_model_name or vals["model"]
    if "served_model_names" not in overrides:  # the swapd id first: engines report the first
        vals["served_model_names"] = list(
            dict.fromkeys([vals["model_id"], vals["served_model_name"]])
        )
    return vals


def with_model(recipe: Recipe, vals: dict[str, Any]) -> dict[str, Any]:
    """``vals`` for a run: a recipe without a ``model`` needs the model entry's."""
    if not str(vals["model"]).strip():
        raise RecipeError(
            f"recipe {recipe.name} has no model: set it in the model entry, "
            f"recipe: {{name: {recipe.name}, set: {{model: ORG/REPO}}}}"
        )
    return vals


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def fill(template: str, vals: Mapping[str, Any]) -> str:
    return template.format_map({k: _text(v) for k, v in vals.items()})


def fill_args(templates: Sequence[str], vals: Mapping[str, Any]) -> list[str]:
    """Each template filled; one that is exactly a list-valued placeholder gives its items."""
    out: list[str] = []
    for template in templates:
        names = fields_of(template)
        value = vals.get(names[0]) if len(names) == 1 else None
        if template == f"{{{names[0] if names else ''}}}" and isinstance(value, list | tuple):
            out += [str(v) for v in value]
        else:
            out.append(fill(template, vals))
    return out


def gpus_of(recipe: Recipe, vals: Mapping[str, Any]) -> Any:
    """The recipe's ``resources.gpus`` with a template (``"{tensor_parallel}"``) filled."""
    gpus = recipe.gpus
    if not isinstance(gpus, str) or gpus == "all":
        return gpus
    filled = fill(gpus, vals).strip()
    if not filled.isdigit() or int(filled) < 1:
        raise RecipeError(
            f"recipe {recipe.name}: resources.gpus {gpus!r} gives {filled!r}, not a count"
        )
    return int(filled)


def render(
    recipe: Recipe,
    overrides: Mapping[str, Any] | None = None,
    *,
    port: int | None = None,
    model_id: str | None = None,
    extra_args: Sequence[str] = (),
    host: str = LOCAL_HOST,
    driver: str | None = None,
) -> DockerOptions:
    """The docker driver spec for ``recipe``: image (the CUDA line ``driver`` supports, the
    oldest when None), command, env, volumes, gpus, …; ``host`` is what ``{host}`` binds."""
    port = port if port is not None else ENGINE_PORT.get(recipe.engine, 8000)
    vals = with_model(
        recipe, values(recipe, dict(overrides or {}), port=port, model_id=model_id, host=host)
    )
    image = recipe.image
    if recipe.images:
        _, image = cuda.choose(recipe.images, driver)
    spec: dict[str, Any] = {
        "image": image,
        "command": fill_args(recipe.args, vals) + list(extra_args),
    }
    if recipe.images:
        spec["images"] = dict(recipe.images)
    if recipe.entrypoint is not None:
        spec["entrypoint"] = fill_args(recipe.entrypoint, vals)
    spec["host_port"] = port
    if recipe.env:
        spec["env"] = {k: fill(v, vals) for k, v in recipe.env.items()}
    if recipe.mounts:
        spec["volumes"] = list(recipe.mounts)
    if recipe.gpus is not None:
        spec["gpus"] = gpus_of(recipe, vals)
    spec["network_mode"] = "host"
    spec.update(recipe.docker)
    spec["health"] = recipe.health
    if recipe.gated:
        spec["gated"] = True
    try:
        return DockerOptions.model_validate(spec)
    except ValidationError:
        problems = "\n  ".join(spec_problems(spec))
        raise RecipeError(f"recipe {recipe.name} ({recipe.path}):\n  {problems}") from None


def container_name(model_id: str, port: int | None) -> str:
    """``swapd-<model>-<port>``, with characters Docker refuses replaced."""
    safe = "".join(c if c.isalnum() or c in "_.-" else "-" for c in model_id).strip("-.")
    return f"swapd-{safe or 'model'}-{port if port is not None else 0}"


def _pairs(value: Any) -> list[tuple[str, Any]]:
    return list(value.items()) if isinstance(value, dict) else []


def _ulimit(item: Any) -> str:
    """``name=soft:hard`` from docker-py's ``{name, soft, hard}`` (or ``Name``/``Soft``/…)."""
    data = {str(k).lower(): v for k, v in dict(item).items()}
    soft, hard = data.get("soft"), data.get("hard")
    return f"{data.get('name')}={soft}:{hard if hard is not None else soft}"


# docker-py ``containers.run`` keyword -> (docker run flag, how one value is written)
_REPEATED = {
    "cap_add": "--cap-add",
    "cap_drop": "--cap-drop",
    "devices": "--device",
    "security_opt": "--security-opt",
    "group_add": "--group-add",
    "dns": "--dns",
    "device_cgroup_rules": "--device-cgroup-rule",
}
_SINGLE = {
    "mem_limit": "--memory",
    "memswap_limit": "--memory-swap",
    "cpuset_cpus": "--cpuset-cpus",
    "cpu_shares": "--cpu-shares",
    "pids_limit": "--pids-limit",
    "runtime": "--runtime",
    "working_dir": "--workdir",
    "hostname": "--hostname",
    "stop_signal": "--stop-signal",
    "pid_mode": "--pid",
    "userns_mode": "--userns",
    "oom_score_adj": "--oom-score-adj",
}
_FLAGS = {"privileged": "--privileged", "init": "--init", "read_only": "--read-only"}


def extra_flags(extra: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(``docker run`` arguments for ``extra``'s docker-py keywords, keywords with no flag)."""
    argv: list[str] = []
    missing: list[str] = []
    for key, value in extra.items():
        if key == "ulimits":
            for item in value or []:
                argv += ["--ulimit", _ulimit(item)]
        elif key in _REPEATED:
            for item in value if isinstance(value, list | tuple) else [value]:
                argv += [_REPEATED[key], str(item)]
        elif key in _SINGLE:
            argv += [_SINGLE[key], str(value)]
        elif key in _FLAGS:
            if value:
                argv.append(_FLAGS[key])
        elif key == "nano_cpus":
            argv += ["--cpus", f"{int(value) / 1e9:g}"]
        elif key == "sysctls":
            argv += [a for k, v in _pairs(value) for a in ("--sysctl", f"{k}={v}")]
        elif key == "tmpfs":
            mounts = _pairs(value) or [(m, "") for m in value or []]
            argv += [a for k, v in mounts for a in ("--tmpfs", f"{k}:{v}" if v else str(k))]
        elif key == "labels":
            argv += [a for k, v in _pairs(value) for a in ("--label", f"{k}={v}")]
        elif key == "extra_hosts":
            argv += [a for k, v in _pairs(value) for a in ("--add-host", f"{k}:{v}")]
        elif key == "restart_policy" and isinstance(value, dict):
            name, count = value.get("Name", "no"), value.get("MaximumRetryCount")
            argv += ["--restart", f"{name}:{count}" if count else str(name)]
        else:
            missing.append(key)
    return argv, missing


def docker_run_line(spec: DockerOptions, name: str, user: str | None = None) -> str:
    """The ``docker run`` command equivalent to ``spec`` (for humans; swapd uses docker-py).
    An ``extra`` keyword without a ``docker run`` flag is named in a trailing comment."""
    argv = ["docker", "run", "-d", "--name", name]
    argv += ["--network", spec.network_mode]
    if spec.network_mode != "host" and spec.port is not None:
        argv += ["-p", f"{spec.host_port}:{spec.port}"]
    if user or spec.user:
        argv += ["--user", str(spec.user or user)]
    gpus = spec.gpus
    if isinstance(gpus, tuple):
        argv += ["--gpus", f'"device={",".join(gpus)}"']
    elif gpus is not None:
        argv += ["--gpus", str(gpus)]
    if spec.ipc:
        argv += ["--ipc", spec.ipc]
    if spec.shm_size:
        argv += ["--shm-size", spec.shm_size]
    flags, missing = extra_flags(spec.extra)
    argv += flags
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
    line = shlex.join(argv)
    if missing:
        line += f"  # extra with no docker run flag (docker-py only): {', '.join(missing)}"
    return line
