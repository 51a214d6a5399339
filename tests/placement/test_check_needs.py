"""``swapd check`` prints what every model needs and where the figure came from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gguf as gguf_writer
import pytest

from swapd.config import load_config
from swapd.extensions import standard

pytestmark = pytest.mark.timeout(120)

X = "\N{MULTIPLICATION SIGN}"


def write_model(path: Path) -> Path:
    """A metadata-only Q4_K_M GGUF of an 8B-shaped model, padded (sparsely) to 4 GiB."""
    w = gguf_writer.GGUFWriter(str(path), "llama")
    w.add_context_length(131072)
    w.add_embedding_length(4096)
    w.add_block_count(32)
    w.add_head_count(32)
    w.add_head_count_kv(8)
    w.add_file_type(gguf_writer.LlamaFileType.MOSTLY_Q4_K_M)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    with path.open("r+b") as f:
        f.truncate(4 * 2**30)
    return path


def check(config: Path, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swapd", "check", str(config)],
        env={**os.environ, "SWAPD_STATE_DIR": str(state)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def needs(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    return lines[lines.index("needs:") + 1 : -1]


def test_check_prints_each_models_need_and_its_source(tmp_path: Path) -> None:
    model = write_model(tmp_path / "qwen-Q4_K_M.gguf")
    config = tmp_path / "config.yaml"
    config.write_text(
        "models:\n"
        "  qwen:\n"
        f"    cmd: llama-server -m {model} -c 8192 --port ${{PORT}}\n"
        "  big:\n"
        "    cmd: my-engine --port ${PORT}\n"
        "    resources: {gpus: 2, memory: 40GiB}\n"
        "  fast:\n"
        "    cmd: vllm serve org/m --gpu-memory-utilization 0.45 -tp 2 --port ${PORT}\n"
        "  cpu:\n"
        f"    cmd: llama-server -m {model} -c 8192 -ngl 0 --port ${{PORT}}\n"
        "  plain:\n"
        "    cmd: my-engine --port ${PORT}\n"
    )
    out = check(config, tmp_path / "state")
    assert out.returncode == 0, out.stderr
    assert out.stdout.rstrip().endswith("5 models OK")  # the last line stays the last
    lines = needs(out.stdout)
    assert len(lines) == 5
    by_model = {line.split(":")[0].strip(): line for line in lines}
    # 4 GiB weights + 1 GiB KV (8192 ctx x 32 layers x 8 heads x 256 x 2 B) + compute + CUDA
    assert by_model["qwen"].startswith(  # llama-server spreads over every GPU it sees
        "  qwen: all GPUs of a node, 5.8GiB in total (estimated: Q4_K_M weights 4.0GiB"
    )
    assert "KV 8192 ctx f16 1.0GiB" in by_model["qwen"]
    assert by_model["big"] == f"  big: 2 GPUs {X} 20.0GiB (declared: resources.memory)"
    assert by_model["fast"] == (
        f"  fast: 2 GPUs {X} 45% of its memory (estimated: vLLM --gpu-memory-utilization 0.45)"
    )
    assert by_model["cpu"].startswith("  cpu: RAM 5.3GiB (estimated: ")
    assert by_model["plain"] == (  # unknown and undeclared: a node's GPUs to itself
        "  plain: all GPUs of a node"
        " (unknown: no engine swapd can estimate; declare resources.memory)"
    )


def test_check_shows_a_learned_figure_over_the_estimate(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.gguf")
    config = tmp_path / "config.yaml"
    config.write_text(f"models:\n  qwen:\n    cmd: llama-server -m {model} --port ${{PORT}}\n")
    fingerprint = load_config(config, extensions=standard()).models["qwen"].fingerprint()
    state = tmp_path / "state"
    (state / "placement").mkdir(parents=True)
    (state / "placement" / "learned.json").write_text(
        json.dumps(
            {
                fingerprint: {
                    "count": 1,
                    "per_device": 3 * 2**30,
                    "measured_at": "2026-12-01T20:00:00+00:00",
                    "detail": "peak measured by NVML",
                }
            }
        )
    )
    out = check(config, state)
    assert out.returncode == 0, out.stderr
    assert needs(out.stdout) == [f"  qwen: 1 GPU {X} 3.0GiB (learned: peak measured by NVML)"]
