"""llama-swap's own example configs (copied into data/), loaded unchanged.

Three of them are rejected by llama-swap itself too: a model whose cmd has a fixed port but no
``proxy`` (the default proxy needs ${PORT}), and groups listing models that are not defined
(llama-swap fails on those when it builds its router; swapd at load time). The tests pin those
exact errors, then check that the rest of each file loads once they are fixed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from swapd.config import load_config, load_text
from swapd.errors import ConfigError

DATA = Path(__file__).parent / "data"
ENV = {"HOME": "/home/u", "API_KEY_1": "k1", "API_KEY_2": "k2", "OPENROUTER_API_KEY": "sk-or"}
PORT_RULE = (
    "proxy uses ${PORT} but cmd does not - ${PORT} is only available when used in cmd "
    "(no proxy is set; the default is http://127.0.0.1:${PORT})"
)


def example(name: str) -> str:
    return (DATA / name).read_text()


def rejected(name: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(DATA / name, env=ENV)
    return [f"{i.line}: {i.message}" for i in info.value.issues]


def test_aider_qwq_coder() -> None:
    cfg = load_config(DATA / "aider-qwq-coder.yaml", env=ENV)
    assert list(cfg.models) == ["QwQ", "qwen-coder-32B"]
    coder = cfg.models["qwen-coder-32B"]
    assert coder.proxy == "http://127.0.0.1:8999" and coder.port is None
    assert coder.env == {"CUDA_VISIBLE_DEVICES": "0"}
    assert coder.cmd[:4] == ("/path/to/llama-server", "--host", "127.0.0.1", "--port")
    assert cfg.aliases == {"coder": "qwen-coder-32B"}
    assert cfg.health_check_timeout == 300 and cfg.log_level == "debug"
    assert [w.message for w in cfg.warnings] == [
        "'profiles' is not supported by swapd yet (ignored)"
    ]


def test_docker_config_example() -> None:
    assert rejected("docker-config.example.yaml") == [f"20: model z-image: {PORT_RULE}"]
    fixed = example("docker-config.example.yaml").replace(
        "    checkEndpoint: /\n", "    checkEndpoint: /\n    proxy: http://127.0.0.1:9999\n"
    )
    cfg = load_text(fixed, env=ENV)
    assert cfg.aliases["dall-e-3"] == "z-image"
    assert cfg.models["z-image"].check_endpoint == "/"
    assert [w.message for w in cfg.warnings] == [
        "'logRequests' is not supported by swapd yet (ignored)",
    ]


def test_unified_config_example() -> None:
    assert rejected("unified-config.example.yaml") == [f"33: model image: {PORT_RULE}"]
    fixed = example("unified-config.example.yaml").replace(
        "    checkEndpoint: /\n", "    checkEndpoint: /\n    proxy: http://127.0.0.1:9999\n"
    )
    cfg = load_text(fixed, env=ENV)
    assert {m.id: m.port for m in cfg.models.values()} == {
        "audio": 5800,
        "image": None,
        "llama": 5801,
        "whisper": 5802,
    }
    assert cfg.models["whisper"].cmd[-1] == ""  # --inference-path ""


def test_config_example() -> None:
    assert rejected("config.example.yaml") == [
        f"458: model unlisted-model: {PORT_RULE}",
        "556: group group1: unknown model 'llama'",
        "557: group group1: unknown model 'qwen-unlisted'",
        "570: group group2: unknown model 'modelA'",
        "571: group group2: unknown model 'modelB'",
        "585: group forever: unknown model 'forever-modelA'",
        "586: group forever: unknown model 'forever-modelB'",
        "587: group forever: unknown model 'forever-modelc'",
    ]
    text = example("config.example.yaml")
    text = text.replace(
        "    cmd: some-upstream-server\n", "    cmd: some-upstream-server --port ${PORT}\n"
    )
    for member in (
        "llama",
        "qwen-unlisted",
        "modelA",
        "modelB",
        "forever-modelA",
        "forever-modelB",
        "forever-modelc",
    ):
        text = text.replace(f'            - "{member}"\n', "")
    cfg = load_text(text, env=ENV)
    gpt = cfg.models["gpt-oss-120b"]
    assert gpt.cmd == (
        "/path/to/llama-server/llama-server-ec9e0301",
        "--port",
        "10002",
        "--model",
        "path/to/gpt-oss-120B.gguf",
        "--ctx-size",
        "16384",
        "--temperature",
        "0.7",
    )
    assert gpt.proxy == "http://127.0.0.1:8999"
    assert cfg.models["docker-llama"].port == 10001  # ports go in sorted id order
    assert gpt.metadata["port"] == 10002 and gpt.metadata["temperature"] == 0.7
    assert gpt.metadata["an_obj"] == {"a": "1", "b": 2, "c": [0.7, False, "model: gpt-oss-120b"]}
    assert gpt.filters.strip_params == ("temperature", "top_k", "top_p")
    assert cfg.models["docker-llama"].cmd_stop == ("docker", "stop", "docker-llama")
    assert cfg.api_keys[2:] == ("k1", "k2")
    assert cfg.preload == ()  # "llama" is not a model here: dropped with a warning
    assert cfg.health_check_timeout == 500 and cfg.start_port == 10001
    assert cfg.groups["group2"].members == ("docker-llama",)
    messages = [w.message for w in cfg.warnings]
    assert "hooks.on_startup.preload: unknown model 'llama' (ignored)" in messages
    assert "'peers' is not supported by swapd yet (ignored)" in messages
    assert not any(m.startswith("unknown key") for m in messages)


def test_config_example_2026_02() -> None:
    assert rejected("config.example.2026-02.yaml") == [
        "335: group group2: unknown model 'modelA'",
        "336: group group2: unknown model 'modelB'",
        "351: group forever: unknown model 'forever-modelA'",
        "352: group forever: unknown model 'forever-modelB'",
        "353: group forever: unknown model 'forever-modelc'",
    ]
    text = example("config.example.2026-02.yaml")
    for member in ("modelA", "modelB", "forever-modelA", "forever-modelB", "forever-modelc"):
        text = text.replace(f'      - "{member}"\n', "")
    cfg = load_text(text, env=ENV)
    assert cfg.models["llama"].metadata["note"] == (
        "The llama is running on port 10002 temp=0.7, context=16384"
    )
    assert cfg.aliases == {"gpt-3.5-turbo": "llama", "gpt-4o-mini": "llama"}
    assert cfg.preload == ("llama",)
    assert cfg.groups["group1"].members == ("llama", "qwen-unlisted")
