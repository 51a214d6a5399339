"""Item 1 of #16: every request through swapd carries a model name the engine serves.

Each shipped recipe is rendered for a model whose id differs from the recipe's served name; the
names the engine would answer to are read back from the rendered command line, and a real
swapd forwards requests (by id and by alias) to the echo engine started with
``--served-model-name <those names>``, which answers 404 like vLLM to any other name.
"""

from __future__ import annotations

import shlex
import sys

import openai
import pytest

from swapd.recipes import load
from swapd.recipes.engines import ENGINES, accepted_names
from swapd.testing import free_port_range, run_swapd

from .shipped import NAMES, SHIPPED, recipe_model

SEVERAL = [n for n in NAMES if ENGINES[n.split("/")[0]].several_names]
ONE = [n for n in NAMES if not ENGINES[n.split("/")[0]].several_names]


def _engine(names: tuple[str, ...]) -> str:
    argv = [sys.executable, "-m", "swapd.echo", "--port", "${PORT}"]
    return shlex.join([*argv, "--served-model-name", *names])


@pytest.mark.parametrize("name", SEVERAL)
def test_vllm_and_llamacpp_serve_the_swapd_id_too(name: str) -> None:
    model = recipe_model(name)
    recipe = load(name, [SHIPPED])
    names = accepted_names(recipe.engine, model.cmd)
    assert names[0] == "qwen" and recipe.served_model_name in names
    assert model.use_model_name == "qwen"  # aliases are sent as the id


@pytest.mark.parametrize("name", ONE)
def test_single_name_engines_get_the_model_name_rewritten(name: str) -> None:
    model = recipe_model(name)
    names = accepted_names(load(name, [SHIPPED]).engine, model.cmd)
    assert "qwen" not in names
    assert model.use_model_name == names[0]


def test_a_use_model_name_of_the_model_entry_wins() -> None:
    model = recipe_model("sglang/qwen3-8b", "    useModelName: my-name\n")
    assert model.use_model_name == "my-name"


def test_requests_through_swapd_reach_every_engine_under_a_name_it_serves() -> None:
    """By id and by alias, with the openai SDK; a model without the rewrite is the control."""
    # free ports of its own: the default startPort (5800) may be a running swapd's, the demo's
    lines = ["healthCheckTimeout: 20", f"startPort: {free_port_range(len(NAMES) + 1)}", "models:"]
    for i, name in enumerate(NAMES):
        model = recipe_model(name, model_id=f"m{i}")
        names = accepted_names(load(name, [SHIPPED]).engine, model.cmd)
        lines += [
            f"  m{i}:",
            f"    cmd: {_engine(names)}",
            f"    useModelName: {model.use_model_name}",
            f"    aliases: [alias-{i}]",
        ]
    # the control: SGLang's names without the rewrite answer 404 through swapd
    sglang = recipe_model("sglang/qwen3-8b", model_id="control")
    lines += [f"  control:\n    cmd: {_engine(accepted_names('sglang', sglang.cmd))}"]
    with (
        run_swapd("\n".join(lines) + "\n") as swapd,
        openai.OpenAI(base_url=f"{swapd.url}/v1", api_key="none") as client,
    ):
        for i, name in enumerate(NAMES):
            for asked in (f"m{i}", f"alias-{i}"):
                reply = client.chat.completions.create(
                    model=asked, messages=[{"role": "user", "content": "hi"}]
                )
                assert reply.choices[0].message.content, (name, asked, swapd.output())
        with pytest.raises(openai.NotFoundError) as info:
            client.chat.completions.create(
                model="control", messages=[{"role": "user", "content": "hi"}]
            )
        assert "The model `control` does not exist." in str(info.value)
