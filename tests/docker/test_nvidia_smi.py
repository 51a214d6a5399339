"""The nvidia-smi CSV parser (no daemon needed), on the outputs under tests/data/nvidia-smi."""

from __future__ import annotations

from pathlib import Path

import pytest

from swapd.config.model import NodeConfig
from swapd.nodes import MIB, Placements, parse_nvidia_smi

DATA = Path(__file__).resolve().parents[1] / "data" / "nvidia-smi"


def test_h100_with_header_and_units() -> None:
    readings = parse_nvidia_smi((DATA / "h100x2.csv").read_text())
    assert [(r.index, r.total, r.used) for r in readings] == [
        (0, 81559 * MIB, 0),
        (1, 81559 * MIB, 40123 * MIB),
    ]


def test_noheader_nounits() -> None:
    [r] = parse_nvidia_smi((DATA / "rtx4090-noheader-nounits.csv").read_text())
    assert (r.index, r.total, r.used) == (0, 24564 * MIB, 1024 * MIB)


def test_unified_memory_is_unknown() -> None:
    [r] = parse_nvidia_smi((DATA / "gb10-unified.csv").read_text())
    assert (r.index, r.total, r.used) == (0, None, None)


def test_driver_missing_is_an_error() -> None:
    with pytest.raises(ValueError, match="line 1"):
        parse_nvidia_smi((DATA / "driver-missing.txt").read_text())


def test_placement_counts_sleeping_memory_as_free() -> None:
    from swapd.config.model import GpuConfig

    gib = 1024 * MIB
    a = NodeConfig("a", "unix:///x", (GpuConfig(0, 10 * gib),))
    b = NodeConfig("b", "unix:///y", (GpuConfig(0, 24 * gib),))
    p = Placements()
    owner1, owner2 = object(), object()
    assert p.choose("m1", 8 * gib, [a, b]) is a
    p.place(owner1, "m1", "a", 8 * gib)
    assert p.choose("m2", 8 * gib, [a, b]) is b
    p.set_asleep(owner1, True)
    assert p.choose("m2", 8 * gib, [a, b]) is a
    p.place(owner2, "m2", "a", 8 * gib)
    with pytest.raises(LookupError, match=r"no node has 30\.0GiB"):
        p.choose("big", 30 * gib, [a, b])
    p.release(owner1)
    p.release(owner2)
    assert p.snapshot() == []
