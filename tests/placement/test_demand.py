"""What a model needs (swapd.demand, swapd.footprint): declared splits, the llama-server GGUF
estimate, engine fractions, the learned store, out-of-memory signatures and the precedence
between them."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gguf as gguf_writer
import pytest

from swapd import gguf
from swapd.config.model import ModelConfig, Resources
from swapd.config.options import DockerOptions
from swapd.demand import LearnedStore, declared, demand_of, describe, is_oom
from swapd.footprint import COMPUTE_BASE, CUDA_CONTEXT, estimated
from swapd.need import GIB, MIB, Demand
from swapd.testing import write_tiny_gguf

# a Llama-3-8B-shaped file: 32 layers, 32 heads, 8 KV heads of 128 dims, Q4_K_M
LAYERS, HEADS, KV_HEADS, EMBD, TRAINED = 32, 32, 8, 4096, 131072
WEIGHTS = 4 * GIB
X = "\N{MULTIPLICATION SIGN}"  # describe()'s sign between count and size


def write_gguf(
    path: Path,
    *,
    weights: int = WEIGHTS,
    head_count_kv: int | Sequence[int] = KV_HEADS,
    key_length: int | None = None,
    arch: str = "llama",
) -> Path:
    """A metadata-only GGUF padded (sparsely) to ``weights`` bytes, with a 5000-token
    vocabulary the reader must skip."""
    w = gguf_writer.GGUFWriter(str(path), arch)
    w.add_context_length(TRAINED)
    w.add_embedding_length(EMBD)
    w.add_block_count(LAYERS)
    w.add_head_count(HEADS)
    w.add_head_count_kv(head_count_kv)
    if key_length is not None:
        w.add_key_length(key_length)
        w.add_value_length(key_length)
    w.add_file_type(gguf_writer.LlamaFileType.MOSTLY_Q4_K_M)
    w.add_token_list([f"tok{i}".encode() for i in range(5000)])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    with path.open("r+b") as f:
        f.truncate(weights)
    return path


def llama(path: Path, *flags: str, **kw: Any) -> ModelConfig:
    return ModelConfig(id="m", cmd=("/opt/llama/bin/llama-server", "-m", str(path), *flags), **kw)


def kv(ctx: int, bytes_per_32: int = 64, *, heads: int = KV_HEADS, dim: int = EMBD // HEADS) -> int:
    """The KV formula: ctx x layers x kv heads x (k + v dims) x bytes per element."""
    return -(-ctx * LAYERS * heads * 2 * dim * bytes_per_32 // 32)


def compute(ctx: int, *, flash: bool = True) -> int:
    return COMPUTE_BASE + ctx * 512 * (2 + (0 if flash else 4 * HEADS))


def need(model: ModelConfig) -> Demand:
    found = estimated(model)
    assert found is not None
    return found


@pytest.fixture
def q4(tmp_path: Path) -> Path:
    return write_gguf(tmp_path / "llama-8b-Q4_K_M.gguf")


# --- declared -------------------------------------------------------------------------------


def test_declared_memory_is_split_evenly_over_the_declared_gpus() -> None:
    two = ModelConfig(id="m", cmd=("x",), resources=Resources(gpus=2, memory=20 * GIB))
    assert declared(two) == Demand(2, 10 * GIB, "declared", "resources.memory")
    odd = ModelConfig(id="m", cmd=("x",), resources=Resources(gpus=2, memory=3))
    assert declared(odd) == Demand(2, 2, "declared", "resources.memory")  # rounded up


def test_declared_memory_without_gpus_is_one_gpu_and_gpus_0_is_ram() -> None:
    one = ModelConfig(id="m", cmd=("x",), resources=Resources(memory=8 * GIB))
    assert (declared(one) or Demand(9, 9, "unknown")).count == 1
    ram = ModelConfig(id="m", cmd=("x",), resources=Resources(gpus=0, memory=8 * GIB))
    found = declared(ram)
    assert found is not None and (found.count, found.per_device) == (0, 8 * GIB)


def test_declared_all_gpus_keeps_the_total_for_the_placer_to_divide() -> None:
    model = ModelConfig(id="m", cmd=("x",), resources=Resources(memory=40 * GIB, all_gpus=True))
    found = declared(model)
    assert found is not None
    assert (found.all_gpus, found.per_device, found.count) == (True, 40 * GIB, 1)


def test_nothing_declared_without_memory() -> None:
    assert declared(ModelConfig(id="m", cmd=("x",), resources=Resources(gpus=2))) is None


# --- the GGUF reader ------------------------------------------------------------------------


def test_gguf_reader_reads_metadata_and_skips_the_vocabulary(q4: Path) -> None:
    found = gguf.read(q4)
    assert found.architecture == "llama" and found.arch("block_count") == LAYERS
    assert found.arch("attention.head_count_kv") == KV_HEADS
    assert found.file_type == "Q4_K_M" and found.size == WEIGHTS
    assert "tokenizer.ggml.tokens" not in found.metadata  # 5000 entries: skipped


def test_gguf_reader_rereads_a_changed_file(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", weights=GIB)
    assert gguf.read(path).arch("attention.key_length") is None
    write_gguf(path, weights=2 * GIB, key_length=256)
    again = gguf.read(path)
    assert again.arch("attention.key_length") == 256 and again.size == 2 * GIB


def test_gguf_file_type_names_match_the_gguf_package() -> None:
    for ftype in gguf_writer.LlamaFileType:
        if ftype.value in gguf.FILE_TYPES:
            assert (
                ftype.name.removeprefix("MOSTLY_").removeprefix("ALL_")
                == (gguf.FILE_TYPES[ftype.value])
            )


def test_gguf_split_model_size_is_every_part(tmp_path: Path) -> None:
    first = write_gguf(tmp_path / "big-00001-of-00003.gguf", weights=GIB)
    for part in (2, 3):
        with (tmp_path / f"big-0000{part}-of-00003.gguf").open("wb") as f:
            f.truncate(2 * GIB)
    assert gguf.read(first).size == 5 * GIB


def test_gguf_reader_refuses_what_is_not_gguf(tmp_path: Path) -> None:
    (tmp_path / "empty.gguf").touch()
    (tmp_path / "text.gguf").write_text("hello, this is not a model file at all\n")
    for name in ("empty.gguf", "text.gguf"):
        with pytest.raises(ValueError):
            gguf.read(tmp_path / name)
    truncated = tmp_path / "cut.gguf"
    with write_gguf(tmp_path / "whole.gguf").open("rb") as whole:
        truncated.write_bytes(whole.read(200))
    with pytest.raises(ValueError):
        gguf.read(truncated)


# --- the llama-server estimate --------------------------------------------------------------


def test_llama_server_estimate_is_weights_kv_compute_and_cuda_context(q4: Path) -> None:
    found = need(llama(q4, "-c", "8192"))
    assert kv(8192) == GIB  # 8192 x 32 x 8 x 256 x 2 bytes
    assert found == Demand(  # llama-server spreads over every GPU it sees: so does its need
        1,
        WEIGHTS + GIB + compute(8192) + CUDA_CONTEXT,
        "estimated",
        found.detail,
        all_gpus=True,
    )
    assert found.detail.startswith("Q4_K_M weights 4.0GiB + KV 8192 ctx f16 1.0GiB + compute")


def test_doubling_ctx_doubles_the_kv_part(q4: Path) -> None:
    small, big = need(llama(q4, "-c", "8192")), need(llama(q4, "--ctx-size=16384"))
    assert big.per_device - small.per_device == kv(8192) + compute(16384) - compute(8192)


def test_absent_or_zero_ctx_is_the_trained_context(q4: Path) -> None:
    expected = WEIGHTS + kv(TRAINED) + compute(TRAINED) + CUDA_CONTEXT
    assert need(llama(q4)).per_device == expected
    assert need(llama(q4, "-c", "0")).per_device == expected


def test_parallel_slots_share_the_context_and_do_not_multiply_it(q4: Path) -> None:
    assert need(llama(q4, "-c", "8192", "-np", "4")) == need(llama(q4, "-c", "8192"))


def test_q8_0_cache_shrinks_the_kv_part(q4: Path) -> None:
    f16 = need(llama(q4, "-c", "8192"))
    q8 = need(llama(q4, "-c", "8192", "-ctk", "q8_0", "--cache-type-v", "q8_0"))
    assert f16.per_device - q8.per_device == kv(8192) - kv(8192, 34)
    assert "q8_0" in q8.detail
    mixed = need(llama(q4, "-c", "8192", "-ctk", "q8_0"))  # only K quantised
    assert mixed.per_device == q8.per_device + (kv(8192) - kv(8192, 34)) // 2


def test_ngl_0_is_a_cpu_engine_in_ram(q4: Path) -> None:
    found = need(llama(q4, "-c", "8192", "-ngl", "0"))
    assert found.count == 0
    assert found.per_device == WEIGHTS + kv(8192) + compute(8192)  # no CUDA context


def test_partial_offload_puts_that_fraction_on_the_gpu(q4: Path) -> None:
    found = need(llama(q4, "-c", "8192", "--n-gpu-layers", "16"))
    assert found.per_device == (WEIGHTS + kv(8192)) // 2 + compute(8192) + CUDA_CONTEXT
    assert "16/32 layers on GPU" in found.detail
    assert need(llama(q4, "-c", "8192", "-ngl", "99")) == need(llama(q4, "-c", "8192"))


def test_flash_attention_off_adds_the_kq_scores_to_the_compute_buffer(q4: Path) -> None:
    on = need(llama(q4, "-c", "8192", "-fa", "on"))
    off = need(llama(q4, "-c", "8192", "--flash-attn", "off"))
    assert on == need(llama(q4, "-c", "8192"))  # auto: on
    assert off.per_device - on.per_device == compute(8192, flash=False) - compute(8192)


def test_tensor_split_counts_nonzero_entries_sized_for_the_largest_share(q4: Path) -> None:
    found = need(llama(q4, "-c", "8192", "-ts", "3,1,0"))
    assert found.count == 2
    assert (
        found.per_device == math.ceil((WEIGHTS + kv(8192)) * 3 / 4) + compute(8192) + CUDA_CONTEXT
    )
    even = need(llama(q4, "-c", "8192", "--tensor-split", "1,1"))
    assert (even.count, even.per_device) == (
        2,
        (WEIGHTS + kv(8192)) // 2 + compute(8192) + CUDA_CONTEXT,
    )
    assert need(llama(q4, "-c", "8192", "-ts", "1,1", "-sm", "none")).count == 1


def test_declared_gpu_count_spreads_an_unsplit_llama_server(q4: Path) -> None:
    found = need(llama(q4, "-c", "8192", resources=Resources(gpus=2)))
    assert (found.count, found.per_device) == (
        2,
        (WEIGHTS + kv(8192)) // 2 + compute(8192) + CUDA_CONTEXT,
    )


def test_per_layer_kv_heads_and_key_length_are_honoured(tmp_path: Path) -> None:
    hybrid = write_gguf(tmp_path / "h.gguf", head_count_kv=[8, 0] * (LAYERS // 2))
    assert need(llama(hybrid, "-c", "8192")).per_device == (
        WEIGHTS + kv(8192) // 2 + compute(8192) + CUDA_CONTEXT
    )
    wide = write_gguf(tmp_path / "w.gguf", key_length=256)
    assert need(llama(wide, "-c", "8192")).per_device == (
        WEIGHTS + kv(8192, dim=256) + compute(8192) + CUDA_CONTEXT
    )


def test_the_tiny_test_gguf_is_estimated(tmp_path: Path) -> None:
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf")  # 2 layers, 4 heads of 16 dims, 2048 ctx
    found = need(llama(tiny))
    tiny_kv = 2048 * 2 * 4 * (16 + 16) * 2
    tiny_compute = COMPUTE_BASE + 2048 * 512 * 2
    assert found.per_device == tiny.stat().st_size + tiny_kv + tiny_compute + CUDA_CONTEXT
    assert found.detail.startswith("F32 weights")


def test_mmproj_weights_are_added(q4: Path, tmp_path: Path) -> None:
    projector = tmp_path / "mmproj.gguf"
    projector.write_bytes(b"\0" * MIB)
    found = need(llama(q4, "-c", "8192", "--mmproj", str(projector)))
    assert found.per_device == need(llama(q4, "-c", "8192")).per_device + MIB
    assert "mmproj 1MiB" in found.detail


def test_llama_server_without_a_readable_gguf_is_not_estimated(tmp_path: Path) -> None:
    assert estimated(llama(tmp_path / "missing.gguf")) is None
    hf = ModelConfig(id="m", cmd=("llama-server", "-hf", "Qwen/Qwen3-8B-GGUF:Q4_K_M"))
    assert estimated(hf) is None


def test_docker_llama_cpp_reads_the_gguf_through_its_volume(q4: Path) -> None:
    spec = DockerOptions.model_validate(
        {
            "image": "ghcr.io/ggml-org/llama.cpp:server-cuda",
            "command": ["-m", f"/models/{q4.name}", "-c", "8192", "--port", "8080"],
            "volumes": [f"{q4.parent}:/models:ro"],
        }
    )
    model = ModelConfig(id="m", cmd=(), driver="docker", options=spec)
    assert need(model).per_device == need(llama(q4, "-c", "8192")).per_device


# --- engines that take a fraction -----------------------------------------------------------


def test_vllm_gpu_memory_utilization_is_a_fraction_over_tensor_parallel_devices() -> None:
    model = ModelConfig(
        id="m", cmd=("vllm", "serve", "org/m", "--gpu-memory-utilization", "0.45", "-tp", "2")
    )
    found = need(model)
    assert (found.count, found.fraction, found.per_device) == (2, 0.45, 0)
    assert found.bytes_on(80 * GIB) == math.ceil(0.45 * 80 * GIB)
    module = ModelConfig(
        id="m",
        cmd=("python", "-m", "vllm.entrypoints.openai.api_server", "--gpu-memory-utilization=0.3"),
    )
    assert need(module).fraction == 0.3 and need(module).count == 1


def test_vllm_default_fraction_and_late_macro(tmp_path: Path) -> None:
    assert need(ModelConfig(id="m", cmd=("vllm", "serve", "org/m"))).fraction == 0.92
    late = ModelConfig(
        id="m", cmd=("vllm", "serve", "m", "--gpu-memory-utilization", "${GPU_MEMORY_FRACTION}")
    )
    assert estimated(late) is None  # placement fills it in from a declared size


def test_vllm_kv_cache_memory_is_bytes_with_local_weights(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0" * (4 * MIB))
    model = ModelConfig(
        id="m", cmd=("vllm", "serve", str(folder), "--kv-cache-memory", "2G", "-tp", "2")
    )
    found = need(model)
    assert found.fraction is None and found.count == 2
    assert found.per_device == 2 * GIB + GIB + 2 * MIB


def test_docker_vllm_recipe_command_is_read() -> None:
    spec = DockerOptions.model_validate(
        {
            "image": "vllm/vllm-openai:v0.10.2",
            "entrypoint": ["vllm", "serve"],
            "command": ["org/m", "--tensor-parallel-size", "4", "--gpu-memory-utilization", "0.8"],
        }
    )
    model = ModelConfig(id="m", cmd=(), driver="docker", options=spec, recipe="vllm/m")
    found = need(model)
    assert (found.count, found.fraction) == (4, 0.8)


def test_sglang_and_trtllm_fractions() -> None:
    sglang = ModelConfig(
        id="m",
        cmd=("python3", "-m", "sglang.launch_server", "--mem-fraction-static", "0.45", "--tp", "2"),
    )
    assert (need(sglang).count, need(sglang).fraction) == (2, 0.45)
    trt = ModelConfig(
        id="m",
        cmd=("trtllm-serve", "m", "--tp_size", "2", "--kv_cache_free_gpu_memory_fraction", "0.8"),
    )
    found = need(trt)
    assert (found.count, found.fraction) == (2, 0.8) and "after the weights" in found.detail


def test_an_unknown_command_is_not_estimated() -> None:
    assert estimated(ModelConfig(id="m", cmd=("python", "-m", "swapd.echo"))) is None


def test_demand_as_dict_is_json_ready() -> None:
    d = Demand(2, 3, "estimated", "why", fraction=0.5)
    assert json.loads(json.dumps(d.as_dict())) == {
        "count": 2,
        "per_device_bytes": 3,
        "source": "estimated",
        "detail": "why",
        "fraction": 0.5,
        "all_gpus": False,
    }
    assert Demand(1, 7, "declared").bytes_on(100) == 7


# --- the learned store ----------------------------------------------------------------------


def test_learned_store_roundtrips_through_its_file(tmp_path: Path) -> None:
    path = tmp_path / "placement" / "learned.json"
    store = LearnedStore(path)
    assert store.record("fp", 1, 9 * GIB, detail="measured by NVML")
    again = LearnedStore(path).get("fp")
    assert again == Demand(1, 9 * GIB, "learned", "measured by NVML")
    entry = json.loads(path.read_text())["fp"]
    assert entry["count"] == 1 and entry["per_device"] == 9 * GIB and entry["measured_at"]


def test_learned_store_keeps_the_peak(tmp_path: Path) -> None:
    store = LearnedStore(tmp_path / "l.json")
    assert store.record("fp", 1, 10 * GIB)
    assert not store.record("fp", 1, 8 * GIB)
    assert (store.get("fp") or Demand(0, 0, "unknown")).per_device == 10 * GIB
    assert store.record("fp", 1, 12 * GIB)
    assert LearnedStore(tmp_path / "l.json").get("fp") == Demand(
        1, 12 * GIB, "learned", "measured peak"
    )
    assert store.record("fp", 2, 6 * GIB)  # another layout replaces it


def test_corrupt_learned_file_starts_empty_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "learned.json"
    for text in ('{"fp": {"count": 1, "per_d', "[1, 2]"):
        path.write_text(text)
        with caplog.at_level(logging.WARNING, logger="swapd.demand"):
            store = LearnedStore(path)
        assert store.get("fp") is None
        assert "cannot read" in caplog.text
        caplog.clear()
    path.write_text('{"ok": {"count": 1, "per_device": 5}, "bad": {"count": "x"}}')
    store = LearnedStore(path)
    assert store.get("ok") is not None and store.get("bad") is None
    assert store.record("fp", 1, 5)  # and it writes a sound file again
    assert json.loads(path.read_text())["fp"]["per_device"] == 5


def test_learned_store_writes_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "learned.json"
    store = LearnedStore(path)
    store.record("fp", 1, GIB)
    before = path.read_text()

    def crash(src: object, dst: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    assert store.record("fp", 1, 2 * GIB)  # kept in memory, logged, not raised
    assert path.read_text() == before  # the old file is whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["learned.json"]  # no temp left
    assert (store.get("fp") or Demand(0, 0, "unknown")).per_device == 2 * GIB


def test_in_memory_learned_store_writes_nothing(tmp_path: Path) -> None:
    store = LearnedStore(None)
    assert store.record("fp", 1, GIB) and store.get("fp") is not None
    assert list(tmp_path.iterdir()) == []


def test_after_oom_raises_the_need_and_remembers_it(tmp_path: Path) -> None:
    store = LearnedStore(tmp_path / "l.json")
    raised = store.after_oom("a", Demand(1, 10 * GIB, "estimated"), None)
    assert raised == Demand(1, 15 * GIB, "learned", "raised after an out-of-memory start")
    assert LearnedStore(tmp_path / "l.json").get("a") == raised
    small = store.after_oom("b", Demand(1, GIB, "declared"), 80 * GIB)
    assert small.per_device == 2 * GIB  # + 1 GiB beats x 1.5
    capped = store.after_oom("c", Demand(2, 70 * GIB, "declared"), 80 * GIB)
    assert (capped.count, capped.per_device) == (2, 80 * GIB)
    fraction = store.after_oom("d", Demand(1, 0, "estimated", fraction=0.5), 80 * GIB)
    assert fraction.per_device == 60 * GIB and fraction.fraction is None
    every = store.after_oom("e", Demand(1, 100 * GIB, "declared", all_gpus=True), 80 * GIB)
    assert (every.per_device, every.all_gpus) == (150 * GIB, True)  # a total: not capped
    assert LearnedStore(tmp_path / "l.json").get("e") == every


# --- out of memory ------------------------------------------------------------------------------

OOM_LINES = [
    "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 9866.00 MiB on device 1: "
    "cudaMalloc failed: out of memory",
    "alloc_tensor_range: failed to allocate CUDA0 buffer of size 151851674624",
    "llama_model_load: error loading model: unable to allocate CUDA0 buffer",
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
    "total capacity of 79.19 GiB of which 1.25 GiB is free.",
    "RuntimeError: CUDA error: out of memory",
    "ValueError: No available memory for the cache blocks. Try increasing "
    "`gpu_memory_utilization` when initializing the engine.",
    "ValueError: Free memory on device (10.5/79.2 GiB) on startup is less than desired GPU "
    "memory utilization (0.9, 71.3 GiB).",
    "RuntimeError: Not enough memory. Please try to increase --mem-fraction-static.",
    "torch.OutOfMemoryError: HIP out of memory. Tried to allocate 1.00 GiB.",
    "OSError: [Errno 12] Cannot allocate memory",
    "CUDA error: out of memory (fake GPU a:0: tried to allocate 8589934592, free 1073741824)",
]
FINE_LINES = [
    "llama_kv_cache:      CUDA0 KV buffer size =  4608.00 MiB",
    "ggml_cuda_host_malloc: failed to allocate 1900.00 MiB of pinned memory: invalid argument",
    "INFO 12-01 20:00:00 worker.py:1 Memory profiling takes 3.2 seconds; "
    "gpu_memory_utilization=0.90",
    "srv  log_server_r: request: POST /v1/chat/completions 127.0.0.1 200",
    "the model is running out of memory-efficient tricks",  # prose, no engine signature
]


@pytest.mark.parametrize("line", OOM_LINES)
def test_is_oom_recognises_engine_out_of_memory_lines(line: str) -> None:
    assert is_oom(["loading model", line, "exiting"])


def test_is_oom_ignores_ordinary_lines() -> None:
    assert not is_oom(FINE_LINES)
    assert not is_oom([])
    assert not is_oom(["cuda out of memory"])  # case-sensitive: engines write it capitalised


# --- precedence and description -------------------------------------------------------------


def test_demand_of_prefers_learned_then_declared_then_estimated(q4: Path) -> None:
    model = llama(q4, "-c", "8192", resources=Resources(memory=20 * GIB))
    store = LearnedStore(None)
    assert demand_of(model, store).source == "declared"
    assert demand_of(llama(q4, "-c", "8192"), store).source == "estimated"
    store.record(model.fingerprint(), 1, 3 * GIB)
    learned = demand_of(model, store)
    assert (learned.source, learned.per_device) == ("learned", 3 * GIB)  # lower, still wins


def test_demand_of_an_unknown_model_keeps_the_declared_count_else_takes_a_node() -> None:
    plain = ModelConfig(id="m", cmd=("my-engine",))
    assert demand_of(plain, None) == Demand(  # undeclared: every GPU of a node to itself
        1, 0, "unknown", "no engine swapd can estimate; declare resources.memory", all_gpus=True
    )
    two = ModelConfig(id="m", cmd=("my-engine",), resources=Resources(gpus=2))
    assert demand_of(two, None).count == 2 and not demand_of(two, None).all_gpus
    pinned = ModelConfig(id="m", cmd=("my-engine",), resources=Resources(devices=(1,)))
    assert demand_of(pinned, None).count == 1 and not demand_of(pinned, None).all_gpus


def test_unknown_says_why_there_is_no_estimate(tmp_path: Path) -> None:
    missing = demand_of(llama(tmp_path / "gone.gguf"), None)
    assert missing.source == "unknown"
    assert (
        missing.detail
        == f"llama-server: cannot read {tmp_path / 'gone.gguf'}: No such file or directory"
    )
    hf = ModelConfig(id="m", cmd=("llama-server", "-hf", "org/m-GGUF:Q4_K_M"))
    assert demand_of(hf, None).detail == "llama-server without a local -m file"
    late = ModelConfig(
        id="m", cmd=("vllm", "serve", "m", "--gpu-memory-utilization", "${GPU_MEMORY_FRACTION}")
    )
    assert "not a fraction" in demand_of(late, None).detail


def test_describe_says_need_devices_source_and_detail() -> None:
    lines = describe(
        {
            "qwen": Demand(1, int(12.3 * GIB), "estimated", "Q4_K_M weights 4.7GiB"),
            "big": Demand(2, 40 * GIB, "declared", "resources.memory"),
            "cpu": Demand(0, 300 * MIB, "learned"),
            "vllm": Demand(2, 0, "estimated", "vLLM", fraction=0.45),
            "wide": Demand(1, 80 * GIB, "declared", all_gpus=True),
            "what": Demand(1, 0, "unknown"),
        }
    )
    assert lines == [
        f"qwen: 1 GPU {X} 12.3GiB (estimated: Q4_K_M weights 4.7GiB)",
        f"big: 2 GPUs {X} 40.0GiB (declared: resources.memory)",
        "cpu: RAM 300MiB (learned)",
        f"vllm: 2 GPUs {X} 45% of its memory (estimated: vLLM)",
        "wide: all GPUs of a node, 80.0GiB in total (declared)",
        f"what: 1 GPU {X} unknown (unknown)",
    ]
