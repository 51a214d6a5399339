"""``swapd images``: engine images per node, pulled and pruned by what the configured models
need (``/api/images``, :mod:`swapd.fleet.images`; the words needed, kept, in use and stale are
defined there and in docs/fleet.md)."""

from __future__ import annotations

import sys
from typing import Any

import click

from swapd.cli.listing import per_node, size
from swapd.cli.remote import connect, table, url_option

node_option = click.option("--node", help="Only this node (default: every node).")


def _name(image: dict[str, Any]) -> str:
    return ", ".join(image["tags"]) or "<none>"


def marks(image: dict[str, Any]) -> str:
    found = []
    if image["needed_by"]:
        found.append(f"needed ({', '.join(image['needed_by'])})")
    elif image["kept"]:
        found.append("kept")
    if image["in_use_by"]:
        how = "running" if image["running"] else "stopped"
        found.append(f"in use ({', '.join(image['in_use_by'])}; {how})")
    if image["stale"]:
        found.append("stale")
    return "; ".join(found) or "-"


@click.group(invoke_without_command=True)
@node_option
@click.option("--json", "as_json", is_flag=True, help="Print the JSON answer.")
@url_option
@click.pass_context
def images(ctx: click.Context, node: str | None, as_json: bool, url: str) -> None:
    """List, pull and prune engine images on every node.

    Without a subcommand: each node's images, marked needed (a configured model starts with
    it there), kept (a configured model names it), in use (a container uses it) and stale
    (what prune would remove), and the needed images the node lacks."""
    if ctx.invoked_subcommand is not None:
        return
    with connect(url) as client:
        found = client.images(node)
    per_node(found, found, as_json, _print)


def _print(listing: dict[str, Any]) -> None:
    click.echo(f"node {listing['node']}")
    if not listing["reachable"]:
        click.echo(f"  UNREACHABLE: {listing['error']}")
        return
    table(
        listing["images"],
        [
            ("IMAGE", _name),
            ("ID", lambda i: i["id"].removeprefix("sha256:")[:12]),
            ("SIZE", lambda i: size(i["size_bytes"])),
            ("MARKS", marks),
        ],
    )
    for missing in listing["missing"]:
        models = ", ".join(missing["needed_by"])
        click.echo(f"  missing: {missing['image']} (needed by {models}; swapd images pull)")


def _progress(line: dict[str, Any]) -> str:
    text = f"{line['node']}  {line['image']}  "
    if "layer" in line:
        text += f"{line['layer']}: "
    text += str(line.get("status", ""))
    if line.get("total"):
        text += f" {size(line['current'])}/{size(line['total'])}"
    return text


@images.command()
@node_option
@click.argument("refs", nargs=-1, metavar="[IMAGE]...")
@url_option
def pull(node: str | None, refs: tuple[str, ...], url: str) -> None:
    """Pull IMAGEs, or else the images configured models need that a node lacks, showing
    Docker's progress as it comes."""
    summary: dict[str, Any] = {"pulled": [], "failed": []}
    with connect(url) as client:
        for line in client.pull_images(node, refs):
            if "summary" in line:
                summary = line["summary"]
            elif "done" in line:
                outcome = "pulled" if line["done"] else f"FAILED: {line['error']}"
                click.echo(f"{line['node']}  {line['image']}  {outcome}")
            else:
                click.echo(_progress(line))
    pulled, failed = summary["pulled"], summary["failed"]
    if not pulled and not failed:
        click.echo("nothing to pull: every node has the images its models need")
    else:
        click.echo(f"{len(pulled)} pulled, {len(failed)} failed")
    if failed:
        sys.exit(1)


@images.command()
@node_option
@click.option("--dry-run", is_flag=True, help="Print the plan; remove nothing.")
@click.option(
    "--all",
    "all_",
    is_flag=True,
    help="Every image no model names and no container uses, not only engine and dangling ones.",
)
@url_option
def prune(node: str | None, dry_run: bool, all_: bool, url: str) -> None:
    """Remove stale images: not named by any configured model, not used by any container,
    and (without --all) dangling or of an engine repository. Never one a model or container
    needs."""
    with connect(url) as client:
        found = client.prune_images(node, dry_run=dry_run, scope="all" if all_ else "engine")
    failures = 0
    for result in found:
        if not result["reachable"]:
            click.echo(f"node {result['node']}: UNREACHABLE: {result['error']}")
            failures += 1
            continue
        verb = "would remove" if dry_run else "removed"
        if not result["plan"]:
            click.echo(f"node {result['node']}: nothing stale")
        for image in result["plan"]:
            if not dry_run and image["id"] not in result["removed"]:
                continue
            click.echo(
                f"node {result['node']}: {verb} {_name(image)} ({size(image['size_bytes'])})"
            )
        for failed in result["failed"]:
            failures += 1
            click.echo(
                f"node {result['node']}: could not remove {_name(failed)}: {failed['error']}"
            )
    if failures:
        sys.exit(1)
