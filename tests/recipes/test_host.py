"""Item 6 of #16: engines bind 127.0.0.1 on the local node, the node's address on a remote one.

With host networking, ``--host 0.0.0.0`` would put every engine's API (and vLLM's dev-mode
``/sleep``) on the LAN, around swapd's keys.
"""

from __future__ import annotations

import pytest

from swapd.config import load_text
from swapd.config.model import NodeConfig
from swapd.config.options import DockerOptions
from swapd.extensions import standard
from swapd.recipes.start import NODE_HOST, prepare

from .shipped import NAMES


def _host(argv: tuple[str, ...]) -> str:
    return argv[argv.index("--host") + 1]


def _model(nodes: str, extra: str = "", recipe: str = "vllm/qwen3-8b") -> DockerOptions:
    text = f"nodes:\n{nodes}models:\n  m:\n    recipe: {recipe}\n{extra}"
    spec = load_text(text, extensions=standard()).models["m"].options
    assert isinstance(spec, DockerOptions)
    return spec


@pytest.mark.parametrize("name", NAMES)
def test_every_recipe_binds_loopback_on_the_local_node(name: str) -> None:
    text = f"models:\n  m:\n    recipe: {name}\n"
    model = load_text(text, extensions=standard()).models["m"]
    assert _host(model.cmd) == "127.0.0.1"


def test_a_remote_node_binds_its_address() -> None:
    spec = _model("  big: {docker: 'tcp://10.0.0.2:2375'}\n")
    assert _host(spec.command) == "10.0.0.2"


def test_a_model_on_several_nodes_binds_the_one_it_starts_on() -> None:
    nodes = "  local: {docker: 'unix:///var/run/docker.sock'}\n  big: {docker: 'ssh://u@big'}\n"
    spec = _model(nodes)
    assert _host(spec.command) == NODE_HOST
    model = load_text(
        f"nodes:\n{nodes}models:\n  m:\n    recipe: vllm/qwen3-8b\n", extensions=standard()
    ).models["m"]
    say = [].append
    local = prepare(model, spec, NodeConfig("local", ""), say, lambda n: None)
    remote = prepare(model, spec, NodeConfig("big", "ssh://u@big"), say, lambda n: None)
    assert _host(local.command) == "127.0.0.1" and _host(remote.command) == "big"


def test_a_pin_to_one_node_binds_its_address() -> None:
    nodes = "  local: {docker: ''}\n  big: {docker: 'tcp://10.0.0.2:2375'}\n"
    assert _host(_model(nodes, "    node: big\n").command) == "10.0.0.2"
    assert _host(_model(nodes, "    node: local\n").command) == "127.0.0.1"


def test_bridge_networking_listens_inside_its_namespace() -> None:
    spec = _model("  local: {docker: ''}\n", "    docker: {network_mode: bridge, port: 8000}\n")
    assert _host(spec.command) == "0.0.0.0"


def test_an_explicit_host_wins() -> None:
    spec = _model("  local: {docker: ''}\n", "", "{name: vllm/qwen3-8b, set: {host: 0.0.0.0}}")
    assert _host(spec.command) == "0.0.0.0"
