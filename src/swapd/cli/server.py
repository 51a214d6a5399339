"""Commands that run swapd itself: ``serve``, ``check`` (a config) and ``run`` (one model).

Without ``--config`` (or ``check``'s FILE) and ``--config-dir``, ``serve``, ``check`` and
``run`` use ``./config.yaml`` when there is one, as llama-swap users expect, and the embedded
demo otherwise; the first line of output says which. llama-swap's single-dash spellings
(``-config``, ``-config-dir``, ``-listen``, ``-watch-config``) are accepted too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from swapd.cli.exits import fail
from swapd.cli.listen import DEFAULT as DEFAULT_LISTEN
from swapd.cli.listen import Listen, ListenType
from swapd.errors import SwapdError

DEFAULT_CONFIG = Path("config.yaml")
DEMO_NOTE = "swapd: no config given and no ./config.yaml here: {} the embedded demo"


def default_config(config_path: Path | None, config_dir: Path | None) -> Path | None:
    """``config_path``, or ``./config.yaml`` when neither a file nor a directory was named and
    it exists (announced on stdout: the first line of output)."""
    if config_path is not None or config_dir is not None:
        return config_path
    if DEFAULT_CONFIG.is_file():
        click.echo(f"swapd: using ./{DEFAULT_CONFIG}")
        return DEFAULT_CONFIG
    return None


config_dir_option = click.option(
    "--config-dir",
    "-config-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory of *.yaml files merged after --config.",
)
models_dir_option = click.option(
    "--models-dir",
    "models_dirs",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Serve every *.gguf under DIR with llama-server (repeatable; see modelsDir).",
)


@click.command()
@click.option(
    "--config",
    "-config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML config (llama-swap compatible). Default: ./config.yaml if it exists, "
    "else an embedded demo.",
)
@config_dir_option
@click.option(
    "--listen",
    "-listen",
    type=ListenType(),
    default=DEFAULT_LISTEN,
    show_default=True,
    help="HOST:PORT to listen on; :PORT = every interface, [::]:PORT for IPv6.",
)
@click.option(
    "--watch-config", "-watch-config", is_flag=True, help="Reload when the config files change."
)
@models_dir_option
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where swapd keeps state between runs: engine pid records, learned memory needs, "
    "llama-server KV caches. Default: $SWAPD_STATE_DIR, else $XDG_STATE_HOME/swapd "
    "(~/.local/state/swapd).",
)
@click.option(
    "--workers",
    type=click.IntRange(0, 64),
    envvar="SWAPD_WORKERS",
    help="Data-plane worker processes (overrides server.workers; 0: one process). "
    "Default: $SWAPD_WORKERS, else the config's server.workers.",
)
def serve(
    config_path: Path | None,
    config_dir: Path | None,
    listen: Listen,
    watch_config: bool,
    models_dirs: tuple[Path, ...] = (),
    state_dir: Path | None = None,
    workers: int | None = None,
) -> None:
    """Run the proxy. SIGHUP reloads the config; SIGINT/SIGTERM stop everything cleanly."""
    from swapd.app import App
    from swapd.app import serve as run
    from swapd.drivers import pidfile

    if state_dir is not None:  # every reader of the state dir goes through pidfile.state_dir()
        os.environ[pidfile.ENV] = str(state_dir.resolve())
    config_path = default_config(config_path, config_dir)
    if config_path is None and config_dir is None and not models_dirs:
        click.echo(DEMO_NOTE.format("serving") + " (models echo-a, echo-b)")
    app = App(
        config_path=config_path,
        config_dir=config_dir,
        listen=str(listen),
        watch=watch_config,
        models_dirs=tuple(str(d) for d in models_dirs),
        workers=workers,
    )
    try:
        run(app.run)
    except SwapdError as exc:
        fail(exc)
    except KeyboardInterrupt:
        sys.exit(130)


@click.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False), required=False)
@click.option(
    "--config",
    "-config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The config to check (the same as FILE).",
)
@config_dir_option
@click.option(
    "--models-dir",
    "models_dirs",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Also discover *.gguf files under DIR (as serve --models-dir).",
)
def check(
    file: Path | None,
    config_path: Path | None,
    config_dir: Path | None,
    models_dirs: tuple[Path, ...] = (),
) -> None:
    """Validate a config and print the resolved models and what memory each needs (learned,
    declared or estimated: swapd.demand); exit 0 when valid, 2 when not.

    Warnings (on stderr) name what is wrong but does not stop loading: unknown keys, and
    mistakes that would fail at runtime (a program not on PATH, a proxy port cmd never uses).
    """
    from swapd.config import load_config, load_demo
    from swapd.demand import LearnedStore, demand_of, describe
    from swapd.drivers import pidfile
    from swapd.extensions import standard
    from swapd.lint import lint

    if file is not None and config_path is not None and file != config_path:
        raise click.UsageError("give the config either as FILE or as --config, not both")
    file = default_config(file or config_path, config_dir)
    dirs = tuple(str(d) for d in models_dirs)
    if file is None and config_dir is None and not dirs:
        click.echo(DEMO_NOTE.format("checking"))
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
    for warning in lint(config):
        click.echo(f"warning: {warning}", err=True)
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
    learned = LearnedStore(pidfile.state_dir().parent / "placement" / "learned.json")
    if config.models:
        click.echo("needs:")
    for line in describe({m.id: demand_of(m, learned) for m in config.models.values()}):
        click.echo(f"  {line}")
    click.echo(f"{len(config.models)} models OK")


@click.command()
@click.argument("model")
@click.option(
    "--config",
    "-config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML config that defines MODEL. Default: ./config.yaml if it exists, "
    "else the embedded demo.",
)
def run(model: str, config_path: Path | None) -> None:
    """Run one MODEL in the foreground, no server; Ctrl-C stops it and cleans up."""
    from swapd.app import serve as run_loop
    from swapd.runner import run_model

    config_path = default_config(config_path, None)
    if config_path is None:
        click.echo(DEMO_NOTE.format("running a model of"))
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
