"""Helpers for the recipe tests: the shipped recipes and the config swapd builds for one."""

from __future__ import annotations

from pathlib import Path

from swapd.config import load_text
from swapd.config.model import ModelConfig
from swapd.extensions import standard
from swapd.recipes import catalog, load

SHIPPED = Path(__file__).resolve().parents[2] / "recipes"
EVERY = sorted(catalog([SHIPPED]))
TEMPLATES = [n for n in EVERY if not load(n, [SHIPPED]).model]  # each entry sets the model
NAMES = [  # the docker recipes of one model
    n for n in EVERY if load(n, [SHIPPED]).runtime == "container" and n not in TEMPLATES
]
PROCESS = [n for n in EVERY if n not in NAMES and n not in TEMPLATES]  # runtime: process


def recipe_model(recipe: str, extra: str = "", model_id: str = "qwen") -> ModelConfig:
    """The config swapd builds for ``models: {<model_id>: {recipe: <recipe>, ...}}``."""
    text = f"models:\n  {model_id}:\n    recipe: {recipe}\n{extra}"
    return load_text(text, extensions=standard()).models[model_id]
