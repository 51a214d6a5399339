"""Item 7 of #16: ``shm_size`` means nothing with ``ipc: host`` and Podman refuses the pair, so
a recipe or a model that sets both is an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from swapd.config import load_text
from swapd.errors import ConfigError
from swapd.extensions import standard
from swapd.recipes import RecipeError, load, parse_file

from .shipped import NAMES, SHIPPED


@pytest.mark.parametrize("name", NAMES)
def test_no_shipped_recipe_sets_both(name: str) -> None:
    docker = load(name, [SHIPPED]).docker
    assert not (docker.get("ipc") == "host" and docker.get("shm_size"))


def test_a_recipe_with_both_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "engine: vllm\nimage: i\nmodel: m\nargs: []\ndocker: {ipc: host, shm_size: 8g}\n"
    )
    with pytest.raises(RecipeError, match=r"docker\.shm_size: has no effect with ipc: host"):
        parse_file(bad)


@pytest.mark.parametrize(
    "model",
    [
        "recipe: vllm/qwen3-8b\n    docker: {shm_size: 16g}",
        "driver: docker\n    docker: {image: i, ipc: host, shm_size: 16g}",
    ],
)
def test_a_model_with_both_is_a_config_error(model: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(f"models:\n  m:\n    {model}\n", extensions=standard())
    assert "model m: shm_size" in str(info.value)
    assert "shm_size: has no effect with ipc: host" in str(info.value)
    assert str(info.value).startswith("config.yaml:")


def test_a_private_ipc_keeps_its_shm_size() -> None:
    text = "models:\n  m:\n    recipe: vllm/qwen3-8b\n    docker: {ipc: private, shm_size: 16g}\n"
    spec = load_text(text, extensions=standard()).models["m"].options
    assert spec.shm_size == "16g"  # type: ignore[union-attr]
