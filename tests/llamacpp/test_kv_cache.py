"""KV cache kept across swaps (``kvCache: {persist: true}``) with the real llama-server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from swapd.llamacpp.kvcache import cache_key
from swapd.testing import llama_server_cmd, llama_server_env, run_swapd

pytestmark = pytest.mark.timeout(120)

LONG_PROMPT = "the cache model token swap hello world " * 12


def swap_group(start_port: int, a: Path, b: Path, cache_dir: Path) -> str:
    kv = f"    kvCache:\n      persist: true\n      dir: {cache_dir}\n"
    return (
        f"startPort: {start_port}\nhealthCheckTimeout: 30\n"
        "groups:\n  g:\n    swap: true\n    members: [alpha, beta]\n"
        f"models:\n  alpha:\n    cmd: {llama_server_cmd(a)}\n{kv}"
        f"  beta:\n    cmd: {llama_server_cmd(b)}\n{kv}"
    )


def timings(url: str, model: str, text: str) -> dict[str, int]:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 4,
        "temperature": 0,
    }
    r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    t: dict[str, int] = r.json()["timings"]
    return t


def test_prompt_cache_survives_swapping_away_and_back(
    start_port: int, ggufs: tuple[Path, Path], tmp_path: Path
) -> None:
    cfg = swap_group(start_port, *ggufs, tmp_path)
    with run_swapd(cfg, env=llama_server_env()) as swapd:
        first = timings(swapd.url, "alpha", LONG_PROMPT)
        assert first["cache_n"] == 0 and first["prompt_n"] > 300
        timings(swapd.url, "beta", "hello")  # swap: alpha's slots are saved before it stops
        assert any(p.name.startswith("alpha-") for p in tmp_path.iterdir())
        again = timings(swapd.url, "alpha", LONG_PROMPT)  # restored before this is forwarded
        assert again["cache_n"] > 300
        assert again["prompt_n"] < first["prompt_n"] // 10


def test_corrupt_cache_file_is_ignored_with_a_warning(
    start_port: int, ggufs: tuple[Path, Path], tmp_path: Path
) -> None:
    cfg = swap_group(start_port, *ggufs, tmp_path)
    with run_swapd(cfg, env=llama_server_env()) as swapd:
        timings(swapd.url, "alpha", LONG_PROMPT)
        timings(swapd.url, "beta", "hello")
        saved = [p for p in tmp_path.iterdir() if p.name.startswith("alpha-")]
        assert saved
        for p in saved:
            p.write_bytes(b"corrupt" * 100)
        t = timings(swapd.url, "alpha", LONG_PROMPT)  # swap back: restore fails, request works
        assert t["cache_n"] == 0
        logs = httpx.get(f"{swapd.url}/logs", timeout=10).text
        assert "ignoring unusable cache file" in logs


def test_cache_key_changes_with_the_gguf_file_and_the_context_size(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 100)
    base = ("llama-server", "-m", str(gguf), "-c", "4096")
    key = cache_key("m", base)
    assert cache_key("m", base) == key
    assert cache_key("m", ("llama-server", "-m", str(gguf), "-c", "8192")) != key
    assert cache_key("m", (*base, "-ctk", "q8_0")) != key
    assert cache_key("other", base) != key
    gguf.write_bytes(b"GGUF" + b"\0" * 200)  # same path, new content (size)
    assert cache_key("m", base) != key
