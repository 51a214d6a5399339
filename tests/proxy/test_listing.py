"""``/v1/models`` records: capabilities, status, meta, peers, selectors, profile pins."""

from __future__ import annotations

from typing import Any

from swapd.config.model import (
    Capabilities,
    Config,
    ModelConfig,
    PeerConfig,
    ProfileConfig,
    SelectorConfig,
)
from swapd.proxy.auth import Principal
from swapd.proxy.listing import capability_fields, models_list
from swapd.routing import Routes
from swapd.views import State


def listed(cfg: Config, states: dict[str, State], profile: ProfileConfig | None = None) -> Any:
    data = models_list(cfg, Routes(cfg, profile=profile), states.get, profile)
    return {r["id"]: r for r in data}


def test_capabilities_render_llama_swaps_fields() -> None:
    caps = Capabilities(inputs=("text", "image"), outputs=("text",), tools=True, context=8192)
    assert capability_fields(caps) == {
        "architecture": {
            "input_modalities": ["text", "image"],
            "output_modalities": ["text"],
            "modality": "text+image->text",
        },
        "capabilities": {"vision": True, "function_calling": True},
        "supported_parameters": ["tools", "tool_choice"],
        "context_length": 8192,
    }
    speech = capability_fields(Capabilities(inputs=("text",), outputs=("audio", "image")))
    assert speech["capabilities"] == {"audio_speech": True, "image_generation": True}
    assert capability_fields(Capabilities(inputs=("audio",)))["architecture"] == {
        "input_modalities": ["audio"]
    }
    assert capability_fields(Capabilities(reranker=True)) == {"capabilities": {"reranker": True}}
    assert capability_fields(Capabilities()) == {}


def test_models_list_has_every_kind_of_record() -> None:
    caps = Capabilities(inputs=("text",), outputs=("text",), context=4096)
    cfg = Config(
        models={
            "a": ModelConfig(
                id="a",
                cmd=("x",),
                aliases=("al",),
                capabilities=caps,
                metadata={"context_length": 1, "family": "q"},
            ),
            "b": ModelConfig(id="b", cmd=("x",)),
            "hidden": ModelConfig(id="hidden", cmd=("x",), unlisted=True),
        },
        aliases={"al": "a"},
        include_aliases_in_list=True,
        peers={"cloud": PeerConfig("cloud", "http://c", models=("gpt", "gpt"))},
        selectors={
            "pick": SelectorConfig("pick", "pin", ("b", "a")),
            "warm": SelectorConfig("warm", "warm", ("b", "a"), metadata={"x": 1}),
            "spill": SelectorConfig("spill", "spillover", ("a", "b"), spillover=3),
            "quiet": SelectorConfig("quiet", "pin", ("a",), unlisted=True),
        },
    )
    profile = ProfileConfig("p", pins={"chat": "a", "off": None, "b": "a"})
    records = listed(cfg, {"a": State.READY}, profile)
    assert sorted(records) == ["a", "al", "b", "chat", "cloud/gpt", "pick", "spill", "warm"]
    a = records["a"]
    assert a["status"] == {"value": "loaded"} and a["context_length"] == 4096
    assert a["meta"]["n_ctx"] == 4096
    assert a["meta"]["llamaswap"] == {"family": "q", "type": "model", "aliases": ["al"]}
    assert a["meta"]["swapd"] == a["meta"]["llamaswap"]
    assert records["al"]["meta"]["llamaswap"]["modelID"] == "a"
    assert records["b"]["status"] == {"value": "unloaded"} and "n_ctx" not in records["b"]["meta"]
    peer = records["cloud/gpt"]
    assert peer["owned_by"] == "cloud" and peer["name"] == "cloud: gpt"
    assert peer["meta"]["llamaswap"] == {"type": "peer", "peerID": "cloud"}
    assert records["pick"]["status"]["value"] == "unloaded"  # pin looks at its first target
    assert records["warm"]["status"]["value"] == "loaded"
    assert records["warm"]["meta"]["llamaswap"] == {
        "x": 1,
        "type": "selector",
        "strategy": "warm",
        "targets": ["b", "a"],
    }
    assert records["spill"]["meta"]["llamaswap"]["spillover"] == 3
    chat = records["chat"]
    assert chat["meta"]["llamaswap"]["type"] == "profile"
    assert chat["status"]["value"] == "loaded"  # its target's


def test_a_bare_peer_name_is_listed_only_under_its_fqn() -> None:
    cfg = Config(peers={"p": PeerConfig("p", "http://p", models=("m",))})
    profile = ProfileConfig("x", pins={"m": "p/m"})
    assert sorted(listed(cfg, {}, profile)) == ["p/m"]  # the pin "m" shadows a peer name


def test_a_key_limited_to_some_models_lists_only_what_it_may_use() -> None:
    cfg = Config(
        models={
            "a": ModelConfig(id="a", cmd=("x",), aliases=("al",)),
            "b": ModelConfig(id="b", cmd=("x",), aliases=("bl",)),
        },
        aliases={"al": "a", "bl": "b"},
        include_aliases_in_list=True,
        peers={"cloud": PeerConfig("cloud", "http://c", models=("gpt", "o1"))},
        selectors={
            "pick": SelectorConfig("pick", "pin", ("b", "a")),
            "solo": SelectorConfig("solo", "pin", ("bl",)),
        },
    )
    profile = ProfileConfig("p", pins={"chat": "a", "fast": "b"})
    who = Principal("k", frozenset({"inference"}), ("b", "gpt", "chat"))
    data = models_list(cfg, Routes(cfg, profile=profile), {}.get, profile, allowed=who.allows)
    assert [r["id"] for r in data] == ["b", "bl", "chat", "cloud/gpt", "fast", "solo"]
