"""Running one of the UI's npm scripts from pytest, skipped (or failed, with
``SWAPD_REQUIRE_UI=1``) when npm or the script's tool is not installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

UI = Path(__file__).resolve().parents[2] / "ui"


def run_script(tool: str, args: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    """``npm --prefix ui <args>``, once ``ui/node_modules/.bin/<tool>`` is there."""
    npm = shutil.which("npm")
    missing = None
    if npm is None:
        missing = "npm not found"
    elif not (UI / "node_modules" / ".bin" / tool).exists():
        missing = f"ui/node_modules has no {tool} (npm --prefix ui ci)"
    if missing:
        if os.environ.get("SWAPD_REQUIRE_UI") == "1":
            pytest.fail(f"SWAPD_REQUIRE_UI=1 but {missing}")
        print(f"\nskipping {tool}: {missing}")
        pytest.skip(missing)
    assert npm is not None
    return subprocess.run(
        [npm, "--prefix", str(UI), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "CI": "1", "NO_COLOR": "1", "FORCE_COLOR": "0"},
    )
