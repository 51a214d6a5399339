"""Admin API routes for fleet images (:mod:`swapd.fleet.images`).

- ``GET /api/images[?node=N]``: each node's images with their marks, and the needed ones it
  lacks (read scope);
- ``POST /api/images/pull`` ``{node?, images?}``: pulls (the needed images a node lacks when
  ``images`` is not given), answering with NDJSON: Docker's progress lines as they come, one
  ``{"done"}`` line per image, then ``{"summary": {"pulled", "failed"}}`` (admin scope);
- ``POST /api/images/prune`` ``{node?, dry_run?, scope?}``: returns the plan of stale images
  and, only with ``"dry_run": false``, removes them (admin scope).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from swapd.config.model import Config, NodeConfig
from swapd.errors import NotFound, RequestError
from swapd.fleet import images
from swapd.proxy.fleet.bodies import json_object

if TYPE_CHECKING:
    from swapd.proxy.admin import Admin

T = TypeVar("T")


def chosen(config: Config, name: str | None) -> list[NodeConfig]:
    """The node called ``name``, or every node; 404 naming the known ones."""
    if name is None or name == "":
        return list(config.nodes.values())
    if name not in config.nodes:
        raise NotFound(f"node {name!r} not found; nodes: {', '.join(config.nodes)}")
    return [config.nodes[name]]


async def each(nodes: list[NodeConfig], work: Callable[[NodeConfig], T]) -> list[T]:
    """``work`` for every node at once, each in a worker thread, in the nodes' order."""
    found: list[Any] = [None] * len(nodes)

    async def one(i: int) -> None:
        found[i] = await anyio.to_thread.run_sync(work, nodes[i])

    async with anyio.create_task_group() as tg:
        for i in range(len(nodes)):
            tg.start_soon(one, i)
    return found


def routes(admin: Admin) -> list[BaseRoute]:
    async def listing(request: Request) -> Response:
        config = admin.scheduler.config
        picked = chosen(config, request.query_params.get("node"))
        repos = await anyio.to_thread.run_sync(images.engine_repositories, config)
        found = await each(picked, lambda n: images.list_node(config, n, repos).as_dict())
        return JSONResponse({"nodes": found})

    async def prune(request: Request) -> Response:
        data = await json_object(request)
        config = admin.scheduler.config
        picked = chosen(config, data.get("node"))
        scope = data.get("scope", "engine")
        if scope not in images.SCOPES:
            raise RequestError(f"scope must be one of {', '.join(images.SCOPES)}, got {scope!r}")
        dry_run = data.get("dry_run", True) is not False  # only an explicit false removes
        repos = await anyio.to_thread.run_sync(images.engine_repositories, config)
        found = await each(
            picked,
            lambda n: images.prune_node(config, n, repos, scope=scope, dry_run=dry_run),
        )
        return JSONResponse({"nodes": found})

    async def pull(request: Request) -> Response:
        data = await json_object(request)
        config = admin.scheduler.config
        picked = chosen(config, data.get("node"))
        asked = data.get("images") or []
        if not isinstance(asked, list) or not all(isinstance(i, str) for i in asked):
            raise RequestError("images must be a list of image references")
        return StreamingResponse(_pulls(config, picked, asked), media_type="application/x-ndjson")

    return [
        Route("/api/images", listing, methods=["GET"]),
        Route("/api/images/pull", pull, methods=["POST"]),
        Route("/api/images/prune", prune, methods=["POST"]),
    ]


async def _pulls(config: Config, nodes: list[NodeConfig], asked: list[str]) -> AsyncIterator[bytes]:
    """NDJSON lines of the pulls on ``nodes``, one node after the other."""
    pulled: list[dict[str, str]] = []
    failed: list[dict[str, Any]] = []
    for node in nodes:
        refs = await anyio.to_thread.run_sync(images.to_pull, config, node, asked)
        lines = images.pull_node(node, refs)
        try:
            while (line := await anyio.to_thread.run_sync(next, lines, None)) is not None:
                if "done" in line:
                    where = {"node": line["node"], "image": line["image"]}
                    (pulled if line["done"] else failed).append(
                        where if line["done"] else {**where, "error": line["error"]}
                    )
                yield (json.dumps(line) + "\n").encode()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(lines.close)
    yield (json.dumps({"summary": {"pulled": pulled, "failed": failed}}) + "\n").encode()
