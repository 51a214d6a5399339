"""Admin API routes for benchmarks (:mod:`swapd.fleet.benchmark`): a run is a server-side job.

- ``POST /api/models/{id}/bench`` (admin) with ``{"concurrency": [1, 4], "prompt_tokens": N,
  "gen_tokens": N}`` (each optional) starts a run: 202 and the job; 409 while the model has one.
- ``GET /api/models/{id}/bench`` (read): the model's stored results, newest first, and the job
  running for it, if any.
- ``GET /api/bench/{job}`` (read): a job: ``state`` running | done | failed | cancelled,
  ``phase`` loading | measuring | done, the level being measured, requests done in it, the load
  time and the levels measured so far; ``error`` when it failed.
- ``DELETE /api/bench/{job}`` or ``POST /api/bench/{job}/cancel`` (admin): cancel it; its
  in-flight requests are cancelled too (the engine sees them close). Answers once it stopped.

Every change of a job is published on ``/api/events`` as a ``bench`` event (the job's view).
Finished runs go into the :class:`~swapd.fleet.benchstore.BenchStore` (the activity store's
SQLite file when ``store.path`` is set, else a JSON file in the state dir).

The admin API has no task group of its own: a job is an asyncio task this registry owns and
cancels; at shutdown its requests end with their engines and it is marked failed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from swapd.errors import Conflict, NotFound, RequestError
from swapd.fleet.benchmark import BenchFailed, Benchmark, Params
from swapd.fleet.benchstore import BenchStore, default_file
from swapd.proxy.fleet.bodies import json_object

if TYPE_CHECKING:
    from swapd.proxy.admin import Admin

log = logging.getLogger("swapd.bench")

KEEP_JOBS = 20  # finished jobs answered by GET /api/bench/{job}
CANCEL_WAIT = 10.0  # seconds a cancel waits for the job's requests to end


@dataclass(slots=True)
class Job:
    id: str
    model: str
    params: Params
    started: float  # unix seconds
    bench: Benchmark
    state: str = "running"
    error: str | None = None
    ended: float | None = None
    task: asyncio.Task[None] | None = None

    def view(self) -> dict[str, Any]:
        p = self.bench.progress
        return {
            "id": self.id,
            "model": self.model,
            "time": round(self.started, 3),
            "ended": round(self.ended, 3) if self.ended is not None else None,
            "state": self.state,
            "error": self.error,
            "params": self.params.as_dict(),
            "phase": p.phase,
            "level": p.level,
            "done": p.done,
            "load_seconds": p.load_seconds,
            "levels": [asdict(level) for level in p.levels],
        }


class Jobs:
    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self._ids = itertools.count(1)
        self._store: BenchStore | None = None

    @property
    def store(self) -> BenchStore:
        """Opened on first use (the store path of the config running then)."""
        if self._store is None:
            path = self.admin.scheduler.config.store_path
            self._store = BenchStore(Path(path)) if path else BenchStore(file=default_file())
        return self._store

    def _publish(self, job: Job) -> None:
        if self.admin.observer.bus.subscribers:
            self.admin.observer.bus.publish("bench", job.view())

    def _job(self, request: Request) -> Job:
        job = self.jobs.get(str(request.path_params["job"]))
        if job is None:
            raise NotFound(f"no bench job {request.path_params['job']!r}")
        return job

    def _running(self, model_id: str) -> Job | None:
        return next(
            (j for j in self.jobs.values() if j.model == model_id and j.state == "running"), None
        )

    async def start(self, request: Request) -> Response:
        model_id = self.admin._model_id(request)
        params = Params.parse(await json_object(request))
        limit = self.admin.scheduler.config.models[model_id].concurrency_limit
        if max(params.concurrency) > limit:
            raise RequestError(
                f"concurrency {max(params.concurrency)} is more than {model_id}'s "
                f"concurrencyLimit {limit}: lower it, or raise concurrencyLimit in the config"
            )
        if (running := self._running(model_id)) is not None:
            raise Conflict(f"{model_id} is being benchmarked already (job {running.id})")
        run_id = f"bench-{int(time.time())}-{next(self._ids)}"
        bench = Benchmark(
            self.admin.scheduler,
            self.admin.observer,
            model_id,
            params,
            run_id=run_id,
            changed=lambda: self._publish(self.jobs[run_id]),
        )
        job = self.jobs[run_id] = Job(run_id, model_id, params, time.time(), bench)
        finished = [j for j in self.jobs.values() if j.state != "running"]
        for old in finished[: max(0, len(finished) - KEEP_JOBS)]:
            del self.jobs[old.id]
        job.task = asyncio.get_running_loop().create_task(self._run(job), name=run_id)
        self._publish(job)
        return JSONResponse(job.view(), status_code=202)

    async def _run(self, job: Job) -> None:
        try:
            await job.bench.run()
        except BenchFailed as exc:
            job.state, job.error = "failed", str(exc)
        except anyio.get_cancelled_exc_class():
            job.state, job.error = "cancelled", "cancelled"
        except Exception as exc:  # a bug: the job fails, the server goes on
            log.exception("bench %s of %s failed", job.id, job.model)
            job.state, job.error = "failed", f"internal error: {exc!r}"
        else:
            job.state = "done"
        job.ended = time.time()
        if job.state == "done":
            self.store.add(job.view())
        self._publish(job)
        log.info("bench %s of %s: %s", job.id, job.model, job.error or job.state)

    async def results(self, request: Request) -> Response:
        model_id = self.admin._model_id(request)
        running = self._running(model_id)
        return JSONResponse(
            {
                "results": self.store.results(model_id),
                "running": running.view() if running else None,
            }
        )

    async def show(self, request: Request) -> Response:
        return JSONResponse(self._job(request).view())

    async def cancel(self, request: Request) -> Response:
        job = self._job(request)
        if job.task is not None and not job.task.done():
            job.task.cancel()
            with anyio.move_on_after(CANCEL_WAIT):
                await asyncio.wait([job.task])
        return JSONResponse(job.view())


def routes(admin: Admin) -> list[BaseRoute]:
    jobs = Jobs(admin)
    return [
        Route("/api/models/{id:path}/bench", jobs.start, methods=["POST"]),
        Route("/api/models/{id:path}/bench", jobs.results, methods=["GET"]),
        Route("/api/bench/{job}", jobs.show, methods=["GET"]),
        Route("/api/bench/{job}", jobs.cancel, methods=["DELETE"]),
        Route("/api/bench/{job}/cancel", jobs.cancel, methods=["POST"]),
    ]
