"""What a model needs: learned (measured after it was ready), declared (``resources``) or
estimated (a llama-server command's GGUF and flags; a vLLM/SGLang/TRT-LLM memory fraction),
most trusted first. ``swapd check`` prints it; the placer reserves it.

Learned figures are kept per model fingerprint in ``<state dir>/placement/learned.json``, so a
changed command is measured again. An out-of-memory start raises the learned figure
(:func:`after_oom`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from swapd.config.model import ModelConfig
from swapd.footprint import estimate
from swapd.need import GIB, Demand, size

log = logging.getLogger("swapd.demand")


class LearnedStore:
    """Peak measured bytes per model fingerprint, persisted as JSON:
    ``{fingerprint: {"count", "per_device", "measured_at", "detail"[, "all_gpus"]}}``.

    A missing or unreadable file starts empty (a corrupt one is logged and replaced at the next
    write); writes go to a temporary file renamed over the old one, so a crash never leaves half
    a file. A failed write is logged: the figures stay in memory."""

    def __init__(self, path: Path | None) -> None:  # None: in memory only
        self.path = path
        self._entries: dict[str, dict[str, Any]] = self._load()

    def _load(self) -> dict[str, dict[str, Any]]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            log.warning("learned memory needs: cannot read %s (%s); starting empty", self.path, exc)
            return {}
        return {
            fp: entry
            for fp, entry in data.items()
            if isinstance(entry, dict)
            and isinstance(entry.get("count"), int)
            and isinstance(entry.get("per_device"), int)
        }

    def _save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self._entries, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("learned memory needs: cannot write %s (%s)", self.path, exc)
            tmp.unlink(missing_ok=True)

    def get(self, fingerprint: str) -> Demand | None:
        entry = self._entries.get(fingerprint)
        if entry is None:
            return None
        detail = str(entry.get("detail") or f"measured {entry.get('measured_at', '')}".strip())
        return Demand(
            entry["count"],
            entry["per_device"],
            "learned",
            detail,
            all_gpus=bool(entry.get("all_gpus", False)),
        )

    def _put(
        self, fingerprint: str, count: int, per_device: int, detail: str, all_gpus: bool
    ) -> None:
        entry: dict[str, Any] = {
            "count": count,
            "per_device": per_device,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "detail": detail,
        }
        if all_gpus:
            entry["all_gpus"] = True
        self._entries[fingerprint] = entry
        self._save()

    def record(self, fingerprint: str, count: int, per_device: int, *, detail: str = "") -> bool:
        """Remember a measured peak if above the known one; True when it changed.

        A different device count replaces the old figure (it was measured on another layout)."""
        old = self._entries.get(fingerprint)
        if old is not None and old["count"] == count and old["per_device"] >= per_device:
            return False
        self._put(fingerprint, count, per_device, detail or "measured peak", False)
        return True

    def after_oom(self, fingerprint: str, current: Demand, device_total: int | None) -> Demand:
        """An out-of-memory start: the need was too low. Raise it, remember, return it.

        The new figure is the larger of 1.5 * the current need and the current need + 1 GiB,
        capped at ``device_total`` when known (a ``gpus: all`` total is not: it spans the
        devices), and never below what was learned before."""
        need = current.bytes_on(device_total) if device_total else current.per_device
        raised = max(math.ceil(need * 1.5), need + GIB)
        if device_total and not current.all_gpus:  # `gpus: all` holds a total over devices
            raised = min(raised, device_total)
        old = self._entries.get(fingerprint)
        if old is not None and old["count"] == current.count:
            raised = max(raised, old["per_device"])
        detail = "raised after an out-of-memory start"
        self._put(fingerprint, current.count, raised, detail, current.all_gpus)
        return Demand(current.count, raised, "learned", detail, all_gpus=current.all_gpus)


def declared(model: ModelConfig) -> Demand | None:
    """``resources.memory`` split evenly over ``resources.gpus`` devices (unsaid: one; 0: system
    RAM; ``all``: every device of the node, divided by the placer); None when no memory is
    declared."""
    res = model.resources
    if res.memory <= 0:
        return None
    if res.all_gpus:
        return Demand(1, res.memory, "declared", f"{size(res.memory)} over all GPUs", all_gpus=True)
    count = 1 if res.gpus is None else res.gpus
    if count == 0:
        return Demand(0, res.memory, "declared", "resources.memory, CPU (gpus: 0)")
    return Demand(count, -(-res.memory // count), "declared", "resources.memory")


def demand_of(model: ModelConfig, learned: LearnedStore | None) -> Demand:
    """Learned, else declared, else estimated, else ``Demand(…, source="unknown")`` (0 bytes,
    the declared/guessed device count). A learned figure always wins: it was measured."""
    if learned is not None and (found := learned.get(model.fingerprint())) is not None:
        return found
    if (found := declared(model)) is not None:
        return found
    found_or_why = estimate(model)
    if isinstance(found_or_why, Demand):
        return found_or_why
    # unknown and undeclared: every GPU of a node to itself, as the engine would see them
    # without placement (and as a one-model-at-a-time swapper runs it)
    res = model.resources
    count = res.gpus if res.gpus is not None else len(res.devices) or 1
    spread = res.all_gpus or (res.gpus is None and not res.devices)
    return Demand(count, 0, "unknown", found_or_why, all_gpus=spread)


# --- out of memory ----------------------------------------------------------------------------

_OOM = re.compile(
    "|".join(
        (
            r"CUDA out of memory",  # PyTorch
            r"torch\.(?:cuda\.)?OutOfMemoryError",
            r"CUDA error: out of memory",
            r"CUDA_ERROR_OUT_OF_MEMORY",
            r"cudaErrorMemoryAllocation",
            r"(?:cuda|hip)Malloc failed: out of memory",  # ggml
            r"ggml_backend_\w+_buffer_type_alloc_buffer: allocating .* failed",
            r"failed to allocate \w+ buffers?\b",  # ggml: "… CUDA0 buffer of size …"
            r"unable to allocate \w+ buffer",  # llama_model_load
            r"No available memory for the cache blocks",  # vLLM
            r"Free memory on device .* is less than desired GPU memory utilization",  # vLLM
            r"HIP out of memory",
            r"hipMalloc failed",
            r"hipErrorOutOfMemory",
            r"RuntimeError: Not enough memory",  # SGLang
            r"Cannot allocate memory",  # ENOMEM: system RAM
            r"std::bad_alloc",
        )
    )
)


def is_oom(lines: Iterable[str]) -> bool:
    """Whether an engine's last output lines show it ran out of (GPU) memory."""
    return any(_OOM.search(line) for line in lines)


# --- describing -------------------------------------------------------------------------------


def _need(d: Demand) -> str:
    devices = f"{d.count} GPU{'s' if d.count != 1 else ''} ×"  # noqa: RUF001
    if d.fraction is not None:
        return f"{devices} {d.fraction:.0%} of its memory"
    need = size(d.per_device) if d.per_device else "unknown"
    if d.all_gpus:
        return f"all GPUs of a node, {need} in total" if d.per_device else "all GPUs of a node"
    return f"RAM {need}" if d.count == 0 else f"{devices} {need}"


def describe(demands: Mapping[str, Demand]) -> list[str]:
    """One line per model for ``swapd check``: need, devices, source and detail."""
    return [
        f"{name}: {_need(d)} ({d.source}{': ' + d.detail if d.detail else ''})"
        for name, d in demands.items()
    ]
