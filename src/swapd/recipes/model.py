"""A recipe: its keys, the parsed and checked :class:`Recipe`, and :class:`RecipeError`.

Its ``args`` are a list template whose ``{name}`` placeholders are filled from built-ins
(``model``, ``served_model_name``, ``port``, ``host``, ``model_id``), the recipe's ``defaults`` and
per-model ``set`` overrides. Schema: ``docs/recipes.md``.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from swapd.config.options import DockerOptions
from swapd.config.schema import parse_size
from swapd.errors import SwapdError

ENGINES = ("vllm", "trtllm", "llamacpp", "sglang")
ENGINE_PORT = {"vllm": 8000, "trtllm": 8000, "llamacpp": 8080, "sglang": 30000}
BUILTINS = ("model", "served_model_name", "port", "host", "model_id")
RECIPE_KEYS = {
    "engine": "vllm | trtllm | llamacpp | sglang",
    "description": "one line shown by `swapd recipes list`",
    "image": "container image",
    "model": "Hugging Face model id (the {model} placeholder)",
    "served_model_name": "name the engine serves the model under (default: model)",
    "entrypoint": "argv replacing the image's entrypoint (optional)",
    "args": "argument list template with {placeholders}",
    "defaults": "placeholder values",
    "env": "environment of the container",
    "mounts": "bind mounts, 'host:container[:ro]'",
    "resources": "{gpus: all | N | [ids], gpu_memory: size}",
    "health": "readiness path (default /health)",
    "readiness_timeout": "seconds the engine may take to become healthy",
    "sleep": "{levels: [1, 2]}: the engine supports sleep/wake (vLLM --enable-sleep-mode)",
    "docker": "other container settings: shm_size, ipc, network_mode, user, extra",
}
# The keys of the docker driver's spec (a ``docker:`` block), with what they mean.
SPEC_KEYS = {
    name: info.description or ""
    for name, info in DockerOptions.model_fields.items()
    if name != "driver"
}


class RecipeError(SwapdError):
    code = "invalid_recipe"
    exit_code = 2


@dataclass(frozen=True, slots=True)
class Recipe:
    name: str
    path: Path
    engine: str
    image: str
    model: str
    args: tuple[str, ...]
    description: str = ""
    served_model_name: str = ""
    entrypoint: tuple[str, ...] | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[str, ...] = ()
    gpus: Any = None
    gpu_memory: str | None = None
    health: str = "/health"
    readiness_timeout: float | None = None
    sleep_levels: tuple[int, ...] = ()
    docker: Mapping[str, Any] = field(default_factory=dict)

    def placeholders(self) -> list[str]:
        """Every name a ``{placeholder}`` or ``set`` may use."""
        return sorted(set(BUILTINS) | set(self.defaults))


def _str_map(value: Any, what: str, problems: list[str]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{what}: expected a mapping")
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _str_list(value: Any, what: str, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return tuple(str(v) for v in value)
    problems.append(f"{what}: expected a list of strings")
    return ()


def spec_problems(spec: Mapping[str, Any], prefix: str = "") -> list[str]:
    """What is wrong with a docker spec (as ``DockerOptions`` checks it), one line each."""
    try:
        DockerOptions.model_validate(spec)
    except ValidationError as exc:
        return [
            f"{prefix}{'.'.join(map(str, err['loc']))}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        ]
    return []


def fields_of(template: str) -> list[str]:
    """The placeholder names in one template string (``{{`` escapes a brace)."""
    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise RecipeError(f"bad template {template!r}: {exc}") from exc


def parse(data: Any, name: str, path: Path) -> Recipe:
    """A checked recipe; every problem is reported at once, naming the recipe file."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {name} ({path}): expected a mapping")
    for key in data:
        if key not in RECIPE_KEYS:
            problems.append(f"unknown key {key!r} (known: {', '.join(RECIPE_KEYS)})")
    engine = str(data.get("engine", ""))
    if engine not in ENGINES:
        problems.append(f"engine: expected one of {', '.join(ENGINES)}, got {engine!r}")
    for key in ("image", "model"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            problems.append(f"{key}: required (a string)")
    args = _str_list(data.get("args"), "args", problems)
    entry = data.get("entrypoint")
    entrypoint = None if entry is None else _str_list(entry, "entrypoint", problems)
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        problems.append("defaults: expected a mapping")
        defaults = {}
    for key in defaults:
        if key in BUILTINS and key not in ("host",):
            problems.append(f"defaults: {key!r} is a built-in placeholder and cannot be set here")
    resources = data.get("resources") or {}
    if not isinstance(resources, dict) or set(resources) - {"gpus", "gpu_memory"}:
        problems.append("resources: expected {gpus, gpu_memory}")
        resources = {}
    if resources.get("gpu_memory") is not None and parse_size(resources["gpu_memory"]) is None:
        problems.append(f"resources.gpu_memory: not a size: {resources['gpu_memory']!r}")
    sleep = data.get("sleep")
    levels: tuple[int, ...] = ()
    if sleep is not None:
        raw_levels = sleep.get("levels") if isinstance(sleep, dict) else None
        if not isinstance(raw_levels, list) or not all(v in (1, 2) for v in raw_levels):
            problems.append("sleep: expected {levels: [1, 2]} (the levels the engine supports)")
        else:
            levels = tuple(raw_levels)
    docker = data.get("docker") or {}
    if not isinstance(docker, dict):
        problems.append("docker: expected a mapping")
        docker = {}
    docker = dict(docker)
    for key in list(docker):
        if key not in SPEC_KEYS or key in ("image", "command", "entrypoint", "host_port"):
            problems.append(f"docker: unknown key {key!r}")
            docker.pop(key)
    problems += spec_problems(docker, "docker.")
    timeout = data.get("readiness_timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)):
        problems.append("readiness_timeout: expected seconds")
        timeout = None
    health = str(data.get("health", "/health"))
    if not health.startswith("/"):
        problems.append(f"health: expected a path starting with '/', got {health!r}")
    recipe = Recipe(
        name=name,
        path=path,
        engine=engine,
        image=str(data.get("image", "")),
        model=str(data.get("model", "")),
        args=args,
        description=str(data.get("description", "")).strip(),
        served_model_name=str(data.get("served_model_name", "") or ""),
        entrypoint=entrypoint,
        defaults=dict(defaults),
        env=_str_map(data.get("env"), "env", problems),
        mounts=_str_list(data.get("mounts"), "mounts", problems),
        gpus=resources.get("gpus"),
        gpu_memory=None if resources.get("gpu_memory") is None else str(resources["gpu_memory"]),
        health=health,
        readiness_timeout=float(timeout) if timeout is not None else None,
        sleep_levels=levels,
        docker=dict(docker),
    )
    known = set(recipe.placeholders())
    for template in (*args, *(entrypoint or ()), *recipe.env.values()):
        try:
            names = fields_of(template)
        except RecipeError as exc:
            problems.append(exc.message)
            continue
        for f in names:
            if f not in known:
                problems.append(
                    f"unknown placeholder {{{f}}} in {template!r}; "
                    f"known: {', '.join(sorted(known))}"
                )
    if problems:
        raise RecipeError(f"recipe {name} ({path}):\n  " + "\n  ".join(problems))
    return recipe
