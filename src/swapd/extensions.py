"""The standard config extensions: how llama.cpp, Docker nodes and recipes take part in loading.

``swapd.config`` imports no domain module; the composition roots (``swapd serve``, ``swapd
check``, ``swapd run``) pass ``standard()`` to ``load_config``. A program that embeds swapd can
pass fewer, or its own (see ``swapd.config.extension``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from swapd.config.extension import Built, ConfigExtension, Tree
from swapd.llamacpp import is_llama_server
from swapd.llamacpp.discovery import inject
from swapd.llamacpp.kvcache import default_dir, with_save_path
from swapd.nodes import build_nodes
from swapd.recipes import container_model, reserve_ports
from swapd.recipes.process import Rendered, process_model, process_recipes

__all__ = ["Containers", "GgufDiscovery", "KvCacheFlag", "Nodes", "standard"]


class GgufDiscovery(ConfigExtension):
    """``modelsDir`` and ``--models-dir``: every ``*.gguf`` file becomes a model."""

    def prepare(self, tree: Tree) -> None:
        tree.sources.update(inject(tree.root, tree.models, tree.issues, tree.models_dirs))


class KvCacheFlag(ConfigExtension):
    """``kvCache.persist``: a llama-server gets ``--slot-save-path`` (swapd.llamacpp.kvcache)."""

    def finish(self, built: Built) -> None:
        for model_id, model in list(built.models.items()):
            kv = model.kv_cache
            if kv is None or not kv.persist:
                continue
            if not is_llama_server(model.cmd):
                built.warn(
                    ("models", model_id, "kvCache"),
                    f"model {model_id}: kvCache only applies to llama-server commands (ignored)",
                )
                continue
            directory = Path(kv.dir) if kv.dir else default_dir(model_id)
            cmd = with_save_path(model.cmd, directory)
            built.models[model_id] = dataclasses.replace(model, cmd=cmd)


class Nodes(ConfigExtension):
    """``nodes:``: where Docker engines run (one node ``local`` when absent)."""

    def finish(self, built: Built) -> None:
        built.nodes = build_nodes(built.top.nodes, built.error)


class Containers(ConfigExtension):
    """``driver: docker`` and ``recipe:``: a container spec per model, placed on the nodes; a
    ``runtime: process`` recipe becomes a process model's cmd instead (swapd.recipes.process)."""

    def __init__(self) -> None:
        self.processes: dict[str, Rendered] = {}  # model id -> its process recipe, rendered

    def prepare(self, tree: Tree) -> None:
        self.processes = process_recipes(tree.models, tree.issues)
        reserve_ports(tree.models)  # every docker model gets a ${PORT}

    def finish(self, built: Built) -> None:
        for model_id, model in list(built.models.items()):
            if model_id in self.processes:
                rendered = self.processes[model_id]
                built.models[model_id] = process_model(model, rendered, built.error)
            elif model.driver == "docker":
                raw = built.raw_models[model_id]
                built.models[model_id] = container_model(
                    model, raw, built.nodes, built.error, built.warn
                )


def standard() -> tuple[ConfigExtension, ...]:
    """Everything swapd ships, in the order the hooks must run (nodes before containers)."""
    return (GgufDiscovery(), KvCacheFlag(), Nodes(), Containers())
