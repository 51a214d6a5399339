"""Where a passthrough request goes: ``/upstream/{model}/{path}`` and ``/comfyui/{path}``.

A passthrough request names its model in the path and is forwarded with the prefix stripped,
its remaining path kept exactly as the client escaped it. The rules that keep stale browser
tabs from swapping models in live here too: ``upstream.ignorePaths`` and ComfyUI's "only the
root starts it". HTTP and WebSocket requests share all of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote_to_bytes

from swapd.config.model import Config
from swapd.errors import Conflict, NotFound
from swapd.proxy.asgi import Scope
from swapd.proxy.forward import target
from swapd.routing import Route, Routes
from swapd.views import State

UPSTREAM_PREFIX = b"/upstream/"
COMFYUI_PREFIX = b"/comfyui"
COMFYUI_MODEL = "comfyui_auto"

StateOf = Callable[[str], State | None]


@dataclass(frozen=True, slots=True)
class Redirect:
    """The client must come back at ``location`` (a trailing slash added, query kept)."""

    location: bytes
    route: Route | None = None  # the model named, when there is one (its key's access decides)

    def status(self, method: str) -> int:
        """301 where a client may change the method (GET/HEAD), else 308."""
        return 301 if method in ("GET", "HEAD") else 308


@dataclass(frozen=True, slots=True)
class Passage:
    """One passthrough request: its route and the raw remaining path to forward."""

    route: Route
    rest: bytes  # the remaining path as the client escaped it; starts with "/"
    comfyui: bool = False

    @property
    def path(self) -> str:
        """The decoded remaining path (what ``ignorePaths`` patterns see)."""
        return unquote_to_bytes(self.rest).decode(errors="replace")

    def target(self, scope: Scope) -> str:
        """The request target to forward: the remaining raw path and the client's query."""
        return target(scope, self.rest)


def is_passthrough(path: str) -> bool:
    return path.startswith("/upstream/") or path == "/comfyui" or path.startswith("/comfyui/")


def _raw_path(scope: Scope) -> bytes:
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    return raw.split(b"?", 1)[0]


def _with_query(location: bytes, scope: Scope) -> bytes:
    query: bytes = scope["query_string"]
    return location + b"?" + query if query else location


def find(routes: Routes, scope: Scope) -> Passage | Redirect:
    """The passage for a request under ``/upstream/`` or ``/comfyui``; raises NotFound."""
    config = routes.config
    raw = _raw_path(scope)
    if raw.startswith(UPSTREAM_PREFIX):
        return _upstream(routes, scope, raw)
    if raw == COMFYUI_PREFIX:  # llama-swap redirects even without a comfyui_auto model
        return Redirect(_with_query(b"/comfyui/", scope))
    if raw.startswith(COMFYUI_PREFIX + b"/"):
        model = config.models.get(COMFYUI_MODEL)  # the exact id: no alias, no peer
        if model is None:
            raise NotFound(f"local model {COMFYUI_MODEL} not found")
        route = Route(requested=COMFYUI_MODEL, name=COMFYUI_MODEL, model=model)
        return Passage(route, raw[len(COMFYUI_PREFIX) :], comfyui=True)
    raise NotFound(f"no route for {scope['path']}")


def _upstream(routes: Routes, scope: Scope, raw: bytes) -> Passage | Redirect:
    # Raw segments: `author%2Fmodel` is one segment that names the model `author/model`.
    segments = raw[len(UPSTREAM_PREFIX) :].split(b"/")
    found = routes.resolve_path(segments)
    if found is None:
        raise NotFound(f"no model matches {scope['path']!r}")
    route, used = found
    if used == len(segments):  # `/upstream/<model>`: relative URLs need the trailing slash
        location = _with_query(UPSTREAM_PREFIX + b"/".join(segments) + b"/", scope)
        return Redirect(location, route)
    return Passage(route, b"/" + b"/".join(segments[used:]))


@lru_cache(maxsize=16)
def _compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in patterns)


def ignored(patterns: tuple[str, ...], path: str) -> bool:
    """Whether ``path`` matches any ``upstream.ignorePaths`` pattern (anywhere in it, as Go's
    ``MatchString`` does)."""
    return any(p.search(path) for p in _compiled(patterns))


def check_may_start(config: Config, passage: Passage, state_of: StateOf) -> None:
    """Raise 409 when this request must not start (or queue for) a model that is not ready:
    a ComfyUI path other than the root, or an ``/upstream`` path matching ``ignorePaths``.
    Peers never swap anything, so they always pass."""
    model = passage.route.model
    if model is None or state_of(model.id) is State.READY:
        return
    if passage.comfyui:
        if passage.rest != b"/":
            raise Conflict(f"model {model.id} is not loaded; only /comfyui/ can start it")
    elif ignored(config.ignore_paths, passage.path):
        raise Conflict(f"model {model.id} is not loaded; path matches upstream.ignorePaths")
