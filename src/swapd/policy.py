"""Pure eviction policy: which running models must go so that a target can run. No I/O.

Group rules (llama-swap compatible): for a target T in group TG and each other running model M
in group MG,
  * same group and TG.swap            → evict M;
  * different group, TG.exclusive and not MG.persistent → evict M;
  * otherwise keep M.
A member of a non-exclusive group therefore never evicts a running exclusive group (kept quirk).
Models not listed in any group live in the implicit ``(default)`` group (swap + exclusive), which
gives one model at a time when no groups are configured.

The function is total: a running model whose group is unknown (a model a reload removed, still
finishing its requests, whose group went with it) counts as a group of its own (not persistent),
so an exclusive target still waits for it to go.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from swapd.config.model import GroupConfig, ModelConfig


def evictions(
    target: str,
    running: Iterable[str],
    models: Mapping[str, ModelConfig],
    groups: Mapping[str, GroupConfig],
) -> frozenset[str]:
    out: set[str] = set()
    tg = groups.get(models[target].group) if target in models else None
    if tg is None:
        return frozenset(out)
    for name in running:
        if name == target or name not in models:
            continue
        mg = groups.get(models[name].group) or GroupConfig(name=f"(gone) {name}")
        if mg.name == tg.name:
            if tg.swap:
                out.add(name)
        elif tg.exclusive and not mg.persistent:
            out.add(name)
    return frozenset(out)
