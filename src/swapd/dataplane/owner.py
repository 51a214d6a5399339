"""The owner's side of the data-plane workers (``server.workers: N``; docs/dataplane.md).

The owner (``swapd serve``) keeps the scheduler, the drivers, the config, the admin API and UI,
the activity log, metrics, events and captures. It binds the listening socket and does not
accept on it: N worker processes (swapd.dataplane.worker) share it, and the kernel gives each
connection to one of them. Per worker, :class:`Session` answers over the control channel
(swapd.dataplane.channel):

- ``lease`` → a real lease from the scheduler (``Scheduler.lease``), ``grant`` once it is ready
  or ``fail`` with the reason; ``release`` ends it; ``gone`` (the engine refused the
  connection) → ``Lease.renew`` and a new ``grant``;
- ``start``/``end`` → an in-flight entry, then the activity record, metrics, event and capture
  (``Observer.remote_start``/``remote_end``); an operator's cancel goes back as ``abort``;
- ``handoff`` (with a descriptor) → the connection is adopted by the owner's HTTP server;
- ``log`` → the worker's warning in the owner's log.

A worker that exits or dies releases every lease it held and ends its in-flight records (502);
it is started again, after a backoff when it keeps dying. The config (and the active profile)
is sent on each worker's ``hello`` and after every reload or profile change.
"""

from __future__ import annotations

import itertools
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from swapd.config.model import Config
from swapd.dataplane.channel import Channel, Message
from swapd.dataplane.wire import freeze, freeze_upstream, upstream_of
from swapd.errors import SwapdError
from swapd.lease import Lease
from swapd.observe.observer import Observer, Request
from swapd.scheduler import Scheduler
from swapd.upstream import Upstream

log = logging.getLogger("swapd.dataplane")

BACKOFF_FIRST = 0.5  # seconds before restarting a worker that died
BACKOFF_MAX = 30.0
STABLE = 10.0  # a worker that ran this long before dying is restarted at once
REFRESH_WAIT = 0.25  # seconds an in-flight read waits for the workers' counts
STOP_GRACE = 35.0  # seconds a stopping worker gets to drain (uvicorn's graceful 30 s + margin)
SLOW_STOP = 5.0  # a stopping worker still running after this is logged

Adopt = Callable[[int, bytes], Coroutine[Any, Any, None]]


class Session:
    """One running worker: its process, its channel and what it holds in the owner."""

    def __init__(
        self,
        workers: Workers,
        index: int,
        popen: subprocess.Popen[bytes],
        sock: Any,
    ) -> None:
        self.workers = workers
        self.index = index
        self.popen = popen
        self.leases: dict[int, Lease] = {}
        self.granted: dict[int, Upstream] = {}  # what each lease was granted
        self.waiting: dict[int, anyio.CancelScope] = {}
        self.requests: dict[str, Request] = {}  # the worker's request id -> the owner's entry
        self.closed = anyio.Event()
        self.channel = Channel(sock, self._message, self._closed)

    def send(self, message: Message) -> None:
        self.channel.send(message)

    def configure(self) -> None:
        self.send(("config", self.workers.config(), self.workers.profile()))

    # -- messages --------------------------------------------------------------------------
    def _message(self, message: Message, fds: list[int]) -> None:
        kind = message[0]
        workers = self.workers
        if kind == "lease":
            _, lid, model = message
            try:
                lease = workers.scheduler.lease(model)
            except SwapdError as exc:
                self.send(("fail", lid, freeze(exc)))
                return
            self.leases[lid] = lease
            upstream = lease.granted()
            if upstream is not None:  # the model is ready and has room: no task, no wait
                self.granted[lid] = upstream
                self.send(("grant", lid, freeze_upstream(upstream)))
            else:
                workers.tg.start_soon(self._grant, lid, lease, None, name=f"lease-{self.index}")
        elif kind == "release":
            given = self.leases.pop(message[1], None)
            self.granted.pop(message[1], None)
            if (scope := self.waiting.pop(message[1], None)) is not None:
                scope.cancel()
            if given is not None:
                given.release()
        elif kind == "gone":
            _, lid, fields = message
            held = self.leases.get(lid)
            if held is not None:  # the very object granted: the scheduler compares identity
                dead = self.granted.get(lid) or upstream_of(fields)
                workers.tg.start_soon(self._grant, lid, held, dead, name=f"renew-{self.index}")
        elif kind == "start":
            _, rid, model, path, method, scope, began, metadata = message
            if workers.observer is not None:
                cancel = _Abort(self, rid)
                req = workers.observer.remote_start(
                    model, path, method, scope, began, metadata, cancel
                )
                self.requests[rid] = req
        elif kind == "end":
            _, rid, record, size, capture = message
            ended = self.requests.pop(rid, None)
            if ended is not None and workers.observer is not None:
                workers.observer.remote_end(ended, record, size, capture)
        elif kind == "handoff":
            if fds:
                workers.tg.start_soon(workers.adopt, fds.pop(0), message[1], name="adopt")
        elif kind == "head":  # the engine's status and headers: the in-flight entry shows them
            _, rid, status, headers = message
            if (started := self.requests.get(rid)) is not None and started.meter.status is None:
                started.meter.start(status, headers)
        elif kind == "counted":
            _, token, counts = message
            for rid, (status, headers, size, first_byte) in counts.items():
                if (entry := self.requests.get(rid)) is not None:
                    meter = entry.meter
                    if status is not None and meter.status is None:
                        meter.start(status, headers)
                    meter.size = size
                    meter.first_byte = first_byte
            if (asked := workers.asked.get(token)) is not None:
                waiting, answered = asked
                waiting.discard(self.index)
                if not waiting:
                    answered.set()
        elif kind == "hello":
            self.configure()
        elif kind == "log":
            _, level, name, text = message
            logging.getLogger(name).log(level, "worker %d: %s", self.index, text)

    async def _grant(self, lid: int, lease: Lease, dead: Any) -> None:
        with anyio.CancelScope() as scope:
            self.waiting[lid] = scope
            try:
                upstream = await (lease.renew(dead) if dead is not None else lease.ready())
            except SwapdError as exc:
                self.send(("fail", lid, freeze(exc)))
                return
            finally:
                if self.waiting.get(lid) is scope:
                    del self.waiting[lid]
            self.granted[lid] = upstream
            self.send(("grant", lid, freeze_upstream(upstream)))

    def _closed(self) -> None:
        """The worker is gone: what it held is given back."""
        for scope in self.waiting.values():
            scope.cancel()
        self.waiting.clear()
        for lease in self.leases.values():
            lease.release()
        self.leases.clear()
        self.granted.clear()
        observer = self.workers.observer
        for req in self.requests.values():
            if observer is not None:
                observer.remote_end(req, None)
        self.requests.clear()
        self.closed.set()


