"""Item 4 of #16: images pinned per CUDA line, chosen by the node's NVIDIA driver."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from swapd.cli import main
from swapd.config.model import NodeConfig
from swapd.config.options import DockerOptions
from swapd.recipes import RecipeError, cuda, load, parse_file
from swapd.recipes.start import prepare

from .shipped import NAMES, SHIPPED, recipe_model

LINES = {"cu129": "img:cu129", "cu130": "img:cu130"}


@pytest.mark.parametrize(
    ("driver", "line"),
    [
        (None, "cu129"),  # unknown: the oldest line, which needs the least
        ("570.86.15", "cu129"),  # older than every line: still the oldest
        ("575.51.03", "cu129"),
        ("575.57.08", "cu129"),
        ("580.65.06", "cu130"),
        ("580.95.05", "cu130"),
        ("595.58.03", "cu130"),
        ("not-a-version", "cu129"),
    ],
)
def test_the_newest_line_the_driver_supports(driver: str | None, line: str) -> None:
    assert cuda.choose(LINES, driver) == (line, LINES[line])


def test_the_table_follows_nvidia() -> None:
    assert cuda.MIN_DRIVER["cu129"] == "575.51.03" and cuda.MIN_DRIVER["cu130"] == "580.65.06"
    assert "older than every CUDA line" in cuda.why(LINES, "570.1", "cu129")


@pytest.mark.parametrize("name", NAMES)
def test_every_image_is_pinned(name: str) -> None:
    recipe = load(name, [SHIPPED])
    for image in (recipe.image, *recipe.images.values()):
        tag = image.rpartition(":")[2]
        assert tag and tag != "latest" and image.count(":") == 1, image
        assert tag not in ("server-cuda", "v0.10.2"), image


def test_sglang_has_both_lines_and_trtllm_its_ngc_entrypoint() -> None:
    sglang = load("sglang/qwen3-8b", [SHIPPED])
    assert set(sglang.images) == {"cu129", "cu130"}
    assert sglang.image == sglang.images["cu129"]
    trtllm = load("trtllm/llama-3.1-8b-instruct", [SHIPPED])
    assert trtllm.entrypoint is not None
    assert trtllm.entrypoint[0] == "/opt/nvidia/nvidia_entrypoint.sh"
    assert "exec trtllm-serve" in trtllm.entrypoint[3]


def test_a_bad_cuda_line_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("engine: vllm\nimage: {cuda12: a, cu999: b}\nmodel: m\nargs: []\n")
    with pytest.raises(RecipeError) as info:
        parse_file(bad)
    assert "'cuda12' is not a CUDA line like cu129" in info.value.message
    assert "unknown CUDA line 'cu999'" in info.value.message


def test_the_driver_chooses_at_start() -> None:
    model = recipe_model("sglang/qwen3-8b")
    spec = model.options
    assert isinstance(spec, DockerOptions) and spec.image.endswith("-cu129")  # at load: oldest
    said: list[str] = []
    node = NodeConfig("big", "ssh://gpu@big")
    ready = prepare(model, spec, node, said.append, driver=lambda n: "580.82.07")
    assert ready.image == "lmsysorg/sglang:v0.5.15-cu130"
    assert "NVIDIA driver 580.82.07: CUDA line cu130" in said[0]
    unknown = prepare(model, spec, node, said.append, driver=lambda n: None)
    assert unknown.image.endswith("-cu129") and "driver unknown" in said[1]


def test_a_model_image_replaces_the_lines() -> None:
    model = recipe_model("sglang/qwen3-8b", "    docker: {image: mirror/sglang:mine}\n")
    spec = model.options
    assert isinstance(spec, DockerOptions)
    ready = prepare(model, spec, NodeConfig("local", ""), lambda s: None, lambda n: "590.1")
    assert ready.image == "mirror/sglang:mine"


def test_the_driver_version_comes_from_nvidia_smi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real ``nvidia-smi`` on PATH (a script printing what the tool prints)."""
    tool = tmp_path / "nvidia-smi"
    tool.write_text(
        '#!/bin/sh\n[ "$1" = "--query-gpu=driver_version" ] || exit 9\n'
        'printf "580.95.05\\n580.95.05\\n"\n'
    )
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    node = NodeConfig(f"local-{tmp_path.name}", "")
    assert cuda.driver_version(node) == "580.95.05"
    tool.write_text("#!/bin/sh\nexit 3\n")  # remembered per node: not asked again
    assert cuda.driver_version(node) == "580.95.05"
    assert cuda.driver_version(NodeConfig("far", "tcp://10.9.9.9:2375")) is None


def test_render_shows_the_choice() -> None:
    runner = CliRunner()
    new = runner.invoke(main, ["recipes", "render", "sglang/qwen3-8b", "--driver", "580.65.06"])
    assert new.exit_code == 0, new.output
    assert "lmsysorg/sglang:v0.5.15-cu130 -m sglang.launch_server" in new.output
    old = runner.invoke(main, ["recipes", "render", "sglang/qwen3-8b"])
    assert "lmsysorg/sglang:v0.5.15-cu129 -m sglang.launch_server" in old.output
    assert "NVIDIA driver unknown: the oldest CUDA line cu129" in old.output


def test_list_shows_every_line() -> None:
    out = CliRunner().invoke(main, ["recipes", "list"])
    assert (
        "cu129: lmsysorg/sglang:v0.5.15-cu129, cu130: lmsysorg/sglang:v0.5.15-cu130" in out.output
    )
