"""Recipes with ``runtime: process`` (#15): a pip-installed engine run by the process driver.

The shipped vLLM and SGLang ``-pip`` recipes render to process models; a test-only recipe
whose command runs the echo engine serves requests through a real swapd on fake GPUs, with the
late macros filled from the placement. ``swapd recipes show`` prints the config that uses a
recipe, and that config loads.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from swapd.cli import main
from swapd.config import load_text
from swapd.errors import ConfigError
from swapd.extensions import standard
from swapd.lint import lint
from swapd.recipes import RECIPES_ENV, RecipeError, load, parse
from swapd.testing import FakeGpus, run_swapd

from .shipped import PROCESS, SHIPPED, recipe_model

GiB = 2**30


def test_the_pip_recipes_are_shipped() -> None:
    assert PROCESS == ["sglang/qwen3-8b-pip", "vllm/qwen3-8b-pip"]


@pytest.mark.parametrize("name", PROCESS)
def test_a_pip_recipe_becomes_a_process_model(name: str) -> None:
    model = recipe_model(name)
    recipe = load(name, [SHIPPED])
    assert (model.driver, model.recipe) == ("process", name)
    assert model.cmd[: len(recipe.entrypoint or ())] == tuple(
        {"{vllm}": "vllm", "{python}": "python3"}.get(a, a) for a in recipe.entrypoint or ()
    )
    argv = list(model.cmd)
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert model.port is not None and argv[argv.index("--port") + 1] == str(model.port)
    assert model.proxy == f"http://127.0.0.1:{model.port}"
    assert "${GPU_MEMORY_FRACTION}" in argv, "the late macro stays for the process driver"
    assert (model.resources.gpus, model.resources.memory) == (1, 36 * GiB)
    assert model.health_check_timeout == 900 and model.check_endpoint == "/health"
    assert model.use_model_name == ("qwen" if name.startswith("vllm/") else "qwen3-8b")


def test_set_args_and_env_reach_the_process_model() -> None:
    extra = textwrap.indent(
        "env: [VLLM_SERVER_DEV_MODE=0, MINE=1]\nsleep: {level: 2}\n"
        "recipe: {name: vllm/qwen3-8b-pip, set: {vllm: /opt/v/bin/vllm, tensor_parallel: 2}, "
        "args: [--seed, '7']}\n",
        "    ",
    )
    text = f"models:\n  big:\n{extra}"
    model = load_text(text, extensions=standard()).models["big"]
    argv = list(model.cmd)
    assert argv[:2] == ["/opt/v/bin/vllm", "serve"]
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
    assert argv[-2:] == ["--seed", "7"]
    assert model.env == {"VLLM_SERVER_DEV_MODE": "0", "MINE": "1"}  # the model's entry wins
    assert model.resources.gpus == 2 and model.sleep_level == 2


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            "recipe: vllm/qwen3-8b-pip\n    cmd: vllm serve x",
            "recipe vllm/qwen3-8b-pip makes the cmd; drop cmd",
        ),
        (
            "recipe: vllm/qwen3-8b-pip\n    driver: docker",
            "recipe vllm/qwen3-8b-pip has runtime: process (no image)",
        ),
        (
            "recipe: sglang/qwen3-8b-pip\n    sleep: {level: 1}",
            "recipe sglang/qwen3-8b-pip does not support sleep level 1 (supported: none)",
        ),
        (
            "recipe: {name: vllm/qwen3-8b-pip, set: {bogus: 1}}",
            "unknown placeholder 'bogus'",
        ),
    ],
)
def test_process_recipe_mistakes_point_at_the_model(entry: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(f"models:\n  m:\n    {entry}\n", extensions=standard())
    assert message in str(info.value)
    assert str(info.value).startswith("config.yaml:")


def test_a_process_recipe_has_no_container_settings_and_names_its_program() -> None:
    base = {"engine": "vllm", "runtime": "process", "model": "m", "args": ["{port}"]}
    with pytest.raises(RecipeError) as info:
        parse({**base, "image": "x", "mounts": ["a:b"]}, "r", Path("r.yaml"))
    assert "image: a runtime: process recipe runs no container; drop image" in info.value.message
    assert "mounts: a runtime: process recipe runs no container" in info.value.message
    assert "entrypoint: required with runtime: process" in info.value.message
    with pytest.raises(RecipeError, match="runtime: expected one of container, process"):
        parse({**base, "runtime": "podman", "entrypoint": ["x"]}, "r", Path("r.yaml"))


@pytest.mark.parametrize("name", ["vllm/qwen3-8b", "sglang/qwen3-8b-pip"])
def test_show_prints_the_config_that_uses_the_recipe_and_it_loads(name: str) -> None:
    shown = CliRunner().invoke(main, ["recipes", "show", name])
    assert shown.exit_code == 0, shown.output
    snippet = shown.output.split("# in a config:\n", 1)[1]
    assert snippet.startswith(f"models:\n  qwen3-8b:\n    recipe: {name}\n")
    assert YAML(typ="safe").load(snippet) == {"models": {"qwen3-8b": {"recipe": name}}}
    commented = snippet.splitlines()[3].replace("# ", "", 1)
    variant = YAML(typ="safe").load(f"models:\n  qwen3-8b:\n{commented}\n")
    model = load_text(json.dumps(variant), extensions=standard()).models["qwen3-8b"]
    assert model.recipe == name


def test_render_prints_a_process_recipes_cmd_with_late_macros_filled() -> None:
    rendered = CliRunner().invoke(
        main, ["recipes", "render", "vllm/qwen3-8b-pip", "--port", "7000", "--gpu-total", "80GiB"]
    )
    assert rendered.exit_code == 0, rendered.output
    assert "runs as a process (driver: process), no container" in rendered.output
    cmd = json.loads(rendered.output.splitlines()[1].removeprefix("cmd: "))
    assert cmd.startswith("vllm serve Qwen/Qwen3-8B --served-model-name qwen3-8b --host 127.0.0.1")
    assert "--port 7000" in cmd and "--gpu-memory-utilization 0.45" in cmd
    assert 'env: ["VLLM_SERVER_DEV_MODE=1"]' in rendered.output
    assert "docker run" not in rendered.output


ECHO_RECIPE = f"""
engine: vllm
runtime: process
description: the echo engine as a pip-installed vLLM would run
model: org/echo-7b
served_model_name: echo-7b
entrypoint: ["{{python}}", -m, swapd.echo]
args: [--host, "{{host}}", --port, "{{port}}", --model, "{{model_id}}",
       --served-model-name, "{{served_model_names}}", --allocate, "{{allocate}}"]
