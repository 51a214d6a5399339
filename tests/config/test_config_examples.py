"""llama-swap's own example configs (copied into data/), loaded unchanged.

Every one loads, and none gets a "not supported by swapd yet" warning: the warnings left are
about things that are really wrong in them (a model with a fixed port in cmd but no ``proxy``,
group members, selector targets, profile pins and priorities naming models the file does not
define, a legacy ``profiles`` list).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from swapd.config import Config, load_config

DATA = Path(__file__).parent / "data"
ENV = {"HOME": "/home/u", "API_KEY_1": "k1", "API_KEY_2": "k2", "OPENROUTER_API_KEY": "sk-or"}
EXAMPLES = sorted(p.name for p in DATA.glob("*.yaml"))


def loaded(name: str) -> Config:
    return load_config(DATA / name, env=ENV)


def warned(cfg: Config) -> list[str]:
    return [f"{w.line}: {w.message}" for w in cfg.warnings]


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_loads_without_not_supported_warnings(name: str) -> None:
    cfg = loaded(name)
    assert cfg.models
    assert not [w for w in cfg.warnings if "not supported" in w.message]
    assert not [w for w in cfg.warnings if w.message.startswith("unknown key")]


def test_the_examples_are_all_here() -> None:
    assert len(EXAMPLES) == 5


def test_aider_qwq_coder() -> None:
    cfg = loaded("aider-qwq-coder.yaml")
    assert list(cfg.models) == ["QwQ", "qwen-coder-32B"]
    coder = cfg.models["qwen-coder-32B"]
    assert coder.proxy == "http://127.0.0.1:8999" and coder.port is None
    assert coder.env == {"CUDA_VISIBLE_DEVICES": "0"}
    assert coder.cmd[:4] == ("/path/to/llama-server", "--host", "127.0.0.1", "--port")
    assert cfg.aliases == {"coder": "qwen-coder-32B"}
    assert cfg.health_check_timeout == 300 and cfg.log_level == "debug"
    assert cfg.profiles == {}
    assert warned(cfg) == [
        "5: profiles.aider: profile must be a mapping with description and pins; "
        "the legacy list syntax is no longer supported (ignored)"
    ]


def test_docker_config_example() -> None:
    cfg = loaded("docker-config.example.yaml")
    assert cfg.aliases["dall-e-3"] == "z-image"
    image = cfg.models["z-image"]
    assert image.check_endpoint == "/"
    assert (image.port, image.proxy) == (5800, "http://127.0.0.1:5800")
    assert cfg.log_requests is True
    assert warned(cfg) == [
        "20: model z-image: no proxy is set and cmd does not use ${PORT}, so requests go to "
        "http://127.0.0.1:5800, where the engine will not be found; "
        "set proxy: http://127.0.0.1:9999 (cmd has --listen-port 9999)"
    ]


def test_unified_config_example() -> None:
    cfg = loaded("unified-config.example.yaml")
    assert {m.id: m.port for m in cfg.models.values()} == {
        "audio": 5800,
        "image": 5801,  # no proxy, no ${PORT}: a port all the same (and a warning)
        "llama": 5802,
        "whisper": 5803,
    }
    assert cfg.models["whisper"].cmd[-1] == ""  # --inference-path ""
    assert [w.line for w in cfg.warnings] == [33]


def test_config_example() -> None:
    cfg = loaded("config.example.yaml")
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
    assert cfg.models["unlisted-model"].port == 10003
    assert gpt.metadata["port"] == 10002 and gpt.metadata["temperature"] == 0.7
    assert gpt.metadata["an_obj"] == {"a": "1", "b": 2, "c": [0.7, False, "model: gpt-oss-120b"]}
    assert gpt.filters.strip_params == ("temperature", "top_k", "top_p")
    assert gpt.filters.set_params_by_id["gpt-oss-120b:high"] == {
        "chat_template_kwargs": {"reasoning_effort": "high"}
    }
    assert set(gpt.filters.set_params_by_id) == {
        "gpt-oss-120b",
        "gpt-oss-120b:high",
        "gpt-oss-120b:low",
    }
    assert gpt.aliases == ("gpt-4o-mini", "gpt-oss-120b:high", "gpt-oss-120b:low")
    assert cfg.aliases["gpt-oss-120b:low"] == "gpt-oss-120b"
    assert gpt.ignore_websockets is True
    assert gpt.capabilities.inputs == ("text", "audio", "image")
    assert (gpt.capabilities.tools, gpt.capabilities.context) == (True, 32000)
    assert cfg.models["docker-llama"].cmd_stop == ("docker", "stop", "docker-llama")
    assert cfg.api_keys[2:] == ("k1", "k2")
    assert cfg.preload == ()  # "llama" is a selector here, not a model
    assert cfg.health_check_timeout == 500 and cfg.start_port == 10001
    assert cfg.groups["group2"].members == ("docker-llama",)
    assert cfg.router == "group" and cfg.matrix is None  # the matrix block is not read
    assert cfg.priorities == {}  # A, B, C, D are not models here
    assert cfg.capture_bytes == 15 * 1024 * 1024
    assert cfg.ignore_paths == (
        r".*\.(js|json|css|png|gif|jpg|jpeg|ico|txt)$",
        r"^\/ws$|^\/api\/jobs$",
    )
    assert cfg.log_time_format == "" and cfg.log_requests is False
    assert cfg.profiles["coding"].pins == {"llm-code": "gpt-oss-120b", "image-gen": None}
    assert cfg.selectors["coding-model"].targets == ("gpt-oss-120b",)
    assert cfg.selectors["llm-plan"].targets == ("gpt-oss-120b", "z-ai/glm-4.7")
    assert (cfg.selectors["llama"].strategy, cfg.selectors["llama"].spillover) == ("spillover", 4)
    router = cfg.peers["openrouter"]
    assert router.api_key == "sk-or" and router.proxy == "https://openrouter.ai/api"
    assert router.filters.strip_params == ("temperature", "top_p")
    assert router.filters.set_params["provider"] == {"data_collection": "deny", "zdr": True}
    assert router.timeouts.response_header == 60
    assert cfg.peers["llama-swap-peer"].models == ("model_a", "model_b", "embeddings/model_c")
    assert warned(cfg) == [
        '192: profiles.coding.pins.llm-plan references unknown model "qwen-unlisted" (ignored)',
        '208: selectors.coding-model.targets[1] references unknown model "qwen-unlisted" (ignored)',
        '227: selectors.llama.targets[1] references unknown model "modelA" (ignored)',
        '228: selectors.llama.targets[2] references unknown model "modelB" (ignored)',
        "458: model unlisted-model: no proxy is set and cmd does not use ${PORT}, so requests go "
        "to http://127.0.0.1:10003, where the engine will not be found; "
        "use ${PORT} in cmd or set proxy",
        "502: hooks.on_startup.preload: 'llama' is a selector, not a model (ignored)",
        "556: group group1: unknown model 'llama' (ignored)",
        "557: group group1: unknown model 'qwen-unlisted' (ignored)",
        "570: group group2: unknown model 'modelA' (ignored)",
        "571: group group2: unknown model 'modelB' (ignored)",
        "585: group forever: unknown model 'forever-modelA' (ignored)",
        "586: group forever: unknown model 'forever-modelB' (ignored)",
        "587: group forever: unknown model 'forever-modelc' (ignored)",
        '669: routing.scheduler.settings.fifo.priority references unknown model "A" (ignored)',
        '670: routing.scheduler.settings.fifo.priority references unknown model "B" (ignored)',
        '671: routing.scheduler.settings.fifo.priority references unknown model "C" (ignored)',
        '672: routing.scheduler.settings.fifo.priority references unknown model "D" (ignored)',
    ]


def test_config_example_2026_02() -> None:
    cfg = loaded("config.example.2026-02.yaml")
    assert cfg.models["llama"].metadata["note"] == (
        "The llama is running on port 10002 temp=0.7, context=16384"
    )
    assert cfg.aliases == {"gpt-3.5-turbo": "llama", "gpt-4o-mini": "llama"}
    assert cfg.preload == ("llama",)
    assert cfg.groups["group1"].members == ("llama", "qwen-unlisted")
    assert cfg.groups["group2"].members == ("docker-llama",)
    assert warned(cfg) == [
        "335: group group2: unknown model 'modelA' (ignored)",
        "336: group group2: unknown model 'modelB' (ignored)",
        "351: group forever: unknown model 'forever-modelA' (ignored)",
        "352: group forever: unknown model 'forever-modelB' (ignored)",
        "353: group forever: unknown model 'forever-modelc' (ignored)",
    ]
