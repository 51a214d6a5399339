"""Golden error output: tests/config_errors/<case>.yaml → <case>.expected (exact text).

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
    with pytest.raises(ConfigError) as info:
        load_text(source.read_text(), source.name, env=ENV)
    got = str(info.value) + "\n"
    expected = CASES / f"{case}.expected"
    if os.environ.get("SWAPD_REGEN_GOLDEN"):
        expected.write_text(got)
    assert got == expected.read_text()


def test_every_case_has_expected_output() -> None:
    assert {p.stem for p in CASES.glob("*.yaml")} == {p.stem for p in CASES.glob("*.expected")}
