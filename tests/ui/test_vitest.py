"""Runs the UI's vitest suite (ui/tests/*.test.ts) so ``nox``/CI covers the front-end logic."""

from __future__ import annotations

from .npm import run_script


def test_vitest() -> None:
    proc = run_script("vitest", ["test", "--", "--reporter=dot"], timeout=110)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
