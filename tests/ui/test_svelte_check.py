"""``npm --prefix ui run check`` (svelte-check with TypeScript, warnings fail too) finds nothing:
the UI's type errors fail the suite like mypy's do."""

from __future__ import annotations

from .npm import run_script


def test_svelte_check_finds_no_errors_or_warnings() -> None:
    proc = run_script("svelte-check", ["run", "check", "--", "--output", "machine"], timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert " 0 ERRORS 0 WARNINGS" in proc.stdout, proc.stdout[-2000:]
