from __future__ import annotations

from pathlib import Path

import anyio
import pytest


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Engines' pid files go to a per-test directory, never the user's state dir."""
    monkeypatch.setenv("SWAPD_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


class Lines:
    """A log sink that keeps every line and lets a test wait for one."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._new = anyio.Event()

    def write(self, line: str) -> None:
        self.lines.append(line)
        self._new.set()
        self._new = anyio.Event()

    async def wait_for(self, text: str) -> str:
        """The first line containing ``text``; bound it with ``anyio.fail_after``."""
        seen = 0
        while True:
            for line in self.lines[seen:]:
                if text in line:
                    return line
            seen = len(self.lines)
            await self._new.wait()


@pytest.fixture
def lines() -> Lines:
    return Lines()
