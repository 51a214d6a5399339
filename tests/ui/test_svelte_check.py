"""``npm --prefix ui run check`` (svelte-check with TypeScript, warnings fail too) finds nothing:
the UI's type errors fail the suite like mypy's do."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

UI = Path(__file__).resolve().parents[2] / "ui"


def test_svelte_check_finds_no_errors_or_warnings() -> None:
    npm = shutil.which("npm")
    missing = None
    if npm is None:
        missing = "npm not found"
    elif not (UI / "node_modules" / ".bin" / "svelte-check").exists():
        missing = "ui/node_modules has no svelte-check (npm --prefix ui ci)"
    if missing:
        if os.environ.get("SWAPD_REQUIRE_UI") == "1":
            pytest.fail(f"SWAPD_REQUIRE_UI=1 but {missing}")
        print(f"\nskipping svelte-check: {missing}")
        pytest.skip(missing)
    assert npm is not None
    proc = subprocess.run(
        [npm, "--prefix", str(UI), "run", "check", "--", "--output", "machine"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CI": "1", "NO_COLOR": "1", "FORCE_COLOR": "0"},
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert " 0 ERRORS 0 WARNINGS" in proc.stdout, proc.stdout[-2000:]
