"""``swapd files``: model files per node (Hugging Face cache, GGUF folders) (swapd.fleet).

Every command asks a running swapd (``--url``): the files are the ones on the machine it runs
on, downloads land in its cache, and the entries use its paths.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from swapd.cli.exits import fail
from swapd.cli.listing import per_node, size
from swapd.cli.remote import connect, table, url_option
from swapd.errors import RequestError, SwapdError

if TYPE_CHECKING:
    from swapd.client import Client

POLL = 0.25  # seconds between looks at a download's progress


def _when(at: float | None) -> str:
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M") if at else "-"


def _contents(row: dict[str, Any]) -> str:
    if row["kind"] == "gguf":
        return str(row["path"])
    shown = [f for f in row["files"] if f.lower().endswith((".gguf", ".safetensors"))]
    more = len(shown) - 3
    return ", ".join(shown[:3]) + (f" (+{more})" if more > 0 else "")


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON answer.")
@url_option
@click.pass_context
def files(ctx: click.Context, as_json: bool, url: str) -> None:
    """Model files per node (size, last use, the models that use each); with a command,
    download, remove, or make a model entry from one."""
    from click.core import ParameterSource

    if ctx.invoked_subcommand is not None:
        flags = {"--url": "url", "--json": "as_json"}
        source = ctx.get_parameter_source
        given = [f for f, name in flags.items() if source(name) is ParameterSource.COMMANDLINE]
        if given:
            raise click.UsageError(f"put {' '.join(given)} after the command")
        return
    with connect(url) as client:
        data = client.files()
    per_node(data, data["nodes"], as_json, _print)


def _print(node: dict[str, Any]) -> None:
    if not node["reachable"]:
        click.echo(f"node {node['node']} ({node['host']}): {node['reason']}")
        return
    click.echo(f"node {node['node']} ({node['host']}), Hugging Face cache {node['cache']}")
    if not node["files"]:
        click.echo("  no model files")
        return
    table(
        node["files"],
        [
            ("NAME", lambda r: r["name"]),
            ("KIND", lambda r: f"{r['kind']}/{r['format']}"),
            ("SIZE", lambda r: size(r["size"])),
            ("LAST USED", lambda r: _when(r["last_used"])),
            ("MODELS", lambda r: ", ".join(r["models"]) or "-"),
            ("FILES", _contents),
        ],
    )


def _follow(client: Client, job: dict[str, Any]) -> dict[str, Any]:
    """Poll a download until it ends, showing its progress (a bar on a terminal, a line per
    tenth otherwise); Ctrl-C cancels it on the server."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    tty = sys.stderr.isatty()
    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn())
    bar = Progress("{task.description}", *columns, disable=not tty)
    task = bar.add_task(job["repo"], total=job["total"] or None)
    tenth = -1
    try:
        with bar:
            while job["state"] == "running":
                time.sleep(POLL)
                job = client.files_job(job["id"])
                done, total = job["done"], job["total"]
                bar.update(task, total=total or None, completed=done)
                if not tty and total and done * 10 // total > tenth:
                    tenth = done * 10 // total
                    click.echo(f"{job['repo']}: {size(done)} of {size(total)} ({tenth * 10}%)")
    except KeyboardInterrupt:
        job = client.files_job(job["id"], cancel=True)
        while job["state"] == "running":
            time.sleep(POLL)
            job = client.files_job(job["id"])
    return job


@files.command()
@click.argument("target", metavar="ORG/REPO[:FILE]")
@click.option("--revision", default="main", show_default=True, help="Branch, tag or commit.")
@url_option
def pull(target: str, revision: str, url: str) -> None:
    """Download a repository (or FILE of it: a name or a glob such as '*Q4_K_M.gguf') into
    the Hugging Face cache of the machine swapd runs on. HF_TOKEN in swapd's environment is
    used for gated and private repositories."""
    from swapd.fleet.files.pulls import parse_target

    try:
        repo, pattern = parse_target(target)
    except RequestError as exc:
        raise click.BadParameter(exc.message) from None
    with connect(url) as client:
        job = _follow(client, client.files_pull(repo, pattern, revision))
    if job["state"] == "cancelled":
        click.echo(f"{repo}: download cancelled", err=True)
        sys.exit(130)
    if job["state"] == "failed":
        fail(SwapdError(f"{repo}: {job['error']}"))
    click.echo(f"{repo}: {len(job['files'])} file(s), {size(job['total'])} in {job['path']}")


@files.command("rm")
@click.argument("target", metavar="ORG/REPO|PATH")
@click.option("--force", is_flag=True, help="Remove it even though configured models use it.")
@url_option
def rm(target: str, force: bool, url: str) -> None:
    """Remove a cached repository or a GGUF file that `swapd files` lists."""
    with connect(url) as client:
        result = client.files_remove(target, force=force)
    users = f" (used by {', '.join(result['models'])})" if result["models"] else ""
    click.echo(f"removed {result['removed']}: {size(result['freed'])} freed{users}")


@files.command("add-model")
@click.argument("target", metavar="PATH|ORG/REPO[:FILE]")
@click.option("--as", "model_id", help="The model id (default: from the file or repository).")
@click.option(
    "--write", is_flag=True, help="Add it to swapd's config file and reload (else print it)."
)
@url_option
def add_model(target: str, model_id: str | None, write: bool, url: str) -> None:
    """A model entry for a GGUF file (llama.cpp) or a safetensors folder or repository (a vLLM
    recipe): printed, to paste under models:, or written into the config file (--write)."""
    with connect(url) as client:
        made = client.files_model(target, model_id, write=write)
    for note in made["notes"]:
        click.echo(f"# {note}")
    click.echo(made["yaml"], nl=False)
    if not write:
        return
    written = made["written"]
    reload = written["reload"]
    if written["restored"]:
        for error in reload.get("errors", []):
            click.echo(error, err=True)
        click.echo(f"swapd: the reload was rejected; {written['file']} is as it was", err=True)
        sys.exit(2)
    click.echo(f"added model {made['id']} to {written['file']} (backup {written['backup']})")
