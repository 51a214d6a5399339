"""Composition root: config → scheduler → ASGI proxy → uvicorn, and the shutdown order.

Shutdown: stop accepting, let uvicorn drain in-flight HTTP, then stop the engines, then close
the upstream session. Reload (SIGHUP, ``--watch-config`` or the API) keeps running every model
whose effective config did not change; a bad config is rejected and the old one keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import uvicorn
from anyio.abc import TaskGroup
from uvicorn.config import WS_PROTOCOLS
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from swapd import native
from swapd.config import load_config, load_demo
from swapd.config.model import Config
from swapd.dataplane.owner import Workers
from swapd.demand import LearnedStore
from swapd.drivers import pidfile
from swapd.drivers import registry as drivers
from swapd.edge import Edge, ForwardingScreen, fd_budget, raise_fd_limit
from swapd.errors import ConfigError, SwapdError
from swapd.extensions import standard
from swapd.inventory import from_config as inventory_of
from swapd.inventory import reads as inventory_reads
from swapd.lint import exposure, lint
from swapd.observe.activity import ActivityLog
from swapd.observe.logs import DEFAULT_RING_BYTES, LogRing, RingHandler
from swapd.observe.observer import Observer
from swapd.proxy import front
from swapd.proxy.admin import Admin
from swapd.proxy.app import Proxy
from swapd.proxy.forward import UpstreamClient
from swapd.proxy.front import NativeFront
from swapd.proxy.websocket import MAX_MESSAGE_BYTES
from swapd.scheduler import Scheduler
from swapd.views import State

log = logging.getLogger("swapd")
GRACEFUL_SECONDS = 30
WATCH_INTERVAL = 1.0
SHUTDOWN_REPORT_SECONDS = 5.0  # a shutdown taking longer says what it waits for, this often
ENGINES_STOPPING = "engines to stop"  # the last shutdown stage: it names the models, not requests


GC_THRESHOLD = (20_000, 20, 50)  # allocations between young collections, then older ones


def settle_collector() -> None:
    """The start-up heap (modules, config, scheduler) moves to the collector's permanent
    generation, and young collections run less often: each request allocates a few hundred
    containers, and the collector scanning the whole heap cost about a tenth of swapd's CPU
    on small requests (perf, docs/architecture.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: swapd owns the signals and the shutdown order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield

    async def adopt(self, fd: int, data: bytes) -> None:
        """Serve a connection a data-plane worker or the native front handed over: ``data``
        is what was read of it, parsed first, as if it had just arrived."""
        sock = socket.socket(fileno=fd)
        config = self.config
        protocol = config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=self.server_state, app_state=self.lifespan.state
        )
        made = protocol.connection_made

        def connection_made(transport: asyncio.BaseTransport) -> None:
            made(transport)
            if data:  # before anything the transport reads
                protocol.data_received(data)

        protocol.connection_made = connection_made  # type: ignore[method-assign]
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(lambda: protocol, sock)
        except OSError:
            sock.close()  # the client left meanwhile


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        raise SwapdError(f"--listen must be HOST:PORT, got {listen!r}")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SwapdError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(2048)
    return sock  # not inheritable: an engine holding it would keep the port after a crash


