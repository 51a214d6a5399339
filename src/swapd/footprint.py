"""What an engine's command line says it will take (``estimated`` demands): a llama-server
command's GGUF and flags, or a vLLM/SGLang/TRT-LLM memory fraction. Also what other modules read
from a command line: the engine's argv and its local GGUF file.

The llama-server estimate, per device (all sizes in bytes)::

    weights  = the GGUF's size on disk (every part of a split model) + --mmproj + --model-draft
    kv       = ctx * Σ_layers n_head_kv * (key_length * bk + value_length * bv)
               (key/value_length default to embedding_length / head_count; bk, bv the bytes per
               element of --cache-type-k / -v: f32 4, f16 and bf16 2, q8_0 34/32, q5_1 24/32,
               q5_0 22/32, q4_1 20/32, q4_0 and iq4_nl 18/32)
    compute  = 300 MiB + ctx * ubatch * (2 + (0 with flash attention, else 4 * head_count))
               (the f16 KQ mask, and without flash attention the f32 KQ scores of one layer;
               ubatch is -ub, default 512)
    per GPU  = (weights + kv) * share + compute + 500 MiB CUDA context

``ctx`` is ``-c`` (0 or absent: the model's trained ``context_length``, llama-server's default).
``-np`` does not multiply it: llama-server divides (or, unified, shares) the ``-c`` tokens
among its slots, so the cache holds ``ctx`` tokens in total. ``-ngl 0`` is a CPU engine: weights
+ kv + compute of system RAM, no GPU. ``-ngl N`` below the layer count puts ``N / n_layer`` of
weights + kv on the GPU (the rest, in RAM, is not counted); absent, ``auto`` or ``all`` means
every layer on the GPU. ``--tensor-split`` spreads it over its nonzero entries, each device
sized for the largest share; without it the model's declared ``resources.gpus`` (else one) share
evenly. Sliding-window and MoE-on-CPU savings are ignored: the estimate errs high.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path, PurePath

from swapd import gguf
from swapd.config.command import flag_value
from swapd.config.model import ModelConfig
from swapd.config.options import DockerOptions
from swapd.config.schema import parse_size
from swapd.need import GIB, MIB, Demand, size

CUDA_CONTEXT = 500 * MIB  # per GPU: the CUDA context and cuBLAS workspaces
COMPUTE_BASE = 300 * MIB  # llama.cpp's compute buffer before the ctx-dependent part
UBATCH = 512  # llama-server's default -ub
VLLM_FRACTION = 0.92  # vLLM's --gpu-memory-utilization default now (older releases: 0.9)
SGLANG_FRACTION = 0.9  # SGLang picks --mem-fraction-static itself; about this on big GPUs
TRTLLM_FRACTION = 0.9  # TRT-LLM's --kv_cache_free_gpu_memory_fraction default
TORCH_OVERHEAD = GIB  # vLLM with --kv-cache-memory: CUDA context, activations, graphs
# bytes per 32 elements of each llama.cpp KV cache type
CACHE_TYPES = {
    "f32": 128,
    "f16": 64,
    "bf16": 64,
    "q8_0": 34,
    "q5_1": 24,
    "q5_0": 22,
    "q4_1": 20,
    "q4_0": 18,
    "iq4_nl": 18,
}
ENGINES = ("llamacpp", "vllm", "sglang", "trtllm")


# --- reading command lines ------------------------------------------------------------------


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _bytes(text: str | None) -> int | None:
    """vLLM's human-readable sizes: ``5800000000``, ``40G`` (binary), ``40g`` (decimal)."""
    if text is None:
        return None
    if m := re.fullmatch(r"(\d+(?:\.\d+)?)([kKmMgGtT])", text.strip()):
        unit = m.group(2)
        base = 1024 if unit.isupper() else 1000
        return int(float(m.group(1)) * base ** ("kmgt".index(unit.lower()) + 1))
    return parse_size(text.strip())


def _argv(model: ModelConfig) -> tuple[list[str], str]:
    """The engine's argv (a container's entrypoint + command) and its image ("" for a process)."""
    options = model.options
    if isinstance(options, DockerOptions):
        return [*(options.entrypoint or ()), *options.command], options.image
    return list(model.cmd), ""


