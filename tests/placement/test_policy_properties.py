"""Property tests of the placement policy against a brute-force oracle on small random worlds."""

from __future__ import annotations

import math
from itertools import chain, combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from swapd.placement import RAM, Decision, DeviceState, Need, Resident, place

G = 2**30
NODES = ("a", "b")


def rarely(draw: st.DrawFn) -> bool:
    return draw(st.sampled_from([False, False, False, False, True]))


@st.composite
def worlds(
    draw: st.DrawFn, most_residents: int = 8
) -> tuple[Need, list[DeviceState], list[Resident], int]:
    """Random nodes of GPUs (plus RAM), residents spread over them and one need; the sizes are
    chosen so that fits, evictions and refusals all happen often."""
    devices: list[DeviceState] = []
    for node in draw(st.permutations(NODES))[: draw(st.integers(1, 2))]:
        indices = draw(st.lists(st.integers(0, 3), min_size=1, max_size=3, unique=True))
        for index in [*draw(st.permutations(indices)), RAM]:
            total = draw(st.integers(24, 80)) * G
            external = draw(st.sampled_from([0, 0, 0, 2, 10])) * G
            devices.append(DeviceState((node, index), total, external))
    keys = [d.key for d in devices]
    residents: list[Resident] = []
    for i in range(draw(st.integers(0, most_residents))):
        node = draw(st.sampled_from(keys))[0]
        mine = [k for k in keys if k[0] == node]
        spots = draw(st.lists(st.sampled_from(mine), min_size=1, max_size=2, unique=True))
        residents.append(
            Resident(
                f"m{i}",
                {k: draw(st.integers(1, 40)) * G for k in spots},
                busy=draw(st.booleans()),
                evictable=not rarely(draw),
                cost=draw(st.sampled_from([0.0, 1.0, 2.0, 3.5, 10.0, 1000.0])),
            )
        )
    count = draw(st.sampled_from([0, 1, 1, 1, 2, 2, 3]))
    per_device = draw(st.sampled_from([0, 1, 10, 20, 30, 40, 60, 90])) * G
    allowed = None
    if rarely(draw):
        allowed = frozenset(draw(st.lists(st.sampled_from(keys), unique=True)))
    nodes = None
    if rarely(draw):
        nodes = tuple(draw(st.lists(st.sampled_from(NODES), unique=True)))
    headroom = draw(st.sampled_from([0, 0, 1, 4])) * G
    return Need("new", count, per_device, allowed, nodes), devices, residents, headroom


@st.composite
def crowds(
    draw: st.DrawFn, crowd: tuple[int, int], held: tuple[int, int]
) -> tuple[Need, list[DeviceState], list[Resident], int]:
    """One node of two GPUs crowded with residents, so that most needs must evict."""
    devices = [DeviceState(("a", i), draw(st.integers(40, 80)) * G) for i in range(2)]
    people = [
        Resident(
            f"m{i}",
            {
                d.key: draw(st.integers(*held)) * G
                for d in draw(st.permutations(devices))[: draw(st.integers(1, 2))]
            },
            busy=draw(st.booleans()),
            evictable=not rarely(draw),
            cost=draw(st.sampled_from([0.0, 1.0, 2.0, 3.5, 10.0, 1000.0])),
        )
        for i in range(draw(st.integers(*crowd)))
    ]
    count = draw(st.integers(1, 2))
    return Need("new", count, draw(st.integers(1, 40)) * G), devices, people, 0


def eligible(need: Need, device: DeviceState) -> bool:
    return (
        (device.index == RAM) == (need.count == 0)
        and (need.allowed is None or device.key in need.allowed)
        and (need.nodes is None or device.node in need.nodes)
    )


def room_after(
    device: DeviceState, residents: list[Resident], evict: frozenset[str], headroom: int
) -> int:
    held = sum(r.held.get(device.key, 0) for r in residents if r.model not in evict)
    return device.total - headroom - device.external - held


def fits(
    need: Need,
    chosen: tuple[DeviceState, ...],
    residents: list[Resident],
    evict: frozenset[str],
    headroom: int,
) -> bool:
    return need.per_device <= 0 or all(
        room_after(d, residents, evict, headroom) >= need.per_device for d in chosen
    )


def device_sets(need: Need, devices: list[DeviceState]) -> list[tuple[DeviceState, ...]]:
    usable = [d for d in devices if eligible(need, d)]
    nodes = {d.node for d in usable}
    return [
        chosen
        for node in nodes
        for chosen in combinations([d for d in usable if d.node == node], max(need.count, 1))
    ]


def score(residents: list[Resident], evict: frozenset[str]) -> tuple[int, float]:
    gone = [r for r in residents if r.model in evict]
    return sum(r.busy for r in gone), math.fsum(r.cost for r in gone)


def check_valid(
    need: Need,
    devices: list[DeviceState],
    residents: list[Resident],
    headroom: int,
    decision: Decision,
) -> None:
    if not decision.placed:
        assert decision.reason and not decision.evict
        return
    assert decision.reason == ""
    by_key = {d.key: d for d in devices}
    chosen = tuple(by_key[k] for k in decision.devices)
    assert len(set(decision.devices)) == len(decision.devices) == max(need.count, 1)
    assert len({d.node for d in chosen}) == 1
    assert all(eligible(need, d) for d in chosen)
    names = {r.model: r for r in residents}
    assert all(names[m].evictable for m in decision.evict)
    assert fits(need, chosen, residents, decision.evict, headroom)
    if need.per_device <= 0:
        assert not decision.evict


@settings(max_examples=400, deadline=None)
@given(worlds() | crowds(crowd=(2, 8), held=(5, 30)))
def test_placement_matches_brute_force_optimum(
    world: tuple[Need, list[DeviceState], list[Resident], int],
) -> None:
    need, devices, residents, headroom = world
    decision = place(need, devices, residents, headroom=headroom)
    check_valid(need, devices, residents, headroom, decision)
    sets = device_sets(need, devices)
    none: frozenset[str] = frozenset()
    if any(fits(need, chosen, residents, none, headroom) for chosen in sets):
        assert decision.placed and not decision.evict
        return
    evictable = [r.model for r in residents if r.evictable]
    subsets = chain.from_iterable(combinations(evictable, n) for n in range(len(evictable) + 1))
    working = [
        frozenset(s)
        for s in subsets
        if any(fits(need, chosen, residents, frozenset(s), headroom) for chosen in sets)
    ]
    assert decision.placed == bool(working)
    if working:
        busy, cost = min(score(residents, s) for s in working)
        got_busy, got_cost = score(residents, decision.evict)
        assert got_busy == busy
        assert math.isclose(got_cost, cost, rel_tol=1e-9, abs_tol=1e-9)
        single = [s for s in working if len(s) == 1]
        assert all(score(residents, decision.evict) <= score(residents, s) for s in single)


@settings(max_examples=150, deadline=None)
@given(worlds(most_residents=24) | crowds(crowd=(15, 24), held=(1, 5)))
def test_placement_with_many_residents_is_valid_and_evicts_no_redundant_model(
    world: tuple[Need, list[DeviceState], list[Resident], int],
) -> None:
    need, devices, residents, headroom = world
    decision = place(need, devices, residents, headroom=headroom)
    check_valid(need, devices, residents, headroom, decision)
    by_key = {d.key: d for d in devices}
    chosen = tuple(by_key[k] for k in decision.devices)
    for model in decision.evict:
        assert not fits(need, chosen, residents, decision.evict - {model}, headroom)
