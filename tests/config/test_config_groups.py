from __future__ import annotations

from config_helpers import errors, load

MODELS = """
models:
  a: {cmd: "srv ${PORT}", aliases: [a1]}
  b: {cmd: "srv ${PORT}"}
  c: {cmd: "srv ${PORT}"}
  d: {cmd: "srv ${PORT}"}
"""


def test_default_group_always_exists() -> None:
    cfg = load(MODELS)
    assert list(cfg.groups) == ["(default)"]
    g = cfg.groups["(default)"]
    assert (g.swap, g.exclusive, g.persistent, g.members) == (
        True,
        True,
        False,
        ("a", "b", "c", "d"),
    )
    assert list(load("").groups) == ["(default)"]


def test_legacy_groups() -> None:
    cfg = load(
        MODELS + "groups:\n  pair:\n    swap: false\n    exclusive: false\n    members: [b, a]\n"
        "  keep:\n    persistent: true\n    members: [d]\n"
    )
    assert list(cfg.groups) == ["pair", "keep", "(default)"]
    pair, keep, rest = cfg.groups.values()
    assert (pair.swap, pair.exclusive, pair.persistent, pair.members) == (
        False,
        False,
        False,
        ("b", "a"),
    )
    assert (keep.swap, keep.exclusive, keep.persistent, keep.members) == (True, True, True, ("d",))
    assert rest.members == ("c",)
    assert [cfg.models[m].group for m in "abcd"] == ["pair", "pair", "(default)", "keep"]


def test_routing_groups() -> None:
    cfg = load(
        MODELS + "routing:\n  router:\n    use: group\n    settings:\n      groups:\n"
        "        g: {members: [c]}\n"
    )
    assert cfg.groups["g"].members == ("c",)
    assert cfg.models["c"].group == "g"


def test_legacy_and_routing_groups_together() -> None:
    text = MODELS + "groups: {g: {members: [a]}}\nrouting:\n  router:\n    settings: {groups: {}}\n"
    assert errors(text) == [
        "c.yaml:7:1: config uses both the legacy top-level 'matrix'/'groups' keys and the new "
        "'routing.router' block; please migrate the top-level keys into 'routing.router' and "
        "remove them"
    ]


def test_an_empty_legacy_groups_block_is_not_a_conflict() -> None:
    text = MODELS + "groups: {}\nrouting:\n  router:\n    settings: {groups: {g: {members: [a]}}}\n"
    assert load(text).groups["g"].members == ("a",)


def test_member_errors() -> None:
    assert errors(
        MODELS + "groups:\n  g1:\n    members: [a, ghost, a, a1]\n  g2:\n    members: [b, a]\n"
        "  (default):\n    members: [c]\n"
    ) == [
        "c.yaml:9:25: duplicate model member a found in group: g1",
        "c.yaml:11:18: model member a is used in multiple groups: g1 and g2",
        "c.yaml:12:3: group name '(default)' is reserved",
    ]


def test_unknown_members_are_warnings_and_dropped() -> None:
    text = MODELS + "groups:\n  g1:\n    members: [a, ghost, a1]\n"
    cfg = load(text)
    assert cfg.groups["g1"].members == ("a",)
    assert [str(w) for w in cfg.warnings] == [
        "c.yaml:9:18: group g1: unknown model 'ghost' (ignored)",
        "c.yaml:9:25: group g1: unknown model 'a1' (ignored; 'a1' is an alias of 'a': "
        "list the model id)",
    ]
