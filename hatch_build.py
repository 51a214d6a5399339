"""Hatch build hook: builds the web UI (``ui/``) into ``src/swapd/web/dist/`` so wheels and
editable installs serve ``/ui``, and the native relay (``src/swapd/native/relay.c``, C and POSIX
threads only) into ``src/swapd/native/_relay.so``. The built files are not committed.

The native relay is built on Linux with the C compiler (``$CC``, else ``cc``/``gcc``) when its
library is older than its source. Without a compiler, or when it fails, it warns and goes on
(swapd then relays in Python) unless ``SWAPD_REQUIRE_NATIVE=1`` (CI sets it): then it fails.

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


def build_native(root: Path, build_data: dict[str, Any]) -> None:
    """Compile the native relay into the tree (an editable install loads it from there) and
    ship it in the wheel, tagged for this platform."""
    source = root / "src" / "swapd" / "native" / "relay.c"
    library = source.with_name("_relay.so")
    if not sys.platform.startswith("linux") or not source.is_file():
        return
    required = os.environ.get("SWAPD_REQUIRE_NATIVE") == "1"
    newest = max(f.stat().st_mtime for f in source.parent.glob("*.c"))  # relay.c includes front.c
    if not library.is_file() or library.stat().st_mtime < newest:
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            if required:
                raise RuntimeError("SWAPD_REQUIRE_NATIVE=1 but there is no C compiler (cc)")
            print("swapd: no C compiler; the native relay is not built", file=sys.stderr)
            return
        flags = ["-O2", "-Wall", "-shared", "-fPIC", "-pthread"]
        built = library.with_name(f"_relay.{os.getpid()}.so")  # then renamed: a running swapd
        try:  # keeps the library it has mapped
            subprocess.run([cc, *flags, "-o", str(built), str(source)], check=True)
            os.replace(built, library)
        except (OSError, subprocess.CalledProcessError) as exc:
            if required:
                raise
            print(f"swapd: building the native relay failed ({exc})", file=sys.stderr)
            return
    build_data["artifacts"].append("src/swapd/native/_relay.so")
    build_data["pure_python"] = False
    build_data["infer_tag"] = True


class UIBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "swapd-ui"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        if self.target_name == "wheel":  # (an sdist ships relay.c, never a built library)
            build_native(root, build_data)
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
