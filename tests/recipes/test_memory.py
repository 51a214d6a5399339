"""Item 5 of #16: what the engine takes is what the recipe declares, on any GPU size.

vLLM's ``--gpu-memory-utilization`` and SGLang's ``--mem-fraction-static`` are fractions of the
whole GPU, so the recipes use the late macro ``${GPU_MEMORY_FRACTION}`` (the declared memory
per device over the size of the device placement chose, filled at start). TRT-LLM's KV cache
is given in bytes. llama.cpp has no fraction: its need is computed in the recipe.
"""

from __future__ import annotations

import shlex

import pytest
from click.testing import CliRunner

from swapd.assignment import Assignment, expand
from swapd.cli import main
from swapd.config.schema import parse_size
from swapd.recipes import load

from .shipped import SHIPPED, recipe_model

GIB = 1024**3
FRACTIONS = {"vllm": "--gpu-memory-utilization", "sglang": "--mem-fraction-static"}


def _flag(argv: tuple[str, ...] | list[str], flag: str) -> str:
    return argv[list(argv).index(flag) + 1]


@pytest.mark.parametrize(
    ("name", "flag"),
    [
        ("vllm/qwen3-8b", "--gpu-memory-utilization"),
        ("vllm/gpt-oss-20b", "--gpu-memory-utilization"),
        ("vllm/llama-3.1-8b-instruct", "--gpu-memory-utilization"),
        ("sglang/qwen3-8b", "--mem-fraction-static"),
    ],
)
@pytest.mark.parametrize(("gpu", "fraction"), [(80 * GIB, "0.45"), (141 * GIB, "0.26")])
def test_the_fraction_follows_the_gpu_placement_chose(
    name: str, flag: str, gpu: int, fraction: str
) -> None:
    model = recipe_model(name)
    assert _flag(model.cmd, flag) == "${GPU_MEMORY_FRACTION}"  # stays literal until start
    assert model.resources.memory == 36 * GIB
    assignment = Assignment("local", (3,), "nvidia", (gpu,), model.resources.memory)
    filled = [expand(a, assignment.values()) for a in model.cmd]
    assert _flag(filled, flag) == fraction  # 36 GiB of an H100 80GB, of an H200 141GB


def test_a_set_value_still_wins() -> None:
    model = recipe_model("{name: vllm/qwen3-8b, set: {gpu_memory_utilization: 0.9}}")
    assert _flag(model.cmd, "--gpu-memory-utilization") == "0.9"


def test_trtllm_takes_its_kv_cache_in_bytes_inside_the_budget() -> None:
    model = recipe_model("trtllm/llama-3.1-8b-instruct")
    assert "--kv_cache_free_gpu_memory_fraction" not in model.cmd
    env = model.options.env  # type: ignore[union-attr]
    kv = int(env["SWAPD_KV_CACHE_BYTES"])
    weights = 16 * 10**9  # 8B parameters in bf16
    assert kv + weights < model.resources.memory == 40 * GIB
    script = model.options.entrypoint[3]  # type: ignore[union-attr,index]
    assert "max_gpu_total_bytes: %s" in script and '"$SWAPD_KV_CACHE_BYTES"' in script
    assert "--extra_llm_api_options /tmp/swapd-trtllm.yaml" in script


def test_llamacpp_qwen3_at_32k_declares_what_it_needs() -> None:
    recipe = load("llamacpp/qwen3-8b", [SHIPPED])
    ctx = int(recipe.defaults["ctx_size"])
    kv = 36 * 8 * 128 * 2 * 2 * ctx  # layers x KV heads x head dim x (K, V) x f16
    weights = 5_030_000_000  # Qwen3-8B-Q4_K_M.gguf
    declared = parse_size(recipe.memory)
    assert declared is not None and weights + kv + GIB < declared <= 13 * GIB


def test_render_without_placement_keeps_the_macro_and_says_so() -> None:
    runner = CliRunner()
    plain = runner.invoke(main, ["recipes", "render", "vllm/qwen3-8b"])
    assert plain.exit_code == 0, plain.output
    run = next(line for line in plain.output.splitlines() if line.startswith("docker run"))
    assert _flag(shlex.split(run), "--gpu-memory-utilization") == "${GPU_MEMORY_FRACTION}"
    assert "--gpu-total 80GiB shows them" in plain.output
    sized = runner.invoke(main, ["recipes", "render", "vllm/qwen3-8b", "--gpu-total", "80GiB"])
    run = next(line for line in sized.output.splitlines() if line.startswith("docker run"))
    assert _flag(shlex.split(run), "--gpu-memory-utilization") == "0.45"
    bad = runner.invoke(main, ["recipes", "render", "vllm/qwen3-8b", "--gpu-total", "big"])
    assert bad.exit_code == 2 and "--gpu-total expects a size" in bad.output