class App:
    def __init__(
        self,
        *,
        config_path: Path | None = None,
        config_dir: Path | None = None,
        listen: str = "127.0.0.1:8080",
        watch: bool = False,
        models_dirs: tuple[str, ...] = (),
        workers: int | None = None,
    ) -> None:
        self.config_path = config_path
        self.config_dir = config_dir
        self.models_dirs = models_dirs  # --models-dir: GGUF discovery
        self.listen = listen
        self.watch = watch
        self.swapd_log = LogRing("swapd")
        self._shutdown = anyio.Event()
        self._http_done = anyio.Event()
        self._stage = ""  # what a shutdown waits for now (reported while it takes long)
        self._main: TaskGroup | None = None
        self._reloading = False
        self._reload_again = False
        self.workers: Workers | None = None  # data-plane worker processes (server.workers)
        self.worker_count = workers  # --workers: overrides server.workers
        self.config_errors: list[str] = []  # the last rejected reload's errors
        self.front: native.Front | None = None  # the native front (swapd.proxy.front)

    def load(self, previous: Config | None = None) -> Config:
        """The config from disk; on a reload ``previous`` (the running config) lets every model
        keep its ``${PORT}``, so adding a model restarts no other."""
        if self.config_path is None and self.config_dir is None and not self.models_dirs:
            return load_demo()
        return load_config(
            self.config_path,
            self.config_dir,
            models_dirs=self.models_dirs,
            previous=previous,
            extensions=standard(),
        )

    def _setup_logging(self, config: Config) -> None:
        root = logging.getLogger("swapd")
        echo = config.log_to_stdout in ("proxy", "both")
        LogRing.time_format = config.log_time_format  # every ring's text views (observe.logs)
        root.handlers[:] = [RingHandler(self.swapd_log, echo, asyncio.get_running_loop())]
        root.setLevel(config.log_level.upper() if config.log_level != "warn" else "WARNING")
        root.propagate = False

    async def run(self) -> None:
        config = self.load()  # ConfigError propagates: the CLI prints it and exits 2
        self._setup_logging(config)
        for issue in config.warnings:
            log.warning("config: %s", issue)
        host, port = parse_listen(self.listen)
        if (exposed := exposure(host, config)) is not None:  # swapd.lint: also on stderr
            log.warning("%s", exposed)
            print(f"swapd: warning: {exposed}", file=sys.stderr, flush=True)
        for warning in lint(config):
            log.warning("check: %s", warning)
        # Engines an earlier, killed swapd left go first: they may hold its port or their own.
        for leftover in await anyio.to_thread.run_sync(pidfile.reap_orphans):
            log.warning("stopped engine left behind by an earlier swapd: %s", leftover)
        fds_before, fd_limit = raise_fd_limit()
        sock = bind(host, port)
        self.scheduler = Scheduler(
            config,
            echo_logs=config.log_to_stdout in ("upstream", "both"),
            ring_bytes=config.log_ring_bytes or DEFAULT_RING_BYTES,
            inventory=inventory_of(config),  # memory-aware placement (swapd.placer)
            learned=LearnedStore(pidfile.state_dir().parent / "placement" / "learned.json"),
        )
        store = Path(config.store_path) if config.store_path else None
        activity = ActivityLog(config.metrics_max_in_memory, store)
        upstreams = UpstreamClient()
        scheduler = self.scheduler
        observer = Observer(scheduler, self.swapd_log, activity, config=lambda: scheduler.config)
        admin = Admin(
            self.scheduler,
            observer,
            self.swapd_log,
            reload=self.reload,
            config_errors=lambda: list(self.config_errors),
            active_profile=lambda: self.proxy.profile.name(self.scheduler.config),
        )
        self.proxy = Proxy(
            self.scheduler,
            upstreams,
            self.swapd_log,
            reload=self.reload,
            observer=observer,
            admin=admin,
            listen_host=host,  # the Host names it implies (swapd.proxy.guard)
        )
        edge = Edge(lambda: scheduler.config.server, fd_limit)
        cap = edge.cap(config.server)
        log.debug("fd limit %d (was %d); at most %d connections", fd_limit, fds_before, cap)
        if config.server.max_connections > cap:
            log.warning(
                "server.maxConnections %d is more than the fd limit %d allows (%d); using %d",
                *(config.server.max_connections, fd_limit, fd_budget(fd_limit), cap),
            )
        httptools = _has("httptools")
        server = _Server(
            uvicorn.Config(
                self.proxy if httptools else ForwardingScreen(self.proxy, edge),
                lifespan="off",
                log_level="warning",
                access_log=False,
                proxy_headers=False,  # swapd.edge decides whose X-Forwarded-For to believe
                # the limits of server: (swapd.edge); h11 itself bounds the header block
                http=edge.protocol() if httptools else "h11",
                h11_max_incomplete_event_size=config.server.max_header_bytes,
                timeout_keep_alive=math.ceil(config.server.keepalive_timeout),
                server_header=False,  # a relayed response keeps the engine's own server/date;
                date_header=False,  # the proxy stamps date on swapd's own responses
                timeout_graceful_shutdown=GRACEFUL_SECONDS,
                loop="none",
                # Upgrades reach the proxy as `websocket` scopes (swapd.proxy.websocket), with
                # the websocket.http.response extension for refusals; uvicorn's sans-I/O
                # websockets protocol (its legacy one uses a deprecated websockets API).
                ws="websockets-sansio" if "websockets-sansio" in WS_PROTOCOLS else "auto",
                ws_max_size=MAX_MESSAGE_BYTES,
            )
        )
        count = self.worker_count if self.worker_count is not None else config.server.workers
        if count and not sys.platform.startswith("linux"):  # SCM_RIGHTS and PR_SET_PDEATHSIG
            log.warning("server.workers needs Linux; serving from this one process")
            count = 0
        self.workers = (
            Workers(
                count,
                sock,
                scheduler,
                observer,
                server.adopt,
                lambda: self.proxy.profile.name(scheduler.config),
            )
            if count
            else None
        )
        # Records are booked off the next request's path; with workers they are made there.
        observer.staging = self.workers is None
        try:
            async with anyio.create_task_group() as tg:
                self._main = tg
                await tg.start(self.scheduler.run, name="scheduler")
                if self.workers is not None:
                    self.proxy.routes_changed = self.workers.push_config
                    await tg.start(self.workers.run, name="dataplane")
                fronted = self.workers is None and front.enabled()
                tg.start_soon(self._serve_http, server, None if fronted else sock, name="http")
                if fronted:
                    self.front = await self._start_front(server, sock, observer, edge)
                tg.start_soon(self._signals, name="signals")
                if self.watch:
                    tg.start_soon(self._watch, name="watch-config")
                shown = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, host)
                shown = f"[{shown}]" if ":" in shown and not shown.startswith("[") else shown
                front_note = "; native front" if self.front is not None else ""
                log.info(
                    "swapd listening on http://%s:%d (%d models%s)",
                    *(shown, port, len(config.models), front_note),
                )
                settle_collector()
                adopt = await drivers.reconcile(config)  # containers an earlier swapd left
                preload = (*adopt, *(m for m in config.preload if m not in adopt))
                tg.start_soon(self._preload, preload, name="preload")
                await self._shutdown.wait()
                log.info("shutting down: draining requests, then stopping engines")
                self.proxy.accepting = False
                if self.front is not None:
                    edge.front = None
                    self.front.stop()  # accepts no more; new requests on its connections: 503
                self.scheduler.close()  # queued requests get 503 now, pending starts stop
                server.should_exit = True
                tg.start_soon(self._report_shutdown, name="shutdown-report")
                with anyio.CancelScope(shield=True):
                    if self.workers is not None:
                        self._stage = "the data-plane workers to drain their requests"
                        await self.workers.stop()
                    self._stage = "requests in flight to finish"
                    await self._http_done.wait()  # uvicorn drained in-flight requests
                    await self._front_drained()
                    self._stage = ENGINES_STOPPING
                    await self.scheduler.shutdown()
                    await drivers.cleanup(self.scheduler.config)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await upstreams.close()
                self.proxy.links.close()
            self._close_front()
            sock.close()
            observer.settle()
            activity.close()

    async def _start_front(
        self, server: _Server, sock: socket.socket, observer: Observer, edge: Edge
    ) -> native.Front | None:
        """The native front (swapd.proxy.front), once uvicorn can take the connections it
        hands over: it accepts on ``sock`` (uvicorn on nothing). None: no library."""
        while not server.started and not self._shutdown.is_set():  # noqa: ASYNC110 (uvicorn
            await anyio.sleep(0.005)  # has no event for it)
        if self._shutdown.is_set():
            return None
        loop = asyncio.get_running_loop()
        scheduler = self.scheduler
        size = max(64, 2 * len(scheduler.config.models))  # gates are never reused
        gates = native.gates(loop, size, scheduler.front_emptied)
        if gates is None:
            return None
        scheduler.attach_gates(gates)
        main = self._main
        assert main is not None

        def handed(fd: int, data: bytes) -> None:
            main.start_soon(server.adopt, fd, data, name="front-handover")

        owner = NativeFront(scheduler, self.proxy, observer, handed, edge)
        made = native.front(
            loop,
            sock.fileno(),
            gates,
            owner,
            status_lines=STATUS_LINE,
            paths=front.PATHS,
            **owner.limits(),
        )
        if made is None:
            return None
        owner.start(made)
        # at once: the answer to a reload or a profile change is out after the front has it
        self.proxy.routes_changed = owner.publish
        edge.front = made  # kept-alive connections come back between requests
        return made

    async def _front_drained(self) -> None:
        """Wait (bounded) until the native front's exchanges in flight have ended."""
        if self.front is None:
            return
        with anyio.move_on_after(GRACEFUL_SECONDS):
            while self.front.active():  # noqa: ASYNC110 (a count in C, no event)
                await anyio.sleep(0.02)

    def _close_front(self) -> None:
        made, self.front = self.front, None
        if made is None:
            return
        made.close()
        for slot in self.scheduler.slots.values():  # the gates go with the front
            slot.gates = None
        self.scheduler.gates = None
        made.gates.close_all()

    async def _report_shutdown(self) -> None:
        """While a shutdown takes long, say every few seconds what it waits for."""
        began = anyio.current_time()
        while True:
            await anyio.sleep(SHUTDOWN_REPORT_SECONDS)
            slots = self.scheduler.slots.values()
            if self._stage == ENGINES_STOPPING:
                names = [s.config.id for s in slots if s.state is not State.STOPPED]
            else:
                names = [f"{s.config.id} ({s.inflight})" for s in slots if s.inflight]
            log.warning(
                "still shutting down after %.0fs: waiting for %s%s",
                anyio.current_time() - began,
                self._stage,
                f": {', '.join(names)}" if names else "",
            )

    async def _serve_http(self, server: _Server, sock: socket.socket | None) -> None:
        """uvicorn, accepting on ``sock``; on nothing (None) when data-plane workers or the
        native front accept and hand it connections."""
        try:
            await server.serve(sockets=[sock] if sock is not None and self.workers is None else [])
        finally:
            self._http_done.set()
            self._shutdown.set()

    async def _signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGHUP, signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    await self.reload()
                elif self._shutdown.is_set():
                    log.warning("second signal: not waiting for requests; stopping engines now")
                    assert self._main is not None
                    self._main.cancel_scope.cancel()
                else:
                    self._shutdown.set()

    async def _preload(self, models: tuple[str, ...]) -> None:
        for model_id in models:
            try:
                async with self.scheduler.lease(model_id):
                    log.info("preloaded %s", model_id)
            except SwapdError as exc:
                log.error("preload of %s failed: %s", model_id, exc.message.splitlines()[0])

    async def reload(self) -> dict[str, Any]:
        """Load the config again; on success apply it, on failure keep the old one.

        Overlapping triggers (SIGHUP, the file watcher, the API) are coalesced: a trigger that
        arrives during a reload makes it run once more when it ends, so the newest files win.
        """
        if self.config_path is None and self.config_dir is None and not self.models_dirs:
            return {"ok": False, "errors": ["the embedded demo config cannot be reloaded"]}
        if self._reloading:
            self._reload_again = True
            return {"ok": True, "changes": {}, "message": "a reload is running; it will run again"}
        self._reloading = True
        try:
            while True:
                self._reload_again = False
                result = await self._reload_once()
                if not self._reload_again:
                    return result
        finally:
            self._reloading = False

    async def _reload_once(self) -> dict[str, Any]:
        try:
            config = await anyio.to_thread.run_sync(self.load, self.scheduler.config)
        except ConfigError as exc:
            for issue in exc.issues:
                log.error("config reload rejected: %s", issue)
            self.config_errors = [str(i) for i in exc.issues]
            return {"ok": False, "errors": list(self.config_errors)}
        self.config_errors = []
        self._setup_logging(config)
        for issue in config.warnings:
            log.warning("config: %s", issue)
        for warning in lint(config):
            log.warning("check: %s", warning)
        if inventory_reads(config) != inventory_reads(self.scheduler.config):
            self.scheduler.placer.inventory = inventory_of(config)  # other machines, or Ray's
        changes = self.scheduler.update(config)
        workers = self.workers
        if workers and self.worker_count is None and config.server.workers != workers.count:
            log.warning("server.workers changed: it takes effect when swapd restarts")
        if self.proxy.routes_changed is not None:
            self.proxy.routes_changed()
        if self._main is not None and config.preload:  # as at startup; running ones are kept
            self._main.start_soon(self._preload, config.preload, name="preload")
        log.info(
            "config reloaded: %s",
            ", ".join(f"{k} {v}" for k, v in changes.items() if v) or "no changes",
        )
        return {"ok": True, "changes": changes}

    async def _watch(self) -> None:
        def stamp() -> tuple[Any, ...]:
            files: list[Path] = []
            if self.config_path:
                files.append(self.config_path)
            if self.config_dir and self.config_dir.is_dir():
                files.extend(
                    sorted(p for p in self.config_dir.iterdir() if p.suffix in (".yml", ".yaml"))
                )
            out = []
            for f in files:
                with contextlib.suppress(OSError):
                    st = f.stat()
                    out.append((str(f), st.st_mtime_ns, st.st_size))
            return tuple(out)

        last = stamp()
        while True:
            await anyio.sleep(WATCH_INTERVAL)
            now = stamp()
            if now != last:
                last = now
                await self.reload()


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def serve(run: Callable[[], Any]) -> None:
    """Run the app on uvloop when installed."""
    backend_options = {"use_uvloop": _has("uvloop")}
    anyio.run(run, backend="asyncio", backend_options=backend_options)
