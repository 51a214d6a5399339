"""Every shipped recipe is valid and renders; recipe models in the config; `swapd recipes`."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from swapd.cli import main
from swapd.config import load_text
from swapd.config.options import DockerOptions
from swapd.errors import ConfigError
from swapd.extensions import standard
from swapd.recipes import (
    ENGINES,
    RecipeError,
    catalog,
    check_spec,
    docker_run_line,
    load,
    parse_file,
    render,
)

SHIPPED = Path(__file__).resolve().parents[1] / "recipes"
NAMES = [  # the docker recipes of one model (vllm/generic leaves the model to the entry)
    n
    for n in sorted(catalog([SHIPPED]))
    if load(n, [SHIPPED]).runtime == "container" and load(n, [SHIPPED]).model
]


def test_the_shipped_set() -> None:
    assert {n.split("/")[0] for n in NAMES} == set(ENGINES)
    for name in ("vllm/qwen3-8b", "vllm/llama-3.1-8b-instruct", "vllm/gpt-oss-20b"):
        assert name in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_recipe_is_valid_and_renders(name: str) -> None:
    recipe = parse_file(SHIPPED / f"{name}.yaml", name)
    assert recipe.image and recipe.model and recipe.args
    assert recipe.gpus is not None and recipe.memory, "resources are needed for placement"
    spec = render(recipe, port=12345, model_id="m")
    problems: list[str] = []
    check_spec(spec, lambda key, msg: problems.append(msg))
    assert problems == []
    assert "12345" in spec.command, "the engine must listen on swapd's port"
    leftover = [a for a in spec.command if "{" in a.replace("${GPU_MEMORY_FRACTION}", "")]
    assert leftover == [], "only the late macro may stay for the driver to fill"
    line = docker_run_line(spec, "swapd-m-12345", "1000:1000")
    assert recipe.image in line and "--user 1000:1000" in line and "--network host" in line
    if recipe.sleep_levels:
        assert "--enable-sleep-mode" in spec.command


def test_unknown_recipe_lists_what_exists() -> None:
    with pytest.raises(RecipeError) as info:
        load("vllm/qwen9", [SHIPPED])
    assert "unknown recipe 'vllm/qwen9'" in info.value.message
    assert "vllm/qwen3-8b" in info.value.message


def test_unknown_placeholder_in_a_recipe(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "engine: vllm\nimage: i\nmodel: m\n"
        "args: ['--x', '{max_len}']\ndefaults: {max_model_len: 1}\n"
    )
    with pytest.raises(RecipeError) as info:
        parse_file(bad)
    assert "unknown placeholder {max_len}" in info.value.message
    assert "max_model_len" in info.value.message


def test_unknown_placeholder_in_set_lists_known() -> None:
    with pytest.raises(RecipeError) as info:
        render(load("vllm/qwen3-8b", [SHIPPED]), {"max_len": 4})
    assert "unknown placeholder 'max_len'" in info.value.message
    assert "max_model_len" in info.value.message


def test_recipe_model_in_config() -> None:
    config = load_text(
        """
startPort: 9000
nodes:
  big: {docker: "tcp://10.0.0.2:2375", gpus: [{index: 0, memory: 80GiB}]}
models:
  qwen:
    recipe: {name: vllm/qwen3-8b, set: {max_model_len: 8192}, args: [--enforce-eager]}
    node: big
    sleep: {level: 1}
    docker: {env: {HF_TOKEN: secret}}
""",
        extensions=standard(),
    )
    m = config.models["qwen"]
    assert m.driver == "docker" and m.recipe == "vllm/qwen3-8b"
    assert isinstance(m.options, DockerOptions)
    assert m.options.image.startswith("vllm/vllm-openai")
    assert m.options.host_port == 9000
    argv = list(m.cmd)
    assert argv[argv.index("--max-model-len") + 1] == "8192"
    assert argv[argv.index("--port") + 1] == "9000"
    assert argv[-1] == "--enforce-eager"
    assert m.options.env["HF_TOKEN"] == "secret" and "HF_HOME" in m.options.env
    assert m.sleep_level == 1 and m.resources.memory == 36 * 1024**3
    assert m.health_check_timeout == 900
    assert [n.name for n in m.nodes] == ["big"]


def test_the_model_block_is_laid_over_the_recipe() -> None:
    config = load_text(
        """
