"""What a model needs of a node's devices (:class:`Demand`), the value :mod:`swapd.demand`
(learned, declared) and :mod:`swapd.footprint` (estimated from a command line) produce and the
placer reserves."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from swapd.placement import gib

Source = Literal["learned", "declared", "estimated", "unknown"]

MIB = 1024 * 1024
GIB = 1024 * MIB


@dataclass(frozen=True, slots=True)
class Demand:
    """``count`` devices of one node with ``per_device`` bytes each; ``count == 0``: a CPU
    engine needing ``per_device`` bytes of system RAM. ``fraction`` (vLLM-style
    ``--gpu-memory-utilization``) is resolved against the chosen device's total by
    :meth:`bytes_on`. With ``all_gpus`` (``gpus: all``), ``per_device`` is the total over every
    device of the node: the placer divides it by their number."""

    count: int
    per_device: int
    source: Source
    detail: str = ""  # how it was found, one line for `swapd check` / the UI
    fraction: float | None = None
    all_gpus: bool = False  # `gpus: all`: every device of the node

    def bytes_on(self, device_total: int) -> int:
        """Bytes needed on a device of ``device_total`` bytes."""
        if self.fraction is not None:
            return math.ceil(self.fraction * device_total)
        return self.per_device

    def as_dict(self) -> dict[str, object]:
        return {
            "count": self.count,
            "per_device_bytes": self.per_device,
            "source": self.source,
            "detail": self.detail,
            "fraction": self.fraction,
            "all_gpus": self.all_gpus,
        }


def size(n: int) -> str:
    """``n`` bytes for people: ``4.7GiB``, or ``300MiB`` below a GiB."""
    return gib(n) if n >= GIB else f"{n / MIB:.0f}MiB"
