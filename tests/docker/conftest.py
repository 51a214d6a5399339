"""Fixtures: one or two real dockerd's per test session (helpers in dockerlab.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dockerlab import Daemon, clear, free_run, import_image, start, stop


class Daemons:
    """Up to two daemons, started on first use, stopped at the end of the session. A daemon
    that cannot start is remembered, so every test skips at once with the same reason."""

    def __init__(self) -> None:
        self._daemons: dict[str, Daemon] = {}
        self._failed: str | None = None

    def get(self, name: str) -> Daemon:
        if self._failed is not None:
            pytest.skip(self._failed)
        if name not in self._daemons:
            try:
                daemon = start(name)
            except pytest.skip.Exception as exc:
                self._failed = str(exc)
                raise
            import_image(daemon)
            self._daemons[name] = daemon
        return self._daemons[name]

    def close(self) -> None:
        for daemon in self._daemons.values():
            stop(daemon)


@pytest.fixture(scope="session")
def daemons() -> Iterator[Daemons]:
    d = Daemons()
    try:
        yield d
    finally:
        d.close()


@pytest.fixture
def node_a(daemons: Daemons) -> Iterator[Daemon]:
    daemon = daemons.get("a")
    yield daemon
    clear(daemon)


@pytest.fixture
def node_b(daemons: Daemons) -> Iterator[Daemon]:
    daemon = daemons.get("b")
    yield daemon
    clear(daemon)


@pytest.fixture
def start_port() -> int:
    return free_run(8)
