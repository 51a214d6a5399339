"""Item 5 of #16 (devices): a recipe asks for as many GPUs as its tensor parallelism, never
``all``, so placement can hand it exactly the devices it chose."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from swapd.config import load_text
from swapd.errors import ConfigError
from swapd.extensions import standard
from swapd.recipes import RecipeError, docker_run_line, load, parse_file, render

from .shipped import NAMES, SHIPPED, recipe_model


@pytest.mark.parametrize("name", NAMES)
def test_no_recipe_takes_every_gpu(name: str) -> None:
    spec = render(load(name, [SHIPPED]), port=9000, model_id="m")
    assert spec.gpus == 1
    assert recipe_model(name).resources.gpus == 1


@pytest.mark.parametrize(
    ("name", "flag"),
    [
        ("vllm/qwen3-8b", "--tensor-parallel-size"),
        ("sglang/qwen3-8b", "--tp-size"),
        ("trtllm/llama-3.1-8b-instruct", "--tp_size"),
    ],
)
def test_tensor_parallelism_asks_for_that_many_gpus(name: str, flag: str) -> None:
    model = recipe_model(f"{{name: {name}, set: {{tensor_parallel: 2}}}}")
    argv = list(model.cmd)
    assert argv[argv.index(flag) + 1] == "2"
    assert model.resources.gpus == 2 and model.options.gpus == 2  # type: ignore[union-attr]
    assert "--gpus 2" in docker_run_line(model.options, "c")  # type: ignore[arg-type]


def test_a_gpu_template_that_is_not_a_count(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "engine: vllm\nimage: i\nmodel: m\nargs: []\n"
        "defaults: {tp: two}\nresources: {gpus: '{tp}', memory: 1GiB}\n"
    )
    with pytest.raises(RecipeError, match=re.escape("gpus '{tp}' gives 'two', not a count")):
        render(parse_file(bad))


def test_the_model_entry_can_still_pin_devices() -> None:
    model = recipe_model("vllm/qwen3-8b", "    resources: {gpus: [1, 3]}\n")
    assert model.options.gpus == ("1", "3")  # type: ignore[union-attr]


def test_an_unknown_placeholder_in_gpus_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "r.yaml").write_text(
        "engine: vllm\nimage: i\nmodel: m\nargs: []\nresources: {gpus: '{tp}'}\n"
    )
    monkeypatch.setenv("SWAPD_RECIPES", str(tmp_path))
    with pytest.raises(ConfigError, match=r"unknown placeholder \{tp\}"):
        load_text("models:\n  m:\n    recipe: x/r\n", extensions=standard())
