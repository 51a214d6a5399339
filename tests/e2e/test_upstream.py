"""HTTP passthrough: /upstream/{model}/… with upstream.ignorePaths, /comfyui/…, peers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fakes import raw_engine_cmd
from swapd.testing import SwapdProcess, echo_cmd, run_swapd

pytestmark = pytest.mark.timeout(120)

KEY = "sk-upstream-test"


def config(start_port: int, extra: str = "", comfyui: bool = True) -> str:
    raw = raw_engine_cmd()
    comfy = f"  comfyui_auto:\n    cmd: {raw}\n" if comfyui else ""
    return f"""
startPort: {start_port}
healthCheckTimeout: 20
models:
  alpha:
    cmd: {echo_cmd()}
{comfy}{extra}"""


def states(swapd: SwapdProcess, headers: dict[str, str] | None = None) -> dict[str, str]:
    running = httpx.get(f"{swapd.url}/running", headers=headers, timeout=10).json()["running"]
    return {r["model"]: r["state"] for r in running}


def get(swapd: SwapdProcess, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(f"{swapd.url}{path}", timeout=30, **kwargs)


def message(r: httpx.Response) -> str:
    text: str = r.json()["error"]["message"]
    return text


def test_ignored_paths_never_start_a_model_but_reach_a_ready_one(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        r = get(swapd, "/upstream/alpha/assets/app.js?v=2")
        assert r.status_code == 409
        assert message(r) == "model alpha is not loaded; path matches upstream.ignorePaths"
        assert "alpha" not in states(swapd)

        assert get(swapd, "/upstream/alpha/").status_code == 200  # the UI's "load" request
        r = get(swapd, "/upstream/alpha/assets/app.js?v=2")
        assert r.status_code == 200
        assert (r.json()["path"], r.json()["query"]) == ("/assets/app.js", "v=2")


def test_configured_ignore_paths_replace_the_default_and_match_anywhere(start_port: int) -> None:
    extra = "upstream:\n  ignorePaths: ['poll']\n"
    with run_swapd(config(start_port, extra)) as swapd:
        r = get(swapd, "/upstream/alpha/api/poll/status")
        assert r.status_code == 409
        assert "alpha" not in states(swapd)
        r = get(swapd, "/upstream/alpha/app.js")  # the default pattern no longer applies
        assert r.status_code == 200
        assert r.json()["path"] == "/app.js"


def test_comfyui_redirects_to_its_root_keeping_the_query(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        r = get(swapd, "/comfyui?tab=queue")
        assert (r.status_code, r.headers["location"]) == (301, "/comfyui/?tab=queue")
        r = httpx.post(f"{swapd.url}/comfyui", content=b"{}", timeout=30)
        assert (r.status_code, r.headers["location"]) == (308, "/comfyui/")
        r = get(swapd, "/upstream/alpha?x=1")
        assert (r.status_code, r.headers["location"]) == (301, "/upstream/alpha/?x=1")


def test_only_the_comfyui_root_starts_its_model(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        r = get(swapd, "/comfyui/api/queue")
        assert r.status_code == 409
        assert message(r) == "model comfyui_auto is not loaded; only /comfyui/ can start it"
        assert "comfyui_auto" not in states(swapd)

        r = get(swapd, "/comfyui/?x=1")
        assert (r.status_code, r.json()["target"]) == (200, "/?x=1")
        r = get(swapd, "/comfyui/view%2Fimage.png?type=output")
        assert (r.status_code, r.json()["target"]) == (200, "/view%2Fimage.png?type=output")


def test_comfyui_needs_a_key_and_a_local_comfyui_auto_model(start_port: int) -> None:
    extra = f"apiKeys: [{KEY}]\n"
    with run_swapd(config(start_port, extra, comfyui=False)) as swapd:
        assert get(swapd, "/comfyui/").status_code == 401
        r = get(swapd, "/comfyui/", headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 404
        assert message(r) == "local model comfyui_auto not found"
        r = get(swapd, "/upstream")  # public: a browser is sent to the models page
        assert (r.status_code, r.headers["location"]) == (302, "/ui/#/models")


def test_upstream_for_a_peer_model_goes_to_the_peer_with_the_peers_key(start_port: int) -> None:
    with run_swapd(config(start_port, "apiKeys: [peer-key]\n")) as far:
        extra = f"""apiKeys: [{KEY}]
peers:
  far:
    proxy: {far.url}/upstream/alpha
    apiKey: peer-key
    models: [remote]
"""
        with run_swapd(config(start_port + 4, extra)) as near:
            r = get(near, "/upstream/far/remote/v1/things?q=1", headers={"x-api-key": KEY})
            assert r.status_code == 200, r.text
            assert (r.json()["path"], r.json()["query"]) == ("/v1/things", "q=1")
            assert r.json()["model"] == "alpha"
            assert states(far, {"x-api-key": "peer-key"})["alpha"] == "ready"
