"""``swapd hardware``: a running swapd's inventory (``GET /api/hardware``), per node and device:
total, used, reserved by swapd's engines, free, which models sit there; and the sources that
failed.

The placement view (``placement.nodes``) is printed when it has a reading; before its first
reading (or from an older swapd) the probes' snapshot is printed as the local node.
"""

from __future__ import annotations

import json
from typing import Any

import click

from swapd.cli.remote import connect, gib, table, url_option


def _models(device: dict[str, Any]) -> str:
    return ", ".join(f"{m['model']} {gib(m['bytes'])} ({m['state']})" for m in device["models"])


def _device_name(device: dict[str, Any]) -> str:
    return "RAM" if device["kind"] == "ram" else f"gpu {device['index']}"


def _print_node(node: dict[str, Any]) -> None:
    where = "local" if node["local"] else "remote"
    if node.get("cluster"):  # a Ray node: its label, and the id placement names it by
        where = f"{node['cluster']} node {node['node']}"
    driver = f", driver {node['driver_version']}" if node.get("driver_version") else ""
    click.echo(f"node {node.get('label') or node['node']} ({where}{driver})")
    table(
        node["devices"],
        [
            ("DEVICE", _device_name),
            ("NAME", lambda d: d["name"]),
            ("TOTAL GiB", lambda d: gib(d["total"])),
            ("USED", lambda d: gib(d["used"])),
            ("SWAPD", lambda d: gib(d["reserved"])),
            ("FREE", lambda d: gib(d["free"])),
            ("MODELS", lambda d: _models(d) or "-"),
        ],
    )


def _device(index: int, kind: str, name: str, total: int, used: int) -> dict[str, Any]:
    return {
        "index": index,
        "kind": kind,
        "name": name,
        "total": total,
        "used": used,
        "reserved": 0,
        "free": total - used,
        "models": [],
    }


def _from_snapshot(info: dict[str, Any]) -> dict[str, Any]:
    """The probes' snapshot in the placement view's node shape (nothing reserved, no models)."""
    devices = []
    for d in info.get("devices", []):
        total, free = d["total_bytes"] or 0, d["free_bytes"]
        used = total - free if free is not None else 0
        devices.append(_device(d["index"], "gpu", d["name"], total, used))
    if memory := info.get("memory"):
        total, free = memory["total_bytes"], memory["available_bytes"] or 0
        devices.append(_device(-1, "ram", "system RAM", total, total - free))
    sources = info.get("sources", [])
    return {"node": "local", "local": True, "devices": devices, "sources": sources}


def _failed(nodes: list[dict[str, Any]]) -> list[str]:
    return [
        f"{node['node']}: {s['name']}: {s.get('error') or 'failed'}"
        for node in nodes
        for s in node.get("sources", [])
        if not s["ok"]
    ]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the JSON answer.")
@click.option("--refresh", is_flag=True, help="Probe again instead of a recent snapshot.")
@url_option
def hardware(as_json: bool, refresh: bool, url: str) -> None:
    """GPUs and RAM per node: total, used, held by swapd, free, and which models sit where
    (memory in GiB)."""
    with connect(url) as client:
        info = client.hardware(refresh=refresh)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    placement = info.get("placement") or {}
    nodes: list[dict[str, Any]] = placement.get("nodes") or [_from_snapshot(info)]
    if placement.get("active"):
        click.echo(f"placement: on (headroom {gib(placement['headroom'])} GiB)")
    else:
        click.echo("placement: off (models are swapped by groups only)")
    for node in nodes:
        click.echo()
        _print_node(node)
    if failed := _failed(nodes):
        click.echo()
        click.echo("sources that failed:")
        for line in failed:
            click.echo(f"  {line}")
