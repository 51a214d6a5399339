"""bench/proxy_overhead.py's rounds and variants: medians per figure, variant columns parsed."""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    sys.path.insert(0, str(BENCH))  # (it imports its sibling wrkload)
    try:
        spec = importlib.util.spec_from_file_location("proxy_overhead", BENCH / "proxy_overhead.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # (its dataclasses look themselves up there)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def test_a_cell_of_several_rounds_holds_each_figures_median_and_all_errors(
    bench: ModuleType,
) -> None:
    nan = float("nan")
    cells = [
        bench.Cell(rate=100.0, p50_ms=0.3, cpu_us=nan, errors={"status": 2}, kernel_us=nan),
        bench.Cell(rate=300.0, p50_ms=0.1, cpu_us=12.0, errors={}, kernel_us=9.0),
        bench.Cell(rate=200.0, p50_ms=0.2, cpu_us=14.0, errors={"status": 1, "read": 4}),
    ]
    cell = bench.median_cell(cells)
    assert (cell.rate, cell.p50_ms) == (200.0, 0.2)
    assert cell.cpu_us == 13.0  # a round without a figure does not count
    assert cell.kernel_us == 9.0
    assert cell.errors == {"status": 3, "read": 4}
    direct = bench.median_cell([bench.Cell(1.0, 0.1, nan, {}), bench.Cell(3.0, 0.1, nan, {})])
    assert direct.rate == 2.0 and math.isnan(direct.cpu_us)


def test_a_variant_is_a_name_and_its_environment(bench: ModuleType) -> None:
    assert bench.variant("py:SWAPD_NATIVE_RELAY=0") == ("py", {"SWAPD_NATIVE_RELAY": "0"})
    assert bench.variant("ab:A=1,B=x=y") == ("ab", {"A": "1", "B": "x=y"})
    assert bench.variant("same:") == ("same", {})  # the same swapd again: the noise floor
    for bad in ("py", ":A=1", "py:A", "py:=1"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.variant(bad)


def test_targets_take_turns_in_reverse_every_other_round(bench: ModuleType) -> None:
    order = [bench.turns(["direct", "a", "b"], n) for n in range(4)]
    assert order == [["direct", "a", "b"], ["b", "a", "direct"]] * 2


def test_the_issue_table_puts_llama_swap_then_the_go_proxies_first(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    names = ["direct", "swapd", bench.go_name(10), bench.go_name(1000), "llama-swap"]
    assert names[2:4] == ["Go proxy", "Go idle 1000"]  # llama-swap's pool of 10 is the default
    rows = [*bench.ROWS, bench.paced_row(256)]
    rate = {"direct": 100.0, "swapd": 90.0, "Go proxy": 80.0, "Go idle 1000": 70.0}
    rate["llama-swap"] = 60.0
    table = {r.key: {n: bench.Cell(rate[n], 0.1, 5.0, {}, 4.0) for n in names} for r in rows}
    bench._print_fastsse(table, rows, names, True, 0.0)
    out = capsys.readouterr().out
    assert "| figure | llama-swap | Go proxy | Go idle 1000 | swapd |" in out
    assert "| small POST c=1, req/s | 0.60 | 0.80 | 0.70 | 0.90 |" in out
    assert "llama-swap: not given" not in out
