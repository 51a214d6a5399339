"""Admin API routes for model files (:mod:`swapd.fleet.files`): the listing (read scope),
downloads as jobs, removal and model entries (admin scope). Contract: ``docs/api.md``.

The listing, removal and entries touch the disk, so they run on a worker thread; a download
runs on its own thread (see :mod:`swapd.fleet.files.pulls`) and is followed by polling
``GET /api/files/pulls/{id}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from swapd.errors import Conflict, RequestError
from swapd.fleet.files.entry import ModelEntry, model_entry, write
from swapd.fleet.files.listing import listing, local_entries, remove
from swapd.fleet.files.pulls import Pulls
from swapd.fleet.recipes import main_file
from swapd.proxy.fleet.bodies import json_object
from swapd.proxy.fleet.edits import Edits

if TYPE_CHECKING:
    from swapd.proxy.admin import Admin


class _Files:
    def __init__(self, admin: Admin, edits: Edits) -> None:
        self.admin = admin
        self.edits = edits
        self.pulls = Pulls()

    async def listing(self, request: Request) -> Response:
        data = await anyio.to_thread.run_sync(listing, self.admin.scheduler.config)
        return JSONResponse({**data, "pulls": [p.view() for p in self.pulls.all()]})

    async def pull(self, request: Request) -> Response:
        body = await json_object(request, "repo")
        target = body["repo"] + (f":{body['file']}" if body.get("file") else "")
        pull = self.pulls.start(target, str(body.get("revision") or "main"))
        return JSONResponse(pull.view(), status_code=202)

    async def pull_list(self, request: Request) -> Response:
        return JSONResponse({"pulls": [p.view() for p in self.pulls.all()]})

    async def pull_info(self, request: Request) -> Response:
        return JSONResponse(self.pulls.get(str(request.path_params["id"])).view())

    async def pull_cancel(self, request: Request) -> Response:
        return JSONResponse(self.pulls.cancel(str(request.path_params["id"])).view())

    async def remove(self, request: Request) -> Response:
        body = await json_object(request, "target")
        config = self.admin.scheduler.config

        def work() -> dict[str, Any]:
            entries = local_entries(config)
            return remove(body["target"], entries, force=bool(body.get("force")))

        if any(p.state == "running" and p.repo == body["target"] for p in self.pulls.all()):
            raise Conflict(f"{body['target']} is being downloaded; cancel that first")
        return JSONResponse(await anyio.to_thread.run_sync(work))

    async def model(self, request: Request) -> Response:
        body = await json_object(request, "target")
        config = self.admin.scheduler.config
        given = body.get("id") or None
        if given is not None and not isinstance(given, str):
            raise RequestError("'id' must be a string")

        def make() -> ModelEntry:
            made = model_entry(body["target"], local_entries(config), given)
            if made.id in config.models:
                raise Conflict(f"model {made.id!r} is configured already; give another id")
            return made

        made = await anyio.to_thread.run_sync(make)
        view = made.view()
        if body.get("write"):
            view["written"] = await self._written(made)
        return JSONResponse(view)

    async def _written(self, made: ModelEntry) -> dict[str, Any]:
        """``made`` written into the config file (checked first), then the reload that
        applies it; a rejected reload puts the file back as it was."""
        path, others = main_file(self.admin.scheduler.config)
        change, applied = await self.edits.apply(lambda: write(made, path, others))
        return {
            "file": change.file,
            "backup": change.backup,
            "restored": applied.restored,
            "reload": applied.reload,
        }


def routes(admin: Admin, edits: Edits) -> list[BaseRoute]:
    files = _Files(admin, edits)
    return [
        Route("/api/files", files.listing, methods=["GET"]),
        Route("/api/files/pull", files.pull, methods=["POST"]),
        Route("/api/files/pulls", files.pull_list, methods=["GET"]),
        Route("/api/files/pulls/{id}", files.pull_info, methods=["GET"]),
        Route("/api/files/pulls/{id}/cancel", files.pull_cancel, methods=["POST"]),
        Route("/api/files/remove", files.remove, methods=["POST"]),
        Route("/api/files/model", files.model, methods=["POST"]),
    ]
