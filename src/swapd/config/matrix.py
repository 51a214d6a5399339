"""The matrix router's DSL: named sets of models that may run together (stub)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from typing import Any

from swapd.config.model import MatrixConfig
from swapd.config.tree import Path


def build_matrix(
    vars: Mapping[str, str],
    evict_costs: Mapping[str, Any],
    sets: Mapping[str, str],
    model_ids: Set[str],
    aliases: Mapping[str, str],
    error: Callable[[Path, str], None],
    base: Path,
) -> MatrixConfig:
    """Check and expand the matrix block; report problems through ``error(path, message)``."""
    return MatrixConfig()
