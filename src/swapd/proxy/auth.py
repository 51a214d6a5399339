"""API keys and what each may do: who is asking (once per request), and the scope a route needs.

The key comes as a Bearer token, ``x-api-key`` or the Basic password and is compared with every
configured key in constant time. The match becomes a :class:`Principal` (the key's name, scopes
and model globs; never its value) stored in the ASGI scope under :data:`PRINCIPAL`, where every
handler finds it (:func:`principal`). With no keys configured every request is the full-access
anonymous principal.

Scopes (``swapd.config.keys``): ``inference`` for model requests (``/v1/*`` by model,
``/upstream/{model}/…``, their WebSockets), limited to the key's model globs — any other model
is answered 404 exactly as an unknown one; ``read`` for status (GET routes: ``/running``,
``/api/models``, activity, in-flight, events, logs, metrics, hardware, version, profiles);
``admin`` for everything that changes something or reveals configuration or payloads (start,
stop, sleep, wake, unload — llama-swap's ``GET /unload`` too —, reload, ``/api/config`` and
``/api/config/source``, captures, the active profile, cancelling a request).
``/upstream/{model}/…`` paths matching ``upstream.adminPaths`` need admin as well, and those
matching ``upstream.readPaths`` read (for GET/HEAD; admin for any other method).
``/v1/models``, ``/api/auth`` and ``/openapi.json`` need only a valid key.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import posixpath
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

from swapd.config.keys import scope_names
from swapd.config.model import ALL_SCOPES, ApiKey, Config, KeyScope
from swapd.errors import ScopeMissing, Unauthorized
from swapd.proxy import passthrough, routes
from swapd.proxy.asgi import Scope, header
from swapd.routing import Route

PRINCIPAL = "swapd.principal"  # the ASGI scope key holding the request's Principal

# Routes that need only a valid key (the answer depends on the key, or is public knowledge).
ANY_KEY = frozenset({"/api/auth", "/openapi.json", "/v1/models", "/models", "/"})
# GET routes that change something or reveal configuration or payloads.
ADMIN_GET = frozenset({"/unload", "/api/config", "/api/config/source"})
ADMIN_GET_PREFIXES = ("/api/captures/",)
_READ_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: a configured key's name, scopes and model globs."""

    name: str  # "" = anonymous: no keys are configured
    scopes: frozenset[KeyScope]
    models: tuple[str, ...] = ()  # globs of the models it may use; () = every model

    def has(self, scope: KeyScope) -> bool:
        return scope in self.scopes

    def require(self, scope: KeyScope | None, what: str) -> None:
        """Raise 403 unless this principal has ``scope`` (None: nothing needed)."""
        if scope is not None and scope not in self.scopes:
            raise ScopeMissing(
                f"forbidden: {what} needs an API key with the {scope!r} scope; "
                f"key {self.name!r} has {', '.join(self.scope_list()) or 'none'}"
            )

    def allows(self, *names: str) -> bool:
        """Whether any of ``names`` matches one of the key's model globs."""
        if not self.models:
            return True
        return any(fnmatchcase(name, glob) for name in names for glob in self.models)

    def may_use(self, route: Route) -> bool:
        """A route is reachable when the requested name or the model it resolved to (local
        id, or a peer's ``peer/model``) matches a glob."""
        return not self.models or self.allows(route.requested, route.key)

    def scope_list(self) -> list[str]:
        return scope_names(self.scopes)

    def as_json(self, *, keys_required: bool) -> dict[str, Any]:
        """``GET /api/auth``: never the key itself."""
        return {
            "name": self.name or None,
            "scopes": self.scope_list(),
            "models": list(self.models) or ["*"],
            "keys_required": keys_required,
        }


ANONYMOUS = Principal("", ALL_SCOPES)  # no keys configured: today's full access
NOBODY = Principal("(unauthenticated)", frozenset())  # never identified: may do nothing


@lru_cache(maxsize=64)
def principal_of(key: ApiKey) -> Principal:
    """What a request presenting ``key`` may do."""
    return Principal(key.name, key.scopes, key.models)


def presented_key(scope: Scope) -> str | None:
    auth = header(scope, b"authorization")
    if auth:
        scheme, _, value = auth.decode("latin-1").partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            return decoded.partition(":")[2]
        if scheme.lower() == "bearer":
            return value.strip()
    key = header(scope, b"x-api-key")
    return key.decode("latin-1") if key else None


def identify(scope: Scope, keys: tuple[ApiKey, ...]) -> Principal:
    """The principal of this request, stored in ``scope``; 401 without a valid key."""
    if not keys:
        scope[PRINCIPAL] = ANONYMOUS
        return ANONYMOUS
    presented = presented_key(scope)
    if presented is None:
        raise Unauthorized("unauthorized: missing API key")
    given = presented.encode()
    found: ApiKey | None = None
    for key in keys:  # no early exit: the time taken does not depend on which key matched
        if hmac.compare_digest(given, key.key.encode()):
            found = key
    if found is None:
        raise Unauthorized("unauthorized: invalid API key")
    who = principal_of(found)
    scope[PRINCIPAL] = who
    return who


def principal(scope: Scope) -> Principal:
    """The principal :func:`identify` stored; one that may do nothing when it did not run."""
    who = scope.get(PRINCIPAL)
    return who if isinstance(who, Principal) else NOBODY


def request_scope(method: str, path: str) -> KeyScope | None:
    """The scope a request needs (None: any valid key): inference for model requests and
    passthrough (whose model is checked later), else by route."""
    routed = routes.is_model_route(method, path)
    if routed or passthrough.is_passthrough(path):
        return "inference"
    if routed is None:  # a model route with the wrong method: 405 for any key
        return None
    if path in ANY_KEY:
        return None
    if method in _READ_METHODS:
        if path in ADMIN_GET or path.startswith(ADMIN_GET_PREFIXES):
            return "admin"
        return "read"
    return "admin"


@lru_cache(maxsize=16)
def _compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p, re.IGNORECASE) for p in patterns)


def _normal(path: str) -> str:
    """``//a/./b/../sleep`` → ``/a/sleep``: what an engine that tidies paths would serve."""
    path = re.sub(r"/{2,}", "/", path)
    tidy = posixpath.normpath(path) if path else "/"
    return tidy + "/" if path.endswith("/") and tidy != "/" else tidy


def upstream_scope(config: Config, method: str, path: str) -> KeyScope | None:
    """The scope an ``/upstream/{model}`` request for the remaining ``path`` (decoded) needs
    beyond inference: ``upstream.adminPaths`` any method → admin; ``upstream.readPaths``
    GET/HEAD → read, other methods → admin."""
    path = _normal(path)
    if any(p.search(path) for p in _compiled(config.upstream_read_paths)):
        return "read" if method in _READ_METHODS else "admin"
    if any(p.search(path) for p in _compiled(config.upstream_admin_paths)):
        return "admin"
    return None
