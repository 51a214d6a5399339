"""Where a ready engine accepts HTTP: what a driver reports and the proxy forwards to.

A neutral module so that the proxy, the lease and the scheduler's views name it without importing
``swapd.drivers``; drivers get it from here too (``swapd.drivers.base`` re-exports it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where a ready engine accepts HTTP."""

    base_url: str  # no trailing slash, e.g. http://127.0.0.1:5800
    pid: int | None = None  # process id, when the driver knows one
    container: str | None = None  # container name, for container drivers
    node: str | None = None  # the node it runs on, for drivers that place engines on nodes
