"""``selectors`` (virtual model ids) and ``profiles`` (runtime pins): what loads, what fails."""

from __future__ import annotations

from config_helpers import errors, load, warnings

from swapd.config.model import ProfileConfig, SelectorConfig

MODELS = """\
models:
  a:
    cmd: srv --port ${PORT}
    aliases: [a1]
  b:
    cmd: srv --port ${PORT}
  c:
    cmd: srv --port ${PORT}
peers:
  p: {proxy: 'http://h', models: [x]}
"""  # 10 lines


def test_a_selector_with_every_key() -> None:
    cfg = load(
        MODELS + "selectors:\n"
        "  fast:\n"
        "    strategy: spillover\n"
        "    targets: [a, p/x]\n"
        "    settings: {spillover: 3}\n"
        "    name: ' Fast '\n"
        "    description: d\n"
        "    unlisted: true\n"
        "    metadata: {k: [1, 2]}\n"
        "  any: {strategy: warm, targets: [a1, b]}\n"
    )
    assert cfg.selectors == {
        "fast": SelectorConfig(
            id="fast",
            strategy="spillover",
            targets=("a", "p/x"),
            spillover=3,
            name="Fast",
            description="d",
            unlisted=True,
            metadata={"k": [1, 2]},
        ),
        "any": SelectorConfig(id="any", strategy="warm", targets=("a1", "b")),
    }
    assert cfg.warnings == ()


def test_a_selector_id_cannot_be_a_model_or_an_alias() -> None:
    assert errors(
        MODELS + "selectors:\n  a: {strategy: pin, targets: [b]}\n"
        "  a1: {strategy: pin, targets: [b]}\n"
    ) == [
        'c.yaml:12:3: selectors.a: name conflicts with model ID "a"',
        'c.yaml:13:3: selectors.a1: name conflicts with model alias "a1"',
    ]


def test_selector_errors() -> None:
    assert errors(
        MODELS + "selectors:\n"
        "  s0: {strategy: pin, targets: [b]}\n"
        "  s00: {strategy: pin, targets: [b]}\n"
        "  s1: {targets: [b]}\n"
        "  s2: {strategy: random, targets: [b]}\n"
        "  s3: {strategy: pin}\n"
        "  s4: {strategy: pin, targets: [b, s1]}\n"
        "  s5: {strategy: warm, targets: [b, p/x]}\n"
        "  s6: {strategy: spillover, targets: [b], settings: {spillover: 0}}\n"
        "  s7: {strategy: spillover, targets: [a, a1]}\n"
        "  s8: {strategy: spillover, targets: [x, p/x]}\n"
    ) == [
        "c.yaml:14:3: selectors.s1.strategy is required",
        'c.yaml:15:18: selectors.s2.strategy: unknown strategy "random" '
        "(valid: warm, pin, spillover)",
        "c.yaml:16:3: selectors.s3.targets must contain at least one entry",
        'c.yaml:17:36: selectors.s4.targets[1] references selector "s1"; '
        "selector chaining is not supported",
        'c.yaml:18:37: selectors.s5.targets[1] must resolve to a local model for strategy "warm"',
        "c.yaml:19:65: selectors.s6.settings.spillover must be >= 1",
        'c.yaml:20:42: selectors.s7.targets contains duplicate resolved model "a"',
        'c.yaml:21:42: selectors.s8.targets contains duplicate resolved model "p/x"',
    ]


def test_an_unknown_target_is_dropped_with_a_warning() -> None:
    text = MODELS + "selectors:\n  s: {strategy: pin, targets: [ghost, b]}\n"
    assert load(text).selectors["s"].targets == ("b",)
    assert warnings(text) == [
        'c.yaml:12:32: selectors.s.targets[0] references unknown model "ghost" (ignored)'
    ]


def test_a_selector_pointing_nowhere_is_an_error() -> None:
    assert errors(MODELS + "selectors:\n  s: {strategy: warm, targets: [ghost, gone]}\n") == [
        'c.yaml:12:33: selectors.s.targets[0] references unknown model "ghost"',
        'c.yaml:12:40: selectors.s.targets[1] references unknown model "gone"',
    ]


def test_spillover_targets_must_be_able_to_run_together_in_groups() -> None:
    groups = "groups:\n  pair: {swap: false, members: [a, b]}\n  one: {members: [c]}\n"
    ok = MODELS + groups + "selectors:\n  s: {strategy: spillover, targets: [a1, b, p/x]}\n"
    assert load(ok).selectors["s"].targets == ("a1", "b", "p/x")
    assert errors(
        MODELS + groups + "selectors:\n  s: {strategy: spillover, targets: [b, c]}\n"
    ) == ["c.yaml:15:37: selectors.s spillover targets must share one routing group"]
    assert errors(
        MODELS + groups + "selectors:\n  s: {strategy: spillover, targets: [c, a]}\n"
    ) == ["c.yaml:15:37: selectors.s spillover targets must share a group with swap: false"]


def test_spillover_targets_must_share_an_expanded_matrix_set() -> None:
    matrix = "matrix:\n  sets:\n    ab: 'a & (b | c)'\n"
    ok = MODELS + matrix + "selectors:\n  s: {strategy: spillover, targets: [a, c]}\n"
    assert load(ok).router == "matrix"
    assert errors(
        MODELS + matrix + "selectors:\n  s: {strategy: spillover, targets: [b, c]}\n"
    ) == ["c.yaml:15:37: selectors.s.targets must all appear together in one expanded matrix set"]


def test_profiles() -> None:
    cfg = load(
        MODELS + "selectors:\n  s: {strategy: pin, targets: [b]}\n"
        "profiles:\n"
        "  coding:\n"
        "    description: ' for code '\n"
        "    pins: {llm: a1, remote: p/x, bare: x, virtual: s, off: ~, empty: ''}\n"
    )
    assert cfg.profiles == {
        "coding": ProfileConfig(
            id="coding",
            description="for code",
            pins={
                "llm": "a1",
                "remote": "p/x",
                "bare": "x",
                "virtual": "s",
                "off": None,
                "empty": None,
            },
        )
    }
    assert cfg.warnings == ()


def test_profile_errors() -> None:
    assert errors(
        MODELS + "profiles:\n  none: {description: x}\n  empty: {pins: {}}\n"
        "  blank: {pins: {'': a}}\n"
    ) == [
        "c.yaml:12:3: profiles.none.pins must contain at least one entry",
        "c.yaml:13:3: profiles.empty.pins must contain at least one entry",
        "c.yaml:14:18: profiles.blank.pins: pin names cannot be empty",
    ]


def test_a_pin_to_an_unknown_model_is_dropped_with_a_warning() -> None:
    text = MODELS + "profiles:\n  p1: {pins: {llm: ghost, code: b}}\n"
    assert load(text).profiles["p1"].pins == {"code": "b"}
    assert warnings(text) == [
        'c.yaml:12:20: profiles.p1.pins.llm references unknown model "ghost" (ignored)'
    ]


def test_the_legacy_profile_list_is_a_warning_and_ignored() -> None:
    text = MODELS + "profiles:\n  old: [a, b]\n  new: {pins: {x1: a}}\n"
    cfg = load(text)
    assert list(cfg.profiles) == ["new"]
    assert [str(w) for w in cfg.warnings] == [
        "c.yaml:12:3: profiles.old: profile must be a mapping with description and pins; "
        "the legacy list syntax is no longer supported (ignored)"
    ]
