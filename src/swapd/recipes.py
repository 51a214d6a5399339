"""Recipes: YAML presets (engine + image + model + argument template + resources) → container spec.

A recipe lives in a ``recipes/`` folder as ``<engine>/<name>.yaml`` and is named by that relative
path without the suffix (``vllm/qwen3-8b``). Its ``args`` are a list template whose ``{name}``
placeholders are filled from built-ins (``model``, ``served_model_name``, ``port``, ``host``,
``model_id``), the recipe's ``defaults`` and per-model ``set`` overrides. ``render`` turns a recipe
into the ``docker`` driver's spec (the same mapping a ``driver: docker`` model writes by hand), and
``docker_run_line`` prints the equivalent ``docker run`` command. Schema: ``docs/recipes.md``.

This module also finishes ``driver: docker`` models at config load (``container_model``): the
recipe is rendered, the model's own ``docker:`` block is laid over it, and the spec is checked, so
that mistakes are reported as ``file:line:col`` like every other config error.
"""

from __future__ import annotations

import dataclasses
import io
import os
import shlex
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from swapd.config.model import NodeConfig
from swapd.config.schema import driver_name, parse_size
from swapd.config.tree import MapNode, Scalar
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
    "image": "container image (required)",
    "command": "argv (list) or a shell-words string; macros like ${PORT} apply",
    "entrypoint": "argv replacing the image's entrypoint",
    "port": "the engine's port inside the container (bridge networking)",
    "host_port": "the port swapd reaches the engine on (default ${PORT})",
    "env": "mapping of environment variables",
    "volumes": "list of 'host:container[:ro]'",
    "gpus": "all, a count, or a list of device ids",
    "shm_size": "e.g. 16g",
    "ipc": "ipc mode, e.g. host",
    "user": "uid:gid (default: swapd's own)",
    "network_mode": "host (default) or bridge, …",
    "extra": "any other docker-py containers.run keyword",
    "health": "readiness path (default: the model's checkEndpoint)",
}
RECIPES_ENV = "SWAPD_RECIPES"


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


# ── finding recipes ─────────────────────────────────────────────────────────────────────────


