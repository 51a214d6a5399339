"""Admin API routes for fleet nodes (:mod:`swapd.fleet.nodes`): ``GET /api/nodes[?refresh]``
(read scope)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from swapd.fleet import nodes

if TYPE_CHECKING:
    from swapd.proxy.admin import Admin


def routes(admin: Admin) -> list[BaseRoute]:
    async def listing(request: Request) -> Response:
        """Every node: its Docker daemon, GPUs, disk free where caches live, models there."""
        scheduler = admin.scheduler
        refresh = request.query_params.get("refresh", "false").lower() not in ("0", "false", "no")
        found = await nodes.report(
            scheduler.config, scheduler.placer.inventory, scheduler.snapshot(), refresh=refresh
        )
        return JSONResponse({"nodes": found})

    return [Route("/api/nodes", listing, methods=["GET"])]
