"""The /ui static file server (swapd.web): routing, fallbacks, traversal, caching, auth."""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import anyio
import pytest

from swapd import web
from swapd.errors import NotFound


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html>INDEX")
    (tmp_path / "assets" / "app-123.js").write_text("console.log(1)")
    (tmp_path.parent / "secret.txt").write_text("nope")
    return tmp_path


def _get(path: str, dist: Path, method: str = "GET") -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    async def main() -> None:
        await web.serve({"method": method, "path": path}, send, dist)

    anyio.run(main)
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


def test_is_ui_path() -> None:
    assert web.is_ui_path("/ui")
    assert web.is_ui_path("/ui/")
    assert web.is_ui_path("/ui/assets/x.js")
    assert not web.is_ui_path("/uix")
    assert not web.is_ui_path("/v1/models")


def test_index_and_spa_fallback(dist: Path) -> None:
    for path in ("/ui/", "/ui/models", "/ui/logs/echo-a"):
        status, headers, body = _get(path, dist)
        assert status == 200, path
        assert body == b"<!doctype html>INDEX"
        assert headers[b"content-type"].startswith(b"text/html")
        assert headers[b"cache-control"] == b"no-cache"


def test_asset_is_cached_forever(dist: Path) -> None:
    status, headers, body = _get("/ui/assets/app-123.js", dist)
    assert status == 200
    assert body == b"console.log(1)"
    assert headers[b"content-type"].startswith(b"text/javascript")
    assert b"immutable" in headers[b"cache-control"]


def test_head_has_no_body(dist: Path) -> None:
    status, headers, body = _get("/ui/assets/app-123.js", dist, method="HEAD")
    assert status == 200
    assert headers[b"content-length"] == b"14"
    assert body == b""


@pytest.mark.parametrize("path", ["/ui/assets/missing.js", "/ui/../secret.txt", "/ui/.env"])
def test_missing_or_outside_is_404(dist: Path, path: str) -> None:
    with pytest.raises(NotFound):
        _get(path, dist)


def test_bare_prefix_redirects(dist: Path) -> None:
    status, headers, _ = _get("/ui", dist)
    assert status == 301
    assert headers[b"location"] == b"/ui/"


def test_not_built_explains(tmp_path: Path) -> None:
    status, _, body = _get("/ui/", tmp_path / "nothing")
    assert status == 503
    assert b"npm --prefix ui" in body
