"""Pure eviction policy: which running models must go so that a target can run. No I/O.

``evictions`` dispatches on the config's router.

Group rules (llama-swap compatible): for a target T in group TG and each other running model M
in group MG,
  * same group and TG.swap            → evict M;
  * different group, TG.exclusive and not MG.persistent → evict M;
  * otherwise keep M.
A member of a non-exclusive group therefore never evicts a running exclusive group (kept quirk).
Models not listed in any group live in the implicit ``(default)`` group (swap + exclusive), which
gives one model at a time when no groups are configured. Under memory-aware placement
(``memory_aware``, see ``swapd.placer``) memory decides for them instead: the implicit group
neither swaps nor excludes (:func:`without_default_group`), while explicit groups and the matrix
stay hard constraints. A running model whose group is unknown
(a model a reload removed, still finishing its requests, whose group went with it) counts as a
group of its own (not persistent), so an exclusive target still waits for it to go.

Matrix rules (see ``swapd.config.matrix``): a running target evicts nothing. Otherwise every
alternative containing the target is a candidate; its cost is the sum of the evict costs of the
running models it leaves out. The cheapest wins, ties going to the earlier set (then the earlier
alternative); the running models outside it are evicted. A target in no set runs alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from swapd.config.model import DEFAULT_GROUP, Config, GroupConfig, MatrixConfig, ModelConfig

# matrix -> target -> (set name, alternative) candidates in order; the sets are fixed per config
_Candidates = dict[str, tuple[tuple[str, frozenset[str]], ...]]
_INDEX: dict[int, tuple[MatrixConfig, _Candidates]] = {}
_INDEX_SIZE = 4  # configs remembered (the current one, and a few a reload replaced)


def evictions(
    target: str,
    running: Iterable[str],
    models: Mapping[str, ModelConfig],
    config: Config,
    *,
    memory_aware: bool = False,
) -> frozenset[str]:
    """The running models to stop (or sleep) so that ``target`` may run.

    ``memory_aware``: placement decides for the models in no explicit group."""
    if config.router == "matrix" and config.matrix is not None:
        if target not in models:
            return frozenset()
        return matrix_choice(target, running, config.matrix).evict
    groups = without_default_group(config.groups) if memory_aware else config.groups
    return group_evictions(target, running, models, groups)


def without_default_group(groups: Mapping[str, GroupConfig]) -> Mapping[str, GroupConfig]:
    """``groups`` with the implicit ``(default)`` group relaxed: its members neither evict
    each other nor, being non-exclusive, anything else (explicit exclusive groups still evict
    them)."""
    default = groups.get(DEFAULT_GROUP)
    if default is None or not (default.swap or default.exclusive):
        return groups
    relaxed = GroupConfig(DEFAULT_GROUP, swap=False, exclusive=False, members=default.members)
    return {**groups, DEFAULT_GROUP: relaxed}


def group_evictions(
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


@dataclass(frozen=True, slots=True)
class MatrixChoice:
    """The solver's answer: the set chosen, what goes, and its cost.

    ``set_name`` is None when the target is in no set (it runs alone) or already running.
    """

    set_name: str | None
    evict: frozenset[str]
    cost: int
    keep: frozenset[str] = frozenset()  # the alternative chosen (models allowed to stay)


def _candidates(matrix: MatrixConfig) -> _Candidates:
    cached = _INDEX.get(id(matrix))
    if cached is not None and cached[0] is matrix:
        return cached[1]
    index: dict[str, list[tuple[str, frozenset[str]]]] = {}
    for matrix_set in matrix.sets:
        for alternative in matrix_set.alternatives:
            for model in alternative:
                index.setdefault(model, []).append((matrix_set.name, alternative))
    candidates = {model: tuple(found) for model, found in index.items()}
    while len(_INDEX) >= _INDEX_SIZE:
        del _INDEX[next(iter(_INDEX))]
    _INDEX[id(matrix)] = (matrix, candidates)  # holding ``matrix`` keeps its id unique
    return candidates


def matrix_choice(target: str, running: Iterable[str], matrix: MatrixConfig) -> MatrixChoice:
    """Solve the matrix for ``target`` given the ``running`` models (ids)."""
    names = list(dict.fromkeys(running))
    if target in names:
        return MatrixChoice(None, frozenset(), 0)
    others = names
    best: MatrixChoice | None = None
    for set_name, alternative in _candidates(matrix).get(target, ()):
        cost = sum(matrix.cost(m) for m in others if m not in alternative)
        if best is None or cost < best.cost:
            best = MatrixChoice(set_name, frozenset(), cost, alternative)
            if cost == 0:
                break
    if best is None:
        return MatrixChoice(None, frozenset(others), sum(matrix.cost(m) for m in others))
    evict = frozenset(m for m in others if m not in best.keep)
    return MatrixChoice(best.set_name, evict, best.cost, best.keep)
