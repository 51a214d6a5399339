"""What swapd build is running: ``GET /api/version``.

``version`` is the package's. ``commit`` and ``build_date`` come from an optional generated
module ``swapd._build`` (``COMMIT = "…"``, ``BUILD_DATE = "…"``, written by a release build or a
container image); without it, a source checkout's git ``HEAD`` gives the commit (read from the
files, no subprocess), and anything unknown is ``null``.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import Any

from swapd import __version__


def _git_dir(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        dot = folder / ".git"
        if dot.is_dir():
            return dot
        if dot.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = dot.read_text(errors="replace").strip()
            if text.startswith("gitdir:"):
                return (folder / text[len("gitdir:") :].strip()).resolve()
    return None


def git_commit(start: Path) -> str | None:
    """The commit ``HEAD`` names in the git checkout holding ``start``, if any."""
    try:
        git = _git_dir(start)
        if git is None:
            return None
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head[len("ref:") :].strip()
        common = git
        if (git / "commondir").is_file():  # a linked worktree keeps refs in the main repo
            common = (git / (git / "commondir").read_text().strip()).resolve()
        for base in (git, common):
            if (base / ref).is_file():
                return (base / ref).read_text().strip() or None
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                sha, _, name = line.partition(" ")
                if name.strip() == ref:
                    return sha
    except OSError:
        return None
    return None


@functools.cache
def build_info() -> dict[str, Any]:
    commit: str | None = None
    build_date: str | None = None
    try:
        generated: Any = importlib.import_module("swapd._build")
        commit = getattr(generated, "COMMIT", None) or None
        build_date = getattr(generated, "BUILD_DATE", None) or None
    except ImportError:
        pass
    if commit is None:
        commit = git_commit(Path(__file__).resolve().parent)
    return {"version": __version__, "commit": commit, "build_date": build_date}
