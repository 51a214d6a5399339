"""``swapd nodes``: each node's reachability, GPUs, disk, Docker and models (``GET /api/nodes``,
:mod:`swapd.fleet.nodes`)."""

from __future__ import annotations

from typing import Any

import click

from swapd.cli.listing import per_node
from swapd.cli.remote import connect, gib, table, url_option


def _num(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:g}{unit}"


def _docker(docker: dict[str, Any] | None) -> str:
    if docker is None:
        return "docker: not configured (a fake or inventory-only node)"
    if not docker["reachable"]:
        return f"docker: UNREACHABLE ({docker['error']})"
    return (
        f"docker: {docker['version']} (API {docker['api_version']}), root {docker['root_dir']}, "
        f"{docker['images']} images, {docker['containers_running']} containers running"
    )


def _disk(disk: dict[str, Any]) -> str:
    if disk["free_bytes"] is None:
        return f"{disk['what']} {disk['path']}: unknown ({disk['error']})"
    return (
        f"{disk['what']} {disk['path']}: {gib(disk['free_bytes'])} GiB free "
        f"of {gib(disk['total_bytes'])} GiB"
    )


def _used(gpu: dict[str, Any]) -> str:
    used, total = gpu["used_bytes"], gpu["total_bytes"]
    return f"{'-' if used is None else gib(used)}/{'-' if total is None else gib(total)}"


def _print(node: dict[str, Any]) -> None:
    endpoint = f" ({node['endpoint']})" if node.get("endpoint") else ""
    driver = f", NVIDIA driver {node['driver_version']}" if node.get("driver_version") else ""
    name = f"{node['label']} (id {node['node']})" if node.get("label") else node["node"]
    click.echo(f"node {name}{endpoint}{driver}")
    click.echo(f"  {_docker(node['docker'])}")
    for disk in node["disks"]:
        click.echo(f"  disk: {_disk(disk)}")
    models = ", ".join(f"{m['id']} ({m['state']})" for m in node["models"]) or "none"
    click.echo(f"  models: {models}")
    if node["gpus"]:
        table(
            node["gpus"],
            [
                ("  GPU", lambda g: f"  {g['index']}"),
                ("NAME", lambda g: g["name"]),
                ("USED/TOTAL GiB", _used),
                ("UTIL", lambda g: _num(g["utilization_percent"], "%")),
                ("TEMP", lambda g: _num(g["temperature_c"], "C")),
            ],
        )
    else:
        click.echo("  gpus: none found")
    for error in node["gpu_errors"]:
        click.echo(f"  gpu source failed: {error}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the JSON answer.")
@click.option("--refresh", is_flag=True, help="Read GPU memory again instead of a recent reading.")
@url_option
def nodes(as_json: bool, refresh: bool, url: str) -> None:
    """Show every node: reachability, GPUs, disk free, Docker version, models running."""
    with connect(url) as client:
        found = client.nodes(refresh=refresh)
    per_node(found, found, as_json, _print)