def _engine(model: ModelConfig, argv: Sequence[str], image: str) -> str | None:
    """``llamacpp`` / ``vllm`` / ``sglang`` / ``trtllm`` from the recipe, command or image."""
    if model.recipe and (head := PurePath(model.recipe).parts[0]) in ENGINES:
        return head  # recipes live in recipes/<engine>/<name>.yaml
    names = [PurePath(a).name for a in argv]
    if names and "llama-server" in names[0]:
        return "llamacpp"
    if any(n == "vllm" and nxt == "serve" for n, nxt in pairwise(names)):
        return "vllm"
    if "vllm.entrypoints.openai.api_server" in argv:
        return "vllm"
    if "sglang.launch_server" in argv or (names and names[0] == "sglang"):
        return "sglang"
    if "trtllm-serve" in names:
        return "trtllm"
    image = image.lower()
    for marker, engine in (
        ("llama.cpp", "llamacpp"),
        ("vllm", "vllm"),
        ("sglang", "sglang"),
        ("tensorrt-llm", "trtllm"),
        ("tensorrt_llm", "trtllm"),
    ):
        if marker in image:
            return engine
    return None


def _host_path(model: ModelConfig, path: str) -> Path:
    """A path the engine sees, as swapd sees it (through a container's volumes)."""
    options = model.options
    if isinstance(options, DockerOptions):
        for volume in options.volumes:
            host, _, rest = volume.partition(":")
            inside = rest.split(":")[0].rstrip("/")
            if path == inside or path.startswith(inside + "/"):
                return Path(os.path.expanduser(host)) / path[len(inside) :].lstrip("/")
    return Path(path)


def _late(text: str | None) -> bool:
    return text is not None and "${" in text


# --- llama-server -----------------------------------------------------------------------------


def _per_layer(value: gguf.Value | None, n_layer: int) -> list[int] | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return [value] * n_layer
    if isinstance(value, tuple):
        items = [int(v) for v in value if isinstance(v, int) and not isinstance(v, bool)]
        return (items + [0] * n_layer)[:n_layer] if items else None
    return None


