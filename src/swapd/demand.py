"""What a model needs: learned (measured after it was ready), declared (``resources``) or
estimated (a llama-server command's GGUF and flags; a vLLM/SGLang/TRT-LLM memory fraction),
most trusted first. ``swapd check`` prints it; the placer reserves it.

Learned figures are kept per model fingerprint in ``<state dir>/placement/learned.json``, so a
changed command is measured again. An out-of-memory start raises the learned figure
(:func:`after_oom`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from swapd.config.model import ModelConfig

Source = Literal["learned", "declared", "estimated", "unknown"]


@dataclass(frozen=True, slots=True)
class Demand:
    """``count`` devices of one node with ``per_device`` bytes each; ``count == 0``: a CPU
    engine needing ``per_device`` bytes of system RAM. ``fraction`` (vLLM-style
    ``--gpu-memory-utilization``) is resolved against the chosen device's total by
    :meth:`bytes_on`."""

    count: int
    per_device: int
    source: Source
    detail: str = ""  # how it was found, one line for `swapd check` / the UI
    fraction: float | None = None
    all_gpus: bool = False  # `gpus: all`: every device of the node

    def bytes_on(self, device_total: int) -> int:
        """Bytes needed on a device of ``device_total`` bytes."""
        raise NotImplementedError

    def as_dict(self) -> dict[str, object]:
        raise NotImplementedError


class LearnedStore:
    """Peak measured bytes per model fingerprint (and kind), persisted as JSON."""

    def __init__(self, path: Path | None) -> None:  # None: in memory only
        raise NotImplementedError

    def get(self, fingerprint: str) -> Demand | None:
        raise NotImplementedError

    def record(self, fingerprint: str, count: int, per_device: int, *, detail: str = "") -> bool:
        """Remember a measured peak if above the known one; True when it changed."""
        raise NotImplementedError

    def after_oom(self, fingerprint: str, current: Demand, device_total: int | None) -> Demand:
        """An out-of-memory start: the need was too low. Raise it, remember, return it."""
        raise NotImplementedError


def declared(model: ModelConfig) -> Demand | None:
    raise NotImplementedError


def estimated(model: ModelConfig) -> Demand | None:
    """From the command line: llama-server (GGUF metadata + flags), vLLM/SGLang/TRT-LLM
    fractions; None when nothing is known."""
    raise NotImplementedError


def demand_of(model: ModelConfig, learned: LearnedStore | None) -> Demand:
    """Learned, else declared, else estimated, else ``Demand(…, source="unknown")`` (0 bytes,
    the declared/guessed device count)."""
    raise NotImplementedError


def is_oom(lines: Iterable[str]) -> bool:
    """Whether an engine's last output lines show it ran out of (GPU) memory."""
    raise NotImplementedError


def describe(demands: Mapping[str, Demand]) -> list[str]:
    """One line per model for ``swapd check``: need, devices, source and detail."""
    raise NotImplementedError
