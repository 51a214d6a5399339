"""Fake engines for tests. ``python tests/fakes/engine.py ARGS`` runs :mod:`swapd.echo`."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

RAW_ENGINE = Path(__file__).resolve().with_name("raw_engine.py")


def raw_engine_cmd(flags: str = "") -> str:
    """A config ``cmd`` running tests/fakes/raw_engine.py on ``${PORT}`` (connection-level
    edge cases); ``flags``: its options (``--drop-reused``, ``--start-delay S``, …)."""
    return f"{shlex.quote(sys.executable)} {RAW_ENGINE} ${{PORT}} {flags}".rstrip()
