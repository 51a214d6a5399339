"""The ``swapd`` command. The only place that maps errors to exit codes.

Exit codes: 0 success; 1 runtime error (e.g. a model failed to start); 2 invalid config or
usage; 3 swapd is not reachable at ``--url``; 4 unknown model; 5 API key missing or rejected;
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from swapd import __version__
from swapd.errors import ConfigError, NotFound, SwapdError

if TYPE_CHECKING:
    from swapd.client import Client


EXIT_UNREACHABLE = 3
EXIT_NOT_FOUND = 4
EXIT_UNAUTHORIZED = 5


def _exit_code(exc: SwapdError) -> int:
    from swapd.client import ApiError, Unreachable

    if isinstance(exc, Unreachable):
        return EXIT_UNREACHABLE
    if isinstance(exc, NotFound) or (isinstance(exc, ApiError) and exc.status == 404):
        return EXIT_NOT_FOUND
    if isinstance(exc, ApiError) and exc.status == 401:
        return EXIT_UNAUTHORIZED
    return exc.exit_code


def _fail(exc: SwapdError) -> None:
    if isinstance(exc, ConfigError):
        for issue in exc.issues:
            click.echo(str(issue), err=True)
    else:
        click.echo(f"swapd: {exc.message}", err=True)
    sys.exit(_exit_code(exc))


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
        _fail(exc)
    except KeyboardInterrupt:
        sys.exit(130)


@main.command()
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

    dirs = tuple(str(d) for d in models_dirs)
    try:
        config = (
            load_config(file, config_dir, models_dirs=dirs)
            if file or config_dir or dirs
            else load_demo()
        )
    except SwapdError as exc:
        _fail(exc)
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


# ── commands against a running server (swapd.client) ─────────────────────────────────────────

url_option = click.option(
    "--url",
    envvar="SWAPD_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="swapd to talk to (env SWAPD_URL); the API key comes from SWAPD_API_KEY.",
)


@contextlib.contextmanager
def _client(url: str) -> Iterator[Client]:
    from swapd.client import Client

    try:
        with Client(url) as client:
            yield client
    except SwapdError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        sys.exit(130)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, Callable[[Any], str]]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for title, _ in columns:
        table.add_column(title)
    for row in rows:
        table.add_row(*(fn(row) for _, fn in columns))
    Console(soft_wrap=True).print(table)


@main.command()
@click.argument("model")
@click.option("--no-wait", is_flag=True, help="Return at once instead of waiting until ready.")
@url_option
def start(model: str, no_wait: bool, url: str) -> None:
    """Start MODEL and wait until it is ready (exit 1 with the reason when it fails)."""
    import threading
    import time

    from rich.console import Console

    from swapd.client import ApiError, Client

    with _client(url) as client:
        client.model(model)  # unknown model: exit 4 with the known ids
        if no_wait:
            info = client.start(model)
            click.echo(f"{info['id']} {info['state']}")
            return
        outcome: dict[str, Any] = {}

        def wait() -> None:
            try:
                with Client(url) as waiter:
                    outcome["info"] = waiter.start(model, wait=True)
            except SwapdError as exc:
                outcome["error"] = exc

        began = time.monotonic()
        thread = threading.Thread(target=wait, daemon=True)
        thread.start()
        console = Console(stderr=True)
        with console.status(f"starting {model}") as status:
            while thread.is_alive():
                thread.join(0.2)
                try:
                    info = client.model(model)
                except SwapdError:
                    continue
                detail = (info.get("progress") or {}).get("detail") or ""
                elapsed = time.monotonic() - began
                status.update(f"{info['state']} {model} {elapsed:.1f}s  [dim]{detail[-100:]}[/]")
        if "error" in outcome:
            error: SwapdError = outcome["error"]
            if isinstance(error, ApiError) and error.status == 503:
                error = ApiError(503, f"{model} failed to start: {error.message}")
            _fail(error)
        info = outcome["info"]
        took = time.monotonic() - began
        click.echo(f"{info['id']} ready in {took:.1f}s (pid {info['pid']}, port {info['port']})")


@main.command()
@click.argument("models", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Stop every running model.")
@url_option
def stop(models: tuple[str, ...], all_: bool, url: str) -> None:
    """Stop MODEL… (or --all). A model that is not running is not an error."""
    if not models and not all_:
        raise click.UsageError("name a model to stop, or use --all")
    with _client(url) as client:
        results = [client.stop_all()] if all_ else [client.stop(m) for m in models]
        for result in results:
            for model_id in result["stopped"]:
                click.echo(f"{model_id} stopped")
            if result.get("message"):
                click.echo(result["message"])


def _ps_columns() -> list[tuple[str, Callable[[Any], str]]]:
    return [
        ("MODEL", lambda r: r["id"]),
        ("STATE", lambda r: r["state"]),
        ("NODE", lambda r: r["node"]),
        ("PID", lambda r: str(r["pid"] or "-")),
        ("PORT", lambda r: str(r["port"] or "-")),
        ("UPTIME", lambda r: _age(r["uptime"])),
        ("INFLIGHT", lambda r: str(r["inflight"])),
        ("QUEUED", lambda r: str(r["queued"])),
        ("TTL LEFT", lambda r: _age(r["ttl_left"])),
    ]


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@url_option
def ps(as_json: bool, url: str) -> None:
    """Running models (anything not stopped)."""
    with _client(url) as client:
        rows = [m for m in client.models() if m["state"] != "stopped"]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo("no model is running")
    else:
        _table(rows, _ps_columns())


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@url_option
def models(as_json: bool, url: str) -> None:
    """Every configured model, with aliases and state."""
    with _client(url) as client:
        rows = client.models()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    _table(
        rows,
        [
            ("MODEL", lambda r: r["id"]),
            ("STATE", lambda r: r["state"]),
            ("ALIASES", lambda r: ", ".join(r["aliases"]) or "-"),
            ("GROUP", lambda r: r["group"]),
            ("NAME", lambda r: r["name"] or "-"),
        ],
    )


@main.command()
@click.argument("model", required=False)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("-n", "lines", type=int, default=None, help="Only the last N lines of history.")
@url_option
def logs(model: str | None, follow: bool, lines: int | None, url: str) -> None:
    """swapd's and the engines' logs, or one MODEL's engine log."""
    with _client(url) as client:
        if model is not None:
            model = client.model(model)["id"]  # unknown model: exit 4
        history = client.logs(model)
        if lines is not None:
            history = history[-lines:] if lines > 0 else []
        for line in history:
            click.echo(line)
        if follow:
            for line in client.stream_logs(model, history=False):
                click.echo(line)


@main.command()
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
        _fail(exc)
    except BaseExceptionGroup as group:
        found = group.subgroup(SwapdError)
        if found is None:
            raise
        while isinstance(found, BaseExceptionGroup):
            found = found.exceptions[0]  # type: ignore[assignment]
        _fail(found)
    except KeyboardInterrupt:
        sys.exit(130)


def _add_recipes() -> None:
    from swapd.recipes import cli as recipes_cli

    main.add_command(recipes_cli())


_add_recipes()  # swapd recipes list | show | render
