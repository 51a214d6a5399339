from __future__ import annotations

import random
import socket

import pytest


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
