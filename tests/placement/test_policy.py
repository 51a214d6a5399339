"""The pure placement policy: where a need fits, what it evicts, and why it cannot be placed."""

from __future__ import annotations

from swapd.placement import (
    RAM,
    Decision,
    DeviceKey,
    DeviceState,
    Need,
    Resident,
    eviction_cost,
    gib,
    place,
)

G = 2**30


def gpu(node: str, index: int, total: float = 80, external: float = 0) -> DeviceState:
    return DeviceState((node, index), int(total * G), int(external * G), f"GPU {index}")


def ram(node: str, total: float = 64) -> DeviceState:
    return DeviceState((node, RAM), int(total * G))


def resident(
    model: str,
    held: dict[DeviceKey, float],
    *,
    busy: bool = False,
    evictable: bool = True,
    cost: float = 1.0,
) -> Resident:
    return Resident(model, {k: int(v * G) for k, v in held.items()}, busy, evictable, cost)


def need(
    per_device: float,
    count: int = 1,
    *,
    allowed: set[DeviceKey] | None = None,
    nodes: tuple[str, ...] | None = None,
) -> Need:
    frozen = None if allowed is None else frozenset(allowed)
    return Need("new", count, int(per_device * G), frozen, nodes)


TWO_BY_TWO = [gpu("a", 0), gpu("a", 1), gpu("b", 0), gpu("b", 1)]


def test_placement_fits_without_eviction_on_the_best_fit_device() -> None:
    residents = [resident("x", {("a", 0): 50}), resident("y", {("b", 1): 30})]
    assert place(need(20), TWO_BY_TWO, residents) == Decision(devices=(("a", 0),))
    assert place(need(40), TWO_BY_TWO, residents) == Decision(devices=(("b", 1),))


def test_placement_best_fit_ties_go_to_node_order_then_index() -> None:
    devices = [gpu("b", 1), gpu("b", 0), gpu("a", 0)]
    assert place(need(10), devices, []).devices == (("b", 0),)


def test_placement_prefers_no_eviction_over_eviction() -> None:
    residents = [resident("cheap", {("a", 0): 70}, cost=0.0)]
    decision = place(need(40), [gpu("a", 0), gpu("a", 1, total=48)], residents)
    assert decision == Decision(devices=(("a", 1),))


def test_placement_evicts_cheapest_idle_set_on_the_right_gpu_and_nothing_else() -> None:
    residents = [
        resident("dear", {("a", 0): 40}, cost=10),
        resident("cheap1", {("a", 0): 20}, cost=2),
        resident("cheap2", {("a", 0): 20}, cost=3),
        resident("elsewhere", {("a", 1): 79}, cost=6),
    ]
    decision = place(need(40), [gpu("a", 0), gpu("a", 1)], residents)
    assert decision == Decision(devices=(("a", 0),), evict=frozenset({"cheap1", "cheap2"}))


def test_placement_eviction_ties_go_to_fewer_models_then_fewer_bytes() -> None:
    residents = [
        resident("one", {("a", 0): 40}, cost=2),
        resident("half1", {("a", 0): 20}, cost=1),
        resident("half2", {("a", 0): 20}, cost=1),
    ]
    assert place(need(40), [gpu("a", 0)], residents).evict == {"one"}
    residents = [resident("big", {("a", 0): 50}), resident("small", {("a", 0): 45})]
    assert place(need(40), [gpu("a", 0, total=100)], residents).evict == {"small"}


def test_placement_evicting_frees_a_resident_on_all_its_devices() -> None:
    residents = [
        resident("wide", {("a", 0): 40, ("a", 1): 40}, cost=3),
        resident("left", {("a", 0): 40}, cost=2),
        resident("right", {("a", 1): 40}, cost=2),
    ]
    decision = place(need(40, count=2), [gpu("a", 0), gpu("a", 1)], residents)
    assert decision == Decision(devices=(("a", 0), ("a", 1)), evict=frozenset({"wide"}))


def test_placement_never_evicts_non_evictable() -> None:
    residents = [
        resident("pinned", {("a", 0): 60}, evictable=False, cost=0),
        resident("idle", {("a", 1): 60}, cost=100),
    ]
    decision = place(need(40), [gpu("a", 0), gpu("a", 1)], residents)
    assert decision == Decision(devices=(("a", 1),), evict=frozenset({"idle"}))


def test_placement_busy_model_is_in_evict_set_only_when_no_idle_set_works() -> None:
    devices = [gpu("a", 0), gpu("a", 1)]
    busy = resident("busy", {("a", 0): 60}, busy=True, cost=0.5)
    idle = resident("idle", {("a", 1): 60}, cost=50)
    assert place(need(40), devices, [busy, idle]).evict == {"idle"}
    pinned = resident("idle", {("a", 1): 60}, evictable=False)
    assert place(need(40), devices, [busy, pinned]) == Decision(
        devices=(("a", 0),), evict=frozenset({"busy"})
    )


def test_placement_multi_gpu_need_stays_on_one_node() -> None:
    devices = [gpu("a", 0), gpu("a", 1), gpu("b", 0), gpu("b", 1)]
    residents = [resident("x", {("a", 1): 60}), resident("y", {("b", 0): 10})]
    assert place(need(40, count=2), devices, residents).devices == (("b", 0), ("b", 1))
    split = [gpu("a", 0), gpu("b", 0)]
    decision = place(need(10, count=2), split, [])
    assert decision.devices == ()
    assert decision.reason == "needs 2 GPUs on one node; the most on one node is 1"


