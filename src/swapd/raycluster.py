"""The Ray cluster that ``driver: ray`` models run on: one connection per swapd process.

``start(settings)`` begins connecting in a background thread (``ray.init`` blocks, and against
an address where nothing answers Ray retries for minutes; called from the main thread it would
also take over SIGTERM): the server starts and serves every other model meanwhile. The address
is probed first (a TCP connect, ``PROBE_TIMEOUT``), so an unreachable cluster is reported in
seconds; ``await connected()`` returns once connected or raises
:class:`~swapd.errors.ClusterUnavailable` saying why, and a Ray model's start fails with that
message. swapd's Ray job owns every actor it creates (non-detached): when swapd exits or dies,
Ray kills them, and their engines with them (``swapd.drivers.rayengine``). The connection is
made once, at startup: a changed ``cluster.ray`` takes a restart.

``nodes()`` lists the cluster's nodes (id, address, resources total and available, labels) for
the inventory; ``find(name)`` resolves a node named in the config or by placement: a Ray node
id, a node's IP address, or the value of one of its labels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import anyio

from swapd.config.model import RayClusterConfig
from swapd.errors import ClusterUnavailable

log = logging.getLogger("swapd.ray")

PROBE_TIMEOUT = 3.0  # seconds to open a TCP connection to the cluster's address
DEFAULT_PORTS = {"ray": 10001, "gcs": 6379}  # Ray Client server, GCS
LOOPBACK = ("127.0.0.1", "localhost")


@dataclass(frozen=True, slots=True)
class RayNode:
    """One node of the Ray cluster, as ``nodes()`` reads it."""

    node_id: str  # hex Ray node id
    ip: str  # the address engines on it are reached at
    alive: bool
    total: Mapping[str, float] = field(default_factory=dict)  # resource -> amount
    available: Mapping[str, float] = field(default_factory=dict)  # free now (total if unknown)
    labels: Mapping[str, str] = field(default_factory=dict)

    def named(self, name: str) -> bool:
        """Whether ``name`` (a node id, an IP address or a label value) means this node."""
        return name in (self.node_id, self.ip) or name in self.labels.values()


START_WAIT = 30.0  # seconds a Ray model's start waits for swapd to begin connecting


def _pending() -> Future[str]:
    future: Future[str] = Future()
    future.set_running_or_notify_cancel()  # a waiter that is cancelled cannot cancel it
    return future


_lock = threading.Lock()
_connection = _pending()  # its result: the address connected to
_started = False


def start(settings: RayClusterConfig | None) -> None:
    """Begin connecting to the cluster (once per process; later calls change nothing)."""
    global _started
    with _lock:
        if _started:
            return
        _started = True
        future = _connection
    thread = threading.Thread(
        target=_connect,
        args=(settings or RayClusterConfig(), future),
        name="swapd-ray-connect",
        daemon=True,
    )
    thread.start()


async def connected() -> None:
    """Wait for the connection that ``start`` began (swapd begins it at startup when the config
    has ``cluster.ray`` or a ray model); raises ``ClusterUnavailable`` when the cluster cannot be
    reached, or when nothing began connecting within ``START_WAIT`` seconds."""
    try:
        with anyio.fail_after(START_WAIT if not _started else None):
            await asyncio.wrap_future(_connection)
    except TimeoutError:
        raise ClusterUnavailable(
            "swapd is not connected to a Ray cluster: the connection is made at startup "
            "(cluster.ray, or a driver: ray model); restart swapd to connect"
        ) from None


def is_connected() -> bool:
    future = _connection
    return future.done() and future.exception() is None


def _connect(settings: RayClusterConfig, future: Future[str]) -> None:
    try:
        future.set_result(connect(settings))
    except ClusterUnavailable as exc:
        log.warning("%s", exc)
        future.set_exception(exc)
    except Exception as exc:  # anything ray.init raises: the message says it all
        error = ClusterUnavailable(f"Ray cluster at {settings.address}: {exc}")
        log.warning("%s", error)
        future.set_exception(error)


def connect(settings: RayClusterConfig) -> str:
    """Connect this process to the cluster (blocking); the address connected to."""
    try:
        import ray
    except ImportError as exc:
        raise ClusterUnavailable(
            f"driver: ray needs Ray installed: pip install 'swapd[ray]' ({exc})"
        ) from exc

    address = settings.address
    if address == "auto" and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]
    if address != "auto":
        probe(address)
    options: dict[str, Any] = {} if address.startswith("ray://") else {"include_dashboard": False}
    # From the main thread ray.init would replace swapd's SIGTERM handler by sys.exit; from
    # this one it only says so.
    logging.getLogger("ray._private.worker").addFilter(_no_sigterm_notice)
    try:
        with _on_loopback(address):
            ray.init(
                address=address,
                namespace=settings.namespace,
                log_to_driver=False,
                logging_level=logging.WARNING,
                configure_logging=False,
                **options,
            )
    except ConnectionError as exc:
        raise ClusterUnavailable(f"cannot connect to the Ray cluster at {address}: {exc}") from exc
    log.info("connected to the Ray cluster at %s (namespace %s)", address, settings.namespace)
    return address


def _no_sigterm_notice(record: logging.LogRecord) -> bool:
    return "SIGTERM handler is not set" not in record.getMessage()


def _host(address: str) -> str:
    rest = address.rpartition("://")[2]
    return rest.rpartition(":")[0] or rest


@contextlib.contextmanager
def _on_loopback(address: str) -> Iterator[None]:
    """Connect to a cluster whose nodes run on loopback as a loopback node.

    ``ray.init`` replaces a loopback address by the machine's network address (and looks for a
    raylet there), which finds nothing when the nodes were started with
    ``--node-ip-address=127.0.0.1`` (one box kept off the network; the tests). While it
    connects, this node's address is the loopback one given."""
    host = _host(address)
    if host not in LOOPBACK:
        yield
        return
    from ray._private import services

    saved = services.get_node_ip_address
    services.get_node_ip_address = lambda address=None: host
    try:
        yield
    finally:
        services.get_node_ip_address = saved


