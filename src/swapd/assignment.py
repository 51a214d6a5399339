"""Where placement put a model, as its driver receives it, and the start-time macros.

A driver with an optional ``assign(assignment)`` method gets the model's :class:`Assignment`
before ``serve``; it exports ``CUDA_VISIBLE_DEVICES`` (NVIDIA) or ``HIP_VISIBLE_DEVICES`` (AMD)
and substitutes :data:`swapd.config.macros.LATE` tokens (``${GPU}``, ``${GPUS}``, …) in its
command, environment and container spec with :func:`expand`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from swapd.config.model import Resources

MIB = 1024 * 1024
MAX_FRACTION = 95  # hundredths: an engine never gets more than 0.95 of a device
_TOKEN = re.compile(r"\$\{([A-Za-z0-9_-]+)\}")


@dataclass(frozen=True, slots=True)
class Assignment:
    node: str
    devices: tuple[int, ...]  # device indices on that node; () = CPU / system RAM
    vendor: str = "nvidia"  # nvidia | amd | "" (unknown)
    device_totals: tuple[int, ...] = ()  # bytes per device, in the order of ``devices``
    per_device: int = 0  # bytes reserved on each device
    label: str = ""  # the node's readable name where ``node`` is an id (a Ray node)

    def values(self) -> dict[str, str]:
        """The late macros: GPU (first index), GPUS (comma list), GPU_COUNT,
        GPU_MEMORY_BYTES / GPU_MEMORY_MIB (per device), GPU_MEMORY_FRACTION (per device over
        the smallest device total, rounded up to 0.01, capped at 0.95).

        A CPU assignment has an empty GPU and GPUS and a count of 0. The memory figures are
        left out (their ``${…}`` stays as written) when nothing is reserved, the fraction also
        when a device's total is unknown."""
        out = {
            "GPU": str(self.devices[0]) if self.devices else "",
            "GPUS": ",".join(str(d) for d in self.devices),
            "GPU_COUNT": str(len(self.devices)),
        }
        if self.per_device > 0:
            out["GPU_MEMORY_BYTES"] = str(self.per_device)
            out["GPU_MEMORY_MIB"] = str(self.per_device // MIB)
            totals = self.device_totals
            if totals and min(totals) > 0:
                hundredths = -(-self.per_device * 100 // min(totals))  # rounded up
                out["GPU_MEMORY_FRACTION"] = f"{min(hundredths, MAX_FRACTION) / 100:.2f}"
        return out

    def env(self) -> dict[str, str]:
        """``CUDA_VISIBLE_DEVICES`` / ``HIP_VISIBLE_DEVICES`` for a GPU assignment, else {}.

        A CPU engine (no devices) gets nothing: hiding the GPUs is not swapd's call there."""
        if not self.devices:
            return {}
        name = "HIP_VISIBLE_DEVICES" if self.vendor == "amd" else "CUDA_VISIBLE_DEVICES"
        return {name: ",".join(str(d) for d in self.devices)}


def unplaced(resources: Resources, totals: Mapping[int, int] | None = None) -> Assignment:
    """What the macros say when placement is inactive: the declared ``resources.devices``
    (else device 0) with the declared memory split over them; ``totals`` (bytes by device
    index, where known) give the fraction."""
    devices = resources.devices or (0,)
    count = resources.gpus or len(devices)
    known = totals or {}
    sizes = tuple(known[d] for d in devices) if all(d in known for d in devices) else ()
    return Assignment("", devices, device_totals=sizes, per_device=resources.memory // count)


def expand(text: str, values: Mapping[str, str]) -> str:
    """Replace each ``${NAME}`` of ``values`` in ``text``; others are left alone."""
    if "${" not in text:
        return text
    return _TOKEN.sub(lambda m: values.get(m.group(1), m.group(0)), text)
