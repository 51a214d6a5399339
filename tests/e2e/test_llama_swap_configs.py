"""llama-swap's own example configs (tests/config/data, copies of its repository's) run unchanged.

For each: ``swapd check FILE`` exits 0 and calls nothing "not supported", and ``swapd serve``
starts on it and lists its models. The engines' programs do not exist here, so nothing starts
(a preload fails and is logged); what is tested is that the config is understood.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from swapd.config import load_config
from swapd.extensions import standard
from swapd.testing import free_port, run_swapd

pytestmark = pytest.mark.timeout(120)

DATA = Path(__file__).parent.parent / "config" / "data"
CONFIGS = sorted(DATA.glob("*.yaml"))
KEYS = {"API_KEY_1": "test-key-1", "API_KEY_2": "test-key-2", "OPENROUTER_API_KEY": "or-key"}
AUTH = {"Authorization": f"Bearer {KEYS['API_KEY_1']}"}


def test_all_five_llama_swap_examples_are_here() -> None:
    assert [p.name for p in CONFIGS] == [
        "aider-qwq-coder.yaml",
        "config.example.2026-02.yaml",
        "config.example.yaml",
        "docker-config.example.yaml",
        "unified-config.example.yaml",
    ]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_check_accepts_the_config_with_no_not_supported_warning(path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "swapd", "check", str(path)],
        env={**os.environ, **KEYS},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "not supported" not in out.stderr, out.stderr
    assert out.stdout.rstrip().endswith("models OK")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_serve_starts_and_lists_the_configured_models(path: Path) -> None:
    config = load_config(path, env={**os.environ, **KEYS}, extensions=standard())
    listed_models = {m.id for m in config.models.values() if not m.unlisted}
    assert listed_models, "every example config has listed models"
    with run_swapd(path, listen_port=free_port(), env=KEYS) as swapd:
        health = httpx.get(f"{swapd.url}/health", timeout=10)
        assert health.status_code == 200 and health.text == "OK"
        answer = httpx.get(f"{swapd.url}/v1/models", headers=AUTH, timeout=10)
        assert answer.status_code == 200, answer.text
        ids = {m["id"] for m in answer.json()["data"]}
        assert listed_models <= ids, sorted(listed_models - ids)
        for peer in config.peers.values():  # peer models are listed by their full name
            assert {f"{peer.id}/{model}" for model in peer.models} <= ids
        assert swapd.returncode is None  # still serving
