"""Model keys: ``filters.setParamsByID``, ``capabilities``, ``compat``, the ComfyUI model."""

from __future__ import annotations

from config_helpers import errors, load

from swapd.config.model import Capabilities


def test_set_params_by_id_keys_take_macros_and_become_aliases() -> None:
    cfg = load(
        """
        macros: {suffix: think}
        models:
          qwen:
            cmd: srv --port ${PORT}
            aliases: ["qwen:fast"]
            filters:
              setParams: {temperature: 0.7}
              setParamsByID:
                "${MODEL_ID}": {reasoning: medium}
                "${MODEL_ID}:${suffix}": {reasoning: high, model: ignored}
                "qwen:fast": {reasoning: low}
                "qwen@${PORT}": {seed: 1}
        """
    )
    qwen = cfg.models["qwen"]
    assert qwen.filters.set_params_by_id == {
        "qwen": {"reasoning": "medium"},
        "qwen:think": {"reasoning": "high"},  # `model` is never set
        "qwen:fast": {"reasoning": "low"},
        "qwen@5800": {"seed": 1},
    }
    assert qwen.aliases == ("qwen:fast", "qwen:think", "qwen@5800")
    assert cfg.aliases == {"qwen:fast": "qwen", "qwen:think": "qwen", "qwen@5800": "qwen"}
    assert cfg.resolve("qwen:think") is qwen


def test_set_params_by_id_errors() -> None:
    assert errors(
        """
        models:
          a:
            cmd: srv --port ${PORT}
            aliases: [shared]
          b:
            cmd: srv --port ${PORT}
            filters:
              setParamsByID:
                a: {x: 1}
                shared: {x: 2}
                "${MODEL_ID}": {x: 3}
                b: {x: 4}
                "${nope}-x": {x: 5}
        """
    ) == [
        "c.yaml:10:9: model b filters.setParamsByID: key 'a' conflicts with an existing model ID",
        "c.yaml:11:9: duplicate alias 'shared' in model b filters.setParamsByID, "
        "already used by model a",
        'c.yaml:13:9: model b filters.setParamsByID: keys "${MODEL_ID}" and "b" '
        "resolve to the same value",
        "c.yaml:14:9: unknown macro '${nope}' found in model b filters.setParamsByID key",
    ]


def test_capabilities() -> None:
    cfg = load(
        """
        models:
          m:
            cmd: srv --port ${PORT}
            capabilities: {in: [text, image], out: [text], tools: true, context: 8192}
          n:
            cmd: srv --port ${PORT}
        """
    )
    assert cfg.models["m"].capabilities == Capabilities(
        inputs=("text", "image"), outputs=("text",), tools=True, context=8192
    )
    assert not cfg.models["n"].capabilities


def test_capability_errors() -> None:
    assert errors(
        """
        models:
          m:
            cmd: srv --port ${PORT}
            capabilities: {in: [text, video], out: [smell], context: -1}
        """
    ) == [
        'c.yaml:5:31: model m: capabilities.in: invalid modality "video", '
        "must be one of: text, audio, image",
        'c.yaml:5:45: model m: capabilities.out: invalid modality "smell", '
        "must be one of: text, audio, image",
        "c.yaml:5:62: model m: capabilities.context: must be >= 0",
    ]


def test_compat_ignore_websockets_and_the_comfyui_model() -> None:
    cfg = load(
        """
        models:
          ws:
            cmd: srv --port ${PORT}
            compat: {ignoreWebsockets: true}
          plain:
            cmd: srv --port ${PORT}
          comfyui_auto:
            cmd: srv --port ${PORT}
            concurrencyLimit: 4
        """
    )
    assert cfg.models["ws"].ignore_websockets is True
    assert cfg.models["plain"].ignore_websockets is False
    comfy = cfg.models["comfyui_auto"]
    assert (comfy.ignore_websockets, comfy.concurrency_limit) == (True, 50)
