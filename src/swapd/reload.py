"""Reload planning: a pure function from the current slots and a new config to what changes.

Each model gets one action:

* ``keep``: its engine-relevant config (fingerprint) equals what the engine runs — adopt the new
  config (TTL, aliases, … take effect at once) and cancel any restart or removal a previous,
  now reverted, reload had scheduled;
* ``restart``: it runs with a different config — restart it once it is idle (requests in flight
  finish, new ones queue and start the new engine);
* ``replace``: it has no engine — adopt the new config now;
* ``remove``: gone from the config while its engine runs — stop it once idle, then delete it;
* ``drop``: gone from the config and no engine — delete it now;
* ``add``: new in the config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from swapd.config.model import Config, ModelConfig


class Action(StrEnum):
    KEEP = "keep"
    RESTART = "restart"
    REPLACE = "replace"
    REMOVE = "remove"
    DROP = "drop"
    ADD = "add"


@dataclass(frozen=True, slots=True)
class Current:
    """What the plan needs to know of one slot."""

    config: ModelConfig  # what its engine runs (or would run, when stopped)
    alive: bool  # an engine exists (starting, ready, sleeping or stopping)


@dataclass(frozen=True, slots=True)
class Step:
    model: str
    action: Action
    config: ModelConfig | None  # the new config; None for remove and drop


REPORT = {  # the change names reload answers with
    Action.KEEP: "kept",
    Action.REPLACE: "kept",
    Action.RESTART: "restarted",
    Action.REMOVE: "removed",
    Action.DROP: "removed",
    Action.ADD: "added",
}


def plan(current: Mapping[str, Current], new: Config) -> list[Step]:
    """One step per model in ``current`` or ``new``, in id order."""
    steps: list[Step] = []
    for model_id in sorted({*current, *new.models}):
        now, then = current.get(model_id), new.models.get(model_id)
        if now is None:
            assert then is not None
            steps.append(Step(model_id, Action.ADD, then))
        elif then is None:
            steps.append(Step(model_id, Action.REMOVE if now.alive else Action.DROP, None))
        elif not now.alive:
            steps.append(Step(model_id, Action.REPLACE, then))
        elif then.fingerprint() == now.config.fingerprint():
            steps.append(Step(model_id, Action.KEEP, then))
        else:
            steps.append(Step(model_id, Action.RESTART, then))
    return steps


def report(steps: list[Step]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"added": [], "removed": [], "restarted": [], "kept": []}
    for step in steps:
        out[REPORT[step.action]].append(step.model)
    return out
