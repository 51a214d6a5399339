"""Commands against a running swapd (over :mod:`swapd.client`): start, stop, ps, models, logs,
whoami; the helpers here (:func:`connect`, :func:`table`, :func:`gib`) serve
:mod:`swapd.cli.hardware` too."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from swapd.cli.exits import fail
from swapd.errors import SwapdError

if TYPE_CHECKING:
    from swapd.client import Client

KEY_META = "swapd.api_key"  # where --api-key leaves the key for connect()
KEY_HINT = "set SWAPD_API_KEY or pass --api-key"


def _keep_key(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    ctx.meta[KEY_META] = value


def url_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--url`` (env SWAPD_URL, passed to the command) and ``--api-key`` (env SWAPD_API_KEY,
    kept for :func:`connect`)."""
    command = click.option(
        "--api-key",
        envvar="SWAPD_API_KEY",
        expose_value=False,
        callback=_keep_key,
        help="API key for a swapd with apiKeys (env SWAPD_API_KEY).",
    )(command)
    return click.option(
        "--url",
        envvar="SWAPD_URL",
        default="http://127.0.0.1:8080",
        show_default=True,
        help="swapd to talk to (env SWAPD_URL): http://host:port, or host:port.",
    )(command)


PIPE_WIDTH = 1000  # columns of a table printed to a pipe or file


def api_key() -> str | None:
    """The key given by --api-key or SWAPD_API_KEY for the command running now."""
    ctx = click.get_current_context(silent=True)  # thread-local: call it on the main thread
    key = ctx.meta.get(KEY_META) if ctx is not None else None
    return str(key) if key else None


@contextlib.contextmanager
def connect(url: str) -> Iterator[Client]:
    """A client for ``url``; its errors end the command with their exit code. A corrected
    URL is said on stderr; a rejected or missing key names where a key comes from."""
    from swapd.client import ApiError, Client

    try:
        with Client(url, api_key=api_key()) as client:
            if client.note:
                click.echo(f"swapd: {client.note}", err=True)
            yield client
    except ApiError as exc:
        if exc.status == 401:
            exc = ApiError(401, f"{exc.message} ({KEY_HINT})")
        fail(exc)
    except SwapdError as exc:
        fail(exc)
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


def table(rows: list[dict[str, Any]], columns: list[tuple[str, Callable[[Any], str]]]) -> None:
    """Rows as a table; cut to fit a terminal, never when piped (scripts get every cell)."""
    from rich.console import Console
    from rich.table import Table

    out = Table(box=None, pad_edge=False, header_style="bold")
    for title, _ in columns:
        out.add_column(title)
    for row in rows:
        out.add_row(*(fn(row) for _, fn in columns))
    Console(soft_wrap=True, width=None if sys.stdout.isatty() else PIPE_WIDTH).print(out)


def gib(n: float) -> str:
    """Bytes as GiB with one decimal: ``12.3``."""
    return f"{n / 2**30:.1f}"


def gpus(placement: dict[str, Any] | None) -> str:
    """Where a model sits: ``a:0,1`` (node and device indexes), ``a:RAM`` (a CPU engine in
    the node's system RAM), or ``-`` when it is not placed. A Ray node goes by its label."""
    if not placement or not placement["node"]:
        return "-"
    devices = ",".join("RAM" if i < 0 else str(i) for i in placement["devices"]) or "RAM"
    return f"{placement.get('node_label') or placement['node']}:{devices}"


def memory(placement: dict[str, Any] | None) -> str:
    """Held / needed bytes: ``12.3/14.0GiB``; ``-`` when nothing is known."""
    if not placement or not (placement["held_bytes"] or placement["need_bytes"]):
        return "-"
    return f"{gib(placement['held_bytes'])}/{gib(placement['need_bytes'])}GiB"


@click.command()
@click.argument("model")
@click.option("--no-wait", is_flag=True, help="Return at once instead of waiting until ready.")
@url_option
def start(model: str, no_wait: bool, url: str) -> None:
    """Start MODEL and wait until it is ready (exit 1 with the reason when it fails)."""
    import threading
    import time

    from rich.console import Console

    from swapd.client import ApiError, Client

    with connect(url) as client:
        client.model(model)  # unknown model: exit 4 with the known ids
        if no_wait:
            info = client.start(model)
            click.echo(f"{info['id']} {info['state']}")
            return
        outcome: dict[str, Any] = {}
        key = api_key()

        def wait() -> None:
            try:
                with Client(url, api_key=key) as waiter:
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
            fail(error)
        info = outcome["info"]
        took = time.monotonic() - began
        click.echo(f"{info['id']} ready in {took:.1f}s (pid {info['pid']}, port {info['port']})")


