"""Where placement put a model, as its driver receives it, and the start-time macros.

A driver with an optional ``assign(assignment)`` method gets the model's :class:`Assignment`
before ``serve``; it exports ``CUDA_VISIBLE_DEVICES`` (NVIDIA) or ``HIP_VISIBLE_DEVICES`` (AMD)
and substitutes :data:`swapd.config.macros.LATE` tokens (``${GPU}``, ``${GPUS}``, …) in its
command, environment and container spec with :func:`expand`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Assignment:
    node: str
    devices: tuple[int, ...]  # device indices on that node; () = CPU / system RAM
    vendor: str = "nvidia"  # nvidia | amd | "" (unknown)
    device_totals: tuple[int, ...] = ()  # bytes per device, in the order of ``devices``
    per_device: int = 0  # bytes reserved on each device

    def values(self) -> dict[str, str]:
        """The late macros: GPU (first index), GPUS (comma list), GPU_COUNT,
        GPU_MEMORY_BYTES / GPU_MEMORY_MIB (per device), GPU_MEMORY_FRACTION (per device over
        the smallest device total, rounded up to 0.01, capped at 0.95)."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """``CUDA_VISIBLE_DEVICES`` / ``HIP_VISIBLE_DEVICES`` for a GPU assignment, else {}."""
        raise NotImplementedError


def expand(text: str, values: Mapping[str, str]) -> str:
    """Replace each ``${NAME}`` of ``values`` in ``text``; others are left alone."""
    raise NotImplementedError
