"""``swapd recipes list | show | render | add | remove``: the engine presets (see
:mod:`swapd.recipes`), and model entries made from them written into a config file (see
:mod:`swapd.fleet.recipes`)."""

from __future__ import annotations

import io
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import click
from ruamel.yaml import YAML

from swapd.assignment import Assignment, expand
from swapd.cli.exits import fail
from swapd.cli.remote import connect, url_option
from swapd.cli.server import DEFAULT_CONFIG
from swapd.config.options import DockerOptions
from swapd.config.schema import parse_size
from swapd.errors import SwapdError
from swapd.fleet import recipes as fleet
from swapd.fleet.configfile import Change, restore
from swapd.fleet.recipes import parse_sets
from swapd.recipes import (
    ENGINE_PORT,
    Recipe,
    RecipeError,
    catalog,
    container_name,
    cuda,
    docker_run_line,
    load,
    parse_file,
    search_path,
    values,
)
from swapd.recipes import render as render_spec
from swapd.recipes.engines import accepted_names
from swapd.recipes.process import render_process


@click.group(name="recipes")
def recipes() -> None:
    """Engine presets in recipes/ (vLLM, TensorRT-LLM, llama.cpp, SGLang)."""


@recipes.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def list_recipes(as_json: bool) -> None:
    """Every recipe found (name, engine, model, image)."""
    rows: list[dict[str, str]] = []
    for name, path in catalog().items():
        try:
            rec = parse_file(path, name)
            rows.append(
                {
                    "name": name,
                    "engine": rec.engine,
                    "model": rec.model or "(set by the model entry)",
                    "image": ", ".join(f"{k}: {v}" for k, v in rec.images.items())
                    or rec.image
                    or "no image: runs as a process",
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


@recipes.command()
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
        value = vals[key]
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        if key == "model" and not value:
            shown = "(required: the model entry sets it)"
        click.echo(f"#   {key} = {shown}")
    click.echo("\n# in a config:")
    click.echo(usage(recipe))


def usage(recipe: Recipe) -> str:
    """The config that uses ``recipe``, as YAML: the model named after what the engine serves,
    and the same with one placeholder set, commented."""
    model_id = recipe.served_model_name or recipe.name.rsplit("/", 1)[-1]
    if not recipe.model:  # the entry names the model
        ref = f"{{name: {recipe.name}, set: {{model: ORG/REPO}}}}"
        return "\n".join(["models:", f"  {model_id}:", f"    recipe: {ref}"])
    lines = ["models:", f"  {model_id}:", f"    recipe: {recipe.name}"]
    if recipe.defaults:
        key, default = next(iter(recipe.defaults.items()))
        value = json.dumps(default) if isinstance(default, str) else default  # YAML-safe
        lines.append(
            f"    # recipe: {{name: {recipe.name}, set: {{{key}: {value}}}, args: [--extra]}}"
        )
    return "\n".join(lines)


def _late_macros(recipe: Recipe, gpus: Any, gpu_total: str) -> dict[str, str]:
    """The late macros as placement would fill them on GPUs of ``gpu_total``."""
    total = parse_size(gpu_total)
    if total is None:
        raise RecipeError(f"--gpu-total expects a size like 80GiB, got {gpu_total!r}")
    count = gpus if isinstance(gpus, int) else 1
    memory = parse_size(recipe.memory) or 0
    assignment = Assignment(
        "local", tuple(range(count)), "nvidia", (total,) * count, memory // count
    )
    return assignment.values()


def _fill_late(recipe: Recipe, spec: DockerOptions, gpu_total: str) -> DockerOptions:
    """``spec`` with the late macros filled as placement would on GPUs of ``gpu_total``."""
    macros = _late_macros(recipe, spec.gpus, gpu_total)
    return spec.model_copy(
        update={
            "command": tuple(expand(a, macros) for a in spec.command),
            "env": {k: expand(v, macros) for k, v in spec.env.items()},
        }
    )


def _notes(recipe: Recipe, spec: DockerOptions, driver: str | None, model_id: str) -> list[str]:
    """Comment lines: the image's CUDA line, the names the engine answers to, late macros."""
    notes = []
    if recipe.images:
        line, _ = cuda.choose(recipe.images, driver)
        lines = ", ".join(f"{k}: {v}" for k, v in recipe.images.items())
        notes.append(f"# image: {cuda.why(recipe.images, driver, line)} ({lines})")
        if driver is None:
            notes.append("#   --driver 580.65.06 shows the choice on a given NVIDIA driver")
    names = accepted_names(recipe.engine, spec.command)
    if names:
        forwarded = model_id if model_id in names else names[0]
        notes.append(
            f"# the engine answers to: {', '.join(names)}; swapd forwards model={forwarded!r}"
        )
    if recipe.gated:
        notes.append(
            "# gated on Hugging Face: swapd refuses to start it without HF_TOKEN in the "
            'container (the model entry\'s docker: {env: {HF_TOKEN: "${env.HF_TOKEN}"}})'
        )
    if any("${" in a for a in (*spec.command, *spec.env.values())):
        notes.append(
            "# ${GPU_MEMORY_FRACTION} and the other ${GPU...} macros are filled when the model "
            "starts, from the GPU placement chooses (resources.memory per device / the device's "
            "size); --gpu-total 80GiB shows them"
        )
    return notes


@recipes.command()
@click.argument("name")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="placeholder value")
@click.option("--port", type=int, default=None, help="the engine's port (default: engine's)")
@click.option("--model-id", default=None, help="swapd model id (names the container)")
@click.option("--driver", default=None, metavar="VERSION", help="NVIDIA driver (picks the image)")
@click.option("--gpu-total", default=None, metavar="SIZE", help="GPU size (fills ${GPU_...})")
@click.option("--json", "as_json", is_flag=True, help="print the spec as JSON")
def render(
    name: str,
    sets: tuple[str, ...],
    port: int | None,
    model_id: str | None,
    driver: str | None,
    gpu_total: str | None,
    as_json: bool,
) -> None:
    """The exact container spec, and the equivalent `docker run` line (local node); for a
    runtime: process recipe, the model's cmd and env."""
    try:
        recipe = load(name)
        if recipe.runtime == "process":
            _render_process(recipe, parse_sets(sets), port, model_id, gpu_total, as_json)
            return
        spec = render_spec(recipe, parse_sets(sets), port=port, model_id=model_id, driver=driver)
        if gpu_total is not None:
            spec = _fill_late(recipe, spec, gpu_total)
    except RecipeError as exc:
        fail(exc)
        return
    cname = container_name(model_id or recipe.name.replace("/", "-"), spec.host_port)
    user = f"{os.getuid()}:{os.getgid()}"
    if as_json:
        click.echo(json.dumps({"name": cname, "user": user, **spec.as_dict()}, indent=2))
        return
    out = io.StringIO()
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.dump({"docker": spec.as_dict()}, out)
    click.echo(f"# recipe {recipe.name}: container spec (a model's `docker:` block)")
    click.echo(out.getvalue().rstrip())
    for note in _notes(recipe, spec, driver, model_id or recipe.served_model_name or recipe.model):
        click.echo(note)
    click.echo("\n# equivalent docker run:")
    click.echo(docker_run_line(spec, cname, user))


def _render_process(
    recipe: Recipe,
    sets: dict[str, Any],
    port: int | None,
    model_id: str | None,
    gpu_total: str | None,
    as_json: bool,
) -> None:
    """``swapd recipes render`` of a ``runtime: process`` recipe: what the process driver runs."""
    model_id = model_id or recipe.served_model_name or recipe.name.rsplit("/", 1)[-1]
    port = port if port is not None else ENGINE_PORT.get(recipe.engine, 8000)
    rendered = render_process(recipe, sets, model_id=model_id, port=port)
    argv = list(rendered.argv)
    if gpu_total is not None:
        macros = _late_macros(recipe, rendered.gpus, gpu_total)
        argv = [expand(a, macros) for a in argv]
    env = dict(e.split("=", 1) for e in rendered.env)
    if as_json:
        click.echo(json.dumps({"cmd": argv, "env": env}, indent=2))
        return
    click.echo(f"# recipe {recipe.name}: runs as a process (driver: process), no container")
    click.echo(f"cmd: {json.dumps(shlex.join(argv))}")
    if env:
        click.echo(f"env: {json.dumps([f'{k}={v}' for k, v in env.items()])}")
    names = accepted_names(recipe.engine, rendered.args)
    if names:
        forwarded = model_id if model_id in names else names[0]
        click.echo(
            f"# the engine answers to: {', '.join(names)}; swapd forwards model={forwarded!r}"
        )
    if any("${" in a for a in argv):
        click.echo(
            "# ${GPU_MEMORY_FRACTION} and the other ${GPU...} macros are filled when the model "
            "starts, from the GPU placement chooses; --gpu-total 80GiB shows them"
        )


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The config file to edit. Default: ./config.yaml if it exists, else the running "
    "swapd's own file (through its admin API).",
)
no_reload_option = click.option(
    "--no-reload", is_flag=True, help="Only write the file; do not ask swapd to reload it."
)


