"""The load pipeline (order matters, as in llama-swap):

1. read the sources; in each file substitute ``${env.NAME}`` in the text, then parse it;
2. merge the files (``--config-dir``);
3. drop, with a warning, the keys swapd does not read;
4. expand macros, allocate ``${PORT}``, report leftover ``${…}``;
5. check types (pydantic), then defaults and cross-checks (aliases, groups, preload, …).

Every stage reports all it finds; a stage whose input is broken (a file that does not parse,
a merge conflict) stops the pipeline after it, with every issue found so far.

swapd differences from llama-swap, on purpose:

- ``healthCheckTimeout`` is honoured as given when it is >= 1 (llama-swap raises values under
  15 to 15); smaller values are an error.
- The default ``proxy`` is ``http://127.0.0.1:${PORT}`` (not ``localhost``), so it never
  resolves to IPv6 first.
- A reference to a model that does not exist — a group member, a selector target, a profile
  pin's target, a ``fifo.priority`` key, a preload entry — is a warning naming it and is
  dropped (llama-swap fails on most of these), so a stale entry does not stop a config from
  loading; a selector left with no target at all is an error.
- A process model with neither ``proxy`` nor ``${PORT}`` in ``cmd`` gets a port and the default
  proxy, with a warning (see ``swapd.config.macros``).
- Unknown keys are reported as warnings (``Config.warnings``), with a "did you mean" for a
  near miss, instead of being ignored silently.
- Peer proxies must be http(s) URLs with a host (llama-swap accepts any string Go can parse).
- ``maxBodySize`` (an int in bytes, or a size such as ``32MiB`` or ``10MB``) is a swapd key.
- ``driver`` picks the engine driver (default ``process``); the mapping under the key named
  like the driver (``driver: inproc`` + ``inproc: {...}``) becomes ``ModelConfig.options``:
  checked for the built-in drivers, as written for a plugin's (``swapd.config.options``).

What domain modules add (GGUF discovery, Docker nodes and recipes, the llama.cpp KV-cache flag)
comes in through ``extensions`` (see ``swapd.config.extension``): this package imports none of
them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence

from swapd.config.build import Builder
from swapd.config.env import referenced_values
from swapd.config.extension import Built, ConfigExtension, Tree
from swapd.config.issues import Issues
from swapd.config.keys import warn_unmatched
from swapd.config.macros import PreviousPorts, expand
from swapd.config.merge import merge_all
from swapd.config.model import DEFAULT_GROUP, Config
from swapd.config.names import Names
from swapd.config.options import DriverOptions, validate_options
from swapd.config.peers import build_peers, check_namespace
from swapd.config.router import build_priorities, build_routing
from swapd.config.schema import RawModel, RawTop, driver_name, prune, validate
from swapd.config.source import Source, parse, read_sources
from swapd.config.tree import MapNode, Pos, Scalar, SeqNode, to_plain
from swapd.config.virtual import build_profiles, build_selectors

EMPTY_ON_RELOAD = (
    "the file is empty (still being saved?): the running config is kept; "
    "to have no models, write `models: {}`"
)


def load_config(
    path: str | os.PathLike[str] | None = None,
    config_dir: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    models_dirs: Sequence[str] = (),
    previous: Config | None = None,
    extensions: Iterable[ConfigExtension] = (),
) -> Config:
    """Load ``path`` and/or the ``*.yml``/``*.yaml`` files in ``config_dir`` (merged in that
    order); ``models_dirs`` (``--models-dir``) is handed to the extensions (GGUF discovery).
    Raises ``ConfigError`` carrying every issue found. On a reload, pass the config being
    replaced as ``previous``: its models keep their ``${PORT}`` numbers."""
    issues = Issues()
    if path is None and config_dir is None and models_dirs:
        sources = [Source("(--models-dir)", "models: {}\n")]  # discovered models only
    else:
        sources = read_sources(path, config_dir, issues)
    if previous is not None:  # a reload: a file that turned empty is likely half-saved
        for source in sources:
            if not source.text.strip() and source.name not in previous.blank:
                issues.error(Pos(source.name, 1, 1), EMPTY_ON_RELOAD)
    issues.check()
    return load_sources(
        sources,
        env=env,
        issues=issues,
        models_dirs=models_dirs,
        previous=previous,
        extensions=extensions,
    )


def load_text(
    text: str,
    name: str = "config.yaml",
    *,
    env: Mapping[str, str] | None = None,
    previous: Config | None = None,
    extensions: Iterable[ConfigExtension] = (),
) -> Config:
    """Load one config from a string; ``name`` is the file name used in issues."""
    return load_sources([Source(name, text)], env=env, previous=previous, extensions=extensions)


def previous_ports(previous: Config | None) -> PreviousPorts | None:
    """The ports a reload keeps: every model of ``previous`` that had one."""
    if previous is None:
        return None
    ports = {m.id: m.port for m in previous.models.values() if m.port is not None}
    return PreviousPorts(previous.start_port, ports)


def _models_node(root: MapNode, issues: Issues) -> MapNode:
    node = root.get("models")
    if node is None or (isinstance(node, Scalar) and node.value is None):
        models = MapNode(root.key_pos("models") if node is not None else root.pos)
        root.put("models", models)
        return models
    if not isinstance(node, MapNode):
        issues.error(node.pos, "models: expected a mapping of model id to settings", ("models",))
        return MapNode(node.pos)
    for model_id, model in node.items.items():
        if isinstance(model, Scalar) and model.value is None:
            node.items[model_id] = MapNode(model.pos)
    return node


def load_sources(
    sources: list[Source],
    *,
    env: Mapping[str, str] | None = None,
    issues: Issues | None = None,
    models_dirs: Sequence[str] = (),
    previous: Config | None = None,
    extensions: Iterable[ConfigExtension] = (),
) -> Config:
    issues = issues or Issues()
    extensions = tuple(extensions)
    env = os.environ if env is None else env
    issues.files = [s.name for s in sources]
    docs = [doc for s in sources if (doc := parse(s, env, issues)) is not None]
    issues.check()
    root = merge_all(docs, issues) or MapNode(Pos(sources[0].name if sources else "(none)", 1, 1))
    issues.check()

    tree = Tree(root, _models_node(root, issues), issues, models_dirs)
    for extension in extensions:
        extension.prepare(tree)  # e.g. modelsDir adds models, docker models get a ${PORT}
    models_node = tree.models
    prune(root, issues)
    texts = {s.name: s.text.split("\n") for s in sources}
    ports = expand(root, texts, issues, previous_ports(previous))

    raw_models: dict[str, RawModel] = {}
    options: dict[str, DriverOptions] = {}
    for model_id, node in models_node.items.items():
        path = ("models", model_id)
        if not isinstance(node, MapNode):
            issues.error(node.pos, f"models.{model_id}: expected a mapping of settings", path)
            continue
        driver = driver_name(node)
        block = node.get(driver)
        if isinstance(block, SeqNode) or (isinstance(block, Scalar) and block.value is not None):
            issues.error(
                block.pos,
                f"models.{model_id}.{driver}: the '{driver}' driver options must be a mapping",
                (*path, driver),
            )
        plain = to_plain(block) if isinstance(block, MapNode) else {}
        options[model_id] = validate_options(driver, plain, root, path, issues)
        node.pop(driver)  # not a RawModel key
        raw_models[model_id] = validate(RawModel, to_plain(node), root, path, issues)

    top_data = {k: v for k, v in to_plain(root).items() if k != "models"}
    top = validate(RawTop, top_data, root, (), issues)

    build = Builder(root, issues)
    settings = build.top(top)
    model_ids = set(models_node.items)
    aliases = build.aliases(raw_models)
    names = Names(model_ids, aliases)
    peers = build_peers(build, top.peers, names)
    check_namespace(build, top, names, build.alias_paths)
    routing = build_routing(build, top, model_ids, aliases)
    groups = routing.groups
    group_of = {m: g.name for g in groups.values() for m in g.members}
    selectors = build_selectors(build, top, names, routing)
    profiles = build_profiles(build, top, names, top.selectors)
    priorities = build_priorities(build, top, model_ids, aliases)
    models = {
        model_id: build.model(
            model_id,
            raw_models[model_id],
            top,
            group_of.get(model_id, DEFAULT_GROUP),
            ports.get(model_id),
            options[model_id],
        )
        for model_id in sorted(raw_models)
    }
    for model_id, source in tree.sources.items():
        if model_id in models:
            models[model_id] = dataclasses.replace(models[model_id], source=source)
    built = Built(top, raw_models, models, build)
    for extension in extensions:
        extension.finish(built)  # e.g. docker nodes, recipes
    preload = build.preload(top, model_ids, aliases)
    pins = [pin for profile in profiles.values() for pin in profile.pins]
    warn_unmatched(build, top, names, [*selectors, *pins])  # apiKeys model globs
    issues.check()
    return Config(
        models=built.models,
        groups=groups,
        aliases=dict(sorted(aliases.items())),
        router=routing.router,
        matrix=routing.matrix,
        priorities=priorities,
        peers=peers,
        profiles=profiles,
        selectors=selectors,
        preload=preload,
        nodes=built.nodes,
        sources=tuple(s.name for s in sources),
        blank=frozenset(s.name for s in sources if not s.text.strip()),
        secrets=referenced_values((s.text for s in sources), env),
        warnings=issues.sorted_warnings(),
        **settings,
    )