def test_placement_count_zero_goes_to_the_node_ram() -> None:
    devices = [gpu("a", 0), ram("a", 32), ram("b", 128)]
    assert place(need(40, count=0), devices, []).devices == (("b", RAM),)
    assert place(need(10, count=1), devices, []).devices == (("a", 0),)
    decision = place(need(10, count=0), [gpu("a", 0)], [])
    assert decision.reason == "needs 10.0GiB of system RAM; no node reports its RAM"


def test_placement_allowed_devices_and_nodes_restrict_the_choice() -> None:
    residents = [resident("x", {("a", 0): 60})]
    assert place(need(10, allowed={("a", 0), ("b", 1)}), TWO_BY_TWO, residents).devices == (
        ("a", 0),
    )
    assert place(need(10, nodes=("b",)), TWO_BY_TWO, residents).devices == (("b", 0),)
    decision = place(need(40, allowed={("a", 0)}), TWO_BY_TWO, residents)
    assert decision == Decision(devices=(("a", 0),), evict=frozenset({"x"}))
    assert place(need(10, nodes=("c",)), TWO_BY_TWO, []).reason == (
        "needs 1 GPU; no GPU is available (allowed: nodes c)"
    )


def test_placement_unknown_need_never_evicts_and_spreads_out() -> None:
    residents = [resident("x", {("a", 0): 79}), resident("y", {("a", 1): 70})]
    devices = [gpu("a", 0), gpu("a", 1), gpu("b", 0, external=50)]
    assert place(need(0), devices, residents) == Decision(devices=(("b", 0),))
    full = [resident("x", {("a", 0): 80})]
    assert place(need(0), [gpu("a", 0)], full) == Decision(devices=(("a", 0),))


def test_placement_reason_names_a_need_too_big_for_any_device() -> None:
    decision = place(need(100), [gpu("a", 0), gpu("b", 0, total=40)], [])
    assert not decision.placed
    assert decision.reason == "needs 100.0GiB; largest device: a:0 80.0GiB total"


def test_placement_reason_names_memory_held_by_pinned_models() -> None:
    residents = [
        resident("big", {("a", 0): 45}, evictable=False),
        resident("idle", {("a", 0): 10}),
    ]
    devices = [gpu("a", 0, external=2), gpu("a", 1, total=24)]
    decision = place(need(40, count=2), devices, residents)
    assert decision.reason == (
        "needs 2 \N{MULTIPLICATION SIGN} 40.0GiB; largest device: a:1 24.0GiB total"
    )
    decision = place(need(40), devices, residents, headroom=G)
    assert decision.reason == (
        "needs 40.0GiB; best device: a:0 80.0GiB total, 45.0GiB held by non-evictable models"
        " (big), 2.0GiB used by other processes, 1.0GiB headroom"
    )


def test_placement_respects_headroom() -> None:
    devices = [gpu("a", 0, total=41), gpu("a", 1, total=44)]
    assert place(need(40), devices, [], headroom=2 * G).devices == (("a", 1),)
    assert not place(need(40), devices, [], headroom=5 * G).placed
    residents = [resident("x", {("a", 1): 3})]
    decision = place(need(40), devices, residents, headroom=2 * G)
    assert decision == Decision(devices=(("a", 1),), evict=frozenset({"x"}))


def test_placement_external_memory_reduces_room() -> None:
    devices = [gpu("a", 0, external=50), gpu("a", 1, total=48)]
    assert place(need(35), devices, []).devices == (("a", 1),)


def test_gib_formats_one_decimal() -> None:
    assert gib(40 * G) == "40.0GiB"
    assert gib(int(1.25 * G)) == "1.2GiB"
    assert gib(0) == "0.0GiB"


def test_eviction_cost_favours_recent_slow_to_load_and_high_priority_models() -> None:
    base = eviction_cost(idle_seconds=600, reload_seconds=10)
    assert eviction_cost(idle_seconds=5, reload_seconds=10) > base
    assert eviction_cost(idle_seconds=600, reload_seconds=30) > base
    assert eviction_cost(idle_seconds=600, reload_seconds=10, priority=1) == 2 * base
    assert eviction_cost(idle_seconds=600, reload_seconds=10, priority=-1) == base / 2
    assert eviction_cost(idle_seconds=0, reload_seconds=0) == 2.0
    unmeasured = eviction_cost(idle_seconds=0, reload_seconds=0, held_bytes=9 * G)
    assert unmeasured == eviction_cost(idle_seconds=0, reload_seconds=9)


def test_placement_two_gpu_need_among_twelve_residents_evicts_the_cheapest_sets() -> None:
    """Each GPU holds three residents and needs two of them gone; on node a only a set with
    the busy m5 frees a:1, on node b only one with the busy m10 frees b:0: the cheaper node."""
    devices = [gpu("a", 0), gpu("a", 1), gpu("b", 0), gpu("b", 1)]
    keys = [d.key for d in devices]
    residents = [
        resident(f"m{i}", {keys[i % 4]: 20 + i % 3}, cost=1 + i, busy=i % 5 == 0) for i in range(12)
    ]
    decision = place(need(60, count=2), devices, residents)
    assert decision == Decision(
        devices=(("a", 0), ("a", 1)), evict=frozenset({"m1", "m4", "m5", "m8"})
    )
