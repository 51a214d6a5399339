"""The JSON body of a fleet route: an object (an empty body is ``{}``), at most
:data:`MAX_BODY` bytes, with the fields a route requires as non-empty strings."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from swapd.errors import RequestError

MAX_BODY = 64 * 1024


async def json_object(request: Request, *required: str) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise RequestError(f"request body over {MAX_BODY} bytes")
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise RequestError(f"invalid JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError("the body must be a JSON object")
    for name in required:
        if not isinstance(data.get(name), str) or not data[name].strip():
            raise RequestError(f"{name!r} is required (a string)")
    return data
