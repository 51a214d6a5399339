"""What the fleet commands (``swapd nodes``, ``images``, ``files``) print alike: a size in
bytes, and an answer per node as JSON or one block a node."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import click


def size(n: int) -> str:
    """Bytes in the largest unit that keeps the number >= 1: ``512B``, ``3.2MiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def per_node(
    answer: Any, nodes: Sequence[dict[str, Any]], as_json: bool, show: Callable[[Any], None]
) -> None:
    """The whole ``answer`` as JSON, or ``show`` for each of its ``nodes``, a blank line
    between two."""
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    for i, node in enumerate(nodes):
        if i:
            click.echo()
        show(node)
