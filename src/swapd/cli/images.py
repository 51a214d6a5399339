"""``swapd images``: engine images per node, pulled and pruned by what recipes need
(swapd.fleet)."""

from __future__ import annotations

import click


@click.group()
def images() -> None:
    """List, pull and prune engine images on every node."""
