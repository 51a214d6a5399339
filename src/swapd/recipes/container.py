"""Finishing a ``driver: docker`` model at config load (a config extension calls these).

``container_model`` renders the model's recipe, lays the model's own ``docker:`` block (its
``DockerOptions``, checked at load) over it and checks that an image is set, so that mistakes are
reported as ``file:line:col`` like every other config error; ``reserve_ports`` gives every docker
model a ``${PORT}`` before macros expand.

The engine binds ``{host}``: 127.0.0.1 when every candidate node is local (only swapd reaches
it), the node's address when the model runs on one remote node, and :data:`NODE_HOST` (filled
at start by :func:`swapd.recipes.start.prepare`) when it may run on several. A model whose engine
does not answer to its swapd id gets ``useModelName`` set to a name the engine serves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from swapd.config.model import NodeConfig
from swapd.config.options import DockerOptions
from swapd.config.schema import driver_name, parse_size
from swapd.config.tree import MapNode, Scalar
from swapd.nodes import LOCAL, host_of, is_local
from swapd.recipes import cuda
from swapd.recipes.engines import accepted_names
from swapd.recipes.lookup import load
from swapd.recipes.model import RecipeError, docker_problems
from swapd.recipes.process import recipe_ref
from swapd.recipes.spec import LOCAL_HOST, render
from swapd.recipes.start import NODE_HOST, has_token

ErrorAt = Callable[[tuple[str | int, ...], str], None]


def bind_host(candidates: tuple[NodeConfig, ...], network_mode: str) -> str:
    """What the engine binds: see the module docstring. Bridge networking publishes the port,
    so the engine listens on every interface of its own network namespace."""
    if network_mode != "host":
        return "0.0.0.0"
    hosts = {LOCAL_HOST if is_local(n) else host_of(n) for n in candidates}
    if len(hosts) <= 1:
        return hosts.pop() if hosts else LOCAL_HOST
    return NODE_HOST


def check_spec(spec: DockerOptions, error: Callable[[str, str], None]) -> None:
    """Report what the spec's types cannot say: ``image`` is required, CUDA lines must be
    known, ``shm_size`` and ``ipc: host`` do not go together; ``error(key, message)``."""
    if not spec.image:
        error("image", "image is required (a string)")
    for line in spec.images:
        problem = cuda.line_problem(line)
        if problem is not None:
            error("images", f"images: {problem}")
    for problem in docker_problems(spec.as_dict(), ""):
        error("shm_size", problem)


def _candidates(
    model: Any, raw: Any, nodes: Mapping[str, Any], error: ErrorAt
) -> tuple[NodeConfig, ...]:
    candidates: tuple[NodeConfig, ...] = tuple(nodes.values())
    if raw.node is not None:
        if raw.node not in nodes:
            error(
                ("models", model.id, "node"),
                f"model {model.id}: unknown node {raw.node!r}; nodes: {', '.join(nodes)}",
            )
        else:
            candidates = (nodes[raw.node],)
    return candidates


def container_model(
    model: Any, raw: Any, nodes: Mapping[str, Any], error: ErrorAt, warn: ErrorAt | None = None
) -> Any:
    """The final ``ModelConfig`` of a ``driver: docker`` model (recipe rendered, spec checked,
    nodes linked); problems go to ``error(path, message)``, doubts to ``warn``."""
    base = ("models", model.id)
    spec = model.options
    if not isinstance(spec, DockerOptions):
        raise TypeError(f"model {model.id}: docker options expected, got {spec!r}")
    port = spec.host_port if spec.host_port is not None else model.port
    check = model.check_endpoint
    timeout = model.health_check_timeout
    recipe_name: str | None = None
    sleep_levels: tuple[int, ...] = (1, 2)  # a hand-written spec: the operator knows
    recipe_memory = None
    use_model_name = model.use_model_name
    candidates = _candidates(model, raw, nodes, error)
    if raw.recipe is not None:
        ref = recipe_ref(raw.recipe)
        if isinstance(ref, str):
            error((*base, "recipe"), f"model {model.id}: recipe: {ref}")
            return model
        recipe_name, sets, args = ref
        try:
            recipe = load(recipe_name)
            if recipe.runtime == "process":
                raise RecipeError(
                    f"recipe {recipe_name} has runtime: process (no image): give it without "
                    "driver: docker, by its plain name (not through a macro)"
                )
            network = str(recipe.docker.get("network_mode", "host"))
            if "network_mode" in spec.model_fields_set:
                network = spec.network_mode
            host = bind_host(candidates or (NodeConfig(LOCAL, ""),), network)
            rendered = render(
                recipe, sets, port=port, model_id=model.id, extra_args=args, host=host
            )
        except RecipeError as exc:
            error((*base, "recipe"), f"model {model.id}: {exc.message}")
            return model
        if "image" in spec.model_fields_set and "images" not in spec.model_fields_set:
            rendered = rendered.model_copy(update={"images": {}})  # the model's image wins
        spec = rendered.overlay(spec)
        check = recipe.health if model.check_endpoint == "/health" else check
        timeout = recipe.readiness_timeout or timeout
        sleep_levels = recipe.sleep_levels
        recipe_memory = recipe.memory
        names = accepted_names(recipe.engine, spec.command)
        if not use_model_name and names:
            use_model_name = names[0]  # the name the engine reports; aliases go there too
    if port is not None:
        spec = spec.model_copy(update={"host_port": port})
    check_spec(spec, lambda key, msg: error((*base, "docker", key), f"model {model.id}: {msg}"))
    if spec.gated and warn is not None and not has_token(spec, {**model.env, **spec.env}):
        warn(
            (*base, "recipe" if recipe_name else "docker"),
            f"model {model.id}: the weights are gated on Hugging Face and the container has no "
            'HF_TOKEN; it will not start. Set docker: {env: {HF_TOKEN: "${env.HF_TOKEN}"}}',
        )
    if raw.resources is not None and raw.resources.gpus is not None:
        spec = spec.model_copy(update={"gpus": raw.resources.gpus})
    resources = model.resources  # the model's own declaration wins over the recipe's
    if not resources.memory and recipe_memory is not None:
        resources = dataclasses.replace(resources, memory=parse_size(recipe_memory) or 0)
    if resources.gpus is None and spec.gpus is not None:
        gpus = spec.gpus
        if gpus == "all":
            resources = dataclasses.replace(resources, all_gpus=True)
        elif isinstance(gpus, int):
            resources = dataclasses.replace(resources, gpus=gpus)
        else:
            resources = dataclasses.replace(resources, gpus=len(gpus))
    sleep_level = None
    if raw.sleep is not None:
        sleep_level = raw.sleep.level
        if sleep_level not in sleep_levels:
            error(
                (*base, "sleep"),
                f"model {model.id}: recipe {recipe_name} does not support sleep level "
                f"{sleep_level} (supported: {', '.join(map(str, sleep_levels)) or 'none'})",
            )
    return dataclasses.replace(
        model,
        cmd=spec.command,
        options=spec,
        check_endpoint=check,
        health_check_timeout=timeout,
        recipe=recipe_name,
        node=raw.node,
        nodes=candidates,
        resources=resources,
        sleep_level=sleep_level,
        use_model_name=use_model_name,
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
