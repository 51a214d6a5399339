"""The matrix solver against brute force, and the policy's dispatch on the router."""

from __future__ import annotations

from itertools import chain, combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from swapd.config.matrix import maximal
from swapd.config.model import (
    DEFAULT_GROUP,
    Config,
    GroupConfig,
    MatrixConfig,
    MatrixSet,
    ModelConfig,
)
from swapd.policy import evictions, matrix_choice

MODELS = ("a", "b", "c", "d", "e")


def subsets(items: frozenset[str]) -> list[frozenset[str]]:
    ordered = sorted(items)
    return [
        frozenset(c)
        for c in chain.from_iterable(combinations(ordered, r) for r in range(len(ordered) + 1))
    ]


alternative = st.frozensets(st.sampled_from(MODELS), min_size=1)
matrix_sets = st.lists(st.lists(alternative, min_size=1, max_size=3), min_size=1, max_size=4)
costs = st.dictionaries(st.sampled_from(MODELS), st.integers(1, 9))


def make_matrix(sets: list[list[frozenset[str]]], evict_costs: dict[str, int]) -> MatrixConfig:
    return MatrixConfig(
        sets=tuple(MatrixSet(f"s{i}", "", maximal(alts)) for i, alts in enumerate(sets)),
        evict_costs=evict_costs,
    )


@settings(max_examples=400, deadline=None)
@given(
    sets=matrix_sets,
    evict_costs=costs,
    running=st.frozensets(st.sampled_from(MODELS)),
    target=st.sampled_from(MODELS),
)
def test_the_solver_picks_a_cheapest_valid_eviction(
    sets: list[list[frozenset[str]]],
    evict_costs: dict[str, int],
    running: frozenset[str],
    target: str,
) -> None:
    matrix = make_matrix(sets, evict_costs)
    choice = matrix_choice(target, sorted(running), matrix)
    if target in running:
        assert choice.evict == frozenset()
        return
    holders = [
        (i, alt) for i, s in enumerate(matrix.sets) for alt in s.alternatives if target in alt
    ]

    def valid(evict: frozenset[str]) -> int | None:
        """The earliest set allowing what stays, or None (-1: the target alone)."""
        stays = (running - evict) | {target}
        if not holders:
            return -1 if stays == {target} else None
        return next((i for i, alt in holders if stays <= alt), None)

    def cost(evict: frozenset[str]) -> int:
        return sum(matrix.cost(m) for m in evict)

    assert choice.evict <= running
    chosen_set = valid(choice.evict)
    assert chosen_set is not None, "the chosen eviction leaves an invalid set running"
    assert choice.cost == cost(choice.evict)
    best = min(cost(e) for e in subsets(running) if valid(e) is not None)
    assert choice.cost == best, "a cheaper valid eviction exists"
    earliest = min(i for e in subsets(running) if cost(e) == best and (i := valid(e)) is not None)
    if holders:
        assert choice.set_name == f"s{earliest}"
        assert choice.keep >= (running - choice.evict) | {target}
    else:
        assert choice.set_name is None and choice.evict == running


def _matrix_config(matrix: MatrixConfig) -> tuple[dict[str, ModelConfig], Config]:
    models = {m: ModelConfig(id=m, cmd=("x",)) for m in MODELS}
    return models, Config(models=models, router="matrix", matrix=matrix)


def test_a_cheap_running_model_is_evicted_rather_than_an_expensive_one() -> None:
    matrix = make_matrix([[frozenset("ab")], [frozenset("ac")]], {"b": 5})
    models, config = _matrix_config(matrix)
    assert evictions("a", ["b", "c"], models, config) == {"c"}
    assert matrix_choice("a", ["b", "c"], matrix).set_name == "s0"


def test_a_cost_tie_goes_to_the_earlier_set() -> None:
    matrix = make_matrix([[frozenset("ac")], [frozenset("ab")]], {})
    assert matrix_choice("a", ["b", "c"], matrix).set_name == "s0"
    assert matrix_choice("a", ["b", "c"], matrix).evict == {"b"}


def test_a_model_in_no_set_runs_alone() -> None:
    matrix = make_matrix([[frozenset("ab")]], {"b": 4})
    models, config = _matrix_config(matrix)
    assert evictions("e", ["a", "b"], models, config) == {"a", "b"}
    assert matrix_choice("e", ["a", "b"], matrix).cost == 5


def test_a_running_target_evicts_nothing() -> None:
    matrix = make_matrix([[frozenset("ab")]], {})
    models, config = _matrix_config(matrix)
    assert evictions("e", ["e", "a", "b"], models, config) == frozenset()


def test_an_unknown_target_evicts_nothing() -> None:
    models, config = _matrix_config(make_matrix([[frozenset("ab")]], {}))
    assert evictions("ghost", ["a"], models, config) == frozenset()


def test_the_group_router_ignores_a_matrix() -> None:
    matrix = make_matrix([[frozenset("ab")]], {})
    models, config = _matrix_config(matrix)
    grouped = Config(
        models=models, groups={DEFAULT_GROUP: GroupConfig(DEFAULT_GROUP)}, matrix=matrix
    )
    # every model is in the (default) group: one at a time
    assert evictions("a", ["b"], models, grouped) == {"b"}
    assert evictions("a", ["b"], models, config) == frozenset()
