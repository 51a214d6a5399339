"""Recipes: YAML presets (engine + image + model + argument template + resources) → a container
spec, or with ``runtime: process`` (no image) a process model's ``cmd``.

Modules: ``model`` (keys, :class:`Recipe`, parsing and checks), ``lookup`` (where recipes are
found, the catalog, loading by name), ``spec`` (a recipe rendered to the ``docker`` driver's spec,
and the equivalent ``docker run`` line), ``container`` (finishing ``driver: docker`` models at
config load) and ``process`` (``runtime: process`` recipes as process models). The ``swapd
recipes`` command lives in :mod:`swapd.cli.recipes`. Schema: ``docs/recipes.md``.
"""

from swapd.recipes.container import ErrorAt, check_spec, container_model, reserve_ports
from swapd.recipes.lookup import RECIPES_ENV, catalog, load, parse_file, search_path
from swapd.recipes.model import (
    BUILTINS,
    ENGINE_PORT,
    ENGINES,
    RECIPE_KEYS,
    SPEC_KEYS,
    Recipe,
    RecipeError,
    fields_of,
    parse,
)
from swapd.recipes.spec import container_name, docker_run_line, render, values

__all__ = [
    "BUILTINS",
    "ENGINES",
    "ENGINE_PORT",
    "RECIPES_ENV",
    "RECIPE_KEYS",
    "SPEC_KEYS",
    "ErrorAt",
    "Recipe",
    "RecipeError",
    "catalog",
    "check_spec",
    "container_model",
    "container_name",
    "docker_run_line",
    "fields_of",
    "load",
    "parse",
    "parse_file",
    "render",
    "reserve_ports",
    "search_path",
    "values",
]
