"""``inproc``: a swapd driver that serves an ASGI app inside swapd's own event loop.

No child process: the "engine" is an ASGI application imported by name and served by uvicorn on
the model's port, in a task of swapd's task group. Useful for demos, tests, and small engines
written in Python. Config::

    models:
      tiny:
        driver: inproc
        inproc:
          app: swapd.echo:create_app   # "module:attr"; this is the default
          factory: true                # call attr(**kwargs) to build the app (default: true
                                       # for the default app, false otherwise)
          kwargs: {model: tiny}        # factory arguments (default app: {model: <model id>})
          host: 127.0.0.1              # default
          graceful_timeout: 5          # whole seconds in-flight requests get at stop

The port is the model's allocated ``${PORT}``, else the one in ``proxy:``, else any free port.
"""

from __future__ import annotations

import contextlib
import importlib
import socket
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import anyio
import uvicorn
from anyio.abc import TaskStatus

from swapd.config.model import ModelConfig
from swapd.drivers.base import DriverSpec, LogSink, Upstream
from swapd.errors import StartFailed

__all__ = ["SPEC", "InprocDriver"]

DEFAULT_APP = "swapd.echo:create_app"


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handling (swapd owns the signals), reporting readiness."""

    def __init__(self, config: uvicorn.Config, settled: anyio.Event) -> None:
        super().__init__(config)
        self._settled = settled

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self._settled.set()


class InprocDriver:
    def __init__(self, config: ModelConfig, log: LogSink) -> None:
        self.config = config
        self.log = log
        options: Mapping[str, Any] = config.options or {}
        self.ref = str(options.get("app", DEFAULT_APP))
        default = self.ref == DEFAULT_APP
        self.factory = bool(options.get("factory", default))
        self.kwargs: dict[str, Any] = dict(
            options.get("kwargs", {"model": config.id} if default else {})
        )
        proxy = urlsplit(config.proxy) if config.proxy else None
        self.host = str(options.get("host") or (proxy.hostname if proxy else None) or "127.0.0.1")
        self.port = config.port or (proxy.port if proxy else None) or 0
        self.graceful_timeout = int(options.get("graceful_timeout", 5))

    def _load_app(self) -> Any:
        module, _, attr = self.ref.partition(":")
        if not module or not attr:
            raise StartFailed(
                self.config.id, f"inproc: app must be 'module:attr', got {self.ref!r}"
            )
        try:
            obj = getattr(importlib.import_module(module), attr)
            return obj(**self.kwargs) if self.factory else obj
        except Exception as exc:  # any import/factory error is this model's start failure
            raise StartFailed(self.config.id, f"inproc: cannot load {self.ref}: {exc!r}") from exc

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(1024)
        except OSError as exc:
            sock.close()
            raise StartFailed(
                self.config.id, f"inproc: cannot listen on {self.host}:{self.port}: {exc}"
            ) from exc
        return sock

    async def serve(self, *, task_status: TaskStatus[Upstream] = anyio.TASK_STATUS_IGNORED) -> None:
        app = self._load_app()
        sock = self._bind()
        port = sock.getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        url = f"http://{host}:{port}"
        settled = anyio.Event()  # set when uvicorn has started, or has given up
        exited = anyio.Event()
        config = uvicorn.Config(
            app,
            log_config=None,  # leave swapd's logging alone
            log_level=None,
            access_log=False,
            lifespan="auto",
            timeout_graceful_shutdown=self.graceful_timeout,
        )
        server = _EmbeddedServer(config, settled)
        failure: str | None = None

        async def run() -> None:
            nonlocal failure
            try:
                # Shielded: on cancellation we ask uvicorn to shut down gracefully (below) and
                # wait for it here, so the port is closed when ``serve`` returns.
                with anyio.CancelScope(shield=True):
                    await server.serve(sockets=[sock])
            except SystemExit:  # uvicorn exits like this when the app's lifespan startup fails
                failure = "the app's lifespan startup failed"
            except Exception as exc:
                failure = repr(exc)
            finally:
                sock.close()
                settled.set()
                exited.set()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                try:
                    await settled.wait()
                    if server.started:
                        self.log.write(f"inproc: serving {self.ref} on {url}")
                        task_status.started(Upstream(base_url=url))
                        await exited.wait()
                    elif failure is None:
                        failure = "uvicorn did not start"
                finally:
                    server.should_exit = True
        finally:
            if failure is not None:
                self.log.write(f"inproc: {self.ref} failed: {failure}")
            if server.started:
                self.log.write(f"inproc: stopped {self.ref} on {url}")
        if failure is not None and not server.started:
            raise StartFailed(self.config.id, f"inproc: {self.ref}: {failure}")


def _factory(config: ModelConfig, log: LogSink) -> InprocDriver:
    return InprocDriver(config, log)


SPEC = DriverSpec(
    name="inproc",
    factory=_factory,
    description="serve an ASGI app (default: the echo engine) inside swapd's event loop",
)
