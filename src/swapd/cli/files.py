"""``swapd files``: model files per node (Hugging Face cache, GGUF folders) (swapd.fleet)."""

from __future__ import annotations

import click


@click.group()
def files() -> None:
    """List, download and remove model files; make a model entry from one."""
