"""One error tree for swapd.

    SwapdError                      exit 1, HTTP 500
    ├── ConfigError                 exit 2; carries every ConfigIssue (file:line:col: message)
    ├── RequestError                HTTP 400 (bad JSON, missing model, non-UTF-8 body)
    │   ├── HeaderTimeout           HTTP 408 (headers not sent within server.headerTimeout)
    │   ├── HeadersTooLarge         HTTP 431 (header block above server.maxHeaderBytes)
    │   ├── BodyTooLarge            HTTP 413
    │   ├── NotFound                HTTP 404 (unknown model / route)
    │   ├── MethodNotAllowed        HTTP 405 (known route, wrong method)
    │   └── Conflict                HTTP 409 (e.g. sleep for a model that cannot sleep)
    ├── Unauthorized                HTTP 401
    ├── Forbidden                   HTTP 403
    │   ├── HostNotAllowed          HTTP 403 (Host header not an allowed name: DNS rebinding)
    │   ├── CrossSiteRefused        HTTP 403 (a browser's cross-site request, without a key)
    │   └── ScopeMissing            HTTP 403 (the API key lacks the scope a route needs)
    ├── TooManyRequests             HTTP 429 + Retry-After
    ├── ModelError                  errors about one model's engine
    │   ├── StartFailed             HTTP 503 (spawn error, premature exit, health timeout)
    │   ├── ModelUnloaded           HTTP 503 (unloaded/reloaded while the request waited)
    │   └── UpstreamUnavailable     HTTP 502 (engine unreachable or died mid-request)
    │       ├── UpstreamGone        HTTP 502 (connection refused: nothing reached the engine)
    │       └── UpstreamTimeout     HTTP 504 (engine did not connect / answer / send in time)
    ├── DriverNotFound              exit 2 (unknown driver name)
    ├── ClusterUnavailable          HTTP 503 (the Ray cluster cannot be reached; swapd.raycluster)
    ├── SelectorUnavailable         HTTP 503 (a spillover selector has no target left)
    ├── ShuttingDown                HTTP 503
    ├── TooManyConnections          HTTP 503 (server.maxConnections open; swapd.edge)
    └── RequestCancelled            HTTP 503 (cancelled through /api/inflight/{id}/cancel)

Each class states its ``http_status``, ``code`` (machine-readable) and ``exit_code``; the proxy
maps them to JSON envelopes and the CLI to exit codes, nothing else does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


class SwapdError(Exception):
    http_status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config file, printed compiler style: ``file:line:col: message``."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class ConfigError(SwapdError):
    code = "invalid_config"
    exit_code = 2

    def __init__(self, issues: list[ConfigIssue] | tuple[ConfigIssue, ...]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class RequestError(SwapdError):
    http_status = 400
    code = "bad_request"


class HeaderTimeout(RequestError):
    http_status = 408
    code = "request_timeout"


class HeadersTooLarge(RequestError):
    http_status = 431
    code = "request_header_too_large"


class BodyTooLarge(RequestError):
    http_status = 413
    code = "request_too_large"


class NotFound(RequestError):
    http_status = 404
    code = "not_found"


class MethodNotAllowed(RequestError):
    http_status = 405
    code = "method_not_allowed"


class NotSupported(RequestError):
    """A route swapd knows and will not serve (the Ollama API's model-file operations)."""

    http_status = 501
    code = "not_implemented"


class Conflict(RequestError):
    http_status = 409
    code = "conflict"


class Unauthorized(SwapdError):
    http_status = 401
    code = "unauthorized"


class Forbidden(SwapdError):
    http_status = 403
    code = "forbidden"


class HostNotAllowed(Forbidden):
    """The ``Host`` header names none of swapd's allowed hosts (``server.allowedHosts``)."""

    code = "host_not_allowed"


class CrossSiteRefused(Forbidden):
    """A browser marked the request cross-site and it carried no API key."""

    code = "cross_site_refused"


class ScopeMissing(Forbidden):
    """The API key is valid but lacks the scope (inference, read, admin) the route needs."""

    code = "insufficient_scope"


class TooManyRequests(SwapdError):
    http_status = 429
    code = "concurrency_limit"


class ModelError(SwapdError):
    def __init__(self, model: str, message: str) -> None:
        super().__init__(message)
        self.model = model


class StartFailed(ModelError):
    """An engine did not start. ``permanent``: it will fail the same way again (missing file,
    unknown program), so the scheduler fails the queued requests instead of retrying."""

    http_status = 503
    code = "start_failed"

    def __init__(self, model: str, message: str, *, permanent: bool = False) -> None:
        super().__init__(model, message)
        self.permanent = permanent


class NoCapacity(ModelError):
    """The model fits on no device, even with every model that may be evicted gone."""

    http_status = 503
    code = "insufficient_memory"


class ModelUnloaded(ModelError):
    http_status = 503
    code = "model_unloaded"


class UpstreamUnavailable(ModelError):
    http_status = 502
    code = "bad_gateway"


class UpstreamGone(UpstreamUnavailable):
    """The engine refused the connection, so the request never reached it (safe to retry)."""


class UpstreamTimeout(UpstreamUnavailable):
    """The engine did not connect, answer or send a body byte within the model's ``timeouts``."""

    http_status = 504
    code = "upstream_timeout"


class DriverNotFound(SwapdError):
    code = "unknown_driver"
    exit_code = 2


class ClusterUnavailable(SwapdError):
    """The cluster engine (Ray) is unreachable: its models cannot start; the others serve."""

    http_status = 503
    code = "cluster_unavailable"


class SelectorUnavailable(SwapdError):
    http_status = 503
    code = "selector_unavailable"


class ShuttingDown(SwapdError):
    http_status = 503
    code = "shutting_down"


class TooManyConnections(SwapdError):
    http_status = 503
    code = "too_many_connections"


class RequestCancelled(SwapdError):
    """An operator cancelled the request (``POST /api/inflight/{id}/cancel``)."""

    http_status = 503
    code = "request_cancelled"
