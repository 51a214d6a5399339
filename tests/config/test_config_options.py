"""Driver options: a union discriminated on ``driver`` (docker/process typed, plugins untyped)."""

from __future__ import annotations

import dataclasses

import pytest
from config_helpers import errors, load

from swapd.config import ModelConfig
from swapd.config.options import OPTIONS, DockerOptions, PluginOptions, ProcessOptions

DOCKER = """
models:
  box:
    driver: docker
    docker:
      image: vllm/vllm-openai
      command: serve --port ${PORT}
      env: {WORKERS: 2}
      gpus: 2
"""


def test_the_docker_block_is_typed_at_load() -> None:
    options = load(DOCKER).models["box"].options
    assert isinstance(options, DockerOptions)
    assert options.command == ("serve", "--port", "5800")  # a string is split like a shell
    assert options.env == {"WORKERS": "2"} and options.gpus == 2
    assert options.network_mode == "host" and options.volumes == ()  # the schema's defaults
    assert options.as_dict() == {
        "image": "vllm/vllm-openai",
        "command": ["serve", "--port", "5800"],
        "env": {"WORKERS": "2"},
        "gpus": 2,
    }


def test_a_wrong_docker_value_points_at_its_yaml_position() -> None:
    text = "models:\n  m:\n    driver: docker\n    docker:\n      image: x\n      port: true\n"
    assert errors(text) == ["c.yaml:6:13: models.m.docker.port: expected a number, not true/false"]
    assert errors("models:\n  m:\n    driver: docker\n    docker: {image: x, driver: y}\n") == [
        "c.yaml:4:24: models.m.docker.driver: unknown key"
    ]


def test_a_plugin_driver_gets_its_block_as_written() -> None:
    options = load("models:\n  m:\n    driver: inproc\n    inproc: {app: 'a:b', n: [1]}\n")
    got = options.models["m"].options
    assert isinstance(got, PluginOptions) and got.driver == "inproc"
    assert got.get("app") == "a:b" and dict(got) == {"app": "a:b", "n": [1]}


def test_the_union_is_discriminated_on_driver() -> None:
    assert isinstance(OPTIONS.validate_python({"driver": "docker", "image": "i"}), DockerOptions)
    assert OPTIONS.validate_python({"driver": "process"}) == ProcessOptions()
    plugin = OPTIONS.validate_python({"driver": "vendor.x:SPEC", "block": {"k": 1}})
    assert plugin == PluginOptions("vendor.x:SPEC", {"k": 1})


def test_a_model_built_in_code_gets_the_options_of_its_driver() -> None:
    assert ModelConfig(id="p", cmd=("srv",)).options == ProcessOptions()
    bare = ModelConfig(id="x", cmd=(), driver="inproc")
    assert bare.options == PluginOptions("inproc") and not bare.options
    given = ModelConfig(id="x", cmd=(), driver="inproc", options={"app": "a:b"})  # type: ignore[arg-type]
    assert given.options == PluginOptions("inproc", {"app": "a:b"})
    docker = ModelConfig(id="d", cmd=(), driver="docker", options={"image": "i"})  # type: ignore[arg-type]
    assert isinstance(docker.options, DockerOptions) and docker.options.image == "i"
    with pytest.raises(ValueError, match="docker options given to a model with driver 'process'"):
        ModelConfig(id="p", cmd=("srv",), options=DockerOptions(image="i"))


def test_the_fingerprint_follows_the_options() -> None:
    model = load(DOCKER).models["box"]
    assert load(DOCKER).models["box"].fingerprint() == model.fingerprint()
    for changed in (
        DOCKER.replace("gpus: 2", "gpus: 1"),
        DOCKER.replace("WORKERS: 2", "WORKERS: 3"),
        DOCKER + "      shm_size: 16g\n",
    ):
        assert load(changed).models["box"].fingerprint() != model.fingerprint(), changed
    plugin = ModelConfig(id="x", cmd=(), driver="inproc", options=PluginOptions("inproc", {"a": 1}))
    other = dataclasses.replace(plugin, options=PluginOptions("inproc", {"a": 2}))
    assert plugin.fingerprint() != other.fingerprint()
    assert dataclasses.replace(plugin).fingerprint() == plugin.fingerprint()
