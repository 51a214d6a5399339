"""Pid files for engines, so a swapd that was SIGKILLed leaves nothing behind for long.

Each spawned engine gets a small JSON record (its pid, the kernel's start time of that pid, and
the pid of the swapd that owns it) in ``$SWAPD_STATE_DIR/engines`` (default
``~/.local/state/swapd/engines``). The record is removed once the engine is reaped. At startup
swapd kills the process groups of records whose owner is gone — checking the start time so a
recycled pid is never signalled — and removes those records; it does so before it binds its
listening socket, so the ports those engines held are free again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

ENV = "SWAPD_STATE_DIR"


def state_dir() -> Path:
    base = os.environ.get(ENV) or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "swapd"
    )
    return Path(base) / "engines"


def _start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19])


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except OSError:
        pass
    return True


def record(model: str, pid: int) -> Path | None:
    """Write the record for a just-spawned engine; None when the state dir is not writable."""
    directory = state_dir()
    path = directory / f"{pid}.json"
    data = {"model": model, "pid": pid, "ticks": _start_ticks(pid), "owner": os.getpid()}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
    except OSError:
        return None
    return path


def forget(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


def reap_orphans(grace: float = 2.0) -> list[str]:
    """Stop engines left by swapd processes that no longer exist; returns what was stopped."""
    directory = state_dir()
    if not directory.is_dir():
        return []
    victims: list[tuple[int, str]] = []
    for path in directory.glob("*.json"):
        try:
            data = json.loads(path.read_text())
            pid, owner, ticks, model = (
                int(data["pid"]),
                int(data["owner"]),
                data["ticks"],
                data["model"],
            )
        except (OSError, ValueError, KeyError, TypeError):
            forget(path)
            continue
        if owner != os.getpid() and alive(owner) and owner != pid:
            continue  # another swapd is running and owns it
        if _start_ticks(pid) == ticks and ticks is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
                victims.append((pid, f"{model} (pid {pid})"))
        forget(path)
    deadline = time.monotonic() + grace
    while victims and time.monotonic() < deadline and any(alive(p) for p, _ in victims):
        time.sleep(0.05)
    for pid, _ in victims:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    # Gone for real before the caller binds ports they held (bounded: a process in
    # uninterruptible sleep may take its time; the caller then reports the port in use).
    deadline = time.monotonic() + grace
    while victims and time.monotonic() < deadline and any(alive(p) for p, _ in victims):
        time.sleep(0.01)
    return [name for _, name in victims]
