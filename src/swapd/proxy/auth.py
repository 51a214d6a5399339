"""API keys: Bearer, ``x-api-key`` or the Basic password, compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hmac

from swapd.errors import Unauthorized
from swapd.proxy.asgi import Scope, header


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


def check(scope: Scope, keys: tuple[str, ...]) -> None:
    if not keys:
        return
    presented = presented_key(scope)
    if presented is None:
        raise Unauthorized("unauthorized: missing API key")
    given = presented.encode()
    ok = False
    for key in keys:  # no early exit: the time taken does not depend on which key matched
        ok |= hmac.compare_digest(given, key.encode())
    if not ok:
        raise Unauthorized("unauthorized: invalid API key")
