"""The Ray actor that runs one engine on its node (``driver: ray``; see ``swapd.drivers.ray``).

It is what the process driver does, on another machine, with the same code
(``swapd.drivers.child``): ``start`` fills ``${PORT}`` with a port free on this node and
``${NODE_IP}`` with the node's address, sets ``CUDA_VISIBLE_DEVICES`` (the devices placement
assigned, else the GPUs Ray gave the actor), and spawns the command in its own process group,
tied to the actor (``die_with_parent``, ``swapd.drivers.guardian``: an actor Ray kills — swapd
gone, node drained — takes its engine's whole process group along). Output lines are kept in
a bounded buffer that the driver long-polls with ``output`` (one call per batch of lines, not
per line). ``stop`` runs ``child.stop``: cmdStop or SIGTERM to the group, ``unloadTimeout``,
SIGKILL, reap.

This module imports only what the actor needs, so a node starts it quickly; swapd must be
installed on every node (the actor's class is imported there by name).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from collections import deque
from collections.abc import Sequence
from typing import Any

from swapd.assignment import expand
from swapd.drivers import child
from swapd.drivers.child import Child
from swapd.drivers.logtail import pump

KEEP_LINES = 2000  # output lines the actor holds for the driver to fetch


def free_port() -> int:
    """A TCP port nothing listens on, on any address of this node."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        port: int = s.getsockname()[1]
    return port


def gpu_ids() -> list[str]:
    """The GPU ids Ray gave this actor (none when it asked for no GPU)."""
    import ray

    return [str(i) for i in ray.get_gpu_ids()]


class EngineActor:
    """One engine on the node this actor was placed on (an async Ray actor)."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.proc: Child | None = None
        self.env: dict[str, str] = {}
        self.lines: deque[str] = deque(maxlen=KEEP_LINES)
        self.written = 0  # lines written so far; ``lines`` holds the last of them
        self.exit_code: int | None = None
        self.changed = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    def _write(self, line: str) -> None:
        self.lines.append(line)
        self.written += 1
        self.changed.set()

    async def start(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        devices: Sequence[int] | None,
        model_id: str = "",
    ) -> dict[str, Any]:
        """Spawn the engine; where it listens (``ip``, ``port``) and its ``pid`` and node, or
        ``{"error": message}`` when its program cannot run here. ``model_id``: the model it
        serves (a warm actor, ``swapd.drivers.raylaunch``, learns it here)."""
        import ray

        self.model_id = model_id or self.model_id
        self.lines.clear()  # a warm actor given back runs its next engine afresh
        self.written, self.exit_code = 0, None

        util: Any = ray.util  # not typed
        ip = str(util.get_node_ip_address())
        node_id = ray.get_runtime_context().get_node_id()
        port = free_port()
        values = {"PORT": str(port), "NODE_IP": ip}
        command = [expand(arg, values) for arg in argv]
        full = {**os.environ, **{key: expand(value, values) for key, value in env.items()}}
        full["SWAPD_NODE"] = full.get("SWAPD_NODE") or node_id  # the placed name, else Ray's id
        if devices is not None:
            full["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in devices)
        elif "CUDA_VISIBLE_DEVICES" not in env and (gpus := gpu_ids()):
            full["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        where = {"ip": ip, "port": port, "node_id": node_id}
        if not command or shutil.which(command[0], path=full.get("PATH", os.defpath)) is None:
            program = command[0] if command else "(empty command)"
            return {**where, "error": f"program '{program}' not found on node {ip}"}
        try:
            proc = child.spawn(command, full, die_with_parent=True)
        except OSError as exc:
            return {**where, "error": f"failed to start '{command[0]}' on node {ip}: {exc}"}
        self.proc, self.env = proc, full
        task = asyncio.get_running_loop().create_task(self._pump(proc))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return {**where, "pid": proc.pid}

    async def _pump(self, proc: Child) -> None:
        await pump(proc.chunks(), self._write)
        self.exit_code = await proc.wait()
        self.changed.set()

    async def output(self, after: int, wait: float) -> tuple[int, list[str], int | None]:
        """The lines written after the first ``after`` (waiting up to ``wait`` seconds for
        one), how many were written in all, and the exit status once the engine has exited."""
        if self.written <= after and self.exit_code is None:
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), wait)
        fresh = min(self.written - after, len(self.lines))
        lines = list(self.lines)[len(self.lines) - fresh :] if fresh > 0 else []
        return self.written, lines, self.exit_code

    async def stop(self, grace: float, stop_argv: Sequence[str]) -> int | None:
        """Stop the engine as the process driver does (``child.stop``); its exit status."""
        proc = self.proc
        if proc is None:
            return None
        for task in list(self.tasks):  # as the process driver: its reader ends before the stop
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await child.stop(
            proc,
            grace=grace,
            log=self._write,
            label=self.model_id,
            stop_argv=stop_argv,
            env=self.env,
        )
        self.exit_code = proc.returncode
        self.changed.set()
        return self.exit_code
