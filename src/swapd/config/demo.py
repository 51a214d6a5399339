"""The built-in demo config (``demo.yaml``): two echo engines in one swap group."""

from __future__ import annotations

import json
import shlex
import sys
from importlib.resources import files

from swapd.config.loader import load_text
from swapd.config.model import Config

DEMO_NAME = "demo.yaml"
_PYTHON_LINE = "  python: python3\n"


def demo_text() -> str:
    """The demo YAML as shipped (``python3`` runs the echo engine)."""
    return files("swapd.config").joinpath(DEMO_NAME).read_text(encoding="utf-8")


def load_demo() -> Config:
    """The demo config, with the echo engines run by the current interpreter."""
    text = demo_text()
    if _PYTHON_LINE not in text:  # pragma: no cover - guards edits to demo.yaml
        raise RuntimeError(f"{DEMO_NAME} lost its '{_PYTHON_LINE.strip()}' macro line")
    python = json.dumps(shlex.quote(sys.executable))  # a JSON string is a YAML string
    return load_text(text.replace(_PYTHON_LINE, f"  python: {python}\n"), DEMO_NAME, env={})
