"""Serves the built web UI (``ui/`` → ``src/swapd/web/dist/``) under ``/ui/``.

The files are produced by ``npm --prefix ui run build`` (the package build runs it through the
hatch build hook in ``hatch_build.py``). Paths without an extension fall back to ``index.html``
so the client-side router owns them; a missing file with an extension is a 404. Hashed assets
under ``/ui/assets/`` are cached for a year, ``index.html`` is never cached.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path, PurePosixPath

from swapd.errors import NotFound, RequestError
from swapd.proxy.asgi import Scope, Send, send_bytes


class MethodNotAllowed(RequestError):
    http_status = 405
    code = "method_not_allowed"


DIST = Path(__file__).resolve().parent / "dist"
PREFIX = "/ui"

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".ico": "image/x-icon",
    ".png": "image/png",
    ".woff2": "font/woff2",
    ".map": "application/json",
}

NOT_BUILT = b"""<!doctype html><meta charset="utf-8"><title>swapd</title>
<h1>swapd web UI is not built</h1>
<p>Build it with <code>npm --prefix ui ci &amp;&amp; npm --prefix ui run build</code>
(or reinstall: <code>pip install -e .</code> with Node.js on the PATH), then reload.</p>
<p>The API is available: <a href="/running">/running</a>, <a href="/v1/models">/v1/models</a>.</p>
"""


def is_ui_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def _content_type(path: Path) -> str:
    return (
        _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    )


def resolve(path: str, dist: Path = DIST) -> Path | None:
    """The file under ``dist`` that answers ``path`` (``/ui/...``), or None for a 404."""
    rel = path[len(PREFIX) :].lstrip("/")
    parts = PurePosixPath(rel).parts
    if any(p in ("..", ".") or "\\" in p or p.startswith(".") for p in parts):
        return None
    candidate = dist.joinpath(*parts) if parts else dist / "index.html"
    if candidate.is_dir():
        candidate = candidate / "index.html"
    if candidate.is_file():
        return candidate
    if not PurePosixPath(rel).suffix:
        index = dist / "index.html"
        return index if index.is_file() else None
    return None


async def serve(scope: Scope, send: Send, dist: Path = DIST) -> None:
    method = scope["method"]
    path: str = scope["path"]
    if method not in ("GET", "HEAD"):
        raise MethodNotAllowed(f"method {method} is not allowed on {path}")
    if path == PREFIX:
        await send_bytes(send, 301, b"", [(b"location", b"/ui/")])
        return
    if not (dist / "index.html").is_file():
        await send_bytes(send, 503, NOT_BUILT, content_type=b"text/html; charset=utf-8")
        return
    file = resolve(path, dist)
    if file is None:
        raise NotFound(f"no file {path}")
    body = file.read_bytes()
    immutable = file.parent.name == "assets"
    cache = b"public, max-age=31536000, immutable" if immutable else b"no-cache"
    headers = [(b"cache-control", cache), (b"x-content-type-options", b"nosniff")]
    if method == "HEAD":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", _content_type(file).encode()),
                    (b"content-length", str(len(body)).encode()),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        return
    await send_bytes(send, 200, body, headers, content_type=_content_type(file).encode())
