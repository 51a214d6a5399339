"""``swapd bench``: a model's prompt and generation tokens/s and time to first token, measured
through a running swapd (swapd.fleet)."""

from __future__ import annotations

import click


@click.command()
def bench() -> None:
    """Benchmark a model through swapd."""
