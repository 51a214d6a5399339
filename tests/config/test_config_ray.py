"""``cluster.ray`` and ``driver: ray`` models: typed options, ports left to the actor, errors."""

from __future__ import annotations

import dataclasses

from config_helpers import errors, load

from swapd.config import ModelConfig, load_text
from swapd.config.model import ClusterConfig, RayClusterConfig
from swapd.config.options import RayOptions
from swapd.extensions import standard

RAY = """
cluster:
  ray: {address: "ray://head:10001", namespace: lab}
models:
  echo:
    driver: ray
    cmd: python -m swapd.echo --host ${NODE_IP} --port ${PORT}
    ray:
      resources: {GPU: 1, big: 0.5}
      node: worker-1
      runtime_env: {env_vars: {A: "1"}}
"""


def test_the_cluster_block_and_ray_options_are_typed() -> None:
    config = load(RAY)
    assert config.cluster == ClusterConfig(ray=RayClusterConfig("ray://head:10001", "lab"))
    model = config.models["echo"]
    assert model.options == RayOptions(
        resources={"GPU": 1.0, "big": 0.5}, node="worker-1", runtime_env={"env_vars": {"A": "1"}}
    )
    assert model.options.as_dict()["node"] == "worker-1"


def test_a_ray_model_keeps_port_and_node_ip_for_its_actor() -> None:
    model = load(RAY).models["echo"]
    assert model.cmd[-4:] == ("--host", "${NODE_IP}", "--port", "${PORT}")
    assert model.port is None and model.proxy == ""


def test_no_cluster_block_means_no_ray_settings_and_auto_defaults() -> None:
    assert load("models: {}\n").cluster == ClusterConfig()
    assert load("cluster: {ray: {}}\n").cluster.ray == RayClusterConfig("auto", "swapd")
    assert load("cluster: {ray: {address: '10.0.0.1:6379'}}\n").cluster.ray is not None


def test_bad_ray_values_point_at_their_yaml_position() -> None:
    assert errors("cluster:\n  ray: {address: 'http://x'}\n") == [
        "c.yaml:2:18: cluster.ray.address: expected auto, ray://host:10001 or host:6379, "
        "got 'http://x'"
    ]
    text = "models:\n  m:\n    driver: ray\n    cmd: x\n    ray:\n      resources: {GPU: -1}\n"
    assert errors(text) == [
        "c.yaml:6:18: models.m.ray.resources: resource GPU: expected an amount >= 0, got -1"
    ]
    text = "models:\n  m:\n    driver: ray\n    cmd: x\n    ray: {nod: a}\n"
    assert errors(text) == ["c.yaml:5:11: models.m.ray.nod: unknown key; did you mean 'node'?"]
    assert errors("models:\n  m:\n    driver: ray\n") == ["c.yaml:2:3: model m: cmd is required"]
    text = "models:\n  m:\n    driver: ray\n    cmd: x\n    proxy: http://a:1\n"
    assert errors(text) == [
        "c.yaml:5:12: model m: a ray model is reached where its actor runs "
        "(node_ip:${PORT}); drop proxy"
    ]


def test_the_fingerprint_changes_with_the_ray_options() -> None:
    model = load(RAY).models["echo"]
    moved = dataclasses.replace(model, options=RayOptions(node="worker-2"))
    assert model.fingerprint() != moved.fingerprint()
    assert isinstance(ModelConfig("m", ("x",), driver="ray").options, RayOptions)


def test_a_process_recipe_runs_under_the_ray_driver() -> None:
    text = "models:\n  m:\n    driver: ray\n    recipe: vllm/qwen3-8b-pip\n"
    config = load_text(text, "c.yaml", env={}, extensions=standard())
    model = config.models["m"]
    assert model.driver == "ray" and model.recipe is not None
    assert "${PORT}" in model.cmd and "${NODE_IP}" in model.cmd
