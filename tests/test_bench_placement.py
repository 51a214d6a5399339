"""bench/placement_sim.py runs end to end and ends with its comparison line, exactly."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "placement_sim.py"
LAST_LINE = re.compile(
    r"placement: swapd swaps=\d+ p99=\d+\.\ds \| llama-swap swaps=\d+ p99=\d+\.\ds"
    r" \| llama-router swaps=\d+ p99=\d+\.\ds \| ollama swaps=\d+ p99=\d+\.\ds"
)


def test_placement_sim_quick_run_ends_with_the_comparison_line() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--requests", "40"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    last = done.stdout.rstrip("\n").splitlines()[-1]
    assert LAST_LINE.fullmatch(last), last
