"""The ``ray`` driver: the model's ``cmd`` run by a Ray actor on a node of a Ray cluster.

Ray places and supervises; swapd decides. A start waits for the cluster connection
(``swapd.raycluster``; an unreachable cluster fails the start with its reason), resolves the node
(the :class:`~swapd.assignment.Assignment` placement chose, else ``ray.node``, else Ray's
choice), and reserves the model's ``ray.resources`` there with a one-bundle placement group
(pinned by the node's ``ray.io/node-id`` label), or takes over the one a stopped engine parked
there (``swapd.drivers.rayreserve``: a swap between models that need the same resources does
not wait for Ray to free and re-place them). A reservation Ray cannot make within
``PLACE_TIMEOUT`` seconds (resources taken, node gone) fails the start at once with
``NoCapacity`` "no capacity on node …": the scheduler evicts by its own rules and retries.
The engine then runs in the node's warm :class:`~swapd.drivers.rayengine.EngineActor`
(``swapd.drivers.raylaunch``: no worker process to wait for), or, when the actor needs a
``runtime_env`` or the GPU ids must come from Ray (GPUs asked, no devices assigned), in a new
actor inside the reservation.

The actor spawns the engine (its own process group, ``${PORT}`` free on that node,
``CUDA_VISIBLE_DEVICES``) and answers ``node_ip:port``; swapd health-checks and proxies there
directly — Ray is never on the data path. Output lines come over one long-poll call at a time
into the model's log ring. A stop (cancellation) asks the actor for the process driver's stop
(``swapd.drivers.child.stop``); the actor then goes back to the node's warm ones (or is
killed) and the reservation is parked for the next engine (or removed). When the actor dies
(its node left the cluster), the engine is reported gone with the node's name: requests in
flight on it fail with a 502, the model is marked stopped, and the next request starts it
where there is room.

Actors are not detached: swapd's Ray job owns them, so if swapd exits or dies, Ray kills them,
and each takes its engine's process group along (``die_with_parent``: the engine's children
too); a restarted swapd finds nothing left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import anyio
from anyio.abc import TaskStatus

from swapd import raycluster
from swapd.assignment import Assignment, expand, unplaced
from swapd.config.model import Config, ModelConfig
from swapd.config.options import RayOptions
from swapd.drivers import raylaunch, rayreserve
from swapd.drivers.base import DriverSpec, LogSink, Upstream
from swapd.drivers.child import KILL_WAIT
from swapd.drivers.health import wait_healthy
from swapd.drivers.logtail import LogTail
from swapd.errors import ClusterUnavailable, NoCapacity, StartFailed, UpstreamUnavailable
from swapd.raycluster import RayNode

log = logging.getLogger("swapd.ray")

PLACE_TIMEOUT = 10.0  # seconds for Ray to place and start the actor (no runtime_env to build)
OUTPUT_WAIT = 10.0  # seconds one output long-poll waits for a line before asking again


async def _get(ref: Any) -> Any:
    """The value of a Ray object ref, awaited without holding a thread."""
    return await asyncio.wrap_future(ref.future())


def _reason(exc: BaseException) -> str:
    """What Ray says about a dead or unplaceable actor, in one line: the cause it gives (e.g.
    "The actor is dead because its node has died…") over its generic first line."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    # Ray's detail lines (class_name, actor_id, pid…) are indented
    causes = [line for line in lines if not line[0].isspace() and "unexpectedly" not in line]
    return (causes or lines or [type(exc).__name__])[0].strip()


