"""Images per CUDA line, chosen by the node's NVIDIA driver version.

A recipe's ``image`` may be one image or a mapping from a CUDA line to an image, e.g.
``{cu129: lmsysorg/sglang:v0.5.15-cu129, cu130: lmsysorg/sglang:v0.5.15-cu130}``. A CUDA
toolkit needs a minimum driver (NVIDIA's "CUDA Toolkit and Corresponding Driver Versions" table,
Linux x86_64, GA releases): :data:`MIN_DRIVER`. The newest line the node's driver supports wins;
when the driver is unknown (no ``nvidia-smi``, a ``tcp://`` node) or older than every line, the
oldest line, which needs the least, is used and a line is logged.

``driver_version`` asks ``nvidia-smi --query-gpu=driver_version`` locally, or over ``ssh`` for
an ``ssh://`` node, once per node.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
from collections.abc import Mapping

from swapd.config.model import NodeConfig
from swapd.hardware import parse_driver_version
from swapd.nodes import command_prefix, endpoint_of

log = logging.getLogger("swapd.recipes")

# CUDA line -> the oldest Linux driver its GA toolkit supports
MIN_DRIVER: dict[str, str] = {
    "cu126": "560.28.03",
    "cu128": "570.26",
    "cu129": "575.51.03",
    "cu130": "580.65.06",
}
LINE = re.compile(r"cu(\d{2})(\d)\Z")  # cu129 = CUDA 12.9
_VERSION = re.compile(r"\d+(\.\d+)*\Z")


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def line_problem(line: str) -> str | None:
    """What is wrong with a CUDA line name (``cu129``), or None."""
    if LINE.fullmatch(line) is None:
        return f"{line!r} is not a CUDA line like cu129"
    if line not in MIN_DRIVER:
        return f"unknown CUDA line {line!r} (known: {', '.join(MIN_DRIVER)})"
    return None


def oldest(images: Mapping[str, str]) -> str:
    """The line that needs the oldest driver."""
    return min(images, key=lambda line: _key(MIN_DRIVER[line]))


def choose(images: Mapping[str, str], driver: str | None) -> tuple[str, str]:
    """(line, image) for a node whose NVIDIA driver is ``driver`` (None: unknown)."""
    fallback = oldest(images)
    if driver is None or _VERSION.fullmatch(driver) is None:
        return fallback, images[fallback]
    fits = [line for line in images if _key(MIN_DRIVER[line]) <= _key(driver)]
    if not fits:
        return fallback, images[fallback]
    best = max(fits, key=lambda line: _key(MIN_DRIVER[line]))
    return best, images[best]


def why(images: Mapping[str, str], driver: str | None, line: str) -> str:
    """One line saying why ``line`` was chosen (for the log and ``swapd recipes render``)."""
    need = MIN_DRIVER[line]
    if driver is None:
        return f"NVIDIA driver unknown: the oldest CUDA line {line} (needs driver >= {need})"
    if _key(need) > _key(driver):
        return (
            f"NVIDIA driver {driver} is older than every CUDA line here: {line} "
            f"(needs >= {need}; it may not start)"
        )
    return f"NVIDIA driver {driver}: CUDA line {line} (needs >= {need})"


_versions: dict[str, str | None] = {}
_lock = threading.Lock()


def driver_version(node: NodeConfig, *, timeout: float = 10.0) -> str | None:
    """The NVIDIA driver version of ``node`` (blocking; remembered per node), None if unknown."""
    key = f"{node.name}@{endpoint_of(node)}"
    with _lock:
        if key in _versions:
            return _versions[key]
    prefix = command_prefix(node)  # ssh for an ssh:// node, nothing here, None: no way
    version = None
    if prefix is not None and (prefix or shutil.which("nvidia-smi")):
        argv = [*prefix, "nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True)
            version = parse_driver_version(out.stdout)
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("node %s: cannot read the NVIDIA driver version: %s", node.name, exc)
    with _lock:
        _versions[key] = version
    return version
