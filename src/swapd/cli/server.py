"""Commands that run swapd itself: ``serve``, ``check`` (a config) and ``run`` (one model)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from swapd.cli.exits import fail
from swapd.errors import SwapdError


@click.command()
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
@click.option(
    "--models-dir",
    "models_dirs",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Serve every *.gguf under DIR with llama-server (repeatable; see modelsDir).",
)
def serve(
    config_path: Path | None,
    config_dir: Path | None,
    listen: str,
    watch_config: bool,
    models_dirs: tuple[Path, ...] = (),
) -> None:
    """Run the proxy. SIGHUP reloads the config; SIGINT/SIGTERM stop everything cleanly."""
    from swapd.app import App
    from swapd.app import serve as run

    app = App(
        config_path=config_path,
        config_dir=config_dir,
        listen=listen,
        watch=watch_config,
        models_dirs=tuple(str(d) for d in models_dirs),
    )
    if config_path is None and config_dir is None and not models_dirs:
        click.echo("swapd: no --config given, serving the embedded demo (models echo-a, echo-b)")
    try:
        run(app.run)
    except SwapdError as exc:
        fail(exc)
    except KeyboardInterrupt:
        sys.exit(130)


@click.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False), required=False)
@click.option("--config-dir", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--models-dir",
    "models_dirs",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Also discover *.gguf files under DIR (as serve --models-dir).",
)
def check(file: Path | None, config_dir: Path | None, models_dirs: tuple[Path, ...] = ()) -> None:
    """Validate a config and print the resolved models (exit 0 when valid, 2 when not)."""
    from swapd.config import load_config, load_demo
    from swapd.extensions import standard

    dirs = tuple(str(d) for d in models_dirs)
    try:
        config = (
            load_config(file, config_dir, models_dirs=dirs, extensions=standard())
            if file or config_dir or dirs
            else load_demo()
        )
    except SwapdError as exc:
        fail(exc)
        return
    for issue in config.warnings:
        click.echo(f"warning: {issue}", err=True)
    for model in config.models.values():
        click.echo(f"{model.id}")
        click.echo(f"  argv:   {list(model.cmd)}")
        click.echo(f"  proxy:  {model.proxy}")
        if model.source:
            click.echo(f"  gguf:   {model.source} (discovered)")
        click.echo(f"  group:  {model.group}")
        click.echo(f"  ttl:    {f'{model.ttl:g}s' if model.ttl else 'never'}")
        if model.aliases:
            click.echo(f"  aliases: {', '.join(model.aliases)}")
    click.echo(f"{len(config.models)} models OK")


@click.command()
@click.argument("model")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="YAML config that defines MODEL.",
)
def run(model: str, config_path: Path) -> None:
    """Run one MODEL in the foreground, no server; Ctrl-C stops it and cleans up."""
    from swapd.app import serve as run_loop
    from swapd.runner import run_model

    try:
        run_loop(lambda: run_model(config_path, model))
    except SwapdError as exc:
        fail(exc)
    except BaseExceptionGroup as group:
        found = group.subgroup(SwapdError)
        if found is None:
            raise
        while isinstance(found, BaseExceptionGroup):
            found = found.exceptions[0]  # type: ignore[assignment]
        fail(found)
    except KeyboardInterrupt:
        sys.exit(130)
