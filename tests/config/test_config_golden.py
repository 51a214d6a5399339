"""Golden output: tests/config_errors/<case>.yaml → <case>.expected (exact text): the errors
of a config that does not load, else its warnings, each line starting ``warning: ``.

Set SWAPD_REGEN_GOLDEN=1 to rewrite the .expected files after a deliberate message change.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swapd.config import load_text
from swapd.errors import ConfigError

CASES = Path(__file__).parent.parent / "config_errors"
ENV = {"HOME": "/home/test"}


@pytest.mark.parametrize("case", sorted(p.stem for p in CASES.glob("*.yaml")))
def test_golden(case: str) -> None:
    source = CASES / f"{case}.yaml"
    try:
        cfg = load_text(source.read_text(), source.name, env=ENV)
    except ConfigError as exc:
        got = str(exc) + "\n"
    else:
        assert cfg.warnings, "a golden case either fails to load or warns"
        got = "".join(f"warning: {w}\n" for w in cfg.warnings)
    expected = CASES / f"{case}.expected"
    if os.environ.get("SWAPD_REGEN_GOLDEN"):
        expected.write_text(got)
    assert got == expected.read_text()


def test_every_case_has_expected_output() -> None:
    assert {p.stem for p in CASES.glob("*.yaml")} == {p.stem for p in CASES.glob("*.expected")}
