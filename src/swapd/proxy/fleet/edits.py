"""The running server's config edits (recipes → models, ``files add-model --write``): one at a
time, each written by :meth:`swapd.fleet.configfile.ConfigFile.save` (checked by the loader
first) and applied by a reload; a reload that is rejected all the same puts the file back, so
the file and the running config agree."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from swapd.fleet.configfile import Change, restore

if TYPE_CHECKING:
    from swapd.proxy.admin import Admin


@dataclass(frozen=True, slots=True)
class Applied:
    """An edit's reload: its result, and whether the file was put back (it was rejected)."""

    reload: dict[str, Any]
    restored: bool


class Edits:
    """One lock for every edit of the server's config file and the reload that follows it."""

    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        self.lock = anyio.Lock()

    async def apply(self, edit: Callable[[], Change]) -> tuple[Change, Applied]:
        """Run ``edit`` (which saves the file), then reload; a rejected reload restores the
        file from the backup the edit left."""
        async with self.lock:
            change = await anyio.to_thread.run_sync(edit)
            reload: dict[str, Any] = {"ok": False, "errors": ["reload is not available"]}
            if self.admin.reload is not None:
                reload = await self.admin.reload()
            rejected = not reload.get("ok")
            if rejected:
                await anyio.to_thread.run_sync(restore, Path(change.file), Path(change.backup))
        return change, Applied(reload, rejected)
