"""GGUF discovery: ``modelsDir`` / ``--models-dir`` turn *.gguf files into models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from swapd.config import load_config, load_text
from swapd.extensions import standard
from swapd.llamacpp.binary import find_llama_server
from swapd.llamacpp.discovery import discover
from swapd.testing import llama_server_env, run_swapd, write_tiny_gguf

pytestmark = pytest.mark.timeout(120)


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF")
    return path


def test_plain_folders_and_the_hugging_face_cache_layout_are_found(tmp_path: Path) -> None:
    touch(tmp_path / "plain" / "Qwen3-0.6B-Q4_K_M.gguf")
    snap = tmp_path / "hub" / "models--org--repo" / "snapshots" / "abc123"
    touch(snap / "big-00001-of-00003.gguf")
    touch(snap / "big-00002-of-00003.gguf")
    touch(snap / "big-00003-of-00003.gguf")
    (tmp_path / "plain" / "notes.txt").write_text("not a model")
    found = discover([tmp_path])
    assert [(f.id, f.path.name) for f in found.models] == [
        ("Qwen3-0.6B-Q4_K_M", "Qwen3-0.6B-Q4_K_M.gguf"),
        ("big", "big-00001-of-00003.gguf"),  # a split model counts once
    ]
    assert found.warnings == []


def test_two_files_with_the_same_id_are_both_kept_under_distinct_ids(tmp_path: Path) -> None:
    touch(tmp_path / "a" / "model.gguf")
    touch(tmp_path / "hub" / "models--org--repo" / "snapshots" / "r1" / "model.gguf")
    found = discover([tmp_path])
    assert sorted(f.id for f in found.models) == ["a/model", "org/repo/model"]
    assert len(found.warnings) == 1 and "'model'" in found.warnings[0]


def test_empty_missing_and_unreadable_dirs_are_warnings_not_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    found = discover([empty, tmp_path / "missing"])
    assert found.models == []
    assert any("no *.gguf files in" in w and str(empty) in w for w in found.warnings)
    assert any("does not exist" in w for w in found.warnings)
    if os.geteuid() != 0:  # root reads everything
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o000)
        assert any("cannot read" in w for w in discover([locked]).warnings)


def test_models_dir_config_uses_the_cmd_template_and_explicit_models_win(tmp_path: Path) -> None:
    touch(tmp_path / "one.gguf")
    touch(tmp_path / "two.gguf")
    config = load_text(
        f"""
modelsDir:
  paths: [{tmp_path}]
  cmd: my-server --model ${{MODEL_PATH}} --port ${{PORT}} --alias ${{MODEL_ID}}
models:
  two:
    cmd: explicit --port ${{PORT}}
""",
        extensions=standard(),
    )
    one, two = config.models["one"], config.models["two"]
    assert one.cmd[:3] == ("my-server", "--model", str(tmp_path / "one.gguf"))
    assert one.cmd[-1] == "one" and one.source == str(tmp_path / "one.gguf")
    assert two.cmd[0] == "explicit" and two.source is None


def test_swapd_check_lists_discovered_models_and_clashes(tmp_path: Path) -> None:
    touch(tmp_path / "x" / "m.gguf")
    touch(tmp_path / "y" / "m.gguf")
    touch(tmp_path / "solo.gguf")
    out = subprocess.run(
        [sys.executable, "-m", "swapd", "check", "--models-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "x/m" in out.stdout and "y/m" in out.stdout and "solo" in out.stdout
    assert "(discovered)" in out.stdout
    assert "would get the id 'm'" in out.stderr


def test_models_dir_flag_merges_with_a_config_file(tmp_path: Path) -> None:
    touch(tmp_path / "models" / "found.gguf")
    cfg = tmp_path / "swapd.yaml"
    cfg.write_text("models:\n  mine:\n    cmd: true --port ${PORT}\n")
    config = load_config(cfg, models_dirs=[str(tmp_path / "models")], extensions=standard())
    assert set(config.models) == {"found", "mine"}


def test_serve_models_dir_runs_discovered_gguf_with_the_default_llama_server_cmd(
    tmp_path: Path, start_port: int
) -> None:
    write_tiny_gguf(tmp_path / "tiny-a.gguf", seed=1)
    write_tiny_gguf(tmp_path / "tiny-b.gguf", seed=2)
    env = llama_server_env()
    env["PATH"] = f"{find_llama_server().parent}{os.pathsep}{env.get('PATH', '')}"
    config = f"startPort: {start_port}\nmodels: {{}}\n"
    with run_swapd(config, extra_args=["--models-dir", str(tmp_path)], env=env) as swapd:
        ids = {m["id"] for m in httpx.get(f"{swapd.url}/v1/models", timeout=10).json()["data"]}
        assert ids >= {"tiny-a", "tiny-b"}
        for mid in ("tiny-a", "tiny-b"):
            body = {"model": mid, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
            r = httpx.post(f"{swapd.url}/v1/chat/completions", json=body, timeout=60)
            assert r.status_code == 200, r.text
