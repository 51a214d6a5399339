"""A child process that inherits nothing from swapd but stdin, stdout and stderr.

Engines are not spawned through the event loop's subprocess support: uvloop (libuv) leaves
duplicates of the redirected descriptors open in the child and passes every descriptor that is
not close-on-exec — swapd's listening socket among them, once — so an engine that outlives a
killed swapd keeps its port. ``subprocess.Popen`` with ``close_fds`` closes everything above 2
in the child before ``exec``. The merged output is read from a non-blocking pipe and the exit
is awaited on a pidfd (Linux ≥ 5.3), or in a worker thread where there is none.

:func:`stop` is how every driver that runs a child ends it (the process driver here, the Ray
driver's actor on its node): ``cmdStop`` or SIGTERM to the group, ``unloadTimeout`` to exit,
SIGKILL to the group, reap. ``spawn(..., die_with_parent=True)`` also ties the child's whole
process group to the process that spawned it (``swapd.drivers.guardian``): a Ray actor killed by
Ray takes its engine along, and every process the engine started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path

import anyio

READ_SIZE = 65536
KILL_WAIT = 5.0  # seconds a SIGKILLed engine gets to exit before swapd stops waiting for it
# Leads the child's process group and ends it when the spawning process dies (a program run by
# path, not a preexec_fn: those are unsafe in a threaded parent, and a Ray worker is one).
GUARDIAN = str(Path(__file__).with_name("guardian.py"))
ORPHAN_GRACE = 5.0  # seconds an engine whose spawner died gets between SIGTERM and SIGKILL

_stragglers: set[subprocess.Popen[bytes]] = set()  # given up on (see Child.abandon)


class Child:
    """A spawned process: its pid, exit status and (when captured) merged stdout/stderr."""

    def __init__(self, popen: subprocess.Popen[bytes], output: int | None) -> None:
        self._popen = popen
        self._output = output
        self._pidfd: int | None = None
        with contextlib.suppress(AttributeError, OSError):  # no pidfds: wait in a thread
            self._pidfd = os.pidfd_open(popen.pid)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has exited (and is then reaped), else None."""
        return self._popen.poll()

    async def wait(self) -> int:
        """Wait for the process to exit and reap it; its exit status."""
        while (code := self._popen.poll()) is None:
            if self._pidfd is not None:
                await anyio.wait_readable(self._pidfd)
            else:
                await anyio.to_thread.run_sync(self._popen.wait, abandon_on_cancel=True)
        return code

    async def read(self) -> bytes:
        """The next chunk of output; ``b""`` at its end (every holder of the pipe closed it)."""
        if self._output is None:
            return b""
        while True:
            try:
                chunk = os.read(self._output, READ_SIZE)
            except BlockingIOError:
                await anyio.wait_readable(self._output)
                continue
            # An engine that never pauses its output must not starve the event loop: without
            # this, reading a full pipe never yields (and a log stream's client never gets
            # the lines it is sent).
            await anyio.lowlevel.checkpoint()
            return chunk

    async def chunks(self) -> AsyncIterator[bytes]:
        while chunk := await self.read():
            yield chunk

    def close(self) -> None:
        """Close the output pipe and the pidfd (not while a task waits on them)."""
        for fd in (self._output, self._pidfd):
            if fd is not None:
                os.close(fd)
        self._output = self._pidfd = None

    def abandon(self) -> None:
        """Stop waiting for a process that does not exit (uninterruptible sleep): close what
        swapd holds of it; it is reaped by a later spawn once it finally exits."""
        self.close()
        if self._popen.poll() is None:
            _stragglers.add(self._popen)


def reap_stragglers() -> int:
    """Reap abandoned processes that have exited since (every spawn does this too); returns
    how many are still running."""
    for popen in list(_stragglers):
        if popen.poll() is not None:
            _stragglers.discard(popen)
    return len(_stragglers)


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    capture: bool = True,
    die_with_parent: bool = False,
) -> Child:
    """Start ``argv`` in a new session with stdin from /dev/null and, with ``capture``, stdout
    and stderr into one pipe (else to /dev/null). ``die_with_parent``: the command runs under
    ``swapd.drivers.guardian``, which ends its whole process group (SIGTERM,
    ``ORPHAN_GRACE``, SIGKILL) when this process dies; the child's pid is then the guardian's.
    Raises ``OSError`` if it cannot be started."""
    reap_stragglers()
    if die_with_parent:
        guard = [sys.executable, "-I", "-S", GUARDIAN, str(os.getpid()), str(ORPHAN_GRACE)]
        argv = [*guard, *argv]
    read_end: int | None = None
    write_end: int | None = None
    if capture:
        read_end, write_end = os.pipe()  # both close-on-exec; Popen dup2()s the child's copy
        os.set_blocking(read_end, False)
    try:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=write_end if capture else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env=dict(env),
            close_fds=True,
            start_new_session=True,
        )
    except BaseException:
        if read_end is not None:
            os.close(read_end)
        raise
    finally:
        if write_end is not None:
            os.close(write_end)
    return Child(popen, read_end)


def kill_group(pid: int, sig: int) -> None:
    """Signal the process group led by ``pid``; one that is already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def stop(
    proc: Child,
    *,
    grace: float,
    log: Callable[[str], None],
    label: str,
    stop_argv: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> bool:
    """Graceful stop of the whole process group, then SIGKILL; reaps the child.

    The graceful step is ``stop_argv`` (``cmdStop``, run with ``env``, itself bounded by
    ``grace``) or SIGTERM to the group; the child then gets ``grace`` seconds to exit. A process
    in uninterruptible sleep (a hung driver, a dead NFS mount) ignores even SIGKILL: after
    ``KILL_WAIT`` seconds that is logged (``label`` names it) and the stop gives up on it, so an
    unload or a shutdown never hangs. Returns whether the process is gone.
    """
    if proc.returncode is None:
        await _graceful(proc, grace, log, stop_argv, env)
        with anyio.move_on_after(grace):
            await proc.wait()
    kill_group(proc.pid, signal.SIGKILL)  # grandchildren too, even if the leader is gone
    if proc.returncode is None:
        with anyio.move_on_after(KILL_WAIT):
            await proc.wait()
    if proc.returncode is None:
        log(
            f"[swapd] {label} (pid {proc.pid}) did not exit after SIGKILL "
            f"({KILL_WAIT:g}s); giving up"
        )
        proc.abandon()
        return False
    proc.close()
    return True


async def _graceful(
    proc: Child,
    grace: float,
    log: Callable[[str], None],
    stop_argv: Sequence[str],
    env: Mapping[str, str] | None,
) -> None:
    if stop_argv:
        argv = [a.replace("${PID}", str(proc.pid)) for a in stop_argv]
        try:
            stopper = spawn(argv, env if env is not None else os.environ, capture=False)
        except OSError as exc:
            log(f"[swapd] cmdStop failed ({exc}); sending SIGTERM")
        else:
            # A hung cmdStop must not block the stop: bounded by the same grace period.
            with anyio.move_on_after(grace):
                await stopper.wait()
            if stopper.returncode is None:
                kill_group(stopper.pid, signal.SIGKILL)
                with anyio.move_on_after(KILL_WAIT):
                    await stopper.wait()
            if stopper.returncode is None:
                stopper.abandon()
            else:
                stopper.close()
            return
    kill_group(proc.pid, signal.SIGTERM)
