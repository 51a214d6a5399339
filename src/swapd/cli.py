"""The ``swapd`` command. The only place that maps errors to exit codes.

Exit codes: 0 success; 1 runtime error; 2 invalid config or usage.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from swapd import __version__
from swapd.errors import ConfigError, SwapdError


def _fail(exc: SwapdError) -> None:
    if isinstance(exc, ConfigError):
        for issue in exc.issues:
            click.echo(str(issue), err=True)
    else:
        click.echo(f"swapd: {exc.message}", err=True)
    sys.exit(exc.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="swapd")
def main() -> None:
    """swapd: an OpenAI/Anthropic-compatible proxy that starts and swaps LLM engines on demand."""


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML config (llama-swap compatible). Without it, an embedded demo runs.",
)
@click.option(
    "--config-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory of *.yaml files merged after --config.",
)
@click.option(
    "--listen", default="127.0.0.1:8080", show_default=True, help="HOST:PORT to listen on."
)
@click.option("--watch-config", is_flag=True, help="Reload when the config files change.")
def serve(
    config_path: Path | None, config_dir: Path | None, listen: str, watch_config: bool
) -> None:
    """Run the proxy. SIGHUP reloads the config; SIGINT/SIGTERM stop everything cleanly."""
    from swapd.app import App
    from swapd.app import serve as run

    app = App(config_path=config_path, config_dir=config_dir, listen=listen, watch=watch_config)
    if config_path is None and config_dir is None:
        click.echo("swapd: no --config given, serving the embedded demo (models echo-a, echo-b)")
    try:
        run(app.run)
    except SwapdError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        sys.exit(130)


@main.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False), required=False)
@click.option("--config-dir", type=click.Path(path_type=Path, file_okay=False))
def check(file: Path | None, config_dir: Path | None) -> None:
    """Validate a config and print the resolved models (exit 0 when valid, 2 when not)."""
    from swapd.config import load_config, load_demo

    try:
        config = load_config(file, config_dir) if file or config_dir else load_demo()
    except SwapdError as exc:
        _fail(exc)
        return
    for issue in config.warnings:
        click.echo(f"warning: {issue}", err=True)
    for model in config.models.values():
        click.echo(f"{model.id}")
        click.echo(f"  argv:   {list(model.cmd)}")
        click.echo(f"  proxy:  {model.proxy}")
        click.echo(f"  group:  {model.group}")
        click.echo(f"  ttl:    {f'{model.ttl:g}s' if model.ttl else 'never'}")
        if model.aliases:
            click.echo(f"  aliases: {', '.join(model.aliases)}")
    click.echo(f"{len(config.models)} models OK")
