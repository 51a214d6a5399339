"""The docker driver's engine: one model's container, from placement to removal.

Lifecycle: place the model on a node (the node of its :class:`~swapd.assignment.Assignment` when
memory-aware placement chose one; else the pin, or the first node whose free GPU memory fits) →
connect (an unreachable daemon fails this model only, naming the endpoint) → adopt a healthy
container with the same name and config hash left by an earlier swapd, or remove it and create a
new one (a missing image names image and node; a taken port is refused) → poll health (a
container that exits first fails the start with its last log lines) → ready. Cancellation stops
the container (``docker stop`` with ``unloadTimeout``) and removes it, shielded. Every blocking
docker-py call runs in a worker thread; the container's output streams into the model's log ring.

Sleep/wake (vLLM ``--enable-sleep-mode``): ``sleep(level)`` POSTs ``/sleep?level=N``, ``wake()``
wakes with the level it slept at (``swapd.drivers.sleepmode``) and checks ``/is_sleeping``; the
scheduler calls them for models with ``sleep:``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from swapd.assignment import Assignment, unplaced
from swapd.config.model import ModelConfig, NodeConfig
from swapd.drivers import sleepmode
from swapd.drivers.base import LogSink, Upstream
from swapd.drivers.docker.container import (
    LABEL_DEVICES,
    LABEL_HASH,
    config_hash,
    devices_label,
    host_port,
    run_kwargs,
    spec_of,
)
from swapd.drivers.health import probe, wait_healthy
from swapd.drivers.logtail import ERROR_TAIL_LINES, LineReader, LogTail
from swapd.errors import StartFailed
from swapd.nodes import LOCAL, endpoint_of, host_of
from swapd.recipes import container_name
from swapd.recipes.start import prepare

if TYPE_CHECKING:
    from swapd.drivers.docker.runtime import DockerRuntime

log = logging.getLogger("swapd.docker")


class DockerDriver:
    """One model's engine in a container; ``runtime`` is the driver state it shares."""

    def __init__(self, model: ModelConfig, logs: LogSink, runtime: DockerRuntime) -> None:
        self.model = model
        self.spec = spec_of(model)
        self.tail = LogTail(logs)
        self.runtime = runtime
        self.placements = runtime.placements
        self.port = host_port(model)
        self.name = container_name(model.id, self.port)
        self.node: NodeConfig | None = None
        self.container: Any = None
        self.upstream: Upstream | None = None
        self.exited = anyio.Event()
        self.exit_code: int | None = None
        self.assignment: Assignment | None = None
        self.slept_level = 0  # the sleep level of a sleeping engine (it decides how to wake)

    def assign(self, assignment: Assignment) -> None:
        """Run on the node and devices placement chose (see
        :class:`~swapd.drivers.base.Assignable`)."""
        self.assignment = assignment

    # ── helpers ─────────────────────────────────────────────────────────────────────────────

    def _fail(self, message: str, tail: list[str] | None = None) -> StartFailed:
        lines = list(self.tail.lines) if tail is None else tail
        text = "\n".join(lines[-ERROR_TAIL_LINES:])
        return StartFailed(self.model.id, f"{message}\n{text}" if text else message)

    def _where(self) -> str:
        assert self.node is not None
        return f"node {self.node.name} ({endpoint_of(self.node)})"

    async def _thread(self, fn: Any, *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args)

    # ── serve ───────────────────────────────────────────────────────────────────────────────

    async def serve(self, *, task_status: TaskStatus[Upstream]) -> None:
        node = self.node = await self._place()
        self.placements.place(self, self.model.id, node.name, self.model.resources.memory)
        ready = False
        try:
            docker = await self._thread(self._connect, node)
            adopted = await self._adopt_or_clear(docker, node)
            if not adopted:
                await self._check_port(node)
                self.container = await self._thread(self._create, docker, node)
            base = f"http://{host_of(node)}:{self.port}"
            self.upstream = Upstream(base_url=base, container=self.name, node=node.name)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch, adopted, name=f"docker-logs:{self.model.id}")
                if not adopted:
                    await self._await_ready(base)
                ready = True
                task_status.started(self.upstream)
                await self.exited.wait()
                tg.cancel_scope.cancel()
            self.tail.sink.write(f"[swapd] container {self.name} exited with code {self.exit_code}")
        finally:
            with anyio.CancelScope(shield=True):
                if self.container is not None:
                    await self._remove(graceful=ready)
                self.placements.release(self)

    async def _place(self) -> NodeConfig:
        candidates = list(self.model.nodes)
        if not candidates:
            candidates = [NodeConfig(LOCAL, "")]
        preferred = self.runtime.adoptable.pop(self.model.id, None)
        if self.assignment is not None:
            chosen = self.assignment.node
            for candidate in candidates:
                if candidate.name == chosen:
                    return candidate
            names = ", ".join(n.name for n in candidates)
            raise StartFailed(
                self.model.id, f"placement chose node {chosen!r}, not one of its nodes ({names})"
            )
        if preferred is not None:
            candidates.sort(key=lambda n: n.name != preferred)
        try:
            node: NodeConfig = await self._thread(
                self.placements.choose, self.model.id, self.model.resources.memory, candidates
            )
        except LookupError as exc:
            raise StartFailed(self.model.id, str(exc)) from None
        return node

    def _connect(self, node: NodeConfig) -> Any:
        try:
            docker = self.runtime.clients.get(node)
            docker.ping()
        except Exception as exc:
            self.runtime.clients.forget(node)
            raise StartFailed(
                self.model.id,
                f"node {node.name}: Docker daemon at {endpoint_of(node)} is unreachable: {exc}",
            ) from None
        return docker

    async def _adopt_or_clear(self, docker: Any, node: NodeConfig) -> bool:
        """Adopt our healthy namesake with the same config hash; remove any other namesake."""
        existing = await self._thread(self._get, docker)
        if existing is None:
            return False
        labels = existing.labels or {}
        same_devices = labels.get(LABEL_DEVICES, "") == devices_label(self.assignment)
        same = same_devices and labels.get(LABEL_HASH) == config_hash(self.model, node)
        if same and existing.status == "running":
            url = f"http://{host_of(node)}:{self.port}{self._health_path()}"
            if await probe(url, limit=2.0) == 200:
                self.container = existing
                self.runtime.adopted.add((endpoint_of(node), self.name))
                self.tail.write(f"[swapd] adopted running container {self.name} on {node.name}")
                log.info("%s: adopted container %s on node %s", self.model.id, self.name, node.name)
                return True
        self.tail.write(f"[swapd] removing stale container {self.name} on {node.name}")
        await self._thread(functools.partial(existing.remove, force=True))
        return False

    def _get(self, docker: Any) -> Any:
        from docker.errors import NotFound

        try:
            return docker.containers.get(self.name)
        except NotFound:
            return None

    def _health_path(self) -> str:
        return self.spec.health or self.model.check_endpoint or "/health"

    async def _check_port(self, node: NodeConfig) -> None:
        if self.port is None:
            return
        host = host_of(node)
        if await self._thread(_port_taken, host, self.port):
            raise StartFailed(
                self.model.id,
                f"port {self.port} of model {self.model.id} on {host} ({self._where()}) "
                "is already in use by another program",
                permanent=True,
            )

    def _create(self, docker: Any, node: NodeConfig) -> Any:
        from docker.errors import APIError, ImageNotFound

        spec = self.spec = prepare(self.model, self.spec, node, self.tail.write)
        image = spec.image
        try:
            docker.images.get(image)
        except ImageNotFound:
            raise StartFailed(
                self.model.id,
                f"image {image!r} is not present on node {node.name} ({endpoint_of(node)}); "
                f"pull or load it there first, e.g. docker -H {endpoint_of(node)} pull {image}",
                permanent=True,
            ) from None
        kwargs = run_kwargs(
            self.model,
            spec,
            name=self.name,
            node=node,
            instance=self.runtime.instance,
            port=self.port,
            assignment=self.assignment,
            macros=self._macros(node),
        )
        self.tail.write(f"[swapd] creating container {self.name} from {image} on {self._where()}")
        try:
            return docker.containers.run(**kwargs)
        except APIError as exc:
            with contextlib.suppress(Exception):
                docker.containers.get(self.name).remove(force=True)
            raise StartFailed(
                self.model.id, f"cannot start container {self.name} on {self._where()}: {exc}"
            ) from None

    def _macros(self, node: NodeConfig) -> dict[str, str]:
        """The late macros: from the assignment, else from ``resources`` and the node's GPUs
        (blocking: GPU discovery, already cached by placement)."""
        if self.assignment is not None:
            return self.assignment.values()
        totals = {g.index: g.memory for g in self.placements.gpus(node) or ()}
        return unplaced(self.model.resources, totals).values()

    async def _await_ready(self, base: str) -> None:
        model = self.model
        url = base + self._health_path()
        deadline = anyio.current_time() + model.health_check_timeout

        async def on_exit() -> None:
            tail = await self._thread(self._last_logs)
            raise self._fail(
                f"container {self.name} on {self._where()} exited while starting "
                f"with code {self.exit_code}",
                tail,
            )

        healthy = await wait_healthy(
            url, deadline=deadline, exited=self.exited.is_set, on_exit=on_exit
        )
        if not healthy:
            raise self._fail(
                f"health check of {url} timed out after {model.health_check_timeout:g}s"
            )

    def _last_logs(self) -> list[str]:
        try:
            raw = self.container.logs(tail=ERROR_TAIL_LINES)
        except Exception:
            return list(self.tail.lines)
        return [line.rstrip("\r") for line in raw.decode(errors="replace").splitlines()]

    async def _watch(self, adopted: bool) -> None:
        """Stream the container's output into the log ring until it exits."""
        container = self.container
        write = self.tail.write

        def pump() -> None:
            reader = LineReader()
            try:
                for chunk in container.logs(
                    stream=True, follow=True, tail=20 if adopted else "all"
                ):
                    for line in reader.feed(chunk):
                        anyio.from_thread.run_sync(write, line)
                for line in reader.close():
                    anyio.from_thread.run_sync(write, line)
            except Exception:  # the container vanished or the loop closed: stop pumping
                return

        def wait() -> int | None:
            try:
                return int(container.wait().get("StatusCode", -1))
            except Exception:
                return None

        await anyio.to_thread.run_sync(
            pump, abandon_on_cancel=True, limiter=anyio.CapacityLimiter(1)
        )
        self.exit_code = await anyio.to_thread.run_sync(
            wait, abandon_on_cancel=True, limiter=anyio.CapacityLimiter(1)
        )
        self.exited.set()

    async def _remove(self, *, graceful: bool) -> None:
        container, timeout = self.container, self.model.unload_timeout

        def remove() -> None:
            from docker.errors import APIError, NotFound

            try:
                if graceful:
                    container.stop(timeout=max(1, round(timeout)))
                container.remove(force=True)
            except NotFound:
                pass
            except APIError as exc:
                log.warning("removing container %s: %s", self.name, exc)
                with contextlib.suppress(Exception):
                    container.remove(force=True)

        try:
            await anyio.to_thread.run_sync(remove)
        except Exception as exc:  # a daemon gone away: nothing more we can do from here
            log.warning("removing container %s: %s", self.name, exc)
        if self.node is not None:
            self.runtime.adopted.discard((endpoint_of(self.node), self.name))

    # ── sleep / wake (optional driver capability, used by the scheduler) ────────────────────

    async def sleep(self, level: int) -> None:
        """Put the engine to sleep (vLLM ``POST /sleep?level=N``); raises on failure."""
        assert self.upstream is not None
        await sleepmode.sleep(self.upstream.base_url, level)
        self.slept_level = level
        self.placements.set_asleep(self, True)
        self.tail.write(f"[swapd] {self.model.id} is asleep (level {level})")

    async def wake(self) -> None:
        """Wake the engine as it slept (level 2: weights, reload, KV cache), then check
        ``/is_sleeping``; raises on failure."""
        assert self.upstream is not None
        await sleepmode.wake(self.upstream.base_url, self.slept_level)
        self.slept_level = 0
        self.placements.set_asleep(self, False)
        self.tail.write(f"[swapd] {self.model.id} is awake")


def _port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0