def probe(address: str) -> None:
    """Raise ``ClusterUnavailable`` unless a TCP connection to ``address`` opens."""
    scheme, _, rest = address.rpartition("://")
    host, port = _host(address), rest.rpartition(":")[2]
    number = int(port) if port.isdigit() else DEFAULT_PORTS["ray" if scheme else "gcs"]
    try:
        with socket.create_connection((host, number), timeout=PROBE_TIMEOUT):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ClusterUnavailable(
            f"the Ray cluster at {address} is unreachable: {reason} (cluster.ray.address)"
        ) from exc


def disconnect() -> None:
    """Leave the cluster (blocking): Ray ends this job's actors."""
    global _connection, _started
    with _lock:
        future, _connection, _started = _connection, _pending(), False
    if future.done() and future.exception() is None:
        import ray

        ray.shutdown()


def nodes() -> list[RayNode]:
    """The cluster's alive nodes (blocking; call ``connected()`` first)."""
    import ray
    from ray._private import state

    api: Any = ray  # ray.nodes and the state API are not typed
    states: Any = state
    try:
        free: dict[str, dict[str, float]] | None = states.available_resources_per_node()
    except Exception:  # a Ray Client connection has no access to it: totals only
        free = None
    found: list[RayNode] = []
    for entry in api.nodes():
        if not entry.get("Alive"):
            continue
        node_id = str(entry["NodeID"])
        total = {str(k): float(v) for k, v in dict(entry.get("Resources") or {}).items()}
        available = total if free is None else dict(free.get(node_id, {}))
        found.append(
            RayNode(
                node_id=node_id,
                ip=str(entry.get("NodeManagerAddress", "")),
                alive=True,
                total=total,
                available=available,
                labels={str(k): str(v) for k, v in dict(entry.get("Labels") or {}).items()},
            )
        )
    return found


def find(name: str) -> RayNode | None:
    """The alive node ``name`` means (see :meth:`RayNode.named`), or None (blocking)."""
    return next((node for node in nodes() if node.named(name)), None)


def node_ip(node_id: str) -> str | None:
    """The IP address of the alive node ``node_id`` (blocking)."""
    node = find(node_id)
    return node.ip if node is not None else None


def describe(node: RayNode | None, name: str) -> str:
    """How a node is named in messages: ``node <name> (<ip>)``."""
    if node is None or name == node.ip:
        return f"node {name}"
    return f"node {name} ({node.ip})"


def resources_of(wanted: Mapping[str, float]) -> dict[str, Any]:
    """Ray actor options for ``wanted`` (``GPU``/``CPU`` become ``num_gpus``/``num_cpus``; the
    actor holds no CPU unless asked: the engine, not the actor, does the work)."""
    rest = {k: v for k, v in wanted.items() if k not in ("CPU", "GPU")}
    options: dict[str, Any] = {"num_cpus": wanted.get("CPU", 0), "num_gpus": wanted.get("GPU", 0)}
    if rest:
        options["resources"] = rest
    return options
