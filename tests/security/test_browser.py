"""A web page cannot drive swapd: foreign ``Host`` headers (DNS rebinding) and cross-site
requests to side-effecting routes are refused, on real ``swapd serve`` processes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from swapd.config.model import Config, ServerConfig
from swapd.proxy.asgi import Scope
from swapd.proxy.guard import Guard, HostRule, foreign, guarded, split_host
from swapd.testing import SwapdProcess, echo_cmd, run_swapd

pytestmark = pytest.mark.timeout(120)

CROSS_SITE = {"sec-fetch-site": "cross-site"}
EVIL_ORIGIN = {"origin": "http://evil.example"}


def config(start_port: int, top: str = "") -> str:
    return f"startPort: {start_port}\n{top}\nmodels:\n  echo:\n    cmd: {json.dumps(echo_cmd())}\n"


@contextmanager
def swapd_with(start_port: int, top: str = "") -> Iterator[tuple[SwapdProcess, httpx.Client]]:
    with (
        run_swapd(config(start_port, top)) as swapd,
        httpx.Client(base_url=swapd.url, timeout=30) as api,
    ):
        yield swapd, api


def running(api: httpx.Client) -> list[str]:
    return [m["model"] for m in api.get("/running").json()["running"]]


def start_echo(api: httpx.Client) -> None:
    assert api.post("/api/models/echo/start?wait=true").status_code == 200
    assert running(api) == ["echo"]


def upgrade(port: int, host: str, origin: str | None = None) -> bytes:
    """A raw WebSocket upgrade to /upstream/echo/ws; the status line that answers it."""
    lines = [
        "GET /upstream/echo/ws HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return sock.recv(4096).split(b"\r\n", 1)[0]


# ── Host: DNS rebinding ───────────────────────────────────────────────────────────────────────


def test_a_foreign_host_is_refused_and_loopback_names_and_addresses_are_accepted(
    start_port: int,
) -> None:
    with swapd_with(start_port) as (swapd, api):
        refused = api.get("/api/config", headers={"host": f"evil.example:{swapd.port}"})
        assert refused.status_code == 403
        error = refused.json()["error"]
        assert error["code"] == "host_not_allowed"
        assert "'evil.example'" in error["message"] and "server.allowedHosts" in error["message"]
        assert api.get("/health", headers={"host": "evil.example"}).status_code == 403
        assert api.get("/unload", headers={"host": "evil.example"}).status_code == 403
        for host in (
            f"localhost:{swapd.port}",
            f"127.0.0.1:{swapd.port}",
            f"[::1]:{swapd.port}",
            "ui.localhost",
            "192.168.1.5:8080",  # an address cannot be rebound: always accepted
        ):
            assert api.get("/api/config", headers={"host": host}).status_code == 200, host
        assert upgrade(swapd.port, "evil.example").startswith(b"HTTP/1.1 403")


def test_allowed_hosts_extends_the_names(start_port: int) -> None:
    top = "server:\n  allowedHosts: [swapd.lan, .example.org]"
    with swapd_with(start_port, top) as (swapd, api):
        for host in (f"swapd.lan:{swapd.port}", "example.org", "gpu.example.org", "LOCALHOST"):
            assert api.get("/v1/models", headers={"host": host}).status_code == 200, host
        for host in ("evil.example", "example.org.evil.example", "swapd.lan.evil.example"):
            assert api.get("/v1/models", headers={"host": host}).status_code == 403, host


def test_allowed_hosts_star_allows_any_host(start_port: int) -> None:
    with swapd_with(start_port, "server:\n  allowedHosts: ['*']") as (_, api):
        assert api.get("/v1/models", headers={"host": "anything.example"}).status_code == 200


# ── cross-site requests without keys ─────────────────────────────────────────────────────────


def test_cross_site_unload_and_admin_posts_are_refused_and_same_origin_is_accepted(
    start_port: int,
) -> None:
    with swapd_with(start_port) as (swapd, api):
        start_echo(api)
        unload = api.get("/unload", headers=CROSS_SITE)
        assert unload.status_code == 403
        assert unload.json()["error"]["code"] == "cross_site_refused"
        assert "apiKeys" in unload.json()["error"]["message"]
        assert api.get("/unload", headers={"sec-fetch-site": "same-site"}).status_code == 403
        assert api.post("/api/models/unload", headers=EVIL_ORIGIN).status_code == 403
        assert api.post("/api/models/echo/stop", headers={"origin": "null"}).status_code == 403
        assert api.post("/api/config/reload", headers=CROSS_SITE).status_code == 403
        assert api.put("/api/profiles/active", headers=CROSS_SITE, json={}).status_code == 403
        assert api.get("/api/config", headers=CROSS_SITE).status_code == 403
        assert running(api) == ["echo"]  # nothing above reached the scheduler

        # a preflight for a refused request is refused: the browser never sends it
        preflight = {**EVIL_ORIGIN, "access-control-request-method": "POST"}
        assert api.options("/api/models/unload", headers=preflight).status_code == 403
        read = {**EVIL_ORIGIN, "access-control-request-method": "GET"}
        assert api.options("/v1/models", headers=read).status_code == 204

        # reads stay open (the same-origin policy hides their answers from the page)
        for path in ("/v1/models", "/running", "/api/models", "/health"):
            assert api.get(path, headers=CROSS_SITE).status_code == 200, path

        own = {"origin": f"http://127.0.0.1:{swapd.port}"}
        assert api.post("/api/models/echo/stop", headers=own).status_code == 200
        start_echo(api)
        same = {"sec-fetch-site": "same-origin", "origin": f"http://127.0.0.1:{swapd.port}"}
        assert api.post("/api/models/unload", headers=same).status_code == 200
        start_echo(api)
        typed = {"sec-fetch-site": "none"}  # the user typed the URL
        assert api.get("/unload", headers=typed).status_code == 200
        assert running(api) == []


def test_cross_site_inference_and_websockets_are_refused_without_a_key(start_port: int) -> None:
    chat = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    with swapd_with(start_port) as (swapd, api):
        refused = api.post("/v1/chat/completions", json=chat, headers=EVIL_ORIGIN)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "cross_site_refused"
        assert api.get("/upstream/echo/health", headers=CROSS_SITE).status_code == 403
        assert running(api) == []  # the page did not start an engine
        evil = upgrade(swapd.port, f"127.0.0.1:{swapd.port}", "http://evil.example")
        assert evil.startswith(b"HTTP/1.1 403")
        assert running(api) == []
        assert api.post("/v1/chat/completions", json=chat).status_code == 200  # not a browser
        own = upgrade(swapd.port, f"127.0.0.1:{swapd.port}", f"http://127.0.0.1:{swapd.port}")
        assert not own.startswith(b"HTTP/1.1 403")


def test_with_keys_a_cross_site_request_needs_the_key_and_works_with_it(start_port: int) -> None:
    with swapd_with(start_port, "apiKeys: [browser-key-1]") as (_, api):
        key = {"authorization": "Bearer browser-key-1"}
        assert api.get("/unload", headers=CROSS_SITE).status_code == 401
        assert api.get("/unload", headers={**CROSS_SITE, **key}).status_code == 200
        assert api.post("/api/models/unload", headers={**EVIL_ORIGIN, **key}).status_code == 200
        assert api.get("/api/config", headers={**CROSS_SITE, **key}).status_code == 200
        # the host check does not depend on keys
        assert api.get("/api/config", headers={**key, "host": "evil.example"}).status_code == 403


# ── in a real browser ────────────────────────────────────────────────────────────────────────

CHROMIUM = os.environ.get("SWAPD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ATTACK = """<!doctype html><body><form id=f method=post action="{swapd}/api/models/unload"></form>
<script>
  const img = new Promise(done => {{
    const i = new Image(); i.onload = i.onerror = done; i.src = "{swapd}/unload?img";
  }});
  const chat = JSON.stringify({{model: "echo", messages: [{{role: "user", content: "hi"}}]}});
  Promise.allSettled([
    img,
    fetch("{swapd}/unload", {{mode: "no-cors"}}),
    fetch("{swapd}/api/models/echo/stop", {{method: "POST", mode: "no-cors"}}),
    fetch("{swapd}/v1/chat/completions", {{method: "POST", mode: "no-cors", body: chat}}),
  ]).then(() => document.getElementById("f").submit());
