"""An assignment's late macros and device variables, and macro expansion."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from swapd.assignment import Assignment, expand

GIB = 1024**3


def test_values_name_the_first_device_the_list_and_the_count() -> None:
    values = Assignment("a", (2, 3)).values()
    assert values == {"GPU": "2", "GPUS": "2,3", "GPU_COUNT": "2"}


def test_values_give_the_memory_per_device_in_bytes_and_mib() -> None:
    values = Assignment("a", (0,), device_totals=(80 * GIB,), per_device=36 * GIB).values()
    assert values["GPU_MEMORY_BYTES"] == str(36 * GIB)
    assert values["GPU_MEMORY_MIB"] == str(36 * 1024)
    assert values["GPU_MEMORY_FRACTION"] == "0.45"


def test_fraction_is_rounded_up_over_the_smallest_device() -> None:
    a = Assignment("a", (0, 1), device_totals=(80 * GIB, 40 * GIB), per_device=10 * GIB + 1)
    assert a.values()["GPU_MEMORY_FRACTION"] == "0.26"  # 0.25000…1 of the 40 GiB card


def test_fraction_is_capped_at_095() -> None:
    a = Assignment("a", (0,), device_totals=(80 * GIB,), per_device=79 * GIB)
    assert a.values()["GPU_MEMORY_FRACTION"] == "0.95"


def test_fraction_is_left_out_when_a_total_is_unknown_or_nothing_is_reserved() -> None:
    assert "GPU_MEMORY_FRACTION" not in Assignment("a", (0,), per_device=GIB).values()
    unknown = Assignment("a", (0, 1), device_totals=(80 * GIB, 0), per_device=GIB)
    assert "GPU_MEMORY_FRACTION" not in unknown.values()
    none = Assignment("a", (0,), device_totals=(80 * GIB,)).values()
    assert "GPU_MEMORY_FRACTION" not in none and "GPU_MEMORY_BYTES" not in none


@given(
    per_device=st.integers(min_value=1, max_value=200 * GIB),
    totals=st.lists(st.integers(min_value=GIB, max_value=200 * GIB), min_size=1, max_size=8),
)
def test_fraction_is_the_least_hundredth_not_below_the_share(
    per_device: int, totals: list[int]
) -> None:
    a = Assignment(
        "a", tuple(range(len(totals))), device_totals=tuple(totals), per_device=per_device
    )
    got = Fraction(a.values()["GPU_MEMORY_FRACTION"])
    share = Fraction(per_device, min(totals))
    if share >= Fraction(95, 100):
        assert got == Fraction(95, 100)
    else:
        assert share <= got < share + Fraction(1, 100)


def test_env_exports_cuda_devices_for_nvidia_and_unknown_vendors() -> None:
    assert Assignment("a", (1, 0)).env() == {"CUDA_VISIBLE_DEVICES": "1,0"}
    assert Assignment("a", (3,), vendor="").env() == {"CUDA_VISIBLE_DEVICES": "3"}


def test_env_exports_hip_devices_for_amd() -> None:
    assert Assignment("a", (0, 1), vendor="amd").env() == {"HIP_VISIBLE_DEVICES": "0,1"}


def test_a_cpu_assignment_hides_no_gpu() -> None:
    a = Assignment("a", ())
    assert a.env() == {}
    assert a.values() == {"GPU": "", "GPUS": "", "GPU_COUNT": "0"}


def test_expand_replaces_known_macros_and_leaves_the_others() -> None:
    values = Assignment("n", (4, 5)).values()
    text = "--device cuda:${GPU} --tp ${GPU_COUNT} ${GPUS} ${GPU_MEMORY_FRACTION} ${HOME}"
    assert expand(text, values) == "--device cuda:4 --tp 2 4,5 ${GPU_MEMORY_FRACTION} ${HOME}"


def test_expand_is_one_pass() -> None:
    assert expand("${A}", {"A": "${B}", "B": "x"}) == "${B}"
