"""How domain modules take part in loading a config, without the config importing them.

``swapd.config`` imports no domain module (recipes, nodes, llama.cpp, drivers). Whatever those
add to loading — models discovered from GGUF files, Docker nodes, recipe rendering, the
llama.cpp KV-cache flag — comes in as a ``ConfigExtension`` passed to ``load_config`` /
``load_text``; the composition root (``swapd.extensions.standard()``) decides which. With no
extensions a config loads as plain llama-swap: process models only, no nodes.

An extension sees the load at two points:

- ``prepare(tree)``: on the positioned YAML tree, before unknown keys are dropped and macros
  expanded. It may add models (GGUF discovery) or keys (a docker model's ``${PORT}``), and
  record where a model came from (``tree.sources``).
- ``finish(built)``: after every model is built and checked, before the ``Config`` is frozen.
  It may replace models (recipe rendering) and set the nodes; its problems are reported like
  any other, at a config path.

Extensions run in the order given, at each point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from swapd.config.build import Builder
from swapd.config.issues import Issues
from swapd.config.model import ModelConfig, NodeConfig
from swapd.config.schema import RawModel, RawTop
from swapd.config.tree import MapNode, Path


@dataclass(slots=True)
class Tree:
    """The load before keys are checked and macros expanded."""

    root: MapNode  # the merged document
    models: MapNode  # root["models"], always a mapping here
    issues: Issues
    models_dirs: Sequence[str] = ()  # ``--models-dir`` folders
    sources: dict[str, str] = field(default_factory=dict)  # model id -> file it was made from


@dataclass(slots=True)
class Built:
    """The load after every model is built: extensions may replace models and set nodes."""

    top: RawTop  # the validated top-level keys
    raw_models: Mapping[str, RawModel]  # the validated keys of each model
    models: dict[str, ModelConfig]  # by id, sorted
    builder: Builder
    nodes: dict[str, NodeConfig] = field(default_factory=dict)

    def error(self, path: Path, message: str) -> None:
        """Report an error at the config ``path`` (e.g. ``("models", "m", "recipe")``)."""
        self.builder.error(path, message)

    def warn(self, path: Path, message: str) -> None:
        self.builder.issues.warn(self.builder.at(path), message)


class ConfigExtension:
    """A domain module's part in loading; override the hooks it needs (both do nothing)."""

    def prepare(self, tree: Tree) -> None:
        """Before keys are checked and macros expanded."""

    def finish(self, built: Built) -> None:
        """After every model is built, before the config is frozen."""
