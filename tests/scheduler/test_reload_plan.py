"""The reload plan is a pure function: tables of (current slots, new config) → actions."""

from __future__ import annotations

import dataclasses

import pytest

from swapd.config.model import Config, ModelConfig
from swapd.reload import Action, Current, plan, report

A = ModelConfig(id="a", cmd=("run-a",))
A2 = dataclasses.replace(A, cmd=("run-a", "--new"))
A_TTL = dataclasses.replace(A, ttl=60)  # not engine-relevant: no restart
B = ModelConfig(id="b", cmd=("run-b",))


def cfg(*models: ModelConfig) -> Config:
    return Config(models={m.id: m for m in models})


CASES = [
    # (current: id -> (config, alive), new models, expected actions)
    ({"a": (A, True)}, (A,), {"a": Action.KEEP}),
    ({"a": (A, True)}, (A_TTL,), {"a": Action.KEEP}),
    ({"a": (A, True)}, (A2,), {"a": Action.RESTART}),
    ({"a": (A, False)}, (A2,), {"a": Action.REPLACE}),
    ({"a": (A, True)}, (), {"a": Action.REMOVE}),
    ({"a": (A, False)}, (), {"a": Action.DROP}),
    ({}, (A,), {"a": Action.ADD}),
    ({"a": (A, True)}, (A, B), {"a": Action.KEEP, "b": Action.ADD}),
    # removed, then added back while still stopping: the slot (alive) is kept, not lost
    ({"a": (A, True)}, (A,), {"a": Action.KEEP}),
    # edit A → A2 while running, reverted before the engine stopped: the running config
    # (A) is what the plan compares with, so the revert is a keep, not A2
    ({"a": (A, True)}, (A,), {"a": Action.KEEP}),
]


@pytest.mark.parametrize(("current", "new", "expected"), CASES)
def test_reload_plan_table(
    current: dict[str, tuple[ModelConfig, bool]],
    new: tuple[ModelConfig, ...],
    expected: dict[str, Action],
) -> None:
    steps = plan({k: Current(c, alive) for k, (c, alive) in current.items()}, cfg(*new))
    assert {s.model: s.action for s in steps} == expected
    for step in steps:
        if step.action in (Action.REMOVE, Action.DROP):
            assert step.config is None
        else:
            assert step.config is not None and step.config == cfg(*new).models[step.model]


def test_reload_report_names_the_changes() -> None:
    steps = plan({"a": Current(A, True), "b": Current(B, False)}, cfg(A2))
    assert report(steps) == {"added": [], "removed": ["b"], "restarted": ["a"], "kept": []}
