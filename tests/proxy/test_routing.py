"""Name resolution: profile pins, selectors (pin / warm / spillover), local names, peers."""

from __future__ import annotations

import pytest

from swapd.config.model import (
    Config,
    ModelConfig,
    PeerConfig,
    ProfileConfig,
    SelectorConfig,
    SelectorStrategy,
)
from swapd.errors import NotFound, SelectorUnavailable
from swapd.routing import ActiveProfile, Route, Routes, Spillover
from swapd.views import State


def model(model_id: str, *aliases: str) -> ModelConfig:
    return ModelConfig(id=model_id, cmd=("true",), aliases=aliases)


def config(
    *models: ModelConfig,
    peers: tuple[PeerConfig, ...] = (),
    selectors: tuple[SelectorConfig, ...] = (),
    profiles: tuple[ProfileConfig, ...] = (),
) -> Config:
    return Config(
        models={m.id: m for m in models},
        aliases={a: m.id for m in models for a in m.aliases},
        peers={p.id: p for p in peers},
        selectors={s.id: s for s in selectors},
        profiles={p.id: p for p in profiles},
    )


def selector(
    selector_id: str, strategy: SelectorStrategy, *targets: str, spillover: int = 1
) -> SelectorConfig:
    return SelectorConfig(id=selector_id, strategy=strategy, targets=targets, spillover=spillover)


def where(route: Route | None) -> str | None:
    return None if route is None else route.key


def test_local_ids_and_aliases_win_over_peer_names() -> None:
    cfg = config(
        model("qwen", "q"),
        peers=(PeerConfig("cloud", "http://x", models=("qwen", "q", "gpt")),),
    )
    routes = Routes(cfg)
    assert where(routes.resolve("qwen")) == "qwen"
    assert where(routes.resolve("q")) == "qwen"
    assert where(routes.resolve("cloud/qwen")) == "cloud/qwen"
    gpt = routes.resolve("gpt")
    assert gpt is not None and gpt.peer is not None and gpt.peer_model == "gpt"
    assert routes.resolve("nope") is None


def test_a_bare_peer_name_routes_only_when_exactly_one_peer_offers_it() -> None:
    cfg = config(
        peers=(
            PeerConfig("a", "http://a", models=("shared", "only-a")),
            PeerConfig("b", "http://b", models=("shared",)),
        )
    )
    routes = Routes(cfg)
    assert routes.resolve("shared") is None
    assert where(routes.resolve("a/shared")) == "a/shared"
    assert where(routes.resolve("b/shared")) == "b/shared"
    only = routes.resolve("only-a")
    assert only is not None and only.peer_model == "only-a" and only.name == "only-a"


def test_a_bare_peer_name_that_is_another_peers_fqn_is_not_bare() -> None:
    # peer "x" offers "y/z" → FQN "x/y/z"; peer "x/y" offers "z" → FQN "x/y/z" too (the loader
    # rejects that); here: peer "p" offers "a/b", and peer "a" offers "b": "a/b" is an FQN.
    cfg = config(
        peers=(
            PeerConfig("p", "http://p", models=("a/b",)),
            PeerConfig("a", "http://a", models=("b",)),
        )
    )
    route = Routes(cfg).resolve("a/b")
    assert route is not None and route.peer is not None and route.peer.id == "a"


def test_a_profile_pin_rewrites_first_and_is_not_chained() -> None:
    profile = ProfileConfig("coding", pins={"llm": "big", "big": "small", "off": None})
    cfg = config(model("big"), model("small"), model("llm"), profiles=(profile,))
    routes = Routes(cfg, profile=profile)
    route = routes.resolve("llm")  # pinned over the local model "llm"; "big" not re-pinned
    assert route is not None and route.key == "big"
    assert (route.requested, route.name) == ("llm", "big")
    assert where(routes.resolve("big")) == "small"
    with pytest.raises(NotFound, match="disabled by the active profile 'coding'"):
        routes.resolve("off")
    assert where(Routes(cfg).resolve("llm")) == "llm"  # no profile active


def test_a_pin_may_name_a_selector() -> None:
    profile = ProfileConfig("p", pins={"chat": "sel"})
    cfg = config(
        model("a"), model("b"), selectors=(selector("sel", "pin", "b", "a"),), profiles=(profile,)
    )
    route = Routes(cfg, profile=profile).resolve("chat")
    assert route is not None and route.key == "b" and route.selector == "sel"
    assert (route.requested, route.name) == ("chat", "b")


def test_pin_selector_always_takes_the_first_target() -> None:
    cfg = config(model("a"), model("b"), selectors=(selector("s", "pin", "b", "a"),))
    states = {"a": State.READY}
    routes = Routes(cfg, state=states.get)
    assert where(routes.resolve("s")) == "b"