def _local(config_path: Path | None) -> Path | None:
    """The file to edit here, or None: ask the swapd at --url to edit its own."""
    if config_path is not None:
        return config_path
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def _said(change: dict[str, Any]) -> None:
    verb = {"added": "added", "replaced": "replaced", "removed": "removed"}[change["action"]]
    where = "to" if verb == "added" else "in" if verb == "replaced" else "from"
    click.echo(f"{verb} model {change['id']} {where} {change['file']} (backup {change['backup']})")


def _reloaded(change: dict[str, Any], result: dict[str, Any], url: str) -> None:
    """Report the reload that applied ``change``; a rejected one has put the file back."""
    if not result.get("ok"):
        for error in result.get("errors", []):
            click.echo(error, err=True)
        click.echo(
            f"swapd: the swapd at {url} rejected the reload (it keeps its config); "
            f"{change['file']} is as it was",
            err=True,
        )
        sys.exit(2)
    changes = ", ".join(f"{k} {', '.join(v)}" for k, v in result.get("changes", {}).items() if v)
    click.echo(f"swapd at {url} reloaded: {changes or 'no changes'} (other models keep running)")


def _reload(change: Change, url: str) -> None:
    """Ask the swapd at ``url`` to reload, if it reads the edited file (a rejected reload
    puts the file back); nobody there is no error."""
    from swapd.client import Unreachable

    path = Path(change.file)
    with connect(url) as client:
        try:
            sources = [Path(s).resolve() for s in client.config_sources()]
        except Unreachable:
            click.echo(f"no swapd answers at {client.url}: the change applies when swapd starts")
            return
        if path.resolve() not in sources:
            shown = ", ".join(map(str, sources)) or "no file"
            click.echo(f"the swapd at {client.url} reads {shown}, not {path}: not reloaded")
            return
        result = client.reload()
        if not result.get("ok"):
            restore(path, Path(change.backup))
        _reloaded(change.as_dict(), result, client.url)


