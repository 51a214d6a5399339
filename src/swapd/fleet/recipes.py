"""Recipes → models: the catalog as the UI shows it, and model entries made from a recipe
written into (or removed from) a config file. ``swapd recipes add | remove`` edits the file it
is given; the admin API (``/api/recipes/*``) edits the running server's main config file. Both
go through :func:`add_model` / :func:`remove_model`.

An entry is ``recipe: NAME`` or, with placeholder values, ``recipe: {name: NAME, set: {…}}``,
plus ``node: N``. The edited text is loaded by swapd's own loader (with the config's other
files) before anything is written (:meth:`swapd.fleet.configfile.ConfigFile.save`): a result
that would not load is refused with its ``file:line:col: message`` issues and the file is left
as it was.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from swapd.config.demo import DEMO_NAME
from swapd.config.model import Config
from swapd.errors import Conflict, NotFound, RequestError
from swapd.fleet.configfile import Change, ConfigFile, add_entry, remove_entry, replace_entry
from swapd.recipes import (
    ENGINE_PORT,
    Recipe,
    RecipeError,
    catalog,
    container_name,
    docker_run_line,
    load,
    parse_file,
    render,
    values,
)
from swapd.recipes.process import render_process


def parse_sets(sets: Sequence[str]) -> dict[str, Any]:
    """``key=value`` items (``--set``) as placeholder values; a value is read as YAML
    (``8192`` is a number, ``[a, b]`` a list), a bad one is kept as text."""
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


def main_file(config: Config) -> tuple[Path, tuple[str, ...]]:
    """The file a running server's edits go to (its ``--config``, else its first config-dir
    file) and its other sources; the demo and ``--models-dir`` alone have no file."""
    files = [s for s in config.sources if s != DEMO_NAME and not s.startswith("(")]
    if not files:
        raise Conflict(
            "this swapd runs without a config file (the embedded demo or --models-dir only): "
            "start it with --config FILE to add models from recipes"
        )
    return Path(files[0]), tuple(files[1:])


def _reference(recipe: str, sets: Mapping[str, Any], old: Any) -> Any:
    """``recipe: NAME``, or ``{name, set}`` with placeholder values; the other keys of an old
    mapping (its ``args``) kept."""
    block = old if isinstance(old, CommentedMap) else CommentedMap()
    block["name"] = recipe
    if sets:
        block["set"] = CommentedMap(sets)
        block["set"].fa.set_flow_style()
    elif "set" in block:
        del block["set"]
    return block if len(block) > 1 else recipe


def _fill(entry: CommentedMap, recipe: str, node: str | None, sets: Mapping[str, Any]) -> None:
    """Set ``entry``'s recipe and node in place (its other keys and comments stay)."""
    entry["recipe"] = _reference(recipe, sets, entry.get("recipe"))
    if node:
        if "node" not in entry:
            entry.insert(list(entry).index("recipe") + 1, "node", node)
        else:
            entry["node"] = node
    elif "node" in entry:
        del entry["node"]


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _owner(model_id: str, others: Sequence[str]) -> str | None:
    """The other config file that defines ``model_id`` at its top level, if any."""
    for other in others:
        try:
            models = ConfigFile(Path(other)).models()
        except RequestError:
            continue
        if models is not None and model_id in models:
            return other
    return None


def add_model(
    path: Path,
    model_id: str,
    recipe: str,
    *,
    node: str | None = None,
    sets: Mapping[str, Any] | None = None,
    replace: bool = False,
    others: Sequence[str] = (),
) -> Change:
    """Write the entry ``model_id`` made from ``recipe`` into ``path``; with ``replace`` an
    existing entry's recipe, node and placeholder values are replaced (its other settings
    kept when it was made from a recipe)."""
    model_id = model_id.strip()
    if not model_id:
        raise RequestError("a model id is needed (--as ID)")
    load(recipe)  # an unknown recipe lists the known ones
    if (owner := _owner(model_id, others)) is not None:
        raise Conflict(f"model {model_id!r} is defined in {owner}, not in {path}: edit that file")
    file = ConfigFile(path)
    models = file.models(create=True)
    assert models is not None
    old = models.get(model_id)
    if model_id in models and not replace:
        raise Conflict(f"model {model_id!r} already exists in {path} (--replace to replace it)")
    if isinstance(old, CommentedMap) and "recipe" in old:
        _fill(old, recipe, node, sets or {})  # an edit: its other settings and comments stay
        entry = old
    else:
        entry = CommentedMap()
        _fill(entry, recipe, node, sets or {})
        (replace_entry if model_id in models else add_entry)(models, model_id, entry)
    backup = file.save(others)
    action = "replaced" if old is not None else "added"
    return Change(action, model_id, str(path), str(backup), _plain(entry))


