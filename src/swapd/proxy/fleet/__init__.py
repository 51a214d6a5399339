"""The admin API of fleet management (:mod:`swapd.fleet`): one module per part, each adding
its routes to the admin router. Admin scope for every change, read scope for listings
(swapd.proxy.auth decides by method and path)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

from swapd.proxy.fleet import bench, files, images, nodes, recipes

if TYPE_CHECKING:
    from swapd.proxy.admin import Admin


def routes(admin: Admin) -> list[BaseRoute]:
    return [
        *recipes.routes(admin),
        *files.routes(admin),
        *nodes.routes(admin),
        *images.routes(admin),
        *bench.routes(admin),
    ]
