"""Which models may run together: the group router (``groups``), the matrix router
(``matrix``), and the FIFO scheduler's priorities.

The router is ``routing.router.use`` (``group`` by default) with its settings under
``routing.router.settings``, or the legacy top-level ``groups`` / ``matrix`` keys; mixing the
two forms is an error, as is legacy ``groups`` with legacy ``matrix``. Both settings may sit
under ``routing.router.settings``: ``use`` picks one and the other is not read. Under the
matrix router every model is in the default group (groups are not used).

Differences from llama-swap, on purpose:

- A group member that is not a model is a warning naming it, and the member is dropped
  (llama-swap fails when it builds its router).
- ``routing.scheduler.settings.fifo.priority`` keys that are aliases count for their model
  (llama-swap accepts them and then never finds them); unknown keys are a warning, not an
  error.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field

from swapd.config.build import Builder
from swapd.config.matrix import build_matrix
from swapd.config.model import DEFAULT_GROUP, GroupConfig, MatrixConfig, Router
from swapd.config.schema import RawGroup, RawMatrix, RawTop
from swapd.config.tree import Path

LEGACY_AND_ROUTING = (
    "config uses both the legacy top-level 'matrix'/'groups' keys and the new 'routing.router' "
    "block; please migrate the top-level keys into 'routing.router' and remove them"
)


@dataclass(frozen=True, slots=True)
class Routing:
    router: Router = "group"
    groups: Mapping[str, GroupConfig] = field(default_factory=dict)
    matrix: MatrixConfig | None = None


def build_routing(
    builder: Builder, top: RawTop, model_ids: Set[str], aliases: Mapping[str, str]
) -> Routing:
    legacy = top.matrix is not None or bool(top.groups)
    router = top.routing.router
    raw_groups: Mapping[str, RawGroup] = {}
    groups_base: Path = ("groups",)
    matrix: tuple[RawMatrix, Path] | None = None
    if legacy and router is not None:
        key = "groups" if top.groups else "matrix"
        builder.error((key,), LEGACY_AND_ROUTING, key=True)
    if legacy:
        if top.groups and top.matrix is not None:
            builder.error(("matrix",), "config cannot use both 'groups' and 'matrix'", key=True)
        elif top.matrix is not None:
            matrix = (top.matrix, ("matrix",))
        raw_groups = top.groups or {}
    elif router is not None:
        settings = router.settings
        base: Path = ("routing", "router", "settings")
        if router.use == "matrix":
            if settings.matrix is None:
                builder.error(
                    ("routing", "router", "use"),
                    "routing.router.use is 'matrix' but routing.router.settings.matrix is not set",
                )
            else:
                matrix = (settings.matrix, (*base, "matrix"))
        elif router.use == "group":
            raw_groups = settings.groups or {}
            groups_base = (*base, "groups")
        else:
            builder.error(
                ("routing", "router", "use"),
                f'routing.router.use: unknown router "{router.use}" (valid: group, matrix)',
            )
    if top.routing.scheduler.use != "fifo":
        builder.error(
            ("routing", "scheduler", "use"),
            f'routing.scheduler.use: unknown scheduler "{top.routing.scheduler.use}" (valid: fifo)',
        )
    if matrix is not None:
        raw, base = matrix
        built = build_matrix(
            raw.vars, raw.evict_costs, raw.sets, model_ids, aliases, builder.error, base
        )
        everyone = GroupConfig(DEFAULT_GROUP, members=tuple(sorted(model_ids)))
        return Routing("matrix", {DEFAULT_GROUP: everyone}, built)
    groups = build_groups(builder, raw_groups, groups_base, model_ids, aliases)
    return Routing("group", groups, None)


def build_groups(
    builder: Builder,
    raw: Mapping[str, RawGroup],
    base: Path,
    model_ids: Set[str],
    aliases: Mapping[str, str],
) -> dict[str, GroupConfig]:
    owner: dict[str, str] = {}
    groups: dict[str, GroupConfig] = {}
    for name, group in raw.items():
        if name == DEFAULT_GROUP:
            builder.error((*base, name), f"group name '{DEFAULT_GROUP}' is reserved", key=True)
            continue
        members: list[str] = []
        for i, member in enumerate(group.members):
            path = (*base, name, "members", i)
            if member not in model_ids:
                hint = (
                    f"; '{member}' is an alias of '{aliases[member]}': list the model id"
                    if member in aliases
                    else ""
                )
                builder.warn(path, f"group {name}: unknown model '{member}' (ignored{hint})")
            elif member in members:
                builder.error(path, f"duplicate model member {member} found in group: {name}")
            elif member in owner:
                builder.error(
                    path,
                    f"model member {member} is used in multiple groups: {owner[member]} and {name}",
                )
            else:
                owner[member] = name
                members.append(member)
        groups[name] = GroupConfig(
            name, group.swap, group.exclusive, group.persistent, tuple(members)
        )
    rest = tuple(sorted(set(model_ids) - set(owner)))
    groups[DEFAULT_GROUP] = GroupConfig(DEFAULT_GROUP, members=rest)
    return groups


def build_priorities(
    builder: Builder, top: RawTop, model_ids: Set[str], aliases: Mapping[str, str]
) -> dict[str, int]:
    """``fifo.priority`` by real model id; an alias key counts for its model."""
    base: Path = ("routing", "scheduler", "settings", "fifo", "priority")
    priorities: dict[str, int] = {}
    given_as: dict[str, str] = {}
    for name, priority in top.routing.scheduler.settings.fifo.priority.items():
        real = name if name in model_ids else aliases.get(name)
        if real is None:
            builder.warn(
                (*base, name),
                f'routing.scheduler.settings.fifo.priority references unknown model "{name}" '
                "(ignored)",
                key=True,
            )
            continue
        if real in priorities and priorities[real] != priority:
            builder.error(
                (*base, name),
                f"routing.scheduler.settings.fifo.priority: '{name}' and '{given_as[real]}' "
                f"both set the priority of model {real}",
                key=True,
            )
            continue
        priorities[real] = priority
        given_as[real] = name
    return dict(sorted(priorities.items()))