@pytest.mark.parametrize(
    ("states", "chosen"),
    [
        ({}, "a"),  # nothing running: the first target, cold
        ({"c": State.STARTING}, "c"),
        ({"c": State.STARTING, "b": State.READY}, "b"),  # ready beats starting
        ({"b": State.SLEEPING}, "b"),  # waking beats a cold start
        ({"b": State.SLEEPING, "c": State.STARTING}, "c"),
        ({"a": State.STOPPING, "b": State.FAILED}, "a"),
    ],
)
def test_warm_selector_prefers_ready_then_starting_then_sleeping(
    states: dict[str, State], chosen: str
) -> None:
    cfg = config(
        model("a"), model("b"), model("c"), selectors=(selector("w", "warm", "a", "b", "c"),)
    )
    route = Routes(cfg, state=states.get).resolve("w")
    assert route is not None and route.key == chosen and route.name == chosen
    assert route.reserved is None


def spill(states: dict[str, State], spillover: int = 1, *, peer: bool = False) -> Routes:
    targets = ("a", "b", "p/r") if peer else ("a", "b")
    cfg = config(
        model("a"),
        model("b"),
        peers=(PeerConfig("p", "http://p", models=("r",)),),
        selectors=(selector("s", "spillover", *targets, spillover=spillover),),
    )
    return Routes(cfg, state=states.get, spillover=Spillover())


def test_spillover_fills_the_warm_target_then_spills_to_a_cold_one_then_round_robins() -> None:
    states = {"b": State.READY}
    routes = spill(states, spillover=2)
    held = [routes.resolve("s") for _ in range(6)]
    keys = [where(r) for r in held]
    # b is warm: it takes 2 (spillover), then a cold a is used; a now holds one so it is
    # active: the least busy (a) until tied, then round-robin between the tied ones.
    assert keys[:3] == ["b", "b", "a"]
    assert keys[3] == "a"
    assert sorted(keys[4:]) == ["a", "b"]
    for route in held:
        assert route is not None
        routes.release(route)
    assert routes.spillover.count("s", "a") == routes.spillover.count("s", "b") == 0


def test_spillover_with_nothing_active_starts_the_first_cold_target() -> None:
    routes = spill({})
    first = routes.resolve("s")
    assert where(first) == "a" and first is not None and first.reserved == "a"
    # a holds a reservation now: active, at the spillover limit → the cold b
    assert where(routes.resolve("s")) == "b"


def test_spillover_releasing_makes_the_target_least_busy_again() -> None:
    routes = spill({"a": State.READY, "b": State.READY})
    first, second = routes.resolve("s"), routes.resolve("s")
    assert {where(first), where(second)} == {"a", "b"}
    assert first is not None
    routes.release(first)
    assert where(routes.resolve("s")) == where(first)


def test_spillover_skips_stopping_targets_and_counts_peer_reservations() -> None:
    routes = spill({"a": State.STOPPING, "b": State.READY}, peer=True)
    assert where(routes.resolve("s")) == "b"
    assert where(routes.resolve("s")) == "p/r"  # b is full (1): the cold peer
    assert where(routes.resolve("s")) in ("b", "p/r")  # both active and tied: round-robin


def test_spillover_with_every_target_stopping_is_a_503() -> None:
    routes = spill({"a": State.STOPPING, "b": State.STOPPING})
    with pytest.raises(SelectorUnavailable, match='selector "s" has no available spillover'):
        routes.resolve("s")


def test_resolve_path_uses_the_longest_prefix_and_profile_pins_but_not_selectors() -> None:
    profile = ProfileConfig("p", pins={"alias": "org/m", "gone": None})
    cfg = config(
        model("org/m"),
        model("org"),
        selectors=(selector("sel", "pin", "org"),),
        peers=(PeerConfig("peer", "http://x", models=("r",)),),
        profiles=(profile,),
    )
    routes = Routes(cfg, profile=profile)
    found = routes.resolve_path([b"org", b"m", b"v1", b"x"])
    assert found is not None and found[0].key == "org/m" and found[1] == 2
    found = routes.resolve_path([b"org%2Fm", b"x"])
    assert found is not None and found[0].key == "org/m" and found[1] == 1
    found = routes.resolve_path([b"alias", b"x"])
    assert found is not None and found[0].key == "org/m" and found[0].requested == "alias"
    found = routes.resolve_path([b"peer", b"r", b""])
    assert found is not None and found[0].peer_model == "r" and found[1] == 2
    assert routes.resolve_path([b"sel", b"x"]) is None
    assert routes.resolve_path([b"gone", b"x"]) is None


def test_the_active_profile_resets_with_every_new_config() -> None:
    profile = ProfileConfig("p", pins={"x": "a"})
    first = config(model("a"), profiles=(profile,))
    active = ActiveProfile()
    assert active.name(first) is None
    assert active.set(first, "p") and active.get(first) is profile
    assert not active.set(first, "p")  # unchanged
    with pytest.raises(NotFound, match='profile "nope" not found'):
        active.set(first, "nope")
    assert active.name(first) == "p"
    reloaded = config(model("a"), profiles=(profile,))
    assert active.name(reloaded) is None
    assert active.set(reloaded, "p") and active.set(reloaded, "")
    assert active.name(reloaded) is None