def search_path(config_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Folders searched, in order: ``$SWAPD_RECIPES``, ``<config dir>/recipes``, ``./recipes``,
    the ``recipes/`` shipped with swapd."""
    dirs = [Path(p) for p in os.environ.get(RECIPES_ENV, "").split(os.pathsep) if p]
    if config_dir is not None:
        dirs.append(Path(config_dir) / "recipes")
    dirs.append(Path.cwd() / "recipes")
    dirs.append(Path(__file__).resolve().parent / "recipe_files")  # inside an installed wheel
    dirs.append(Path(__file__).resolve().parents[2] / "recipes")  # source checkout
    seen: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in seen:
            seen.append(d.resolve())
    return seen


def catalog(dirs: Sequence[Path] | None = None) -> dict[str, Path]:
    """Recipe name → file; the first folder that has a name wins."""
    found: dict[str, Path] = {}
    for d in search_path() if dirs is None else dirs:
        for f in sorted(d.rglob("*.y*ml")):
            if f.suffix in (".yaml", ".yml"):
                found.setdefault(f.relative_to(d).with_suffix("").as_posix(), f)
    return dict(sorted(found.items()))


def load(name: str, dirs: Sequence[Path] | None = None) -> Recipe:
    """The recipe called ``name``; an unknown name lists what exists."""
    known = catalog(dirs)
    path = known.get(name.removesuffix(".yaml").removesuffix(".yml"))
    if path is None:
        where = ", ".join(str(d) for d in (search_path() if dirs is None else dirs)) or "none"
        raise RecipeError(
            f"unknown recipe {name!r}; available: {', '.join(known) or '(none)'} "
            f"(searched: {where})"
        )
    return parse_file(path, name)


def parse_file(path: Path, name: str | None = None) -> Recipe:
    try:
        data = YAML(typ="safe").load(path.read_text())
    except (OSError, YAMLError) as exc:
        raise RecipeError(f"recipe {path}: {exc}") from exc
    return parse(data, name or path.stem, path)


# ── parsing and checking ────────────────────────────────────────────────────────────────────


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
    if resources.get("gpu_memory") is not None and _size(resources["gpu_memory"]) is None:
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
    for key in docker:
        if key not in SPEC_KEYS or key in ("image", "command", "entrypoint", "host_port"):
            problems.append(f"docker: unknown key {key!r}")
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


def _size(value: Any) -> int | None:
    return parse_size(value)


# ── rendering ───────────────────────────────────────────────────────────────────────────────


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


# ── config integration: finishing a `driver: docker` model ──────────────────────────────────

ErrorAt = Callable[[tuple[str | int, ...], str], None]


def _recipe_ref(raw: Any) -> tuple[str, dict[str, Any], list[str]] | str:
    """(name, set, args) from ``recipe: NAME`` or ``recipe: {name, set, args}``; else a problem."""
    if isinstance(raw, str):
        return raw.strip(), {}, []
    if isinstance(raw, dict):
        unknown = set(raw) - {"name", "set", "args"}
        if unknown:
            return f"unknown key(s) {', '.join(sorted(unknown))} (valid: name, set, args)"
        name, sets, args = raw.get("name"), raw.get("set") or {}, raw.get("args") or []
        if not isinstance(name, str) or not isinstance(sets, dict) or not isinstance(args, list):
            return "expected {name: NAME, set: {placeholder: value}, args: [extra args]}"
        return name.strip(), dict(sets), [str(a) for a in args]
    return "expected a recipe name or {name, set, args}"


def _overlay(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """A model's ``docker:`` block over a rendered recipe: env/extra merge, volumes add up."""
    out = dict(base)
    for key, value in over.items():
        if key in ("env", "extra") and isinstance(value, dict):
            out[key] = {**(out.get(key) or {}), **value}
        elif key == "volumes" and isinstance(value, list):
            out[key] = [*(out.get(key) or []), *value]
        else:
            out[key] = value
    return out


def check_spec(spec: Mapping[str, Any], error: Callable[[str, str], None]) -> None:
    """Report bad keys and types of a docker spec: ``error(key, message)``."""
    for key in spec:
        if key not in SPEC_KEYS:
            error(key, f"unknown key {key!r}; valid: {', '.join(SPEC_KEYS)}")
    if not isinstance(spec.get("image"), str) or not spec.get("image"):
        error("image", "image is required (a string)")
    command = spec.get("command")
    if command is not None and not isinstance(command, str | list):
        error("command", "command: expected a list of arguments or a string")
    for key in ("env", "extra"):
        if spec.get(key) is not None and not isinstance(spec[key], dict):
            error(key, f"{key}: expected a mapping")
    volumes = spec.get("volumes")
    if volumes is not None:
        if not isinstance(volumes, list):
            error("volumes", "volumes: expected a list of 'host:container[:ro]'")
        else:
            for v in volumes:
                parts = str(v).split(":")
                if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
                    error("volumes", f"volumes: expected 'host:container[:ro]', got {v!r}")
    gpus = spec.get("gpus")
    if gpus is not None and not (
        gpus == "all"
        or (isinstance(gpus, int) and not isinstance(gpus, bool) and gpus > 0)
        or isinstance(gpus, list)
    ):
        error("gpus", f"gpus: expected all, a count or a list of device ids, got {gpus!r}")
    for key in ("port", "host_port"):
        value = spec.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            error(key, f"{key}: expected a port number, got {value!r}")


def container_model(model: Any, raw: Any, nodes: Mapping[str, Any], error: ErrorAt) -> Any:
    """The final ``ModelConfig`` of a ``driver: docker`` model (recipe rendered, spec checked,
    nodes linked); problems go to ``error(path, message)``."""
    base = ("models", model.id)
    spec: dict[str, Any] = dict(model.options)
    port = spec.get("host_port") if isinstance(spec.get("host_port"), int) else model.port
    check = model.check_endpoint
    timeout = model.health_check_timeout
    recipe_name: str | None = None
    sleep_levels: tuple[int, ...] = (1, 2)  # a hand-written spec: the operator knows
    gpu_memory = None
    if raw.recipe is not None:
        ref = _recipe_ref(raw.recipe)
        if isinstance(ref, str):
            error((*base, "recipe"), f"model {model.id}: recipe: {ref}")
            return model
        recipe_name, sets, args = ref
        try:
            recipe = load(recipe_name)
            rendered = render(recipe, sets, port=port, model_id=model.id, extra_args=args)
        except RecipeError as exc:
            error((*base, "recipe"), f"model {model.id}: {exc.message}")
            return model
        spec = _overlay(rendered, spec)
        check = recipe.health if model.check_endpoint == "/health" else check
        timeout = recipe.readiness_timeout or timeout
        sleep_levels = recipe.sleep_levels
        gpu_memory = recipe.gpu_memory
    spec.setdefault("network_mode", "host")
    if port is not None:
        spec["host_port"] = port
    check_spec(spec, lambda key, msg: error((*base, "docker", key), f"model {model.id}: {msg}"))
    if raw.resources is not None and raw.resources.gpu_memory is not None:
        gpu_memory = raw.resources.gpu_memory
    if raw.resources is not None and raw.resources.gpus is not None:
        spec["gpus"] = raw.resources.gpus
    memory = 0
    if gpu_memory is not None:
        size = _size(gpu_memory)
        if size is None:
            error(
                (*base, "resources", "gpu_memory"),
                f"model {model.id}: resources.gpu_memory: not a size: {gpu_memory!r}",
            )
        memory = size or 0
    sleep_level = None
    if raw.sleep is not None:
        sleep_level = raw.sleep.level
        if sleep_level not in sleep_levels:
            error(
                (*base, "sleep"),
                f"model {model.id}: recipe {recipe_name} does not support sleep level "
                f"{sleep_level} (supported: {', '.join(map(str, sleep_levels)) or 'none'})",
            )
    candidates: tuple[NodeConfig, ...] = tuple(nodes.values())
    if raw.node is not None:
        if raw.node not in nodes:
            error(
                (*base, "node"),
                f"model {model.id}: unknown node {raw.node!r}; nodes: {', '.join(nodes)}",
            )
        else:
            candidates = (nodes[raw.node],)
    command = spec.get("command") or []
    argv = tuple(shlex.split(command) if isinstance(command, str) else map(str, command))
    return dataclasses.replace(
        model,
        cmd=argv,
        options=spec,
        check_endpoint=check,
        health_check_timeout=timeout,
        recipe=recipe_name,
        node=raw.node,
        nodes=candidates,
        gpu_memory=memory,
        sleep_level=sleep_level,
    )


def reserve_ports(models: Any) -> None:
    """Before macro expansion: give every docker model a ``${PORT}`` (its ``host_port``)."""
    for node in models.items.values():
        if not isinstance(node, MapNode) or driver_name(node) != "docker":
            continue
        block = node.get("docker")
        if block is None or (isinstance(block, Scalar) and block.value is None):
            block = MapNode(node.pos)
            node.put("docker", block, node.pos)
        if isinstance(block, MapNode) and "host_port" not in block.items:
            block.put("host_port", Scalar("${PORT}", block.pos), block.pos)


# ── CLI: swapd recipes list | show | render ─────────────────────────────────────────────────


def cli() -> Any:
    """The ``swapd recipes`` click group (added to ``swapd`` in swapd.cli)."""
    import json
    import sys

    import click

    def fail(exc: SwapdError) -> None:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(exc.exit_code)

    def parse_sets(sets: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for item in sets:
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise RecipeError(f"--set expects key=value, got {item!r}")
            try:
                out[key.strip()] = YAML(typ="safe").load(raw) if raw else ""
            except YAMLError:
                out[key.strip()] = raw
        return out

    @click.group(name="recipes")
    def group() -> None:
        """Engine presets in recipes/ (vLLM, TensorRT-LLM, llama.cpp, SGLang)."""

    @group.command(name="list")
    @click.option("--json", "as_json", is_flag=True, help="machine-readable output")
    def list_cmd(as_json: bool) -> None:
        """Every recipe found (name, engine, model, image)."""
        rows: list[dict[str, str]] = []
        for name, path in catalog().items():
            try:
                rec = parse_file(path, name)
                rows.append(
                    {
                        "name": name,
                        "engine": rec.engine,
                        "model": rec.model,
                        "image": rec.image,
                        "description": rec.description,
                        "path": str(path),
                    }
                )
            except RecipeError as exc:
                rows.append({"name": name, "error": exc.message, "path": str(path)})
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        if not rows:
            click.echo(f"no recipes found (searched: {', '.join(map(str, search_path()))})")
        width = max((len(r["name"]) for r in rows), default=0)
        for r in rows:
            if "error" in r:
                click.echo(f"{r['name']:<{width}}  INVALID: {r['error'].splitlines()[0]}")
            else:
                click.echo(f"{r['name']:<{width}}  {r['engine']:<8}  {r['model']}  ({r['image']})")

    @group.command()
    @click.argument("name")
    def show(name: str) -> None:
        """The recipe file, and the placeholders it takes."""
        try:
            recipe = load(name)
        except RecipeError as exc:
            fail(exc)
            return
        click.echo(f"# {recipe.path}")
        click.echo(recipe.path.read_text().rstrip())
        vals = values(recipe, {}, port=ENGINE_PORT.get(recipe.engine, 8000))
        click.echo("\n# placeholders (override with --set or the model's recipe.set):")
        for key in recipe.placeholders():
            click.echo(f"#   {key} = {vals[key]}")

    @group.command()
    @click.argument("name")
    @click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="placeholder value")
    @click.option("--port", type=int, default=None, help="the engine's port (default: engine's)")
    @click.option("--model-id", default=None, help="swapd model id (names the container)")
    @click.option("--json", "as_json", is_flag=True, help="print the spec as JSON")
    def render(
        name: str, sets: tuple[str, ...], port: int | None, model_id: str | None, as_json: bool
    ) -> None:
        """The exact container spec, and the equivalent `docker run` line."""
        try:
            recipe = load(name)
            spec = render_recipe(recipe, parse_sets(sets), port=port, model_id=model_id)
        except RecipeError as exc:
            fail(exc)
            return
        cname = container_name(model_id or recipe.name.replace("/", "-"), spec.get("host_port"))
        user = f"{os.getuid()}:{os.getgid()}"
        if as_json:
            click.echo(json.dumps({"name": cname, "user": user, **spec}, indent=2))
            return
        out = io.StringIO()
        yaml = YAML()
        yaml.default_flow_style = False
        yaml.dump({"docker": spec}, out)
        click.echo(f"# recipe {recipe.name}: container spec (a model's `docker:` block)")
        click.echo(out.getvalue().rstrip())
        click.echo("\n# equivalent docker run:")
        click.echo(docker_run_line(spec, cname, user))

    return group


render_recipe = render
