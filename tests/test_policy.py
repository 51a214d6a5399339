from __future__ import annotations

from swapd.config.model import DEFAULT_GROUP, GroupConfig, ModelConfig
from swapd.policy import group_evictions


def _setup(**groups: GroupConfig) -> tuple[dict[str, ModelConfig], dict[str, GroupConfig]]:
    all_groups = {DEFAULT_GROUP: GroupConfig(DEFAULT_GROUP), **groups}
    models: dict[str, ModelConfig] = {}
    for g in all_groups.values():
        for m in g.members:
            models[m] = ModelConfig(id=m, cmd=("x",), group=g.name)
    for m in ("d1", "d2"):
        models[m] = ModelConfig(id=m, cmd=("x",))
    return models, all_groups


def test_default_group_runs_one_model_at_a_time() -> None:
    models, groups = _setup()
    assert group_evictions("d1", ["d2"], models, groups) == {"d2"}


def test_swap_false_group_members_coexist() -> None:
    models, groups = _setup(g=GroupConfig("g", swap=False, exclusive=False, members=("a", "b")))
    assert group_evictions("a", ["b"], models, groups) == set()


def test_exclusive_group_evicts_other_groups_but_not_persistent_ones() -> None:
    models, groups = _setup(
        x=GroupConfig("x", members=("a",)),
        p=GroupConfig("p", persistent=True, exclusive=False, swap=False, members=("keep",)),
    )
    assert group_evictions("a", ["d1", "keep"], models, groups) == {"d1"}


def test_non_exclusive_member_never_evicts_other_groups() -> None:
    models, groups = _setup(n=GroupConfig("n", exclusive=False, members=("a", "b")))
    assert group_evictions("a", ["d1", "b"], models, groups) == {"b"}