def _edited(change: Change, no_reload: bool, url: str) -> None:
    _said(change.as_dict())
    if not no_reload:
        _reload(change, url)


def _remote(change: dict[str, Any], url: str) -> None:
    _said(change)
    if change.get("note"):
        click.echo(change["note"])
    _reloaded(change, change["reload"], url)


@recipes.command()
@click.argument("recipe")
@click.option("--as", "model_id", required=True, metavar="ID", help="the new model's id")
@click.option("--node", default=None, help="pin the model to this node (nodes:)")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="placeholder value")
@click.option("--replace", is_flag=True, help="replace the entry ID if it exists")
@config_option
@no_reload_option
@url_option
def add(
    recipe: str,
    model_id: str,
    node: str | None,
    sets: tuple[str, ...],
    replace: bool,
    config_path: Path | None,
    no_reload: bool,
    url: str,
) -> None:
    """Write a model made from RECIPE into the config file, then have swapd apply it.

    The file keeps its comments and layout; the result is checked with swapd's loader first
    (nothing is written when it would not load) and the old text is kept in FILE.bak. With
    --replace, an entry made from a recipe keeps its other settings."""
    path = _local(config_path)
    try:
        values = parse_sets(sets)
        if path is None:
            body = {"recipe": recipe, "id": model_id, "node": node, "set": values}
            with connect(url) as client:
                _remote(client.add_recipe_model({**body, "replace": replace}), url)
            return
        change = fleet.add_model(path, model_id, recipe, node=node, sets=values, replace=replace)
    except SwapdError as exc:
        fail(exc)
        return
    _edited(change, no_reload, url)


@recipes.command()
@click.argument("model_id", metavar="ID")
@config_option
@no_reload_option
@url_option
def remove(model_id: str, config_path: Path | None, no_reload: bool, url: str) -> None:
    """Remove the model ID from the config file's models:, then have swapd apply it."""
    path = _local(config_path)
    try:
        if path is None:
            with connect(url) as client:
                _remote(client.remove_recipe_model(model_id), url)
            return
        change = fleet.remove_model(path, model_id)
    except SwapdError as exc:
        fail(exc)
        return
    _edited(change, no_reload, url)
