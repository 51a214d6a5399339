"""Process recipes (``runtime: process``): an engine installed with pip, run by the process
driver instead of in a container.

The recipe's ``entrypoint`` and ``args``, filled like a container recipe's, become the model's
``cmd``; ``{port}`` is ``${PORT}`` (allocated when the config loads, as for any cmd) and
``{host}`` 127.0.0.1. Late macros (``${GPU_MEMORY_FRACTION}``…) stay literal and the process
driver fills them at start from the placement. The recipe's ``env`` goes before the model's
own ``env`` entries (which win), its ``health``, ``readiness_timeout``, ``resources`` and
``sleep`` levels apply as they do for a container recipe.

:func:`process_recipes` rewrites such models in the positioned tree before macros expand
(``driver: process``, ``cmd``, ``env``; the ``recipe`` key is taken out so the config does not
choose the docker driver); :func:`process_model` finishes the built model. A model that says
``driver: ray`` keeps it: the same command then runs in a Ray actor on a cluster node
(``swapd.drivers.ray``), with ``{host}`` as ``${NODE_IP}``, the address of that node, which the
actor fills with ``${PORT}``.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from swapd.config.issues import Issues
from swapd.config.model import ModelConfig
from swapd.config.schema import parse_size
from swapd.config.tree import MapNode, Node, Path, Scalar, SeqNode, to_plain
from swapd.recipes.engines import accepted_names
from swapd.recipes.lookup import load
from swapd.recipes.model import Recipe, RecipeError
from swapd.recipes.spec import LOCAL_HOST, fill, fill_args, gpus_of, values, with_model

PORT_MACRO = "${PORT}"
NODE_IP_MACRO = "${NODE_IP}"  # a ray model's node address, filled by its actor


@dataclass(frozen=True, slots=True)
class Rendered:
    """A process recipe filled for one model."""

    recipe: Recipe
    argv: tuple[str, ...]  # entrypoint + args (+ the model's extra args)
    args: tuple[str, ...]  # the part after the entrypoint (what the engine parses)
    env: tuple[str, ...]  # KEY=VALUE
    gpus: Any  # all | a count | device ids | None


def recipe_ref(raw: Any) -> tuple[str, dict[str, Any], list[str]] | str:
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


def render_process(
    recipe: Recipe,
    overrides: dict[str, Any] | None = None,
    *,
    model_id: str,
    extra_args: list[str] | tuple[str, ...] = (),
    port: int | str = PORT_MACRO,
    host: str = LOCAL_HOST,
) -> Rendered:
    """``recipe`` (``runtime: process``) filled for the model ``model_id``."""
    vals = with_model(
        recipe, values(recipe, overrides or {}, port=port, model_id=model_id, host=host)
    )
    args = (*fill_args(recipe.args, vals), *extra_args)
    entry = fill_args(recipe.entrypoint or (), vals)
    env = tuple(f"{k}={fill(v, vals)}" for k, v in recipe.env.items())
    return Rendered(recipe, (*entry, *args), args, env, gpus_of(recipe, vals))


def process_recipes(models: MapNode, issues: Issues) -> dict[str, Rendered]:
    """Rewrite every model whose recipe has ``runtime: process`` into a process model (see the
    module docstring); model id → what was rendered. A recipe that cannot be loaded here is
    left for the container path, which reports it."""
    found: dict[str, Rendered] = {}
    for model_id, node in models.items.items():
        ref_node = node.get("recipe") if isinstance(node, MapNode) else None
        if not isinstance(node, MapNode) or ref_node is None:
            continue
        ref = recipe_ref(to_plain(ref_node))
        driver = node.get("driver")
        runs = driver.value if isinstance(driver, Scalar) else "process"
        if isinstance(ref, str) or runs not in ("process", "ray"):
            continue  # container_model reports a bad reference or a process recipe in docker
        name, sets, extra = ref
        try:
            recipe = load(name)
        except RecipeError:
            continue
        if recipe.runtime != "process":
            continue
        path: Path = ("models", model_id)
        for key in ("cmd", "docker"):
            if node.get(key) is not None:
                issues.error(
                    node.key_pos(key),
                    f"model {model_id}: recipe {name} makes the {key}; drop {key} (extra "
                    "arguments go in recipe.args, values in recipe.set)",
                    (*path, key),
                )
        try:
            host = NODE_IP_MACRO if runs == "ray" else LOCAL_HOST
            rendered = render_process(recipe, sets, model_id=model_id, extra_args=extra, host=host)
        except RecipeError as exc:
            issues.error(ref_node.pos, f"model {model_id}: {exc.message}", (*path, "recipe"))
            continue
        at = ref_node.pos
        node.pop("recipe")
        node.put("driver", Scalar(runs, at), node.key_pos("driver"))
        node.put("cmd", Scalar(shlex.join(rendered.argv), at))
        own = node.get("env")
        mine: list[Node] = [Scalar(e, at) for e in rendered.env]
        if rendered.env:
            items = own.items if isinstance(own, SeqNode) else []
            node.put("env", SeqNode(own.pos if own else at, [*mine, *items]))
        found[model_id] = rendered
    return found


def process_model(
    model: ModelConfig, rendered: Rendered, error: Callable[[Path, str], None]
) -> ModelConfig:
    """The built model of a process recipe with the recipe's health check, readiness timeout,
    resources (the model's own declaration wins), engine model name and sleep levels."""
    recipe = rendered.recipe
    resources = model.resources
    if not resources.memory and recipe.memory is not None:
        resources = dataclasses.replace(resources, memory=parse_size(recipe.memory) or 0)
    gpus = rendered.gpus
    if resources.gpus is None and not resources.all_gpus and gpus is not None:
        if gpus == "all":
            resources = dataclasses.replace(resources, all_gpus=True)
        else:
            count = gpus if isinstance(gpus, int) else len(gpus)
            resources = dataclasses.replace(resources, gpus=count)
    if model.sleep_level is not None and model.sleep_level not in recipe.sleep_levels:
        supported = ", ".join(map(str, recipe.sleep_levels)) or "none"
        error(
            ("models", model.id, "sleep"),
            f"model {model.id}: recipe {recipe.name} does not support sleep level "
            f"{model.sleep_level} (supported: {supported})",
        )
    names = accepted_names(recipe.engine, rendered.args)
    return dataclasses.replace(
        model,
        recipe=recipe.name,
        check_endpoint=recipe.health if model.check_endpoint == "/health" else model.check_endpoint,
        health_check_timeout=recipe.readiness_timeout or model.health_check_timeout,
        resources=resources,
        use_model_name=model.use_model_name or (names[0] if names else ""),
    )