models:
  qwen:
    recipe: vllm/qwen3-8b
    resources: {gpus: [1, 3]}
    docker:
      image: mirror/vllm:pinned
      env: {HF_TOKEN: secret}
      volumes: [/tmp/extra:/extra:ro]
      ipc: private
      shm_size: 32g
""",
        extensions=standard(),
    )
    spec = config.models["qwen"].options
    recipe = load("vllm/qwen3-8b")
    assert isinstance(spec, DockerOptions)
    assert spec.image == "mirror/vllm:pinned"  # a key the model sets replaces the recipe's
    assert spec.env == {**recipe.env, "HF_TOKEN": "secret"}  # env merges
    assert spec.volumes == (*recipe.mounts, "/tmp/extra:/extra:ro")  # volumes add up
    assert spec.shm_size == "32g" and spec.ipc == "private" and spec.gpus == ("1", "3")
    assert spec.images == {}, "the model's own image replaces the recipe's CUDA lines"
    assert spec.health == recipe.health and spec.network_mode == "host"


def test_a_bad_docker_block_in_a_recipe_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("engine: vllm\nimage: i\nmodel: m\nargs: []\ndocker: {shm_size: [1], gpus: 0}\n")
    with pytest.raises(RecipeError) as info:
        parse_file(bad)
    assert "docker.shm_size: Input should be a valid string" in info.value.message
    assert "docker.gpus: expected all, a count or a list of device ids, got 0" in info.value.message


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("recipe: vllm/nope", "unknown recipe 'vllm/nope'; available: "),
        ("recipe: {name: vllm/qwen3-8b, set: {ctx: 1}}", "unknown placeholder 'ctx'; known: "),
        ("recipe: vllm/qwen3-8b\n    node: mars", "unknown node 'mars'; nodes: local"),
        (
            "recipe: trtllm/llama-3.1-8b-instruct\n    sleep: {level: 1}",
            "does not support sleep level 1",
        ),
        ("driver: docker\n    docker: {command: [x]}", "image is required"),
        ("driver: docker\n    docker: {image: x, gpu: all}", "models.m.docker.gpu: unknown key"),
        (
            "recipe: vllm/qwen3-8b\n    resources: {gpus: many}",
            "models.m.resources.gpus: expected all, a count or a list of device ids",
        ),
    ],
)
def test_bad_recipe_models(model: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(f"models:\n  m:\n    {model}\n", extensions=standard())
    assert message in str(info.value)
    assert str(info.value).startswith("config.yaml:")


def test_cli_list_show_render() -> None:
    runner = CliRunner()
    listed = runner.invoke(main, ["recipes", "list"])
    assert listed.exit_code == 0 and "vllm/gpt-oss-20b" in listed.output
    shown = runner.invoke(main, ["recipes", "show", "sglang/qwen3-8b"])
    assert shown.exit_code == 0 and "lmsysorg/sglang" in shown.output
    rendered = runner.invoke(
        main,
        ["recipes", "render", "vllm/qwen3-8b", "--set", "max_model_len=4096", "--port", "7000"],
    )
    assert rendered.exit_code == 0, rendered.output
    assert "docker run -d --name swapd-vllm-qwen3-8b-7000" in rendered.output
    assert "--max-model-len 4096" in rendered.output
    bad = runner.invoke(main, ["recipes", "render", "vllm/qwen3-8b", "--set", "bogus=1"])
    assert bad.exit_code == 2 and "unknown placeholder 'bogus'" in bad.output
    missing = runner.invoke(main, ["recipes", "show", "nope"])
    assert missing.exit_code == 2 and "available: " in missing.output
