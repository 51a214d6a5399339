"""The ``swapd`` command (click). The only place that maps errors to exit codes (:mod:`.exits`).

Commands by module: :mod:`.server` (serve, check, run), :mod:`.remote` (start, stop, ps, models,
logs, whoami against a running swapd), :mod:`.hardware` (the inventory of a running swapd) and
:mod:`.recipes` (recipes list | show | render | add | remove); fleet management: :mod:`.files`,
:mod:`.nodes`, :mod:`.images`, :mod:`.bench`.
"""

from __future__ import annotations

import click

from swapd import __version__
from swapd.cli.bench import bench
from swapd.cli.files import files
from swapd.cli.hardware import hardware
from swapd.cli.images import images
from swapd.cli.nodes import nodes
from swapd.cli.recipes import recipes
from swapd.cli.remote import logs, models, ps, start, stop, whoami
from swapd.cli.server import check, run, serve

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-version", message="swapd %(version)s")
def main() -> None:
    """swapd: an OpenAI/Anthropic-compatible proxy that starts and swaps LLM engines on demand."""


@click.command()
def version() -> None:
    """Print swapd's version."""
    click.echo(f"swapd {__version__}")


for _command in (serve, check, run, start, stop, ps, models, logs, whoami, recipes, version):
    main.add_command(_command)
for _command in (hardware, files, nodes, images, bench):
    main.add_command(_command)
