"""``vllm/generic``: any model on vLLM, named by the model entry; no model-specific arguments."""

from __future__ import annotations

import pytest

from swapd.errors import ConfigError

from .shipped import TEMPLATES, recipe_model


def test_the_generic_recipe_is_the_one_without_a_model() -> None:
    assert TEMPLATES == ["vllm/generic"]


def test_without_a_model_the_entry_is_refused_with_how_to_set_it() -> None:
    with pytest.raises(ConfigError) as raised:
        recipe_model("vllm/generic")
    assert "recipe vllm/generic has no model" in str(raised.value)
    assert "set: {model: ORG/REPO}" in str(raised.value)


def test_the_entry_names_the_model_and_vllm_serves_it_under_the_id_too() -> None:
    model = recipe_model("{name: vllm/generic, set: {model: org/big}}", model_id="big")
    command = list(model.options.command)
    assert command[0] == "org/big"
    assert command[command.index("--served-model-name") + 1 : command.index("--host")] == [
        "big",
        "org/big",
    ]
    assert not [a for a in command if "parser" in a or "tool" in a]  # nothing model-specific
    assert model.use_model_name == "big"
