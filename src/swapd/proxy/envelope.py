"""JSON error envelopes: OpenAI's shape everywhere, Anthropic's on ``/v1/messages``."""

from __future__ import annotations

import json
from collections.abc import Callable

from swapd.errors import SwapdError, TooManyRequests, Unauthorized

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "authentication_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}


def is_anthropic(path: str) -> bool:
    return path.startswith("/v1/messages")


def error_body(status: int, message: str, code: str, *, anthropic: bool = False) -> bytes:
    if anthropic:
        kind = _ANTHROPIC_TYPES.get(status, "api_error")
        return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
    kind = _OPENAI_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    payload = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return json.dumps(payload).encode()


def error_headers(error: SwapdError, body: bytes) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if isinstance(error, TooManyRequests):
        headers.append((b"retry-after", b"1"))
    if isinstance(error, Unauthorized):
        headers.append((b"www-authenticate", b'Basic realm="swapd"'))
    return headers


def shown(error: SwapdError, redact: Callable[[str], str], *, detail: bool) -> SwapdError:
    """``error`` as a client may see it: secrets redacted (``swapd.secrets``) and, without
    ``detail``, only its first line (an engine's failed start carries its last log lines after
    it). The original is left alone: other waiters may be shown more of it."""
    message = error.message if detail else error.message.split("\n", 1)[0]
    message = redact(message)
    if message == error.message:
        return error
    copy = error.__class__.__new__(error.__class__)
    copy.__dict__.update(error.__dict__)
    copy.message = message
    copy.args = (message,)
    return copy
