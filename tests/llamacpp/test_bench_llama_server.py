"""``swapd bench`` against the real llama-server (tiny GGUF): the engine's own timings and
prompt count make the figures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from swapd.testing import llama_server_cmd, llama_server_env, run_swapd

pytestmark = pytest.mark.timeout(120)


def test_bench_reports_llama_server_timings_per_level(
    start_port: int, ggufs: tuple[Path, Path], tmp_path: Path
) -> None:
    text = f"startPort: {start_port}\nhealthCheckTimeout: 30\nmodels:\n  tiny:\n"
    text += f"    cmd: {llama_server_cmd(ggufs[0])}\n"
    env = llama_server_env({**os.environ, "SWAPD_STATE_DIR": str(tmp_path)})
    with run_swapd(text, env=env) as swapd:
        result = subprocess.run(
            [sys.executable, "-m", "swapd", "bench", "tiny", "--concurrency", "1,2",
             "--prompt-tokens", "16", "--gen-tokens", "8"],
            env={**os.environ, "SWAPD_URL": swapd.url},
            capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "tiny loaded in" in result.stdout
        [run] = httpx.get(f"{swapd.url}/api/models/tiny/bench").json()["results"]
    one, two = run["levels"]
    assert (one["concurrency"], two["concurrency"]) == (1, 2)
    for level in (one, two):
        assert level["failed"] == 0 and level["timing"] == "engine"  # llama.cpp's timings
        assert level["gen_tokens"] == 8  # ignore_eos: every max_token generated
        # the engine's count of the prompt, not the 16 asked for (tiny byte-level vocabulary)
        assert level["prompt_tokens"] > 16
        assert level["pp_tps"] > 0 and level["tg_tps"] > 0 and level["ttft_ms"] > 0
