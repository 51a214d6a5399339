"""A recipe: its keys, the parsed and checked :class:`Recipe`, and :class:`RecipeError`.

Its ``args`` are a list template whose ``{name}`` placeholders are filled from built-ins
(``model``, ``served_model_name``, ``port``, ``host``, ``model_id``), the recipe's ``defaults`` and
per-model ``set`` overrides. An ``args`` item that is exactly one placeholder whose value is a
list (``"{served_model_names}"``) becomes one argument per element; inside a longer item a list
is joined with commas. Schema: ``docs/recipes.md``.
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
from swapd.recipes import cuda
from swapd.recipes.engines import ENGINES as ENGINE_FACTS

ENGINES = tuple(ENGINE_FACTS)
ENGINE_PORT = {name: engine.port for name, engine in ENGINE_FACTS.items()}
BUILTINS = ("model", "served_model_name", "served_model_names", "port", "host", "model_id")
RUNTIMES = ("container", "process")
RECIPE_KEYS = {
    "engine": "vllm | trtllm | llamacpp | sglang",
    "runtime": "container (default: image, run by the docker driver) | process (the "
    "entrypoint and args become the model's cmd, run by the process driver)",
    "description": "one line shown by `swapd recipes list`",
    "image": "container image, or {cu129: image, cu130: image} (the node's driver picks)",
    "model": "Hugging Face model id (the {model} placeholder); left out, each model entry "
    "must set it (set: {model: ORG/REPO})",
    "served_model_name": "name the engine serves the model under (default: model)",
    "entrypoint": "argv replacing the image's entrypoint (optional); the program with "
    "runtime: process",
    "args": "argument list template with {placeholders}",
    "defaults": "placeholder values",
    "env": "environment of the container (of the process with runtime: process)",
    "mounts": "bind mounts, 'host:container[:ro]'",
    "resources": "{gpus: all | N | [ids] | '{tensor_parallel}', memory: size}",
    "health": "readiness path (default /health)",
    "readiness_timeout": "seconds the engine may take to become healthy",
    "sleep": "{levels: [1, 2]}: the engine supports sleep/wake (vLLM --enable-sleep-mode)",
    "gated": "true: the weights need a Hugging Face token (HF_TOKEN), checked before start",
    "docker": "other container settings: shm_size, ipc, network_mode, user, extra",
}
# The keys of the docker driver's spec (a ``docker:`` block), with what they mean.
SPEC_KEYS = {
    name: info.description or ""
    for name, info in DockerOptions.model_fields.items()
    if name not in ("driver", "images", "gated")
}


class RecipeError(SwapdError):
    code = "invalid_recipe"
    exit_code = 2


@dataclass(frozen=True, slots=True)
class Recipe:
    name: str
    path: Path
    engine: str
    image: str  # the image of the oldest CUDA line when ``images`` has several; "" for a process
    model: str  # "" when the recipe leaves it to the model entry (``set: {model: …}``)
    args: tuple[str, ...]
    runtime: str = "container"  # or "process": no image, run by the process driver
    description: str = ""
    served_model_name: str = ""
    entrypoint: tuple[str, ...] | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[str, ...] = ()
    images: Mapping[str, str] = field(default_factory=dict)  # CUDA line -> image
    gpus: Any = None  # all | N | [ids] | a template like "{tensor_parallel}"
    memory: str | None = None
    health: str = "/health"
    readiness_timeout: float | None = None
    sleep_levels: tuple[int, ...] = ()
    gated: bool = False
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


def _images(value: Any, problems: list[str]) -> tuple[str, dict[str, str]]:
    """(default image, CUDA line -> image) from ``image:`` (a string or a mapping)."""
    if isinstance(value, str) and value.strip():
        return value.strip(), {}
    if isinstance(value, dict) and value:
        images: dict[str, str] = {}
        for line, image in value.items():
            problem = cuda.line_problem(str(line))
            if problem is not None:
                problems.append(f"image: {problem}")
            elif not isinstance(image, str) or not image.strip():
                problems.append(f"image.{line}: expected an image name")
            else:
                images[str(line)] = image.strip()
        if images and len(images) == len(value):
            return images[cuda.oldest(images)], images
        return "", {}
    problems.append("image: required (an image, or {cu129: image, cu130: image})")
    return "", {}


def _gpus(value: Any, problems: list[str]) -> Any:
    if isinstance(value, bool):
        problems.append(f"resources.gpus: expected all, a count, ids or a template, got {value}")
        return None
    if value is None or value == "all" or (isinstance(value, int) and value > 0):
        return value
    if isinstance(value, list) and value:
        return tuple(str(v) for v in value)
    if isinstance(value, str) and "{" in value:
        return value  # a template, filled at render (e.g. "{tensor_parallel}")
    problems.append(f"resources.gpus: expected all, a count, ids or a template, got {value!r}")
    return None


def docker_problems(docker: Mapping[str, Any], prefix: str = "docker.") -> list[str]:
    """Settings that do not go together: ``shm_size`` with ``ipc: host`` (the host's /dev/shm
    is shared, so a size means nothing; Podman refuses the pair)."""
    if docker.get("ipc") == "host" and docker.get("shm_size"):
        return [
            f"{prefix}shm_size: has no effect with ipc: host (the host's /dev/shm is shared) "
            "and Podman refuses the pair; drop one of them"
        ]
    return []


def process_problems(data: Mapping[str, Any]) -> list[str]:
    """What a ``runtime: process`` recipe may not have (container settings) or must have (the
    program to run)."""
    problems = [
        f"{key}: a runtime: process recipe runs no container; drop {key}"
        for key in ("image", "mounts", "docker")
        if data.get(key) is not None
    ]
    if not data.get("entrypoint"):
        problems.append("entrypoint: required with runtime: process (the program: [vllm, serve])")
    return problems


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
    runtime = str(data.get("runtime", "container"))
    if runtime not in RUNTIMES:
        problems.append(f"runtime: expected one of {', '.join(RUNTIMES)}, got {runtime!r}")
    images: dict[str, str] = {}
    if runtime == "process":
        image = ""
        problems += process_problems(data)
    else:
        image, images = _images(data.get("image"), problems)
    if "model" in data and (not isinstance(data["model"], str) or not data["model"].strip()):
        problems.append("model: a Hugging Face model id, or left out: each model entry sets it")
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
    if not isinstance(resources, dict) or set(resources) - {"gpus", "memory", "gpu_memory"}:
        problems.append("resources: expected {gpus, memory}")
        resources = {}
    memory = resources.get("memory", resources.get("gpu_memory"))  # gpu_memory: older name
    if memory is not None and parse_size(memory) is None:
        problems.append(f"resources.memory: not a size: {memory!r}")
    gpus = _gpus(resources.get("gpus"), problems)
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
    problems += docker_problems(docker)
    gated = data.get("gated", False)
    if not isinstance(gated, bool):
        problems.append("gated: expected true or false")
        gated = False
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
        image=image,
        model=str(data.get("model", "")),
        args=args,
        runtime=runtime,
        description=str(data.get("description", "")).strip(),
        served_model_name=str(data.get("served_model_name", "") or ""),
        entrypoint=entrypoint,
        defaults=dict(defaults),
        env=_str_map(data.get("env"), "env", problems),
        mounts=_str_list(data.get("mounts"), "mounts", problems),
        images=images,
        gpus=gpus,
        memory=None if memory is None else str(memory),
        health=health,
        readiness_timeout=float(timeout) if timeout is not None else None,
        sleep_levels=levels,
        gated=gated,
        docker=dict(docker),
    )
    known = set(recipe.placeholders())
    templates = (*args, *(entrypoint or ()), *recipe.env.values())
    for template in (*templates, *([gpus] if isinstance(gpus, str) else [])):
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
