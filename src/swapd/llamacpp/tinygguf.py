"""Tiny random-weight llama-architecture GGUF files for tests and benchmarks.

A byte-fallback SentencePiece vocabulary (``<unk> <s> </s>``, the 256 ``<0xNN>`` byte tokens and a
few words) means any text tokenises; random weights make the output gibberish, which is all the
tests need. A 64-dim, 2-layer model loads in well under a second.
"""

from __future__ import annotations

import os
from pathlib import Path

_WORDS = ("▁the", "▁a", "▁hello", "▁world", "▁swap", "▁model", "▁cache", "▁token")


def write_tiny_gguf(
    path: str | os.PathLike[str],
    *,
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_ff: int = 128,
    n_ctx: int = 2048,
    seed: int = 0,
    name: str = "tiny",
) -> Path:
    """Write a tiny llama GGUF to ``path`` and return it (needs the ``gguf`` package)."""
    import gguf
    import numpy as np

    path = Path(path)
    rng = np.random.default_rng(seed)
    tokens: list[bytes] = [b"<unk>", b"<s>", b"</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{i:02X}>".encode() for i in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    tokens += [w.encode() for w in _WORDS]
    types += [gguf.TokenType.NORMAL] * len(_WORDS)
    scores = [0.0] * 259 + [-float(i + 1) for i in range(len(_WORDS))]
    n_vocab = len(tokens)

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(name)
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    def tensor(tname: str, *shape: int, scale: float = 0.02) -> None:
        w.add_tensor(tname, (rng.standard_normal(shape) * scale).astype(np.float32))

    def ones(tname: str, n: int) -> None:
        w.add_tensor(tname, np.ones(n, dtype=np.float32))

    tensor("token_embd.weight", n_vocab, n_embd)
    ones("output_norm.weight", n_embd)
    tensor("output.weight", n_vocab, n_embd)
    for i in range(n_layer):
        ones(f"blk.{i}.attn_norm.weight", n_embd)
        for t in ("attn_q", "attn_k", "attn_v", "attn_output"):
            tensor(f"blk.{i}.{t}.weight", n_embd, n_embd)
        ones(f"blk.{i}.ffn_norm.weight", n_embd)
        tensor(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        tensor(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        tensor(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
