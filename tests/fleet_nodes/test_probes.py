"""GPU activity and disk parsers of swapd nodes (recorded outputs; the daemons' side is in
tests/docker/test_fleet.py)."""

from __future__ import annotations

import pytest

from swapd.fleet.nodes import parse_df
from swapd.hardware import Activity, ProbeError, parse_activity, probe_activity

# `nvidia-smi --query-gpu=index,utilization.gpu,temperature.gpu --format=csv,noheader,nounits`
ACTIVITY = "0, 97, 71\n1, 0, 34\n2, [N/A], [N/A]\n"
DF = (
    "Filesystem     1024-blocks      Used Available Capacity Mounted on\n"
    "/dev/nvme0n1p2   960380648 501234567 410283452      55% /\n"
)


def test_activity_parses_utilisation_and_temperature_per_index() -> None:
    assert parse_activity(ACTIVITY) == {
        0: Activity(97.0, 71.0),
        1: Activity(0.0, 34.0),
        2: Activity(None, None),
    }
    with pytest.raises(ProbeError, match="line 1"):
        parse_activity("GPU 0: H100\n")


def test_activity_probe_asks_nvidia_smi_when_nvml_is_not_used() -> None:
    calls: list[list[str]] = []

    def run(argv: list[str]) -> str:
        calls.append(argv)
        return ACTIVITY

    assert probe_activity(run, nvml=False)[0] == Activity(97.0, 71.0)
    assert calls == [
        [
            "nvidia-smi",
            "--query-gpu=index,utilization.gpu,temperature.gpu",
            "--format=csv,noheader,nounits",
        ]
    ]


def test_df_gives_total_and_free_bytes() -> None:
    assert parse_df(DF) == (960380648 * 1024, 410283452 * 1024)
    with pytest.raises(ProbeError):
        parse_df("df: /nope: No such file or directory\n")