@click.command()
@click.argument("models", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Stop every running model.")
@url_option
def stop(models: tuple[str, ...], all_: bool, url: str) -> None:
    """Stop MODEL… (or --all). A model that is not running is not an error."""
    if not models and not all_:
        raise click.UsageError("name a model to stop, or use --all")
    with connect(url) as client:
        results = [client.stop_all()] if all_ else [client.stop(m) for m in models]
        for result in results:
            for model_id in result["stopped"]:
                click.echo(f"{model_id} stopped")
            if result.get("message"):
                click.echo(result["message"])


def port(row: dict[str, Any]) -> str:
    """The engine's port: the allocated ``${PORT}``, else the one its ``proxy`` URL names (a
    model whose cmd listens on a fixed port)."""
    if row["port"]:
        return str(row["port"])
    try:
        fixed = urlsplit(row.get("proxy") or "").port
    except ValueError:
        fixed = None
    return str(fixed) if fixed else "-"


def failures(rows: list[dict[str, Any]]) -> list[str]:
    """One line per model that failed: its id and the first line of the reason."""
    return [
        f"{r['id']} failed: {((r['error'] or '').strip() or 'no reason given').splitlines()[0]}"
        for r in rows
        if r["state"] == "failed"
    ]


def _ps_columns() -> list[tuple[str, Callable[[Any], str]]]:
    return [
        ("MODEL", lambda r: r["id"]),
        ("STATE", lambda r: r["state"]),
        ("NODE", lambda r: r.get("node_label") or r["node"]),
        ("GPU", lambda r: gpus(r.get("placement"))),
        ("MEM", lambda r: memory(r.get("placement"))),
        ("PID", lambda r: str(r["pid"] or "-")),
        ("PORT", port),
        ("UPTIME", lambda r: _age(r["uptime"])),
        ("INFLIGHT", lambda r: str(r["inflight"])),
        ("QUEUED", lambda r: str(r["queued"])),
        ("TTL LEFT", lambda r: _age(r["ttl_left"])),
    ]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@url_option
def ps(as_json: bool, url: str) -> None:
    """Running models (anything not stopped)."""
    with connect(url) as client:
        rows = [m for m in client.models() if m["state"] != "stopped"]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo("no model is running")
    else:
        table(rows, _ps_columns())
        for line in failures(rows):
            click.echo(line)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@url_option
def models(as_json: bool, url: str) -> None:
    """Every configured model, with aliases and state."""
    with connect(url) as client:
        rows = client.models()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table(
        rows,
        [
            ("MODEL", lambda r: r["id"]),
            ("STATE", lambda r: r["state"]),
            ("ALIASES", lambda r: ", ".join(r["aliases"]) or "-"),
            ("GROUP", lambda r: r["group"]),
            ("NAME", lambda r: r["name"] or "-"),
        ],
    )


def describe_key(info: dict[str, Any]) -> str:
    """``GET /api/auth`` in one line: ``key app: inference; models small-*``."""
    scopes = ", ".join(info["scopes"]) or "none"
    models = ", ".join(info["models"])
    if not info.get("keys_required"):
        return f"no API keys configured: anyone who reaches swapd has {scopes}"
    return f"key {info['name']}: {scopes}; models {models}"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the JSON answer.")
@url_option
def whoami(as_json: bool, url: str) -> None:
    """The API key in use (SWAPD_API_KEY): its name, scopes and the models it may use."""
    with connect(url) as client:
        info = client.whoami()
    click.echo(json.dumps(info, indent=2) if as_json else describe_key(info))


def clock(at: float) -> str:
    """Unix seconds as local ``HH:MM:SS.mmm``."""
    from datetime import datetime

    moment = datetime.fromtimestamp(at)
    return f"{moment:%H:%M:%S}.{moment.microsecond // 1000:03}"


@click.command()
@click.argument("model", required=False)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("-n", "lines", type=int, default=None, help="Only the last N lines of history.")
@url_option
def logs(model: str | None, follow: bool, lines: int | None, url: str) -> None:
    """swapd's and the engines' logs in time order, each line with its time and source; or
    one MODEL's engine log."""
    import time

    with connect(url) as client:
        if model is not None:
            model = client.model(model)["id"]  # unknown model: exit 4
        entries = client.log_entries(model, lines=lines)
        known = {m["id"] for m in client.models()}
        width = max(map(len, ["swapd", *known])) if model is None else 0

        def say(at: float, source: str, text: str) -> None:
            tag = f" {source:<{width}}" if model is None else ""
            click.echo(f"{clock(at)}{tag}  {text}")

        for entry in entries:
            say(entry["time"], entry["source"], entry["text"])
        if follow:
            for line in client.stream_logs(model, history=False):
                source, text = ("swapd", line) if model is None else (model, line)
                name, bracket, rest = line.partition("] ")
                if model is None and bracket and name[1:] in known and line.startswith("["):
                    source, text = name[1:], rest
                say(time.time(), source, text)