class _Abort:
    """An in-flight entry's cancel, for a request a worker relays (``Observer.cancel``)."""

    __slots__ = ("rid", "sent", "session")

    def __init__(self, session: Session, rid: str) -> None:
        self.session = session
        self.rid = rid
        self.sent = False

    def cancel(self, msg: Any = None) -> bool:
        if not self.sent:
            self.sent = True
            self.session.send(("abort", self.rid))
        return True

    def done(self) -> bool:
        return self.session.closed.is_set()

    def uncancel(self) -> int:
        return 0


class Workers:
    """``count`` worker processes on ``listener``, kept running until :meth:`stop`."""

    def __init__(
        self,
        count: int,
        listener: Any,
        scheduler: Scheduler,
        observer: Observer | None,
        adopt: Adopt,
        profile: Callable[[], str | None],
    ) -> None:
        self.count = count
        self.listener = listener
        self.scheduler = scheduler
        self.observer = observer
        self.adopt = adopt
        self.profile = profile
        self.sessions: dict[int, Session] = {}
        self.stopping = False
        self._tg: TaskGroup | None = None
        # a refresh's token -> the workers yet to answer, and set once none is
        self.asked: dict[int, tuple[set[int], anyio.Event]] = {}
        self._tokens = itertools.count(1)
        if observer is not None:
            observer.refreshers.append(self.refresh)

    @property
    def tg(self) -> TaskGroup:
        assert self._tg is not None
        return self._tg

    def config(self) -> Config:
        return self.scheduler.config

    def pids(self) -> list[int]:
        return [s.popen.pid for s in self.sessions.values()]

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for index in range(self.count):
                tg.start_soon(self._keep, index, name=f"worker-{index}")
            task_status.started()

    async def refresh(self) -> None:
        """Every worker's in-flight meters, into the owner's entries (``/api/inflight``, the
        event stream's growth ticks); waits at most ``REFRESH_WAIT`` for the answers."""
        live = [s for s in self.sessions.values() if s.requests]
        if not live:
            return
        token = next(self._tokens)
        answered = anyio.Event()
        self.asked[token] = ({s.index for s in live}, answered)
        for session in live:
            session.send(("count", token))
        try:
            with anyio.move_on_after(REFRESH_WAIT):
                await answered.wait()
        finally:
            del self.asked[token]

    def push_config(self) -> None:
        """After a reload or a profile change: every worker routes by the new config."""
        for session in self.sessions.values():
            session.configure()

    async def _keep(self, index: int) -> None:
        backoff = BACKOFF_FIRST
        while not self.stopping:
            began = time.monotonic()
            session = self._spawn(index)
            self.sessions[index] = session
            try:
                await session.closed.wait()
                code = await anyio.to_thread.run_sync(_reap, session.popen)
            finally:
                if self.sessions.get(index) is session:
                    del self.sessions[index]
            if self.stopping:
                return
            log.error(
                "data-plane worker %d (pid %d) exited with %s", index, session.popen.pid, code
            )
            if time.monotonic() - began >= STABLE:
                backoff = BACKOFF_FIRST
            else:
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    def _spawn(self, index: int) -> Session:
        import socket

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        listen = self.listener.fileno()
        argv = [
            sys.executable,
            "-m",
            "swapd.dataplane.worker",
            str(theirs.fileno()),
            str(listen),
            str(index),
        ]
        try:
            popen = subprocess.Popen(
                argv, pass_fds=(theirs.fileno(), listen), stdin=subprocess.DEVNULL
            )
        finally:
            theirs.close()
        return Session(self, index, popen, ours)

    async def stop(self) -> None:
        """Ask every worker to drain and exit (at most ``STOP_GRACE`` s), then kill."""
        self.stopping = True
        sessions = list(self.sessions.values())
        for session in sessions:
            session.send(("stop",))
        with anyio.move_on_after(STOP_GRACE):
            for session in sessions:
                with anyio.move_on_after(SLOW_STOP) as slow:
                    await session.closed.wait()
                if slow.cancel_called:
                    log.warning("data-plane worker %d is still draining", session.index)
                    await session.closed.wait()
        for session in sessions:
            if session.popen.poll() is None:
                session.popen.kill()
            session.channel.close()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()


def _reap(popen: subprocess.Popen[bytes]) -> int | None:
    try:
        return popen.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        popen.kill()
        return popen.wait()