class RayDriver:
    def __init__(self, model: ModelConfig, logs: LogSink) -> None:
        self.model = model
        options = model.options
        self.options = options if isinstance(options, RayOptions) else RayOptions.model_validate({})
        self.tail = LogTail(logs)
        self.assignment: Assignment | None = None
        self.actor: Any = None
        self.group: Any = None  # the placement group holding the engine's resources
        self.spawned = False  # the actor started the engine (else there is nothing to stop)
        self.warm: str | None = None  # the node whose warm actor runs it (``raylaunch``)
        self.reusable = False  # the actor answered and runs no engine: it can be given back
        self.where = "the Ray cluster"  # the node, in messages
        self.ended = anyio.Event()
        self.exit_code: int | None = None
        self.lost: str | None = None  # why the actor died, if it did
        self.began = time.perf_counter()  # of the phase being timed (``_mark``)

    def _mark(self, phase: str) -> None:
        """Log (debug) how long ``phase`` took since the previous mark."""
        now = time.perf_counter()
        log.debug("%s: %s in %.1f ms", self.model.id, phase, (now - self.began) * 1000)
        self.began = now

    def assign(self, assignment: Assignment) -> None:
        """Run on the node and devices placement chose (see
        :class:`~swapd.drivers.base.Assignable`)."""
        self.assignment = assignment

    async def preflight(self) -> None:
        if not self.model.cmd:
            message = f"model {self.model.id}: empty command"
            raise StartFailed(self.model.id, message, permanent=True)

    # ── what the actor is given ─────────────────────────────────────────────────────────────

    def _values(self) -> dict[str, str]:
        return (self.assignment or unplaced(self.model.resources)).values()

    def _argv(self, argv: tuple[str, ...]) -> list[str]:
        values = self._values()
        return [expand(arg, values) for arg in argv]

    def _env(self, node: str) -> dict[str, str]:
        values = self._values()
        env = {key: expand(value, values) for key, value in self.model.env.items()}
        return {**env, "SWAPD_NODE": node}

    def _devices(self) -> list[int] | None:
        """The devices to expose: placement's, else the declared ones, else None (Ray's)."""
        if self.assignment is not None and self.assignment.devices:
            return list(self.assignment.devices)
        return list(self.model.resources.devices) or None

    def _target(self) -> str | None:
        if self.assignment is not None and self.assignment.node:
            return self.assignment.node
        return self.options.node

    # ── serve ───────────────────────────────────────────────────────────────────────────────

    async def serve(self, *, task_status: TaskStatus[Upstream]) -> None:
        model = self.model
        self.began = time.perf_counter()
        await self.preflight()
        try:
            await raycluster.connected()
        except ClusterUnavailable as exc:
            raise StartFailed(model.id, f"model {model.id}: {exc}", permanent=True) from exc
        target = self._target()
        node: RayNode | None = None
        if target:
            node = await anyio.to_thread.run_sync(raycluster.find, target)
            self.where = raycluster.describe(node, target)
            if node is None:
                raise NoCapacity(
                    model.id, f"no capacity on {self.where}: no alive Ray node has that name"
                )
        self._mark("node found")
        try:
            node_id = await self._reserve(node)
            self._mark("resources reserved")
            self.actor = await anyio.to_thread.run_sync(self._actor, node_id)
            self._mark("actor chosen")
            info = await self._start(target)
            self.spawned = True
            self._mark("engine spawned")
            name = target or str(info["node_id"])
            ran = RayNode(str(info["node_id"]), str(info["ip"]), alive=True)
            self.where = raycluster.describe(ran, name)
            base = f"http://{info['ip']}:{info['port']}"
            self.tail.write(f"[swapd] {model.id} runs on {self.where}, pid {info['pid']}, {base}")
            upstream = Upstream(base_url=base, pid=int(info["pid"]), node=name)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._follow, name=f"ray-logs:{model.id}")
                await self._await_ready(base)
                self._mark("engine healthy")
                if self.warm is not None:  # the start is over: a new worker competes with none
                    raylaunch.refill(self.warm)
                task_status.started(upstream)
                await self.ended.wait()
                tg.cancel_scope.cancel()
            if self.lost is not None:
                raise UpstreamUnavailable(
                    model.id, f"engine for model {model.id!r} on {self.where} is gone: {self.lost}"
                )
            code = self.exit_code
            self.tail.sink.write(f"[swapd] engine exited with code {code} on {self.where}")
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop()

    def _bundle(self) -> dict[str, float]:
        return {k: v for k, v in self.options.resources.items() if v > 0}

    async def _reserve(self, node: RayNode | None) -> str | None:
        """Hold the model's ``ray.resources`` in a ready placement group (``self.group``) on
        ``node``, if named: a stopped engine's parked there (``swapd.drivers.rayreserve``), or a
        new one; none when it asks for none. The node id, when known. Not ready within
        ``PLACE_TIMEOUT`` (resources taken, node gone): ``NoCapacity``."""
        bundle = self._bundle()
        node_id = node.node_id if node is not None else None
        if not bundle:
            return node_id
        parked = await anyio.to_thread.run_sync(rayreserve.take, bundle, node_id)
        if parked is not None:
            self.group, node_id = parked
            return node_id
        group = await anyio.to_thread.run_sync(rayreserve.create, bundle, node_id)
        needs = ", ".join(f"{k}={v:g}" for k, v in bundle.items())
        try:
            with anyio.fail_after(PLACE_TIMEOUT):
                await _get(group.ready())
            self.group = group
            return node_id or await anyio.to_thread.run_sync(rayreserve.node_of, group)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(rayreserve.remove, group)
            self.group = None
            if isinstance(exc, TimeoutError):
                raise NoCapacity(
                    self.model.id,
                    f"no capacity on {self.where}: Ray could not reserve {needs} within "
                    f"{PLACE_TIMEOUT:g}s",
                ) from None
            raise

    def _actor(self, node_id: str | None) -> Any:
        """The engine's actor (blocking). On a known node, with no runtime_env to build and
        no GPU ids to learn from Ray, one of the node's warm actors (``swapd.drivers.raylaunch``;
        ``warm`` says which node's, for giving it back); else a new one in the placement group
        (which makes Ray give it the GPU ids), or pinned, or where Ray likes."""
        gpu_ids_from_ray = "GPU" in self._bundle() and self._devices() is None
        if node_id is not None and not self.options.runtime_env and not gpu_ids_from_ray:
            self.warm = node_id
            return raylaunch.take(node_id)
        options: dict[str, Any] = {"num_cpus": 0}
        if self.group is not None:
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            options = raycluster.resources_of(self._bundle())
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(self.group, 0)
        elif node_id is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
            options["scheduling_strategy"] = strategy
        if self.options.runtime_env:
            options["runtime_env"] = dict(self.options.runtime_env)
        return raylaunch.new(options, self.model.id)

    async def _start(self, target: str | None) -> Mapping[str, Any]:
        """Start the engine in the actor; a placement that does not happen in time (or that
        Ray refuses) is ``NoCapacity``."""
        from ray.exceptions import RayActorError

        model = self.model
        env = self._env(target or "")
        ref = self.actor.start.remote(self._argv(model.cmd), env, self._devices(), model.id)
        limit = model.health_check_timeout if self.options.runtime_env else PLACE_TIMEOUT
        try:
            with anyio.fail_after(limit):
                info: Mapping[str, Any] = await _get(ref)
        except TimeoutError:
            raise NoCapacity(
                model.id,
                f"no capacity on {self.where}: Ray did not start the engine's actor within "
                f"{limit:g}s",
            ) from None
        except RayActorError as exc:
            self._dead()
            raise NoCapacity(model.id, f"no capacity on {self.where}: {_reason(exc)}") from exc
        if "error" in info:
            self.reusable = True  # it ran nothing
            raise StartFailed(model.id, f"model {model.id}: {info['error']}", permanent=True)
        return info

    async def _follow(self) -> None:
        """Copy the engine's output into the log ring until it exits or its actor dies (or
        Ray cannot reach it any more: the engine is then as good as gone)."""
        from ray.exceptions import RayError

        written = 0
        while True:
            try:
                written, lines, code = await _get(self.actor.output.remote(written, OUTPUT_WAIT))
            except RayError as exc:
                self.lost = _reason(exc)
                self._dead()
                self.tail.write(f"[swapd] {self.model.id} on {self.where} is gone: {self.lost}")
                self.ended.set()
                return
            for line in lines:
                self.tail.write(line)
            if code is not None:
                self.exit_code = code
                self.ended.set()
                return

    async def _await_ready(self, base: str) -> None:
        model = self.model

        async def exited() -> None:
            await anyio.sleep(0.05)  # the last lines
            why = self.lost or f"exited prematurely with code {self.exit_code}"
            raise self._fail(f"engine for model {model.id} on {self.where} {why}")

        if model.check_endpoint is None:
            return
        url = base + model.check_endpoint
        deadline = anyio.current_time() + model.health_check_timeout
        if not await wait_healthy(url, deadline=deadline, exited=self.ended.is_set, on_exit=exited):
            raise self._fail(
                f"health check of {url} timed out after {model.health_check_timeout:g}s"
            )

    def _fail(self, message: str) -> StartFailed:
        tail = self.tail.text()
        return StartFailed(self.model.id, f"{message}\n{tail}" if tail else message)

    def _dead(self) -> None:
        """The actor died (its node may be gone): the node's idle actors are forgotten."""
        if self.warm is not None:
            raylaunch.drop(self.warm)
            self.warm = None

    async def _stop(self) -> None:
        """The process driver's stop, run by the actor; then the actor goes back to its node's
        warm ones (its engine stopped and reaped) or is killed, and the engine's reservation
        goes (shielded)."""
        from ray.exceptions import RayError

        model, actor = self.model, self.actor
        self.began = time.perf_counter()
        if actor is not None:
            if self.spawned and self.lost is None:
                stop_argv = self._argv(model.cmd_stop)
                with anyio.move_on_after(model.unload_timeout + KILL_WAIT + PLACE_TIMEOUT):
                    # gone, or never placed: killing it below is all there is to do
                    with contextlib.suppress(RayError):
                        # the exit status; None: the engine would not die (the actor gave up)
                        code = await _get(actor.stop.remote(model.unload_timeout, stop_argv))
                        self.reusable = code is not None
                self._mark("engine stopped")
            if self.warm is not None and self.reusable:
                await anyio.to_thread.run_sync(raylaunch.give_back, self.warm, actor)
            else:
                await anyio.to_thread.run_sync(raylaunch.kill, actor)
            self._mark("actor given back" if self.reusable else "actor killed")
            self.actor = None
        if self.group is not None:
            if self.warm is not None and self.lost is None:  # no actor of its own in it
                rayreserve.park(self.group, self.warm, self._bundle())
                self._mark("reservation parked")
            else:
                await anyio.to_thread.run_sync(rayreserve.remove, self.group)
                self._mark("reservation removed")
            self.group = None


def create(model: ModelConfig, logs: LogSink) -> RayDriver:
    return RayDriver(model, logs)


async def reconcile(config: Config) -> list[str]:
    """At startup: begin connecting to the cluster when the config has ``cluster.ray`` or a ray
    model (in the background: the server serves the other models meanwhile). Nothing to
    adopt: Ray ended the actors of an earlier swapd with its job."""
    if config.cluster.ray is not None or any(m.driver == "ray" for m in config.models.values()):
        raycluster.start(config.cluster.ray)
    return []


async def cleanup(config: Config) -> None:
    """After every engine stopped: leave the cluster."""
    raylaunch.forget()
    await anyio.to_thread.run_sync(rayreserve.clear)
    await anyio.to_thread.run_sync(raycluster.disconnect)


SPEC = DriverSpec(
    name="ray",
    factory=create,
    description="the model's cmd run by a Ray actor on a node of a Ray cluster (swapd[ray])",
    reconcile=reconcile,
    cleanup=cleanup,
)
