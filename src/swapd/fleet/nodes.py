"""Nodes: each node's Docker daemon, GPUs, disk and models, for ``swapd nodes`` and
``GET /api/nodes``.

The nodes are the config's (``local`` without ``nodes:``) and any other node the placement
inventory reads (a fake GPU spec's). Per node:

- ``docker``: the daemon pinged with a short timeout (:data:`PING_TIMEOUT`); when it answers,
  its version and API version and, from its ``info``, the root dir (``DockerRootDir``), image
  and running-container counts. A daemon that does not answer is ``reachable: false`` with the
  reason, never an error of the whole answer.
- ``gpus``: memory total/used from the placement inventory's latest reading
  (:mod:`swapd.inventory`), utilisation and temperature asked now
  (:func:`swapd.hardware.probe_activity`: NVML or ``nvidia-smi`` here, ``nvidia-smi`` over
  ``ssh`` for an ``ssh://`` node; a fake GPU spec's ``utilization`` / ``temperature``).
- ``disks``: free space where caches live: Docker's root dir and the Hugging Face cache
  (``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``); measured on this
  machine for a local node, with ``df -Pk`` over ``ssh`` for an ``ssh://`` node (the remote
  user's default cache); unknown for a ``tcp://`` node.
- ``models``: the models whose engine lives there (starting, ready, sleeping or stopping).

A node the inventory names by an id (a Ray node) also has its readable ``label``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from swapd import hardware
from swapd.config.model import Config, NodeConfig
from swapd.drivers.docker.clients import connect, failures, why
from swapd.echo import gpu as fake
from swapd.hardware import Activity, ProbeError, Runner
from swapd.inventory import FakeInventory, Inventory, NodeReading
from swapd.nodes import command_prefix, endpoint_of, is_local
from swapd.views import ALIVE

PING_TIMEOUT = 3.0  # seconds a daemon has to answer
REMOTE_HF_CACHE = ".cache/huggingface/hub"  # relative to the remote user's home (ssh)
_ALIVE = {str(s) for s in ALIVE}


def docker_facts(node: NodeConfig, timeout: float = PING_TIMEOUT) -> dict[str, Any]:
    """The daemon of ``node``: reachable or why not, version, root dir, counts. Blocking;
    never raises."""
    try:
        client = connect(node, timeout)
    except failures() as exc:
        return {"reachable": False, "error": why(exc)}
    try:
        client.ping()
        version, info = client.version(), client.info()
    except failures() as exc:
        return {"reachable": False, "error": why(exc)}
    finally:
        client.close()
    return {
        "reachable": True,
        "error": None,
        "version": version.get("Version"),
        "api_version": version.get("ApiVersion"),
        "os": info.get("OperatingSystem"),
        "root_dir": info.get("DockerRootDir"),
        "images": info.get("Images"),
        "containers_running": info.get("ContainersRunning"),
    }


def hf_cache(environ: Mapping[str, str] | None = None) -> Path:
    """The Hugging Face hub cache folder of this machine (huggingface_hub's rule)."""
    env = os.environ if environ is None else environ
    if hub := env.get("HF_HUB_CACHE"):
        return Path(hub).expanduser()
    home = env.get("HF_HOME") or os.path.join(
        env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def disk_here(what: str, path: Path) -> dict[str, Any]:
    """Total and free bytes of the file system holding ``path`` (its nearest existing folder:
    a cache not made yet lands there)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        usage = shutil.disk_usage(probe)
    except OSError as exc:
        return _disk(what, str(path), error=exc.strerror or str(exc))
    return _disk(what, str(path), usage.total, usage.free)


def parse_df(text: str) -> tuple[int, int]:
    """(total, free) bytes from ``df -Pk PATH`` (POSIX format: a header, one line)."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or len(lines[-1]) < 6 or not lines[-1][1].isdigit():
        raise ProbeError(f"df printed no usage line: {text.strip()[:200]!r}")
    row = lines[-1]
    return int(row[1]) * 1024, int(row[3]) * 1024


def disk_over(what: str, path: str, prefix: list[str], run: Runner) -> dict[str, Any]:
    """Like :func:`disk_here` on another machine, through ``prefix`` (ssh)."""
    try:
        total, free = parse_df(run([*prefix, "df", "-Pk", path]))
    except ProbeError as exc:
        return _disk(what, path, error=str(exc))
    return _disk(what, path, total, free)


def _disk(
    what: str,
    path: str,
    total: int | None = None,
    free: int | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    return {"what": what, "path": path, "total_bytes": total, "free_bytes": free, "error": error}


def disks(
    node: NodeConfig, root_dir: str | None, run: Runner = hardware.run_tool
) -> list[dict[str, Any]]:
    """Free space under Docker's root dir and the Hugging Face cache of ``node``."""
    if is_local(node):
        found = [disk_here("hf cache", hf_cache())]
        if root_dir:
            found.insert(0, disk_here("docker root", Path(root_dir)))
        return found
    prefix = command_prefix(node)
    if prefix is None:  # tcp:// — no way to run df there
        why = f"no shell on {node.docker} (tcp://): disk free is not known"
        return [_disk("docker root", root_dir or "?", error=why)]
    found = [disk_over("hf cache", REMOTE_HF_CACHE, prefix, run)]
    if root_dir:
        found.insert(0, disk_over("docker root", root_dir, prefix, run))
    return found


def activity(
    node: NodeConfig | None, reading: NodeReading, inventory: Inventory, run: Runner
) -> tuple[dict[int, Activity], str | None]:
    """Utilisation and temperature per GPU index of a node, and why not when they cannot be
    read. Blocking."""
    if isinstance(inventory, FakeInventory):
        try:
            spec = fake.Spec.load(inventory.spec_path)
        except fake.FakeGpuError as exc:
            return {}, str(exc)
        found = spec.nodes.get(reading.node)
        gpus = found.gpus if found is not None else ()
        return {g.index: Activity(g.utilization, g.temperature) for g in gpus}, None
    if not any(d.vendor == "nvidia" and d.source != "declared" for d in reading.devices):
        return {}, None
    prefix = [] if reading.local else (command_prefix(node) if node is not None else None)
    if prefix is None:
        return {}, "no way to run nvidia-smi there"
    try:
        return hardware.probe_activity(lambda argv: run([*prefix, *argv]), nvml=not prefix), None
    except ProbeError as exc:
        return {}, str(exc)


def gpu_rows(reading: NodeReading | None, busy: Mapping[int, Activity]) -> list[dict[str, Any]]:
    rows = []
    for d in reading.devices if reading is not None else ():
        total, free = d.total_bytes, d.free_bytes
        act = busy.get(d.index)
        rows.append(
            {
                "index": d.index,
                "name": d.name,
                "vendor": d.vendor,
                "total_bytes": total,
                "used_bytes": total - free if total is not None and free is not None else None,
                "utilization_percent": act.utilization_percent if act else None,
                "temperature_c": act.temperature_c if act else None,
                "source": d.source,
            }
        )
    return rows


def models_on(
    name: str, models: Sequence[Mapping[str, Any]], aliases: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The live models whose node is ``name`` or one of its ``aliases`` (a Ray node's engine
    names the node as its model was pinned: by label or IP)."""
    names = {name, *aliases}
    return [
        {"id": m["id"], "state": m["state"], "container": m.get("container")}
        for m in models
        if m.get("node") in names and m.get("state") in _ALIVE
    ]


def one(
    name: str,
    node: NodeConfig | None,
    reading: NodeReading | None,
    inventory: Inventory | None,
    models: Sequence[Mapping[str, Any]],
    run: Runner = hardware.run_tool,
) -> dict[str, Any]:
    """Everything ``swapd nodes`` says about one node (blocking; never raises)."""
    docker = docker_facts(node) if node is not None else None
    busy: dict[int, Activity] = {}
    gpu_error = None
    if reading is not None and inventory is not None:
        busy, gpu_error = activity(node, reading, inventory, run)
    failed = [f"{s.name}: {s.error}" for s in reading.sources if not s.ok] if reading else []
    return {
        "node": name,
        "label": reading.label or None if reading is not None else None,
        "endpoint": endpoint_of(node) if node is not None else None,
        "local": reading.local if reading is not None else (node is not None and is_local(node)),
        "docker": docker,
        "driver_version": reading.driver_version if reading is not None else None,
        "gpus": gpu_rows(reading, busy),
        "gpu_errors": [*failed, *([f"activity: {gpu_error}"] if gpu_error else [])],
        "disks": disks(node, (docker or {}).get("root_dir"), run) if node is not None else [],
        "models": models_on(name, models, reading.aliases if reading is not None else ()),
    }


async def report(
    config: Config,
    inventory: Inventory | None,
    models: Sequence[Mapping[str, Any]],
    *,
    refresh: bool = False,
) -> list[dict[str, Any]]:
    """Every node at once, each in a worker thread (a dead daemon takes its full timeout)."""
    reading = await inventory.read(refresh=refresh) if inventory is not None else None
    names = list(config.nodes)
    names += [n.node for n in (reading.nodes if reading else ()) if n.node not in names]
    found: list[dict[str, Any]] = [{} for _ in names]

    async def ask(i: int, name: str) -> None:
        node_reading = reading.node(name) if reading is not None else None
        found[i] = await anyio.to_thread.run_sync(
            one, name, config.nodes.get(name), node_reading, inventory, models
        )

    async with anyio.create_task_group() as tg:
        for i, name in enumerate(names):
            tg.start_soon(ask, i, name)
    return found
