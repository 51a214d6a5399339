"""Runs the UI's vitest suite (ui/tests/*.test.ts) so ``nox``/CI covers the front-end logic."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

UI = Path(__file__).resolve().parents[2] / "ui"


def test_vitest() -> None:
    npm = shutil.which("npm")
    missing = None
    if npm is None:
        missing = "npm not found"
    elif not (UI / "node_modules" / ".bin" / "vitest").exists():
        missing = "ui/node_modules missing (npm --prefix ui ci)"
    if missing:
        if os.environ.get("SWAPD_REQUIRE_UI") == "1":
            pytest.fail(f"SWAPD_REQUIRE_UI=1 but {missing}")
        print(f"\nskipping vitest: {missing}")
        pytest.skip(missing)
    assert npm is not None
    proc = subprocess.run(
        [npm, "--prefix", str(UI), "test", "--", "--reporter=dot"],
        capture_output=True,
        text=True,
        timeout=110,
        env={**os.environ, "CI": "1", "NO_COLOR": "1", "FORCE_COLOR": "0"},
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