defaults:
  python: {json.dumps(sys.executable)}
  allocate: ${{GPU_MEMORY_MIB}}MiB
env:
  ECHO_RECIPE: "{{model}}"
resources: {{gpus: 1, memory: 6GiB}}
readiness_timeout: 60
"""


@pytest.mark.timeout(120)
def test_a_process_recipe_serves_through_swapd_on_the_gpu_placement_gave_it(
    tmp_path: Path, start_port: int
) -> None:
    recipes = tmp_path / "recipes"
    (recipes / "vllm").mkdir(parents=True)
    (recipes / "vllm" / "echo-pip.yaml").write_text(ECHO_RECIPE)
    fake = FakeGpus(tmp_path, {"a": [24 * GiB, 24 * GiB]}, external={("a", 0): 20 * GiB})
    env = {**fake.env(), RECIPES_ENV: str(recipes), "SWAPD_STATE_DIR": str(tmp_path / "state")}
    config = f"startPort: {start_port}\nmodels:\n  mine:\n    recipe: vllm/echo-pip\n"
    with run_swapd(config, env=env) as swapd:
        body = {"model": "mine", "messages": [{"role": "user", "content": "hi"}]}
        answer = httpx.post(f"{swapd.url}/v1/chat/completions", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        info = httpx.get(f"{swapd.url}/api/models", timeout=10).json()["models"][0]
        assert (info["driver"], info["port"]) == ("process", start_port)
        assert info["placement"]["devices"] == [1]  # device 0 has only 4GiB free
        (held,) = [a for a in fake.allocations() if a["pid"] == info["pid"]]
        assert (held["devices"], held["bytes_per_device"]) == ([1], 6 * GiB)  # ${GPU_MEMORY_MIB}
        environ = Path(f"/proc/{info['pid']}/environ").read_bytes().split(b"\0")
        assert b"ECHO_RECIPE=org/echo-7b" in environ
        assert b"CUDA_VISIBLE_DEVICES=1" in environ


def test_check_warns_when_a_process_recipes_program_is_not_installed(tmp_path: Path) -> None:
    config = load_text("models:\n  q:\n    recipe: vllm/qwen3-8b-pip\n", extensions=standard())
    (warning,) = lint(config, {"PATH": str(tmp_path)})
    assert warning.startswith("model q: program 'vllm' not found on PATH")
    program = tmp_path / "vllm"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    assert lint(config, {"PATH": str(tmp_path)}) == []
