"""Hatch build hook: builds the web UI (``ui/``) into ``src/swapd/web/dist/`` so wheels and
editable installs serve ``/ui``. The built files are not committed.

Skipped when the build is up to date (dist newer than every source file), when there is no
``ui/`` (building from an sdist that already holds ``dist``), or with ``SWAPD_SKIP_UI_BUILD=1``.
Without Node.js/npm, or when the npm build fails, it warns and goes on (swapd then answers
``/ui`` with how to build it) unless ``SWAPD_REQUIRE_UI=1`` (CI sets it): then it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

_SOURCES = ("src", "index.html", "package.json", "package-lock.json", "vite.config.ts")


def _newest(ui: Path) -> float:
    newest = 0.0
    for name in _SOURCES:
        p = ui / name
        files = p.rglob("*") if p.is_dir() else [p]
        for f in files:
            if f.is_file():
                newest = max(newest, f.stat().st_mtime)
    return newest


class UIBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "swapd-ui"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        ui = root / "ui"
        index = root / "src" / "swapd" / "web" / "dist" / "index.html"
        if os.environ.get("SWAPD_SKIP_UI_BUILD") or not (ui / "package.json").is_file():
            return
        if index.is_file() and index.stat().st_mtime >= _newest(ui):
            return
        required = os.environ.get("SWAPD_REQUIRE_UI") == "1"
        npm = shutil.which("npm")
        if npm is None:
            if required:
                raise RuntimeError("SWAPD_REQUIRE_UI=1 but npm is not on PATH")
            print("swapd: npm not found; the web UI at /ui is not built", file=sys.stderr)
            return
        install = "ci" if (ui / "package-lock.json").is_file() else "install"
        try:
            if install == "install" or not (ui / "node_modules" / ".package-lock.json").is_file():
                cmd = [npm, "--prefix", str(ui), install, "--no-audit", "--no-fund"]
                subprocess.run(cmd, check=True)
            subprocess.run([npm, "--prefix", str(ui), "run", "build"], check=True)
        except subprocess.CalledProcessError as exc:
            if required:
                raise
            print(f"swapd: building the web UI failed ({exc}); /ui is not built", file=sys.stderr)
