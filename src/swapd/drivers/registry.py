"""Find drivers by name: built-ins and third-party packages register the same way."""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points

from swapd.config.model import Config
from swapd.drivers.base import DriverSpec
from swapd.errors import DriverNotFound

GROUP = "swapd.drivers"
# Fast path that works even when swapd itself is not installed as a distribution.
BUILTIN = {
    "process": "swapd.drivers.process:SPEC",
    "docker": "swapd.drivers.docker:SPEC",
    "ray": "swapd.drivers.ray:SPEC",  # needs the ray extra (imported when a model starts)
}


def _import(ref: str) -> object:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def available() -> list[str]:
    names = set(BUILTIN) | {ep.name for ep in entry_points(group=GROUP)}
    return sorted(names)


@cache
def load(name: str) -> DriverSpec:
    """The driver named ``name``: built-in, entry point, or ``module:attr``."""
    if name in BUILTIN:
        spec = _import(BUILTIN[name])
    elif eps := entry_points(group=GROUP, name=name):
        spec = next(iter(eps)).load()
    elif ":" in name:
        try:
            spec = _import(name)
        except (ImportError, AttributeError) as exc:
            raise DriverNotFound(f"cannot import driver {name!r}: {exc}") from exc
    else:
        raise DriverNotFound(f"unknown driver {name!r}; available: {', '.join(available())}")
    if not isinstance(spec, DriverSpec):
        raise DriverNotFound(f"driver {name!r} does not export a swapd DriverSpec")
    return spec


def _specs(config: Config) -> list[DriverSpec]:
    specs: list[DriverSpec] = []
    for name in sorted({m.driver for m in config.models.values()}):
        try:
            specs.append(load(name))
        except DriverNotFound:
            continue  # reported when the model starts
    return specs


async def reconcile(config: Config) -> list[str]:
    """Run every used driver's startup ``reconcile``; the model ids to start (adopt)."""
    adopt: list[str] = []
    for spec in _specs(config):
        if spec.reconcile is not None:
            adopt.extend(await spec.reconcile(config))
    return adopt


async def cleanup(config: Config) -> None:
    """Run every used driver's ``cleanup`` (after all engines stopped)."""
    for spec in _specs(config):
        if spec.cleanup is not None:
            await spec.cleanup(config)
