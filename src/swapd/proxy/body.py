"""Find the model a request names and rewrite the request for the engine or peer.

The model comes from a JSON body, a multipart form field or the query string. Two kinds of
rewrite, in llama-swap's order:

- the ``model`` value: the profile pin's or selector's target, the peer's own model id, or
  ``useModelName`` (last wins) — in a JSON body, a multipart field, the query or a form body;
- filters, on JSON bodies only: ``stripParams`` → ``setParams`` → ``setParamsByID[name]``, keys
  in sorted order, ``model`` never touched, dotted keys addressing nested fields (``a.b``; an
  escaped ``\\.`` is a literal dot; a number indexes an existing list, ``-1`` appends to it).

An unchanged request is forwarded as the very bytes the client sent; a changed body gets its
``Content-Length`` from the forwarder (the client's is never copied).

A JSON body is read by the native scan where the library is built (swapd.native.request_scan:
one pass in C that checks what ``json.loads`` checks and makes no object, five to nine times
faster on a long chat); it is parsed only for a rewrite that needs the object, and wherever the
scan does not vouch for it, so that a bad body gets Python's error.

A multipart body above ``OFF_LOOP_BYTES`` (an audio file, an image) is scanned in a worker
thread (:func:`extract_async`, :func:`rewrite_async`), so one big upload never stalls the
other requests on the event loop; the scan searches in ``WINDOW`` steps, so the thread gives
the event loop the interpreter lock between steps.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any
from urllib.parse import parse_qs, quote, unquote_plus

import anyio

from swapd.config.model import Filters, ServerConfig
from swapd.errors import RequestError
from swapd.native import ESCAPED_MODEL, PLAIN_MODEL, request_scan
from swapd.routing import Route

_BOUNDARY = re.compile(rb'boundary="?([^";]+)"?', re.I)
_FIELD_NAME = re.compile(rb'name="([^"]*)"', re.I)
OFF_LOOP_BYTES = 256 * 1024
WINDOW = 1 << 20  # bytes searched per step of a multipart scan
_SMALL_FIELDS = (b"model", b"stream")
MAX_JSON_DEPTH = ServerConfig().max_json_depth  # the default of server.maxJsonDepth
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = bytes.maketrans(b"[]{}", b"\x01\xff\x01\xff")  # opener +1, closer -1 (signed)


@dataclass(slots=True)
class Parsed:
    model: str | None
    stream: bool = False
    data: dict[str, Any] | None = None  # the JSON object, when the body is JSON and was parsed
    scanned: bool = False  # a JSON object read by the native scan: parsed only to rewrite it


def json_depth(body: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest (brackets inside strings do not
    count), without recursion and in C loops: escaped backslashes and quotes are dropped, so
    every quote left opens or closes a string and splitting on them alternates outside and
    inside; of the outside, the brackets become +1/-1 steps and the deepest running sum is
    the depth. (An unterminated string runs to the end, as the parser would stop there.)"""
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(body.split(b'"')[::2]).translate(None, _NOT_BRACKET)
    if not brackets:
        return 0
    return max(accumulate(memoryview(brackets.translate(_STEP)).cast("b")))


def check_depth(body: bytes, limit: int) -> None:
    """A JSON body nesting deeper than ``limit`` is refused before any parser recurses into
    it. Cheap for the usual body: fewer brackets in all than the limit means nothing to scan."""
    if body.count(b"[") + body.count(b"{") > limit and json_depth(body) > limit:
        raise RequestError(
            f"request body nests JSON deeper than {limit} levels (server.maxJsonDepth)"
        )