def kv_bytes(model: gguf.Gguf, ctx: int, cache_k: str = "f16", cache_v: str = "f16") -> int:
    """Bytes of a llama.cpp KV cache holding ``ctx`` tokens of ``model``."""
    n_layer = model.arch("block_count")
    if not isinstance(n_layer, int) or n_layer <= 0:
        return 0
    n_head = _per_layer(model.arch("attention.head_count"), n_layer)
    if n_head is None:
        return 0  # no attention metadata (a recurrent model): its state is small
    n_head_kv = _per_layer(model.arch("attention.head_count_kv"), n_layer) or n_head
    n_embd = model.arch("embedding_length")
    key_len, value_len = model.arch("attention.key_length"), model.arch("attention.value_length")
    bk, bv = CACHE_TYPES[cache_k], CACHE_TYPES[cache_v]
    per_token = 0  # in 1/32 bytes
    for heads, kv_heads in zip(n_head, n_head_kv, strict=True):
        head_dim = n_embd // heads if isinstance(n_embd, int) and heads else 0
        k_dim = key_len if isinstance(key_len, int) else head_dim
        v_dim = value_len if isinstance(value_len, int) else head_dim
        per_token += kv_heads * (k_dim * bk + v_dim * bv)
    return -(-ctx * per_token // 32)


def _flash_attention(argv: Sequence[str], env: Mapping[str, str]) -> bool:
    """``-fa`` (old boolean), ``-fa on|off|auto``; absent: auto, which is on where supported."""
    value = env.get("LLAMA_ARG_FLASH_ATTN", "auto")
    for i, arg in enumerate(argv):
        key, eq, given = arg.partition("=")
        if key in ("-fa", "--flash-attn"):
            nxt = given if eq else (argv[i + 1] if i + 1 < len(argv) else "")
            value = nxt if nxt in ("on", "off", "auto", "true", "false", "1", "0") else "on"
        elif arg in ("-nofa", "--no-flash-attn"):
            value = "off"
    return value not in ("off", "false", "0")


def _gpu_layers(text: str | None, n_layer: int) -> int:
    """Layers on the GPU: ``-ngl`` clamped to ``n_layer``; absent/auto/all/-1: every layer."""
    n = _int(text)
    if n is None or n < 0:
        return n_layer
    return min(n, n_layer)


def _extras(model: ModelConfig, argv: Sequence[str]) -> list[tuple[str, int]]:
    """(label, bytes) of the files loaded besides the model: ``--mmproj``, ``--model-draft``."""
    out: list[tuple[str, int]] = []
    for names, label in ((("-mm", "--mmproj"), "mmproj"), (("-md", "--model-draft"), "draft")):
        extra = flag_value(argv, *names)
        if extra and not _late(extra):
            try:
                out.append((label, _host_path(model, extra).stat().st_size))
            except OSError:
                continue
    return out


def _cache_type(argv: Sequence[str], env: Mapping[str, str], short: str, kind: str) -> str:
    given = flag_value(argv, short, f"--cache-type-{kind}") or env.get(
        f"LLAMA_ARG_CACHE_TYPE_{kind}"
    )
    given = (given or "f16").lower()
    return given if given in CACHE_TYPES else "f16"


def engine_argv(model: ModelConfig) -> list[str]:
    """The engine's argv: the command, or a container's entrypoint + command."""
    return _argv(model)[0]


def gguf_file(model: ModelConfig) -> Path | None:
    """The local GGUF file the engine loads (``-m``/``--model``, ``LLAMA_ARG_MODEL``, or
    ``vllm serve FILE``), as swapd sees it (through a container's volumes); None without
    one. Read it with :func:`swapd.gguf.read`."""
    argv, _ = _argv(model)
    given = [flag_value(argv, "-m", "--model"), model.env.get("LLAMA_ARG_MODEL")]
    if "serve" in argv and (at := argv.index("serve") + 1) < len(argv):
        given.append(argv[at])
    for path in given:
        if path and not _late(path) and path.lower().endswith(".gguf"):
            return _host_path(model, path)
    return None


def _llama(model: ModelConfig, argv: Sequence[str]) -> Demand | str:
    env = model.env
    path = flag_value(argv, "-m", "--model") or env.get("LLAMA_ARG_MODEL")
    if not path or _late(path):
        return "llama-server without a local -m file"  # -hf: nothing to read before it runs
    try:
        found = gguf.read(_host_path(model, path))
    except (OSError, ValueError) as exc:
        return f"llama-server: cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
    n_layer = found.arch("block_count")
    n_layer = n_layer if isinstance(n_layer, int) and n_layer > 0 else 1
    extras = _extras(model, argv)
    weights = found.size + sum(size for _, size in extras)
    ctx = _int(flag_value(argv, "-c", "--ctx-size") or env.get("LLAMA_ARG_CTX_SIZE")) or 0
    trained = found.arch("context_length")
    if ctx <= 0:
        ctx = trained if isinstance(trained, int) and trained > 0 else 4096
    cache_k, cache_v = _cache_type(argv, env, "-ctk", "k"), _cache_type(argv, env, "-ctv", "v")
    kv = kv_bytes(found, ctx, cache_k, cache_v)
    ubatch = _int(flag_value(argv, "-ub", "--ubatch-size")) or UBATCH
    heads = _per_layer(found.arch("attention.head_count"), n_layer) or [0]
    scores = 0 if _flash_attention(argv, env) else 4 * max(heads)
    compute = COMPUTE_BASE + ctx * ubatch * (2 + scores)

    cache = cache_k if cache_k == cache_v else f"{cache_k}/{cache_v}"
    parts = [f"{found.file_type} weights {size(found.size)}".lstrip()]
    parts += [f"{label} {size(n)}" for label, n in extras]
    parts += [f"KV {ctx} ctx {cache} {size(kv)}", f"compute {size(compute)}"]
    notes: list[str] = []
    ngl = flag_value(argv, "-ngl", "--gpu-layers", "--n-gpu-layers") or env.get(
        "LLAMA_ARG_N_GPU_LAYERS"
    )
    layers = _gpu_layers(ngl, n_layer)
    if layers == 0:
        detail = " + ".join(parts) + "; CPU (-ngl 0)"
        return Demand(0, weights + kv + compute, "estimated", detail)
    offloaded = -(-(weights + kv) * layers // n_layer)
    if layers < n_layer:
        notes.append(f"{layers}/{n_layer} layers on GPU, the rest in RAM (not counted)")
    split = flag_value(argv, "-ts", "--tensor-split") or ""
    shares = [s for s in (_float(x) for x in re.split(r"[,/]", split)) if s and s > 0]
    single = flag_value(argv, "-sm", "--split-mode") == "none"  # one GPU (-mg)
    if len(shares) > 1 and not single:
        count = len(shares)
        part = math.ceil(offloaded * max(shares) / sum(shares))
        notes.append(f"split {split} over {count} GPUs, sized for the largest share")
    elif model.resources.gpus is None and not model.resources.devices and not single:
        # llama-server spreads the layers over every GPU it sees: so does its need (the
        # placer divides this total over the node's GPUs)
        parts.append(f"CUDA context {size(CUDA_CONTEXT)}")
        notes.append(
            "spread over every GPU of the node, as llama-server does; set "
            "resources.gpus to use fewer"
        )
        detail = "; ".join([" + ".join(parts), *notes])
        return Demand(1, offloaded + compute + CUDA_CONTEXT, "estimated", detail, all_gpus=True)
    else:
        gpus = model.resources.gpus or len(model.resources.devices) or 1
        count = 1 if single else gpus
        part = -(-offloaded // count)
    parts.append(f"CUDA context {size(CUDA_CONTEXT)}")
    detail = "; ".join([" + ".join(parts), *notes])
    return Demand(count, part + compute + CUDA_CONTEXT, "estimated", detail)


# --- fraction engines -------------------------------------------------------------------------


def _product(argv: Sequence[str], options: Sequence[tuple[str, ...]]) -> int:
    count = 1
    for names in options:
        n = _int(flag_value(argv, *names))
        count *= n if n is not None and n > 0 else 1
    return count


def _local_weights(argv: Sequence[str], model: ModelConfig) -> int | None:
    """The safetensors bytes of a vLLM model given as a local folder (positional or --model)."""
    given = flag_value(argv, "--model")
    if given is None and "serve" in argv:
        after = argv.index("serve") + 1
        given = argv[after] if after < len(argv) and not argv[after].startswith("-") else None
    if given is None:
        return None
    folder = _host_path(model, given)
    try:
        files = list(folder.glob("*.safetensors")) if folder.is_dir() else []
        return sum(f.stat().st_size for f in files) or None
    except OSError:
        return None


def _vllm_bytes(model: ModelConfig, argv: Sequence[str], count: int, text: str) -> Demand | str:
    """vLLM with ``--kv-cache-memory``: that many bytes of KV cache instead of a fraction."""
    kv = _bytes(text)
    if kv is None:
        return f"vLLM --kv-cache-memory {text}: not a size"
    weights = _local_weights(argv, model)
    detail = f"vLLM --kv-cache-memory {size(kv)} + {size(TORCH_OVERHEAD)} overhead"
    per_device = kv + TORCH_OVERHEAD
    if weights is None:
        detail += " (weights not counted: not a local folder)"
    else:
        per_device += -(-weights // count)
        detail += f" + weights {size(weights)}" + (f" / {count}" if count > 1 else "")
    return Demand(count, per_device, "estimated", detail)


@dataclass(frozen=True, slots=True)
class _FractionFlag:
    """How an engine says what fraction of each device it takes."""

    label: str
    flag: str
    default: float
    parallel: tuple[tuple[str, ...], ...]  # the options whose product is the device count
    note: str = ""


_FRACTIONS = {
    "vllm": _FractionFlag(
        "vLLM",
        "--gpu-memory-utilization",
        VLLM_FRACTION,
        (("-tp", "--tensor-parallel-size"), ("-pp", "--pipeline-parallel-size")),
    ),
    "sglang": _FractionFlag(
        "SGLang",
        "--mem-fraction-static",
        SGLANG_FRACTION,
        (("--tp", "--tp-size"), ("--pp", "--pp-size"), ("--dp", "--dp-size")),
    ),
    "trtllm": _FractionFlag(
        "TRT-LLM",
        "--kv_cache_free_gpu_memory_fraction",
        TRTLLM_FRACTION,
        (("--tp_size",), ("--pp_size",)),
        ": that much of the memory left after the weights, counted as that fraction of the device",
    ),
}


def _fraction(model: ModelConfig, argv: Sequence[str], engine: str) -> Demand | str:
    spec = _FRACTIONS[engine]
    count = _product(argv, spec.parallel)
    if engine == "vllm" and (
        kv := flag_value(argv, "--kv-cache-memory", "--kv-cache-memory-bytes")
    ):
        return _vllm_bytes(model, argv, count, kv)
    text = flag_value(argv, spec.flag)
    fraction = _float(text) if text is not None else spec.default
    if fraction is None or not 0 < fraction <= 1:
        # e.g. ${GPU_MEMORY_FRACTION}: filled in at start from a declared resources.memory
        return f"{spec.label} {spec.flag} {text}: not a fraction"
    flag = spec.flag if text is not None else f"default {spec.flag}"
    detail = f"{spec.label} {flag} {fraction:g}{spec.note}"
    return Demand(count, 0, "estimated", detail, fraction=fraction)


def estimate(model: ModelConfig) -> Demand | str:
    """The estimate, or why there is none."""
    argv, image = _argv(model)
    engine = _engine(model, argv, image)
    if engine == "llamacpp":
        return _llama(model, argv)
    if engine is not None:
        return _fraction(model, argv, engine)
    return "no engine swapd can estimate; declare resources.memory"


def estimated(model: ModelConfig) -> Demand | None:
    """From the command line: llama-server (GGUF metadata + flags), vLLM/SGLang/TRT-LLM
    fractions; None when nothing is known."""
    found = estimate(model)
    return found if isinstance(found, Demand) else None