def remove_model(path: Path, model_id: str, *, others: Sequence[str] = ()) -> Change:
    """Remove the entry ``model_id`` from the top-level ``models:`` of ``path``."""
    file = ConfigFile(path)
    models = file.models()
    if models is None or model_id not in models:
        owner = _owner(model_id, others)
        where = f"it is defined in {owner}: edit that file" if owner else _listing(models)
        raise NotFound(f"no model {model_id!r} in the models: of {path}; {where}")
    remove_entry(models, model_id)
    return Change("removed", model_id, str(path), str(file.save(others)))


def _listing(models: CommentedMap | None) -> str:
    return f"the file has: {', '.join(map(str, models or {})) or '(no models)'}"


def entries(path: Path) -> list[dict[str, Any]]:
    """The models of ``path`` made from a recipe: id, recipe, node, placeholder values."""
    models: Mapping[Any, Any] = ConfigFile(path).models() or {}
    rows = []
    for model_id, entry in models.items():
        if not isinstance(entry, Mapping) or "recipe" not in entry:
            continue
        ref = entry["recipe"]
        name = ref.get("name") if isinstance(ref, Mapping) else ref
        sets = ref.get("set") if isinstance(ref, Mapping) else None
        rows.append(
            {
                "id": str(model_id),
                "recipe": str(name),
                "node": entry.get("node"),
                "set": _plain(sets) if isinstance(sets, Mapping) else {},
            }
        )
    return rows


def summary(name: str, path: Path) -> dict[str, Any]:
    """One catalog row: name, engine, runtime, model, image(s), resources, placeholders."""
    try:
        recipe = parse_file(path, name)
    except RecipeError as exc:
        return {"name": name, "error": exc.message, "path": str(path)}
    return {
        "name": name,
        "engine": recipe.engine,
        "runtime": recipe.runtime,
        "model": recipe.model,
        "description": recipe.description,
        "image": recipe.image,
        "images": dict(recipe.images),
        "gpus": recipe.gpus,
        "memory": recipe.memory,
        "sleep_levels": list(recipe.sleep_levels),
        "gated": recipe.gated,
        "defaults": _plain(dict(recipe.defaults)),
        "path": str(path),
    }


def listing() -> list[dict[str, Any]]:
    return [summary(name, path) for name, path in catalog().items()]


def detail(name: str, sets: Mapping[str, Any], model_id: str | None = None) -> dict[str, Any]:
    """A recipe's row, its file's text, its placeholders' values with ``sets``, and the
    command it runs: the ``docker run`` line, or a process recipe's command line."""
    recipe = load(name)
    model_id = model_id or recipe.served_model_name or recipe.name.rsplit("/", 1)[-1]
    port = ENGINE_PORT.get(recipe.engine, 8000)
    vals = values(recipe, sets, port=port, model_id=model_id)
    return {
        **summary(recipe.name, recipe.path),
        "text": recipe.path.read_text(encoding="utf-8"),
        "placeholders": {key: _plain(vals[key]) for key in recipe.placeholders()},
        "command": _command(recipe, sets, model_id),
    }


def _command(recipe: Recipe, sets: Mapping[str, Any], model_id: str) -> str:
    if not recipe.model and not sets.get("model"):
        sets = {**sets, "model": "{model}"}  # shown as the placeholder the entry must set
    if recipe.runtime == "process":
        rendered = render_process(recipe, dict(sets), model_id=model_id)
        return shlex.join([*(f"{e}" for e in rendered.env), *rendered.argv])
    spec = render(recipe, sets, model_id=model_id)
    name = container_name(model_id, spec.host_port)
    return docker_run_line(spec, name, f"{os.getuid()}:{os.getgid()}")
