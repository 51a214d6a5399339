"""Admin API routes for fleet nodes (swapd.fleet)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from swapd.proxy.admin import Admin


def routes(admin: Admin) -> list[BaseRoute]:
    return []
