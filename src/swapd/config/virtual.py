"""Names that stand for other names: ``selectors`` (a virtual model id resolved per request to
one of its targets) and ``profiles`` (pins that rewrite requested ids while one is active).

Checks follow llama-swap's, with its messages, except for references to nothing (on purpose,
as for group members, so a stale entry does not stop a config from loading):

- a selector target that names no model, alias or peer model is a warning and the target is
  dropped; it is an error only when no target is left (the selector would point nowhere);
- a profile pin whose target names nothing is a warning and the pin is dropped (llama-swap
  rejects both configs).
"""

from __future__ import annotations

from collections.abc import Mapping

from swapd.config.build import Builder
from swapd.config.model import ProfileConfig, SelectorConfig, SelectorStrategy
from swapd.config.names import Names, Resolved
from swapd.config.router import Routing
from swapd.config.schema import RawSelector, RawTop
from swapd.config.tree import Path

STRATEGIES: tuple[SelectorStrategy, ...] = ("warm", "pin", "spillover")


def build_selectors(
    builder: Builder, top: RawTop, names: Names, routing: Routing
) -> dict[str, SelectorConfig]:
    selectors: dict[str, SelectorConfig] = {}
    for selector_id, raw in top.selectors.items():
        built = _selector(builder, selector_id, raw, top, names, routing)
        if built is not None:
            selectors[selector_id] = built
    return selectors


def _strategy(
    builder: Builder, base: Path, selector_id: str, given: str
) -> SelectorStrategy | None:
    for strategy in STRATEGIES:
        if given == strategy:
            return strategy
    if not given:
        builder.error(base, f"selectors.{selector_id}.strategy is required", key=True)
    else:
        builder.error(
            (*base, "strategy"),
            f'selectors.{selector_id}.strategy: unknown strategy "{given}" '
            f"(valid: {', '.join(STRATEGIES)})",
        )
    return None


def _selector(
    builder: Builder,
    selector_id: str,
    raw: RawSelector,
    top: RawTop,
    names: Names,
    routing: Routing,
) -> SelectorConfig | None:
    base: Path = ("selectors", selector_id)
    if not selector_id.strip():
        builder.error(base, "selectors: selector names cannot be empty", key=True)
        return None
    if selector_id in names.model_ids:
        builder.error(
            base, f'selectors.{selector_id}: name conflicts with model ID "{selector_id}"', key=True
        )
        return None
    if selector_id in names.aliases:
        builder.error(
            base,
            f'selectors.{selector_id}: name conflicts with model alias "{selector_id}"',
            key=True,
        )
        return None
    strategy = _strategy(builder, base, selector_id, raw.strategy)
    if strategy is None:
        return None
    if not raw.targets:
        builder.error(
            base, f"selectors.{selector_id}.targets must contain at least one entry", key=True
        )
        return None
    kept: list[str] = []
    resolved: list[tuple[int, Resolved]] = []
    unknown: list[int] = []
    for i, target in enumerate(raw.targets):
        path = (*base, "targets", i)
        if target in top.selectors:
            builder.error(
                path,
                f'selectors.{selector_id}.targets[{i}] references selector "{target}"; '
                "selector chaining is not supported",
            )
        elif (found := names.resolve(target)) is None:
            unknown.append(i)
        elif strategy == "warm" and not found.local:
            builder.error(
                path,
                f"selectors.{selector_id}.targets[{i}] must resolve to a local model "
                f'for strategy "{strategy}"',
            )
        else:
            kept.append(target)
            resolved.append((i, found))
    for i in unknown:
        message = (
            f'selectors.{selector_id}.targets[{i}] references unknown model "{raw.targets[i]}"'
        )
        if kept:
            builder.warn((*base, "targets", i), f"{message} (ignored)")
        else:
            builder.error((*base, "targets", i), message)
    if strategy == "spillover":
        _check_spillover(builder, selector_id, raw, resolved, routing)
    return SelectorConfig(
        id=selector_id,
        strategy=strategy,
        targets=tuple(kept),
        spillover=max(raw.settings.spillover, 1),
        name=raw.name.strip(),
        description=raw.description.strip(),
        unlisted=raw.unlisted,
        metadata=raw.metadata,
    )


def _check_spillover(
    builder: Builder,
    selector_id: str,
    raw: RawSelector,
    resolved: list[tuple[int, Resolved]],
    routing: Routing,
) -> None:
    base: Path = ("selectors", selector_id)
    if raw.settings.spillover < 1:
        builder.error(
            (*base, "settings", "spillover"),
            f"selectors.{selector_id}.settings.spillover must be >= 1",
        )
    seen: set[str] = set()
    for i, target in resolved:
        if target.name in seen:
            builder.error(
                (*base, "targets", i),
                f"selectors.{selector_id}.targets contains duplicate resolved model "
                f'"{target.name}"',
            )
            return
        seen.add(target.name)
    local = [target.name for _, target in resolved if target.local]
    if len(local) <= 1:
        return
    if routing.router == "matrix":
        sets = routing.matrix.sets if routing.matrix is not None else ()
        if not any(set(local) <= alt for s in sets for alt in s.alternatives):
            builder.error(
                (*base, "targets"),
                f"selectors.{selector_id}.targets must all appear together "
                "in one expanded matrix set",
            )
        return
    group_of = {m: g.name for g in routing.groups.values() for m in g.members}
    first = group_of.get(local[0])
    if first is None:
        builder.error(
            (*base, "targets"),
            f'selectors.{selector_id} target "{local[0]}" is not in a routing group',
        )
    elif routing.groups[first].swap:
        builder.error(
            (*base, "targets"),
            f"selectors.{selector_id} spillover targets must share a group with swap: false",
        )
    elif any(group_of.get(m) != first for m in local[1:]):
        builder.error(
            (*base, "targets"),
            f"selectors.{selector_id} spillover targets must share one routing group",
        )


def build_profiles(
    builder: Builder, top: RawTop, names: Names, selector_ids: Mapping[str, object]
) -> dict[str, ProfileConfig]:
    profiles: dict[str, ProfileConfig] = {}
    for profile_id, raw in top.profiles.items():
        base: Path = ("profiles", profile_id)
        if not profile_id.strip():
            builder.error(base, "profiles: profile names cannot be empty", key=True)
            continue
        if not raw.pins:
            builder.error(
                base, f"profiles.{profile_id}.pins must contain at least one entry", key=True
            )
            continue
        pins: dict[str, str | None] = {}
        for pin, target in raw.pins.items():
            path = (*base, "pins", pin)
            if not pin.strip():
                builder.error(
                    path, f"profiles.{profile_id}.pins: pin names cannot be empty", key=True
                )
            elif not target:
                pins[pin] = None  # disabled: requests for it get 404
            elif names.resolve(target) is None and target not in selector_ids:
                builder.warn(
                    path,
                    f'profiles.{profile_id}.pins.{pin} references unknown model "{target}" '
                    "(ignored)",
                )
            else:
                pins[pin] = target
        profiles[profile_id] = ProfileConfig(profile_id, raw.description.strip(), pins)
    return profiles
