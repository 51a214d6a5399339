"""The admin API of fleet management (:mod:`swapd.fleet`): one module per part, each adding
its routes to the admin router. Admin scope for every change, read scope for listings
(swapd.proxy.auth decides by method and path). Every edit of the config file goes through one
:class:`~swapd.proxy.fleet.edits.Edits` (one at a time, each followed by its reload)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

from swapd.proxy.fleet import bench, files, images, nodes, recipes
from swapd.proxy.fleet.edits import Edits

if TYPE_CHECKING:
    from swapd.proxy.admin import Admin


def routes(admin: Admin) -> list[BaseRoute]:
    edits = Edits(admin)
    return [
        *recipes.routes(admin, edits),
        *files.routes(admin, edits),
        *nodes.routes(admin),
        *images.routes(admin),
        *bench.routes(admin),
    ]
