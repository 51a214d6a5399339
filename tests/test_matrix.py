"""The matrix DSL: grammar, expansion, set order, and every validation error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from swapd.config.matrix import MAX_ALTERNATIVES, build_matrix
from swapd.config.model import MatrixConfig
from swapd.config.tree import Path

MODELS = frozenset({"llm", "small", "emb", "tts", "whisper", "qwen-2.5.7b", "мини"})
ALIASES = {"chat": "llm"}
BASE: Path = ("routing", "router", "settings", "matrix")


def build(
    sets: Mapping[str, str],
    *,
    vars: Mapping[str, str] | None = None,
    costs: Mapping[str, Any] | None = None,
) -> tuple[MatrixConfig, list[tuple[Path, str]]]:
    errors: list[tuple[Path, str]] = []
    matrix = build_matrix(
        vars or {},
        costs or {},
        sets,
        MODELS,
        ALIASES,
        lambda path, message: errors.append((path, message)),
        BASE,
    )
    return matrix, errors


def alternatives(sets: Mapping[str, str], **kw: Any) -> dict[str, set[frozenset[str]]]:
    matrix, errors = build(sets, **kw)
    assert errors == []
    return {s.name: set(s.alternatives) for s in matrix.sets}


def one_error(sets: Mapping[str, str], **kw: Any) -> tuple[Path, str]:
    _, errors = build(sets, **kw)
    assert len(errors) == 1, errors
    return errors[0]


# ── grammar and expansion ─────────────────────────────────────────────────────────────────


def test_and_binds_tighter_than_or() -> None:
    got = alternatives({"s": "llm & emb | small & tts"})
    assert got["s"] == {frozenset({"llm", "emb"}), frozenset({"small", "tts"})}


def test_parentheses_distribute_an_and_over_an_or() -> None:
    got = alternatives({"s": "(llm | small) & emb"})
    assert got["s"] == {frozenset({"llm", "emb"}), frozenset({"small", "emb"})}


def test_identifiers_take_unicode_letters_digits_dots_dashes_and_underscores() -> None:
    got = alternatives({"s": "qwen-2.5.7b&мини"})
    assert got["s"] == {frozenset({"qwen-2.5.7b", "мини"})}


def test_whitespace_is_optional_and_ignored() -> None:
    assert alternatives({"s": "  (llm|small)&\temb\n"}) == alternatives(
        {"s": "(llm | small) & emb"}
    )


def test_a_reference_inlines_another_sets_alternatives() -> None:
    got = alternatives({"base": "llm | small", "with-tts": "+base & tts"})
    assert got["with-tts"] == {frozenset({"llm", "tts"}), frozenset({"small", "tts"})}


def test_alternatives_inside_another_alternative_of_the_set_are_dropped() -> None:
    # subset semantics: {llm} allows nothing {llm, emb} does not
    matrix, _ = build({"s": "llm | llm & emb | emb"})
    assert matrix.sets[0].alternatives == (frozenset({"llm", "emb"}),)


def test_vars_name_models_and_win_over_a_model_of_the_same_name() -> None:
    got = alternatives({"s": "big & small"}, vars={"big": "llm", "small": "emb"})
    assert got["s"] == {frozenset({"llm", "emb"})}


def test_sets_are_ordered_referenced_first_then_as_defined() -> None:
    matrix, errors = build({"c": "+b & tts", "a": "llm", "b": "+a & emb", "d": "whisper"})
    assert errors == []
    assert [s.name for s in matrix.sets] == ["a", "b", "c", "d"]
    assert matrix.sets[2].dsl == "+b & tts"


def test_evict_costs_are_stored_by_real_model_id() -> None:
    matrix, errors = build({"s": "llm"}, vars={"big": "llm"}, costs={"big": 5, "emb": 2})
    assert errors == []
    assert dict(matrix.evict_costs) == {"llm": 5, "emb": 2}
    assert matrix.cost("llm") == 5 and matrix.cost("tts") == 1


# ── errors ────────────────────────────────────────────────────────────────────────────────


def test_no_sets_is_an_error() -> None:
    assert one_error({}) == ((*BASE, "sets"), "matrix must define at least one set")


@pytest.mark.parametrize("key", ["has_underscore", "x" * 33, "", "a b"])
def test_a_var_key_outside_the_allowed_pattern_is_an_error(key: str) -> None:
    path, message = one_error({"s": "llm"}, vars={key: "llm"})
    assert path == (*BASE, "vars", key)
    assert message == f'var key "{key}" must be 1-32 letters, digits, "-" or "." (no "_")'


def test_a_var_naming_an_unknown_model_is_an_error() -> None:
    assert one_error({"s": "llm"}, vars={"k": "nope"}) == (
        (*BASE, "vars", "k"),
        'var key "k" references unknown model "nope"',
    )


def test_a_var_naming_an_alias_says_which_model_it_is() -> None:
    _, message = one_error({"s": "llm"}, vars={"k": "chat"})
    assert message == 'var key "k" references unknown model "chat" (\'chat\' is an alias of "llm")'


def test_a_set_using_a_broken_var_reports_only_the_var() -> None:
    path, _ = one_error({"s": "k & emb"}, vars={"k": "nope"})
    assert path == (*BASE, "vars", "k")


@pytest.mark.parametrize("cost", [0, -3, 1.5, "2", True, None])
def test_an_evict_cost_that_is_not_a_positive_integer_is_an_error(cost: object) -> None:
    path, message = one_error({"s": "llm"}, costs={"llm": cost})
    assert path == (*BASE, "evict_costs", "llm")
    assert message == f'evict_cost for "llm" must be a positive integer, got {cost!r}'


def test_an_evict_cost_for_an_unknown_name_is_an_error() -> None:
    assert one_error({"s": "llm"}, costs={"ghost": 3}) == (
        (*BASE, "evict_costs", "ghost"),
        'evict_costs: unknown var or model "ghost"',
    )


def test_two_different_costs_for_one_model_contradict_each_other() -> None:
    path, message = one_error({"s": "llm"}, vars={"big": "llm"}, costs={"big": 3, "llm": 5})
    assert path == (*BASE, "evict_costs", "llm")
    assert message == 'evict_costs: "llm" and "big" both set the cost of model "llm" (5 and 3)'


def test_the_same_cost_given_twice_is_fine() -> None:
    _, errors = build({"s": "llm"}, vars={"big": "llm"}, costs={"big": 3, "llm": 3})
    assert errors == []


@pytest.mark.parametrize(
    ("dsl", "message"),
    [
        ("", 'set "s": empty expression'),
        ("   ", 'set "s": empty expression'),
        ("llm & !emb", 'set "s": unexpected character "!" at column 7'),
        ("llm, emb", 'set "s": unexpected character "," at column 4'),
        ("(llm | small & emb", 'set "s": missing ")" to close the "(" at column 1'),
        ("llm emb", 'set "s": unexpected "emb" after the expression at column 5'),
        ("llm & emb)", 'set "s": unexpected ")" after the expression at column 10'),
        ("llm &", 'set "s": expected a model, a var, "+set" or "(" at the end'),
        ("llm | | emb", 'set "s": expected a model, a var, "+set" or "(", found "|" at column 7'),
        ("()", 'set "s": expected a model, a var, "+set" or "(", found ")" at column 2'),
        ("llm & +", 'set "s": expected a set name after "+" at column 7'),
    ],
)
def test_syntax_errors_name_the_set_and_the_column(dsl: str, message: str) -> None:
    assert one_error({"s": dsl}) == ((*BASE, "sets", "s"), message)


def test_an_unknown_identifier_is_an_error() -> None:
    assert one_error({"s": "llm & ghost"}) == (
        (*BASE, "sets", "s"),
        'set "s": unknown var or model "ghost"',
    )


def test_an_alias_is_not_an_identifier_and_the_error_names_its_model() -> None:
    _, message = one_error({"s": "chat & emb"})
    assert message == (
        'set "s": unknown var or model "chat" (it is an alias of "llm": use the model id or a var)'
    )


def test_a_reference_to_an_undefined_set_is_an_error() -> None:
    assert one_error({"s": "llm & +nowhere"}) == (
        (*BASE, "sets", "s"),
        'set "s" references undefined set "nowhere"',
    )


def test_a_cycle_is_reported_once_and_named() -> None:
    matrix, errors = build({"ok": "llm", "a": "+b & emb", "b": "+c", "c": "tts | +a", "d": "+a"})
    assert errors == [((*BASE, "sets", "a"), "circular reference between sets: a -> b -> c -> a")]
    assert [s.name for s in matrix.sets] == ["ok"]


def test_a_set_referencing_itself_is_a_cycle() -> None:
    _, message = one_error({"s": "llm | +s & emb"})
    assert message == "circular reference between sets: s -> s"


def test_every_broken_set_is_reported_and_the_good_ones_kept() -> None:
    matrix, errors = build({"a": "llm &", "b": "ghost", "c": "emb | tts", "d": "+a & llm"})
    assert [path[-1] for path, _ in errors] == ["a", "b"]
    assert [s.name for s in matrix.sets] == ["c"]  # d uses a broken set: its error explains it


def test_a_set_expanding_beyond_the_limit_is_refused() -> None:
    models = frozenset(f"m{i}" for i in range(26))
    dsl = " & ".join(f"(m{2 * i} | m{2 * i + 1})" for i in range(13))  # 2**13 alternatives
    errors: list[tuple[Path, str]] = []
    build_matrix({}, {}, {"huge": dsl}, models, {}, lambda p, m: errors.append((p, m)), BASE)
    assert errors == [
        (
            (*BASE, "sets", "huge"),
            f'set "huge" expands to more than {MAX_ALTERNATIVES} combinations of models; '
            "split it into smaller sets",
        )
    ]
