"""``swapd nodes``: each node's reachability, GPUs, disk, Docker and models (swapd.fleet)."""

from __future__ import annotations

import click


@click.command()
def nodes() -> None:
    """Show every node: reachability, GPUs, disk free, Docker version, models running."""
