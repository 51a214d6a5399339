"""Item 7 of #16 (gated models): a gated model without a Hugging Face token is refused with
"set HF_TOKEN" before its container starts, instead of failing inside the engine later."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from swapd.cli import main
from swapd.config import load_text
from swapd.config.model import NodeConfig
from swapd.config.options import DockerOptions
from swapd.errors import StartFailed
from swapd.extensions import standard
from swapd.recipes import load
from swapd.recipes.start import prepare

from .shipped import NAMES, SHIPPED

GATED = [n for n in NAMES if load(n, [SHIPPED]).gated]
LOCAL = NodeConfig("local", "")


@pytest.fixture(autouse=True)
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``~/.cache/huggingface`` of the recipes holds no token file."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _load(recipe: str, extra: str = "") -> tuple[object, list[str]]:
    config = load_text(f"models:\n  m:\n    recipe: {recipe}\n{extra}", extensions=standard())
    return config.models["m"], [w.message for w in config.warnings]


def test_the_llama_recipes_are_gated() -> None:
    assert GATED == ["trtllm/llama-3.1-8b-instruct", "vllm/llama-3.1-8b-instruct"]


@pytest.mark.parametrize("name", GATED)
def test_no_token_warns_at_load_and_refuses_at_start(name: str) -> None:
    model, warnings = _load(name)
    assert any("gated on Hugging Face" in w and "HF_TOKEN" in w for w in warnings), warnings
    spec = model.options  # type: ignore[attr-defined]
    with pytest.raises(StartFailed) as info:
        prepare(model, spec, LOCAL, lambda s: None, lambda n: None)  # type: ignore[arg-type]
    assert info.value.permanent
    assert "is gated on Hugging Face and its container has no HF_TOKEN" in str(info.value)
    assert 'docker: {env: {HF_TOKEN: "${env.HF_TOKEN}"}}' in str(info.value)


@pytest.mark.parametrize("name", GATED)
def test_a_token_in_the_environment_starts(name: str) -> None:
    model, warnings = _load(name, "    docker: {env: {HF_TOKEN: hf_x}}\n")
    assert not any("gated" in w for w in warnings)
    spec = model.options  # type: ignore[attr-defined]
    assert isinstance(spec, DockerOptions)
    assert prepare(model, spec, LOCAL, lambda s: None, lambda n: None).env["HF_TOKEN"] == "hf_x"  # type: ignore[arg-type]


def test_a_token_file_in_the_mounted_hf_home_starts(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("hf_x\n")
    volume = f"{tmp_path}:/cache/huggingface"
    model, warnings = _load(
        "vllm/llama-3.1-8b-instruct", f"    docker: {{volumes: ['{volume}']}}\n"
    )
    assert not any("gated" in w for w in warnings)
    spec = model.options  # type: ignore[attr-defined]
    prepare(model, spec, LOCAL, lambda s: None, lambda n: None)  # type: ignore[arg-type]
    remote = NodeConfig("far", "ssh://u@far")  # a file here says nothing about that node
    with pytest.raises(StartFailed, match="a token file there is not seen"):
        prepare(model, spec, remote, lambda s: None, lambda n: None)  # type: ignore[arg-type]


def test_an_ungated_model_needs_no_token() -> None:
    model, warnings = _load("vllm/qwen3-8b")
    assert not any("gated" in w for w in warnings)
    prepare(model, model.options, LOCAL, lambda s: None, lambda n: None)  # type: ignore[arg-type,attr-defined]


def test_render_says_the_model_is_gated() -> None:
    out = CliRunner().invoke(main, ["recipes", "render", "vllm/llama-3.1-8b-instruct"])
    assert out.exit_code == 0 and "# gated on Hugging Face" in out.output
    plain = CliRunner().invoke(main, ["recipes", "render", "vllm/qwen3-8b"])
    assert "gated" not in plain.output
