"""Docker clients: one docker-py client per daemon endpoint, made lazily and shared."""

from __future__ import annotations

import threading
from typing import Any

from swapd.config.model import NodeConfig
from swapd.nodes import endpoint_of


def connect(node: NodeConfig, timeout: float) -> Any:
    """A new docker-py client for ``node``'s endpoint (``ssh://`` through the ssh command).
    Blocking: it asks the daemon's API version first (``docker.errors.DockerException`` when
    the daemon does not answer within ``timeout`` seconds). Close it when done."""
    import docker

    endpoint = endpoint_of(node)
    ssh = endpoint.startswith("ssh://")
    return docker.DockerClient(base_url=endpoint, timeout=int(timeout), use_ssh_client=ssh)


def failures() -> tuple[type[BaseException], ...]:
    """What a call to a daemon raises when it fails: docker-py's, requests' and socket errors."""
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    return (DockerException, RequestException, OSError)


def why(exc: BaseException) -> str:
    """One short line saying why a daemon call failed (no socket, refused, the API's words)."""
    text = " ".join(str(getattr(exc, "explanation", None) or exc).split()) or type(exc).__name__
    text = text.removeprefix("Error while fetching server API version: ")
    for cause, said in (
        ("No such file or directory", "no Docker socket there"),
        ("Connection refused", "connection refused"),
        ("timed out", "no answer in time"),
    ):
        if cause in text and "Connection" in text:
            return f"cannot connect: {said}"
    return text[:300]


class Clients:
    """The docker-py clients of one docker driver (one per endpoint; thread-safe)."""

    def __init__(self, *, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, node: NodeConfig) -> Any:
        """A docker-py client for ``node`` (cached per endpoint). Blocking: call it off the loop."""
        endpoint = endpoint_of(node)
        with self._lock:
            existing = self._clients.get(endpoint)
            if existing is not None:
                return existing
        made = connect(node, self.timeout)
        with self._lock:
            return self._clients.setdefault(endpoint, made)

    def forget(self, node: NodeConfig) -> None:
        """Drop (and close) the client of ``node``'s endpoint, e.g. after it failed to connect."""
        with self._lock:
            c = self._clients.pop(endpoint_of(node), None)
        if c is not None:
            c.close()
