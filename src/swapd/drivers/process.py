"""The ``process`` driver: any command, llama.cpp's ``llama-server`` being the usual one.

The child runs in its own session (process group) and inherits only descriptors 0, 1 and 2
(stdin from /dev/null, the output pipe twice). Its merged stdout/stderr goes line by line
into the model's log ring. Readiness is polled on ``checkEndpoint`` through the proxy URL. On
cancellation the group gets ``cmdStop`` or SIGTERM, then SIGKILL after ``unloadTimeout``, and the
child is reaped — unless it outlives SIGKILL by ``KILL_WAIT`` seconds (uninterruptible sleep):
then that is logged and swapd moves on. The cleanup is shielded from the cancellation that
triggered it.

Placement (``assign``): the child gets ``CUDA_VISIBLE_DEVICES`` / ``HIP_VISIBLE_DEVICES`` for the
devices chosen and ``SWAPD_NODE``; ``${GPU}``, ``${GPUS}`` and the other late macros are filled in
its command, environment and ``cmdStop``. A ``CUDA_VISIBLE_DEVICES`` the model sets itself wins.
Without an assignment (placement inactive) the macros come from ``resources.devices`` (else
device 0), and only declared ``resources.devices`` are exported.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections import deque
from collections.abc import Mapping
from urllib.parse import urlsplit

import anyio
from anyio.abc import TaskStatus

from swapd.assignment import Assignment, expand, unplaced
from swapd.config.model import ModelConfig
from swapd.drivers import child, pidfile, sleepmode
from swapd.drivers.base import DriverSpec, EngineHooks, LogSink, Upstream
from swapd.drivers.child import Child
from swapd.drivers.health import wait_healthy
from swapd.drivers.logtail import LogTail, pump
from swapd.errors import StartFailed
from swapd.llamacpp import is_llama_server
from swapd.llamacpp.progress import PHASE_LINES, load_phase


def _not_runnable(model_id: str, program: str) -> str:
    if os.sep not in program:
        return f"model {model_id}: program '{program}' not found on PATH"
    if not os.path.exists(program):
        return f"model {model_id}: program '{program}' does not exist"
    return f"model {model_id}: program '{program}' is not an executable file"


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


class ProcessDriver:
    def __init__(self, model: ModelConfig, logs: LogSink, hooks: EngineHooks | None = None) -> None:
        self.model = model
        self.tail = LogTail(logs)
        self.hooks = hooks
        # llama-server's recent lines, for load_progress(); None for engines it cannot read.
        self._recent: deque[str] | None = None
        if is_llama_server(model.cmd):
            self._recent = deque(maxlen=PHASE_LINES)
        self.assignment: Assignment | None = None
        self.slept_level = 0  # the sleep level of a sleeping engine (it decides how to wake)

    def assign(self, assignment: Assignment) -> None:
        """Run the engine where placement put it (see :class:`~swapd.drivers.base.Assignable`)."""
        self.assignment = assignment

    def load_progress(self) -> tuple[str, str | None] | None:
        """(phase, latest engine line) of a llama-server engine — ``spawned`` → ``loading`` →
        ``warming up`` → ``ready`` — read from what it logged; None for other commands."""
        if self._recent is None:
            return None
        return load_phase(list(self._recent))

    def _write(self, line: str) -> None:
        self.tail.write(line)
        if self._recent is not None:
            self._recent.append(line)

    def _fail(self, message: str) -> StartFailed:
        tail = self.tail.text()
        return StartFailed(self.model.id, f"{message}\n{tail}" if tail else message)

    def _macros(self) -> dict[str, str]:
        placed = self.assignment or unplaced(self.model.resources)
        return placed.values()

    def _argv(self, argv: tuple[str, ...]) -> list[str]:
        values = self._macros()
        return [expand(arg, values) for arg in argv]

    def _placed_env(self) -> dict[str, str]:
        """The device variables and ``SWAPD_NODE`` placement sets (see the module docstring)."""
        if self.assignment is not None:
            return {**self.assignment.env(), "SWAPD_NODE": self.assignment.node}
        if self.model.resources.devices:
            return unplaced(self.model.resources).env()
        return {}

    def _env(self) -> Mapping[str, str]:
        values = self._macros()
        own = {key: expand(value, values) for key, value in self.model.env.items()}
        placed = self._placed_env()
        node = {"SWAPD_NODE": placed.pop("SWAPD_NODE")} if "SWAPD_NODE" in placed else {}
        return {**os.environ, **placed, **own, **node}

    def _note_overrides(self) -> None:
        """Log a device variable of the model's ``env`` that overrides the assignment."""
        values = self._macros()
        for key, value in self._placed_env().items():
            own = self.model.env.get(key)
            if key != "SWAPD_NODE" and own is not None and expand(own, values) != value:
                self.tail.write(
                    f"[swapd] {self.model.id}: env {key}={own} set in the config wins over "
                    f"the assigned {value}"
                )

    async def preflight(self) -> None:
        """Refuse a start that would fail every time (see :class:`~swapd.drivers.base.Preflight`):
        an empty command, a program that is not on ``PATH`` or not executable, the model's port
        held by another program, and the engine hooks' checks (llama-server: the GGUF file)."""
        model = self.model
        if not model.cmd:
            raise StartFailed(model.id, f"model {model.id}: empty command", permanent=True)
        program = model.cmd[0]
        if shutil.which(program, path=self._env().get("PATH", os.defpath)) is None:
            raise StartFailed(model.id, _not_runnable(model.id, program), permanent=True)
        local = urlsplit(model.proxy).hostname in ("127.0.0.1", "localhost")
        if model.port is not None and local and _port_in_use("127.0.0.1", model.port):
            raise StartFailed(
                model.id,
                f"port {model.port} of model {model.id} is already in use by another program",
                permanent=True,
            )
        if self.hooks is not None:
            await self.hooks.preflight()

    async def serve(self, *, task_status: TaskStatus[Upstream]) -> None:
        model = self.model
        await self.preflight()
        self._note_overrides()
        try:
            proc = child.spawn(self._argv(model.cmd), self._env())
        except OSError as exc:
            raise StartFailed(
                model.id,
                f"failed to start command '{model.cmd[0]}': {exc.strerror or exc}",
                permanent=True,
            ) from exc
        upstream = Upstream(base_url=model.proxy.rstrip("/"), pid=proc.pid)
        record = pidfile.record(model.id, proc.pid)
        ready = False
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._pump, proc, name=f"logs:{model.id}")
                await self._await_ready(proc)
                if self.hooks is not None:
                    await self.hooks.after_ready(upstream)
                ready = True
                task_status.started(upstream)
                await proc.wait()
                tg.cancel_scope.cancel()
            self.tail.sink.write(f"[swapd] engine exited with code {proc.returncode}")
        finally:
            with anyio.CancelScope(shield=True):
                if ready and self.hooks is not None and proc.returncode is None:
                    await self.hooks.before_stop(upstream)
                if await self._stop(proc):
                    pidfile.forget(record)  # else kept: a later swapd kills it if it can

    async def _await_ready(self, proc: Child) -> None:
        model = self.model
        deadline = anyio.current_time() + model.health_check_timeout

        async def exited() -> None:
            await anyio.sleep(0.05)  # let the log pump catch the last lines
            raise self._fail(f"upstream command exited prematurely with code {proc.returncode}")

        if model.check_endpoint is None:
            return
        url = model.proxy.rstrip("/") + model.check_endpoint
        healthy = await wait_healthy(
            url, deadline=deadline, exited=lambda: proc.returncode is not None, on_exit=exited
        )
        if not healthy:
            raise self._fail(
                f"health check of {url} timed out after {model.health_check_timeout:g}s"
            )

    async def _pump(self, proc: Child) -> None:
        await pump(proc.chunks(), self._write)

    async def _stop(self, proc: Child) -> bool:
        """The group's graceful stop, SIGKILL and reaping (:func:`swapd.drivers.child.stop`)."""
        model = self.model
        return await child.stop(
            proc,
            grace=model.unload_timeout,
            log=self.tail.write,
            label=model.id,
            stop_argv=self._argv(model.cmd_stop) if model.cmd_stop else (),
            env=self._env() if model.cmd_stop else None,
        )

    # ── sleep / wake: for engines with vLLM's sleep mode (``sleep: {level: N}``) ──────────────

    async def sleep(self, level: int) -> None:
        await sleepmode.sleep(self.model.proxy.rstrip("/"), level)
        self.slept_level = level
        self.tail.write(f"[swapd] {self.model.id} is asleep (level {level})")

    async def wake(self) -> None:
        await sleepmode.wake(self.model.proxy.rstrip("/"), self.slept_level)
        self.slept_level = 0
        self.tail.write(f"[swapd] {self.model.id} is awake")


def create(model: ModelConfig, logs: LogSink) -> ProcessDriver:
    """A process driver; a ``llama-server`` command gets the llama.cpp hooks (model file
    check, KV cache)."""
    if is_llama_server(model.cmd):
        from swapd.llamacpp.hooks import LlamaServerHooks

        return ProcessDriver(model, logs, LlamaServerHooks(model, logs))
    return ProcessDriver(model, logs)


SPEC = DriverSpec(
    name="process",
    factory=create,
    description="any command (llama-server, vLLM CLI, …) run as a child process group",
)