</script></body>"""


@contextmanager
def serve_page(html: str) -> Iterator[str]:
    """A web server on another site (``localhost`` vs swapd's ``127.0.0.1``) serving ``html``."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def chromium() -> Any:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"chromium not found at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("python package playwright is not installed")
    return sync_playwright


def test_a_page_on_another_site_cannot_unload_and_rebinding_gets_403_in_chromium(
    start_port: int,
) -> None:
    sync_playwright = chromium()
    with swapd_with(start_port) as (swapd, api), sync_playwright() as pw:
        start_echo(api)
        rules = "MAP evil.example 127.0.0.1"  # DNS rebinding: the attacker's name, swapd's address
        args = ["--no-sandbox", "--disable-gpu", f"--host-resolver-rules={rules}"]
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            page = browser.new_page()
            console: list[str] = []  # the page cannot read its no-cors answers; Chromium logs them
            page.on("console", lambda message: console.append(message.text))
            with serve_page(ATTACK.format(swapd=swapd.url)) as attacker:
                page.goto(attacker)  # localhost: loopback, so the browser lets it reach swapd
            page.wait_for_url(f"{swapd.url}/api/models/unload")  # the form's post landed
            assert page.evaluate("document.body.innerText").count("cross_site_refused") == 1
            assert running(api) == ["echo"]  # nothing the page sent unloaded or stopped it
            refused = [line for line in console if "status of 403" in line]
            assert len(refused) >= 4, console  # the image, both fetches and the chat reached swapd

            rebound = page.goto(f"http://evil.example:{swapd.port}/unload")
            assert rebound is not None and rebound.status == 403
            assert "host_not_allowed" in page.evaluate("document.body.innerText")
            assert running(api) == ["echo"]

            own = page.goto(f"{swapd.url}/unload")  # the user, typing the URL: allowed
            assert own is not None and own.status == 200
            assert running(api) == []
        finally:
            browser.close()


# ── the rules, without a server ──────────────────────────────────────────────────────────────


def scope(headers: dict[str, str], method: str = "GET", path: str = "/unload") -> Scope:
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    return {"type": "http", "method": method, "path": path, "headers": raw, "query_string": b""}


def test_host_names_are_split_from_ports_and_normalised() -> None:
    assert split_host("LocalHost:8080") == ("localhost", "8080")
    assert split_host("[::1]:80") == ("::1", "80")
    assert split_host("example.com.") == ("example.com", "")
    assert split_host("fe80::1") == ("fe80::1", "")


def test_listening_on_a_name_allows_that_name_and_on_every_interface_the_machine_name() -> None:
    named = HostRule.build("gpu-box.lan", ())
    assert named.allows("gpu-box.lan") and not named.allows("evil.example")
    wildcard = HostRule.build("0.0.0.0", ())
    label = socket.gethostname().lower().split(".")[0]
    assert wildcard.allows(label) and wildcard.allows(f"{label}.local")
    assert not HostRule.build("127.0.0.1", ()).allows(f"{label}.local")


def test_foreign_follows_sec_fetch_site_first_then_origin() -> None:
    assert foreign(scope({"sec-fetch-site": "cross-site"}))
    assert foreign(scope({"sec-fetch-site": "same-site"}))
    assert not foreign(scope({"sec-fetch-site": "same-origin", "origin": "http://evil.example"}))
    assert not foreign(scope({}))  # curl, SDKs: not a browser
    assert foreign(scope({"origin": "http://localhost:3000", "host": "localhost:8080"}))
    assert not foreign(scope({"origin": "https://swapd.example", "host": "swapd.example"}))
    assert not foreign(scope({"origin": "http://swapd.example:80", "host": "swapd.example"}))
    assert foreign(scope({"origin": "null", "host": "localhost:8080"}))


def test_guarded_routes_are_the_side_effecting_ones() -> None:
    assert guarded("GET", "/unload") and guarded("GET", "/api/config")
    assert guarded("POST", "/v1/chat/completions") and guarded("GET", "/upstream/m/x")
    assert guarded("DELETE", "/api/anything") and guarded("GET", "/props")
    assert not guarded("GET", "/v1/models") and not guarded("GET", "/logs/stream")


def test_a_request_without_host_passes_the_host_check() -> None:
    Guard().check(scope({}, path="/api/config"), Config())
    with pytest.raises(Exception, match="allowedHosts"):
        Guard().check(scope({"host": "evil.example"}), Config())
    allowed = Config(server=ServerConfig(allowed_hosts=("evil.example",)))
    Guard().check(scope({"host": "evil.example"}), allowed)
