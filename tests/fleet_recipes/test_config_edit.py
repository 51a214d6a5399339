"""``swapd recipes add | remove`` edit a real config file: ruamel round-trip keeps comments,
key order and layout; the result is loaded by swapd's own loader before anything is written;
the write is atomic and leaves ``<file>.bak``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from swapd.cli import main
from swapd.config import load_config
from swapd.errors import Conflict, NotFound
from swapd.extensions import standard
from swapd.fleet.recipes import add_model, entries, remove_model

CONFIG = """\
# my swapd config
startPort: 5800   # ports from here
logLevel: info

models:
  # the echo model
  echo:
    cmd: "python3 -m swapd.echo --port ${PORT}"
    ttl: 60  # seconds
    env:
    - A=1
  # the second model
  other:
    cmd: python3 -m swapd.echo --port ${PORT}
# groups below
groups:
  g:
    members: [echo, other]
"""
NOWHERE = "127.0.0.1:1"  # no swapd answers: the edit is only written


def swapd(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["recipes", *args, "--url", NOWHERE])
    return result.exit_code, result.output


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return path


def test_add_then_remove_keeps_every_comment_and_the_key_order(config: Path) -> None:
    code, out = swapd(
        "add", "vllm/qwen3-8b", "--as", "qwen", "--set", "max_model_len=8192", "--config",
        str(config),
    )  # fmt: skip
    assert code == 0, out
    assert f"added model qwen to {config}" in out and "no swapd answers" in out
    text = config.read_text()
    assert text == CONFIG.replace(
        "# groups below",
        "  qwen:\n    recipe:\n      name: vllm/qwen3-8b\n      set: {max_model_len: 8192}\n"
        "# groups below",
    )
    assert (config.parent / "config.yaml.bak").read_text() == CONFIG
    loaded = load_config(config, extensions=standard())
    assert list(loaded.models) == ["echo", "other", "qwen"]
    assert loaded.models["qwen"].recipe == "vllm/qwen3-8b"
    assert "--max-model-len" in loaded.models["qwen"].cmd or loaded.models["qwen"].options

    code, out = swapd("remove", "qwen", "--config", str(config))
    assert code == 0, out
    assert config.read_text() == CONFIG  # byte for byte: comments, order, quotes, indents


def test_removing_an_entry_keeps_the_comment_above_the_next_one(config: Path) -> None:
    remove_model(config, "echo")
    text = config.read_text()
    assert "# the echo model" in text and "ttl: 60" not in text
    assert "  # the second model\n  other:" in text
    assert text.endswith("# groups below\ngroups:\n  g:\n    members: [echo, other]\n")


def test_replace_changes_the_recipe_node_and_values_and_keeps_other_settings(
    config: Path,
) -> None:
    code, out = swapd("add", "vllm/qwen3-8b", "--as", "qwen", "--config", str(config))
    assert code == 0, out
    edited = config.read_text().replace(
        "    recipe: vllm/qwen3-8b\n", "    recipe: vllm/qwen3-8b\n    ttl: 300  # keep me\n"
    )
    config.write_text(edited)
    code, out = swapd("add", "vllm/qwen3-8b", "--as", "qwen", "--config", str(config))
    assert code == 1 and "already exists" in out and "--replace" in out
    code, out = swapd(
        "add", "vllm/gpt-oss-20b", "--as", "qwen", "--replace", "--node", "local",
        "--set", "max_model_len=4096", "--config", str(config),
    )  # fmt: skip
    assert code == 0, out
    assert "replaced model qwen" in out
    assert "    ttl: 300  # keep me\n" in config.read_text()
    assert entries(config) == [
        {"id": "qwen", "recipe": "vllm/gpt-oss-20b", "node": "local",
         "set": {"max_model_len": 4096}},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "bogus=1"], "unknown placeholder 'bogus'"),
        (["--node", "spark-9"], "unknown node 'spark-9'"),
    ],
)
def test_an_invalid_override_is_refused_with_its_place_and_the_file_is_untouched(
    config: Path, args: list[str], message: str
) -> None:
    code, out = swapd("add", "vllm/qwen3-8b", "--as", "qwen", *args, "--config", str(config))
    assert code == 2
    assert f"{config} left unchanged" in out
    assert f"{config}:1" in out and message in out  # file:line:col: message
    assert config.read_text() == CONFIG
    assert not (config.parent / "config.yaml.bak").exists()


def test_unknown_recipe_and_unknown_id_are_clear_errors(config: Path) -> None:
    code, out = swapd("add", "vllm/nope", "--as", "x", "--config", str(config))
    assert code == 2 and "unknown recipe 'vllm/nope'; available:" in out
    code, out = swapd("remove", "nothere", "--config", str(config))
    assert code == 4 and "no model 'nothere'" in out and "the file has: echo, other" in out
    assert config.read_text() == CONFIG


def test_a_model_of_another_config_file_is_not_edited(tmp_path: Path, config: Path) -> None:
    extra = tmp_path / "more" / "extra.yaml"
    extra.parent.mkdir()
    extra.write_text("models:\n  side:\n    cmd: python3 -m swapd.echo --port ${PORT}\n")
    with pytest.raises(NotFound, match=r"it is defined in .*extra\.yaml: edit that file"):
        remove_model(config, "side", others=[str(extra)])
    with pytest.raises(Conflict, match=r"'side' is defined in .*extra\.yaml, not in"):
        add_model(config, "side", "vllm/qwen3-8b", others=[str(extra)])
    assert config.read_text() == CONFIG


def test_a_config_without_models_gets_a_models_mapping(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("# nothing yet\nlogLevel: info\n")
    code, out = swapd("add", "llamacpp/qwen3-8b", "--as", "q", "--config", str(path))
    assert code == 0, out
    added = "models:\n  q:\n    recipe: llamacpp/qwen3-8b\n"
    assert path.read_text() == "# nothing yet\nlogLevel: info\n" + added
