"""The engine's guardian: ``python -I -S guardian.py PARENT GRACE COMMAND...``.

``child.spawn(..., die_with_parent=True)`` runs the engine under this small program (stdlib
only, run by path without site-packages: it starts in milliseconds), so that no process of the
engine's group outlives the process that spawned it (a Ray actor). It leads the group
(``spawn`` starts it in a new session), forks the engine into it and waits for it; the pid
swapd shows is the guardian's.

- A stop (``child.stop``) signals the group: the engine and its children get the signal
  directly; the guardian waits for the engine and exits as it did, and ``stop``'s final SIGKILL
  to the group ends anything left. A SIGTERM sent to the guardian alone (``kill`` of the pid
  swapd shows) is passed on to the group.
- The engine exits on its own: the rest of its group gets SIGTERM and the guardian exits as
  the engine did (its status, or the same signal).
- The spawner dies: the guardian dies too (``PR_SET_PDEATHSIG``; Ray also SIGKILLs a dead
  worker's children), which its watchdog, a second child in the group with no output, notices
  (``PR_SET_PDEATHSIG`` again): it ends the group — SIGTERM, up to ``GRACE`` seconds for the
  engine to exit, SIGKILL, itself included. So it does whenever the guardian goes, sweeping
  whatever the engine left.

A command that cannot be run exits with status 127 and says why on stderr.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
POLL = 0.02  # seconds between checks for the engine's exit while ending the group
WAITED = {signal.SIGTERM, signal.SIGCHLD}  # blocked, and taken with sigwaitinfo


def die_with_parent(sig: int) -> None:
    """``sig`` comes to this process when the one that started it exits (Linux)."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, sig)


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def end_group(engine: int, grace: float) -> None:
    """SIGTERM to the group, up to ``grace`` seconds for ``engine`` to exit, SIGKILL to the
    group (the caller included: this does not return)."""
    os.killpg(0, signal.SIGTERM)  # blocked in the caller
    deadline = time.monotonic() + grace
    while _running(engine) and time.monotonic() < deadline:
        time.sleep(POLL)
    os.killpg(0, signal.SIGKILL)


def _exec(command: list[str], guardian: int) -> None:
    """In the first forked child: become the engine (never returns)."""
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, WAITED)
        if os.getppid() != guardian:
            os._exit(1)
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"cannot run {command[0]}: {exc}", file=sys.stderr, flush=True)
    os._exit(127)


def _watchdog(guardian: int, engine: int, grace: float) -> None:
    """In the second forked child: once the guardian is gone, end the group (never returns)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # holds no end of the engine's output pipe
        os.dup2(devnull, fd)
    die_with_parent(signal.SIGTERM)
    while os.getppid() == guardian:
        signal.sigwaitinfo({signal.SIGTERM})  # a stop's, to the group: not for the watchdog
    end_group(engine, grace)


def _watch(parent: int, engine: int) -> int:
    """Until the engine exits: its wait status. SIGTERM from the parent (a stop: the group has
    it) changes nothing; from elsewhere (``kill`` of the guardian's pid) it goes to the group."""
    guardian = os.getpid()
    while True:
        info = signal.sigwaitinfo(WAITED)
        if info.si_signo == signal.SIGCHLD:
            pid, status = os.waitpid(engine, os.WNOHANG)
            if pid:
                return status
        elif info.si_pid not in (parent, guardian):
            os.killpg(0, signal.SIGTERM)


def main(argv: list[str]) -> int:
    parent, grace, command = int(argv[1]), float(argv[2]), argv[3:]
    signal.pthread_sigmask(signal.SIG_BLOCK, WAITED)
    die_with_parent(signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above
        return 1
    guardian = os.getpid()
    engine = os.fork()
    if engine == 0:
        _exec(command, guardian)
    if os.fork() == 0:
        _watchdog(guardian, engine, grace)
    status = _watch(parent, engine)
    os.killpg(0, signal.SIGTERM)  # whatever the engine left in its group
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # drops the guardian's own, pending
    signal.pthread_sigmask(signal.SIG_UNBLOCK, WAITED)
    if os.WIFSIGNALED(status):  # exit as the engine did
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(guardian, sig)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
