"""The browser guard: swapd's control plane cannot be driven by a web page the user visits.

Two checks run on every HTTP and WebSocket request, before auth:

**Host.** A page served from ``http://evil.example`` can re-point ``evil.example`` at 127.0.0.1
(DNS rebinding) and then talk to swapd as its own origin. So the ``Host`` header must be a name
swapd answers to, else 403 ``host_not_allowed``:

- any IP literal (``127.0.0.1``, ``[::1]``, ``192.168.1.5``): rebinding needs a DNS name the
  attacker controls, so an address is always safe, and a LAN client of a swapd listening on
  ``0.0.0.0`` works by address without any setting;
- ``localhost`` and any ``*.localhost`` (browsers resolve these to loopback themselves);
- the host of ``--listen`` when it is a name; when listening on every interface (``0.0.0.0``,
  ``::``), the machine's host name (``box``, its first label, and ``box.local``);
- ``server.allowedHosts``: exact names, ``.example.com`` (that domain and its subdomains), or
  ``*`` (any Host: the check is off).

A request without ``Host`` (HTTP/1.0, raw clients) is not from a browser and passes.

**Cross-site.** When no API key is configured, anything that can reach the port could use
swapd, but a web page must not: it may not unload models with an ``<img src=/unload>`` or a
form post. A request the browser marks as coming from another site — ``Sec-Fetch-Site:
cross-site`` or ``same-site`` (another port on localhost is another application), or,
without that header, an ``Origin`` (including ``null``) that is not the request's own host — is
refused with 403 ``cross_site_refused`` when it is *guarded*: any method but GET/HEAD, llama-swap's
``GET /unload``, ``GET /api/config``, every model request (it starts engines: inference from a
page on another site needs a key), every ``/upstream`` and ``/comfyui`` path, and every
WebSocket upgrade. A CORS preflight for a guarded request is refused the same way, so the
browser never sends it. With API keys configured the key decides instead: auth (which runs
next) refuses a request without a valid one, and a page that has the key may use it.
Reads (``/v1/models``, ``/running``, ``/logs``, ``/api/models``…) stay open: the browser's
same-origin policy already keeps a foreign page from reading their answers.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from dataclasses import dataclass

from swapd.config.model import Config
from swapd.errors import CrossSiteRefused, HostNotAllowed
from swapd.proxy import passthrough, routes
from swapd.proxy.asgi import Scope, header

SAFE_METHODS = frozenset({"GET", "HEAD"})
GUARDED_GETS = frozenset({"/unload", "/api/config"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def split_host(value: str) -> tuple[str, str]:
    """``host[:port]`` (IPv6 in brackets) → the lower-case name without a trailing dot, port."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        return name, rest.removeprefix(":")
    name, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or ":" in name:
        return value.rstrip("."), ""
    return name.rstrip("."), port


@functools.lru_cache(maxsize=256)  # a client sends the same Host on every request
def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def machine_names() -> frozenset[str]:
    """This machine's host name, its first label and ``<label>.local`` (mDNS)."""
    name = socket.gethostname().lower().rstrip(".")
    if not name:
        return frozenset()
    label = name.split(".", 1)[0]
    return frozenset({name, label, f"{label}.local"})


@dataclass(frozen=True, slots=True)
class HostRule:
    """``server.allowedHosts`` plus the names swapd's listen address implies."""

    names: frozenset[str]
    domains: tuple[str, ...]  # ".example.com": the domain and its subdomains
    any: bool

    @classmethod
    def build(cls, listen_host: str, allowed: tuple[str, ...]) -> HostRule:
        names: set[str] = set()
        listen = listen_host.strip("[]").lower()
        if listen in WILDCARD_HOSTS:
            names |= machine_names()
        elif not is_ip(listen):
            names.add(listen.rstrip("."))
        domains: list[str] = []
        for entry in allowed:
            entry = entry.strip().lower().rstrip(".")
            if entry.startswith("*."):
                entry = entry[1:]
            if entry.startswith("."):
                domains.append(entry)
            elif entry:
                names.add(split_host(entry)[0])
        return cls(frozenset(names), tuple(domains), "*" in names)

    def allows(self, name: str) -> bool:
        if self.any or is_ip(name) or name == "localhost" or name.endswith(".localhost"):
            return True
        return name in self.names or any(name.endswith(d) or name == d[1:] for d in self.domains)


def guarded(method: str, path: str) -> bool:
    """Whether a request may change state or start engines (or reads the config)."""
    if method not in SAFE_METHODS or path in GUARDED_GETS:
        return True
    return bool(routes.is_model_route(method, path)) or passthrough.is_passthrough(path)


def foreign(scope: Scope) -> bool:
    """Whether a browser marked the request as coming from another site (see the docstring)."""
    fetch_site = header(scope, b"sec-fetch-site")
    if fetch_site is not None:
        return fetch_site.strip().lower() in (b"cross-site", b"same-site")
    origin = header(scope, b"origin")
    if origin is None:
        return False  # not a browser's cross-origin request
    scheme, sep, rest = origin.decode("latin-1").strip().lower().partition("://")
    if not sep:
        return True  # "null": a sandboxed frame, a file:// page
    origin_name, origin_port = split_host(rest)
    host = header(scope, b"host")
    if host is None:
        return True
    name, port = split_host(host.decode("latin-1"))
    default = _DEFAULT_PORTS.get(scheme, "")
    return (origin_name, origin_port or default) != (name, port or default)


class Guard:
    """The two checks, for one listen address; the allowed names follow config reloads."""

    def __init__(self, listen_host: str = "127.0.0.1") -> None:
        self.listen_host = listen_host
        self._rule: tuple[tuple[str, ...], HostRule] | None = None

    def rule(self, config: Config) -> HostRule:
        allowed = config.server.allowed_hosts
        cached = self._rule
        if cached is None or cached[0] != allowed:
            cached = self._rule = (allowed, HostRule.build(self.listen_host, allowed))
        return cached[1]

    def check(self, scope: Scope, config: Config) -> None:
        """Raise ``HostNotAllowed`` or ``CrossSiteRefused``; return when the request may go on."""
        host = header(scope, b"host")
        if host is not None:
            name, _ = split_host(host.decode("latin-1"))
            if not self.rule(config).allows(name):
                shown = name if len(name) <= 100 else name[:100] + "…"
                raise HostNotAllowed(
                    f"Host {shown!r} is not an allowed name for this swapd (protection against "
                    f"DNS rebinding); add it to server.allowedHosts in the config to allow it"
                )
        if config.api_keys or not foreign(scope):
            return
        method: str = scope.get("method", "GET")
        if scope["type"] == "http" and method == "OPTIONS":  # a CORS preflight
            requested = header(scope, b"access-control-request-method")
            method = requested.decode("latin-1").strip().upper() if requested else "GET"
        if scope["type"] == "websocket" or guarded(method, scope["path"]):
            raise CrossSiteRefused(
                f"{method} {scope['path']} from another site's web page is refused: swapd has "
                f"no API keys, so it cannot tell the page from you; configure apiKeys and send "
                f"a key to allow it"
            )
