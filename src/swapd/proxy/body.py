"""Find the model a request names and rewrite the body for the engine.

The model comes from a JSON body, a multipart form field or the query string. Rewrites
(``useModelName``, ``filters.stripParams``, ``filters.setParams``) apply to JSON bodies;
``useModelName`` also rewrites the multipart ``model`` field. An unchanged body is forwarded
as the very bytes the client sent.

A multipart body above ``OFF_LOOP_BYTES`` (an audio file, an image) is scanned in a worker
thread (:func:`extract_async`, :func:`rewrite_async`), so one big upload never stalls the
other requests on the event loop; the scan searches in ``WINDOW`` steps, so the thread gives
the event loop the interpreter lock between steps.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import anyio

from swapd.config.model import ModelConfig
from swapd.errors import RequestError

_BOUNDARY = re.compile(rb'boundary="?([^";]+)"?', re.I)
_FIELD_NAME = re.compile(rb'name="([^"]*)"', re.I)
OFF_LOOP_BYTES = 256 * 1024
WINDOW = 1 << 20  # bytes searched per step of a multipart scan
_SMALL_FIELDS = (b"model", b"stream")


@dataclass(slots=True)
class Parsed:
    model: str | None
    stream: bool = False
    data: dict[str, Any] | None = None  # the JSON object, when the body is JSON


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except UnicodeDecodeError as exc:
        raise RequestError(
            f"request body is not valid UTF-8: {exc.reason} at byte {exc.start}"
        ) from exc
    except json.JSONDecodeError as exc:
        raise RequestError(
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    if not isinstance(data, dict):
        raise RequestError("request body must be a JSON object")
    return data


def _find(body: bytes, needle: bytes, start: int) -> int:
    """``body.find(needle, start)`` in ``WINDOW`` steps (one C call would hold the GIL)."""
    overlap = len(needle) - 1
    while start < len(body):
        end = start + WINDOW
        pos = body.find(needle, start, end + overlap)
        if pos != -1:
            return pos
        start = end
    return -1


def _parts(body: bytes, content_type: bytes) -> tuple[bytes, list[tuple[bytes, int, int]]]:
    """The boundary and, per part, (field name, value start, value end) offsets into ``body``."""
    m = _BOUNDARY.search(content_type)
    if not m:
        raise RequestError("multipart body without a boundary")
    delimiter = b"--" + m.group(1)
    out: list[tuple[bytes, int, int]] = []
    pos = _find(body, delimiter, 0)
    while pos != -1:
        start = pos + len(delimiter)
        if body[start : start + 2] == b"--":
            break
        head_end = _find(body, b"\r\n\r\n", start)
        nxt = _find(body, b"\r\n" + delimiter, head_end + 4 if head_end != -1 else start)
        if head_end == -1 or nxt == -1:
            break
        name = _FIELD_NAME.search(body[start:head_end])
        if name:
            out.append((name.group(1), head_end + 4, nxt))
        pos = nxt + 2
    return delimiter, out


def extract(method: str, query: bytes, content_type: bytes, body: bytes) -> Parsed:
    ctype = content_type.lower()
    if b"application/json" in ctype or (
        body[:1] in (b"{", b"[") and not ctype.startswith(b"multipart/")
    ):
        data = _json(body)
        model = data.get("model")
        return Parsed(model if isinstance(model, str) else None, bool(data.get("stream")), data)
    if ctype.startswith(b"multipart/form-data"):
        _, parts = _parts(body, content_type)
        fields = {name: body[a:b] for name, a, b in parts if name in _SMALL_FIELDS}
        raw = fields.get(b"model")
        return Parsed(
            raw.decode(errors="replace") if raw is not None else None,
            fields.get(b"stream") == b"true",
        )
    source = query if method in ("GET", "HEAD") or not body else body
    params = parse_qs(source.decode("latin-1"))
    if not params and body and method not in ("GET", "HEAD"):
        params = parse_qs(query.decode("latin-1"))
    model_values = params.get("model")
    return Parsed(model_values[0] if model_values else None, params.get("stream") == ["true"])


def _off_loop(content_type: bytes, body: bytes) -> bool:
    return len(body) > OFF_LOOP_BYTES and content_type[:10].lower() == b"multipart/"


async def extract_async(method: str, query: bytes, content_type: bytes, body: bytes) -> Parsed:
    """:func:`extract`, in a worker thread for a big multipart body."""
    if _off_loop(content_type, body):
        return await anyio.to_thread.run_sync(extract, method, query, content_type, body)
    return extract(method, query, content_type, body)


async def rewrite_async(
    parsed: Parsed, body: bytes, content_type: bytes, model: ModelConfig
) -> bytes:
    """:func:`rewrite`, in a worker thread for a big multipart body."""
    if _off_loop(content_type, body) and model.use_model_name:
        return await anyio.to_thread.run_sync(rewrite, parsed, body, content_type, model)
    return rewrite(parsed, body, content_type, model)


def _strip(data: dict[str, Any], path: str) -> None:
    *parents, leaf = path.split(".")
    node: Any = data
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(leaf, None)


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = data
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[leaf] = value


def rewrite(parsed: Parsed, body: bytes, content_type: bytes, model: ModelConfig) -> bytes:
    """The body to send upstream (the original bytes when nothing changes)."""
    filters = model.filters
    if parsed.data is not None:
        if not (model.use_model_name or filters.strip_params or filters.set_params):
            return body
        data = parsed.data
        if model.use_model_name:
            data["model"] = model.use_model_name
        for path in filters.strip_params:
            if path != "model":
                _strip(data, path)
        for path in sorted(filters.set_params):
            if path != "model":
                _set(data, path, filters.set_params[path])
        return json.dumps(data, ensure_ascii=False).encode()
    if model.use_model_name and content_type.lower().startswith(b"multipart/form-data"):
        _, parts = _parts(body, content_type)
        for name, start, end in parts:
            if name == b"model":
                return body[:start] + model.use_model_name.encode() + body[end:]
    return body
