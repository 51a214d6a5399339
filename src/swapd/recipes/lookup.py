"""Finding recipes: the folders searched, the name → file catalog, loading one by name.

A recipe lives in a ``recipes/`` folder as ``<engine>/<name>.yaml`` and is named by that relative
path without the suffix (``vllm/qwen3-8b``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from swapd.recipes.model import Recipe, RecipeError, parse

RECIPES_ENV = "SWAPD_RECIPES"


def search_path(config_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Folders searched, in order: ``$SWAPD_RECIPES``, ``<config dir>/recipes``, ``./recipes``,
    the ``recipes/`` shipped with swapd."""
    dirs = [Path(p) for p in os.environ.get(RECIPES_ENV, "").split(os.pathsep) if p]
    if config_dir is not None:
        dirs.append(Path(config_dir) / "recipes")
    dirs.append(Path.cwd() / "recipes")
    dirs.append(Path(__file__).resolve().parents[1] / "recipe_files")  # inside an installed wheel
    dirs.append(Path(__file__).resolve().parents[3] / "recipes")  # source checkout
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
