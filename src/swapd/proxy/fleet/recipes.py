"""Admin API routes for recipes → models (:mod:`swapd.fleet.recipes`).

``GET /api/recipes`` (the catalog, and the entries of the main config file made from recipes),
``GET /api/recipes/{name}`` (one recipe: file, placeholders, rendered command; ``?set=k=v``
repeatable, ``?id=``), ``POST /api/recipes/models`` (add or, with ``replace``, edit an entry)
and ``DELETE /api/recipes/models/{id}``: both edit the server's main config file and then
reload it (running models keep running; a rejected reload puts the file back), through the
server's one :class:`~swapd.proxy.fleet.edits.Edits`. Changes need the admin scope
(swapd.proxy.auth).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from swapd.errors import RequestError
from swapd.fleet import recipes as fleet
from swapd.fleet.configfile import Change
from swapd.proxy.fleet.bodies import json_object
from swapd.proxy.fleet.edits import Edits
from swapd.recipes import RecipeError
from swapd.secrets import redactor

if TYPE_CHECKING:
    from swapd.proxy.admin import Admin


def routes(admin: Admin, edits: Edits) -> list[BaseRoute]:
    api = _Recipes(admin, edits)
    return [
        Route("/api/recipes", api.catalog, methods=["GET"]),
        Route("/api/recipes/models", api.add, methods=["POST"]),
        Route("/api/recipes/models/{id:path}", api.remove, methods=["DELETE"]),
        Route("/api/recipes/{name:path}", api.detail, methods=["GET"]),
    ]


@contextlib.contextmanager
def _as_request_errors() -> Iterator[None]:
    """A bad recipe name or ``set`` is the client's mistake: 400, not 500."""
    try:
        yield
    except RecipeError as exc:
        raise RequestError(exc.message) from None


def _text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RequestError(f"{key!r} must be a string")
    return value


def _sets(value: Any) -> dict[str, Any]:
    """``set``: an object of placeholder values, or a list of ``key=value`` texts."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return fleet.parse_sets(value)
    raise RequestError("'set' must be an object or a list of key=value texts")


def _note(path: Path, others: tuple[str, ...]) -> str:
    return f"changes go to {path}, the main config file; also read: {', '.join(others)}"


class _Recipes:
    def __init__(self, admin: Admin, edits: Edits) -> None:
        self.admin = admin
        self.edits = edits

    async def catalog(self, request: Request) -> Response:
        config = self.admin.scheduler.config

        def read() -> dict[str, Any]:
            body: dict[str, Any] = {"recipes": fleet.listing(), "entries": [], "file": None}
            try:
                path, others = fleet.main_file(config)
            except RequestError as exc:
                return {**body, "note": exc.message}
            body.update(file=str(path), entries=fleet.entries(path))
            if others:
                body["note"] = _note(path, others)
            return body

        body = await anyio.to_thread.run_sync(read)
        return JSONResponse(redactor(config).value(body))

    async def detail(self, request: Request) -> Response:
        name = str(request.path_params["name"])
        model_id = request.query_params.get("id") or None
        with _as_request_errors():
            sets = fleet.parse_sets(request.query_params.getlist("set"))
            body = await anyio.to_thread.run_sync(fleet.detail, name, sets, model_id)
        return JSONResponse(body)

    async def add(self, request: Request) -> Response:
        body = await json_object(request)
        recipe, model_id = _text(body, "recipe"), _text(body, "id")
        if recipe is None or model_id is None:
            raise RequestError("'recipe' and 'id' are required")
        node = _text(body, "node")
        with _as_request_errors():
            sets = _sets(body.get("set"))
        path, others = fleet.main_file(self.admin.scheduler.config)

        def write() -> Change:
            return fleet.add_model(
                path,
                model_id,
                recipe,
                node=node,
                sets=sets,
                replace=bool(body.get("replace")),
                others=others,
            )

        return await self._applied(write, _note(path, others) if others else None)

    async def remove(self, request: Request) -> Response:
        model_id = str(request.path_params["id"])
        path, others = fleet.main_file(self.admin.scheduler.config)
        note = _note(path, others) if others else None
        return await self._applied(lambda: fleet.remove_model(path, model_id, others=others), note)

    async def _applied(self, write: Callable[[], Change], note: str | None) -> Response:
        """The edit, then the reload that applies it (other models keep running)."""
        with _as_request_errors():
            change, applied = await self.edits.apply(write)
        body = {**change.as_dict(), "reload": applied.reload, "restored": applied.restored}
        if note:
            body["note"] = note
        return JSONResponse(body)