def loads(body: bytes, limit: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for input from outside: bounded nesting, never a RecursionError."""
    check_depth(body, limit)
    try:
        return json.loads(body)
    except RecursionError as exc:  # a limit above what the interpreter's stack allows
        raise RequestError("request body nests JSON too deeply") from exc


def _json(body: bytes, limit: int) -> dict[str, Any]:
    try:
        data = loads(body, limit)
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


_scan = request_scan()


def _scanned(body: bytes, max_depth: int) -> Parsed | None:
    """The model and stream of a JSON object body without parsing it (the native scan, which
    reads it once and makes no object), or None: no scan here, or Python must parse it."""
    found = _scan(body, max_depth) if _scan is not None else None
    if found is None:
        return None
    start, end, kind, stream = found
    if kind == PLAIN_MODEL:
        model: str | None = body[start:end].decode()
    elif kind == ESCAPED_MODEL:
        model = json.loads(body[start - 1 : end + 1])
    else:
        model = None
    return Parsed(model, stream, scanned=True)


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


def extract(
    method: str,
    query: bytes,
    content_type: bytes,
    body: bytes,
    *,
    max_depth: int = MAX_JSON_DEPTH,
    whole: bool = False,
) -> Parsed:
    """The model a request names (and whether it asks for a stream). A JSON body is parsed
    into :attr:`Parsed.data` when ``whole`` is set or the native scan cannot vouch for it;
    else only scanned, and parsed later if a rewrite needs it."""
    ctype = content_type.lower()
    if b"application/json" in ctype or (
        body[:1] in (b"{", b"[") and not ctype.startswith(b"multipart/")
    ):
        if not whole and (scanned := _scanned(body, max_depth)) is not None:
            return scanned
        data = _json(body, max_depth)
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


async def extract_async(
    method: str,
    query: bytes,
    content_type: bytes,
    body: bytes,
    *,
    max_depth: int = MAX_JSON_DEPTH,
    whole: bool = False,
) -> Parsed:
    """:func:`extract`, in a worker thread for a big multipart body."""
    if _off_loop(content_type, body):
        return await anyio.to_thread.run_sync(extract, method, query, content_type, body)
    return extract(method, query, content_type, body, max_depth=max_depth, whole=whole)


@dataclass(frozen=True, slots=True)
class Rewrite:
    """What to change in one request before it goes upstream."""

    model: str | None = None  # the new ``model`` value; None: keep the client's
    filters: Filters = field(default_factory=Filters)
    by_id: str = ""  # the ``setParamsByID`` key: the requested name after rewriting

    @classmethod
    def for_route(cls, route: Route, requested: str | None) -> Rewrite:
        """The rewrite for ``route``; ``requested`` is the ``model`` the client sent."""
        if route.model is not None:
            filters = route.model.filters
            wanted = route.model.use_model_name or route.name
        else:
            assert route.peer is not None
            filters = route.peer.filters  # peers have no useModelName
            wanted = route.upstream_model
        return cls(wanted if wanted != requested else None, filters, route.name)

    def params(self) -> list[tuple[str, Any]]:
        """``setParams`` then ``setParamsByID[by_id]``, each in sorted key order, no ``model``."""
        out = sorted(self.filters.set_params.items())
        out += sorted(self.filters.set_params_by_id.get(self.by_id, {}).items())
        return [(k, v) for k, v in out if k != "model"]

    def unfiltered(self) -> bool:
        """No filter applies (the usual case: checked before sorting any keys)."""
        filters = self.filters
        return not (
            filters.strip_params
            or filters.set_params
            or (filters.set_params_by_id and self.by_id in filters.set_params_by_id)
        )

    def strips(self) -> list[str]:
        return sorted({p for p in self.filters.strip_params if p and p != "model"})


async def rewrite_async(
    parsed: Parsed, body: bytes, query: bytes, content_type: bytes, change: Rewrite
) -> tuple[bytes, bytes]:
    """:func:`rewrite`, in a worker thread for a big multipart body."""
    if _off_loop(content_type, body) and change.model is not None:
        return await anyio.to_thread.run_sync(rewrite, parsed, body, query, content_type, change)
    return rewrite(parsed, body, query, content_type, change)


def _keys(path: str) -> list[str]:
    """A dotted filter path as keys: ``a.b`` → [a, b]; ``a\\.b`` → [a.b]."""
    return [k.replace("\\.", ".") for k in re.split(r"(?<!\\)\.", path)]


def _index(node: list[Any], key: str) -> int | None:
    """``key`` as an index of ``node`` when it is one (``-1`` counts from the end)."""
    if key.lstrip("-").isdigit() and -len(node) <= int(key) < len(node):
        return int(key)
    return None


def _child(node: Any, key: str) -> Any:
    if isinstance(node, dict):
        return node.get(key)
    if isinstance(node, list) and (i := _index(node, key)) is not None:
        return node[i]
    return None


def _strip(data: dict[str, Any], path: str) -> None:
    *parents, leaf = _keys(path)
    node: Any = data
    for key in parents:
        node = _child(node, key)
    if isinstance(node, dict):
        node.pop(leaf, None)
    elif isinstance(node, list) and (i := _index(node, leaf)) is not None:
        del node[i]


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = _keys(path)
    node: Any = data
    for key in parents:
        child = _child(node, key)
        if not isinstance(child, dict | list):
            if not isinstance(node, dict):
                return  # a list index out of range: nothing to set
            child = node[key] = {}
        node = child
    if isinstance(node, dict):
        node[leaf] = value
    elif leaf == "-1":  # as sjson: append
        node.append(value)
    elif (i := _index(node, leaf)) is not None:
        node[i] = value


def _with_model(encoded: bytes, model: str) -> bytes:
    """An urlencoded query or form with its ``model`` value(s) replaced, the rest as sent."""
    pieces = encoded.split(b"&")
    value = quote(model, safe="").encode()
    for i, piece in enumerate(pieces):
        if unquote_plus(piece.split(b"=", 1)[0].decode("latin-1")) == "model":
            pieces[i] = b"model=" + value
    return b"&".join(pieces)


def rewrite(
    parsed: Parsed, body: bytes, query: bytes, content_type: bytes, change: Rewrite
) -> tuple[bytes, bytes]:
    """The body and query string to send upstream (the originals when nothing changes)."""
    if parsed.data is not None or parsed.scanned:
        if change.model is None and change.unfiltered():
            return body, query
        strips, params = change.strips(), change.params()
        if change.model is None and not strips and not params:
            return body, query
        data = parsed.data if parsed.data is not None else json.loads(body)  # (scanned: valid)
        if change.model is not None:
            data["model"] = change.model
        for path in strips:
            _strip(data, path)
        for path, value in params:
            _set(data, path, value)
        return json.dumps(data, ensure_ascii=False).encode(), query
    if change.model is None:
        return body, query
    if content_type.lower().startswith(b"multipart/form-data"):
        _, parts = _parts(body, content_type)
        for name, start, end in parts:
            if name == b"model":
                return body[:start] + change.model.encode() + body[end:], query
        return body, query
    if body and b"model" in body and "model" in parse_qs(body.decode("latin-1")):
        body = _with_model(body, change.model)
    if b"model" in query:
        query = _with_model(query, change.model)
    return body, query
