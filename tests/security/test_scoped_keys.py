"""Scoped API keys end to end: real ``swapd serve``, echo engines, the openai SDK.

One swapd with four keys: a plain string (full access, as in llama-swap), an inference key
limited to ``small-*``, a read key and an admin key. What each may reach, what it is told
about the rest, and where its name (never its value) shows up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from swapd.config.model import Config
from swapd.proxy import auth
from swapd.testing import SwapdProcess, echo_cmd, free_port_range, run_swapd

pytestmark = pytest.mark.timeout(120)

FULL, APP, DASH, OPS = "sk-full-0", "sk-app-1", "sk-dash-2", "sk-ops-3"


def config(start_port: int) -> str:
    return f"""
startPort: {start_port}
healthCheckTimeout: 20
logRequests: true
apiKeys:
  - {FULL}
  - {{key: {APP}, name: app, scopes: [inference], models: ["small-*"]}}
  - {{key: {DASH}, name: dash, scopes: [read]}}
  - {{key: {OPS}, name: ops, scopes: [admin, inference]}}
models:
  small-a:
    cmd: {echo_cmd()}
  small-b:
    cmd: {echo_cmd()}
    aliases: [tiny]
  big:
    cmd: {echo_cmd()}
    aliases: [small-big]
selectors:
  auto:
    strategy: pin
    targets: [big]
"""


@pytest.fixture(scope="module")
def swapd() -> Iterator[SwapdProcess]:
    with run_swapd(config(free_port_range(8))) as running:
        yield running


def call(swapd: SwapdProcess, key: str | None, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, swapd.url + path, headers=headers, timeout=30, **kw)


def chat(swapd: SwapdProcess, key: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return call(swapd, key, "POST", "/v1/chat/completions", json=body)


def refused(r: httpx.Response, scope: str) -> None:
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["code"] == "insufficient_scope"
    assert f"'{scope}' scope" in error["message"]


def test_a_plain_string_key_keeps_full_access(swapd: SwapdProcess) -> None:
    listed = call(swapd, FULL, "GET", "/v1/models").json()["data"]
    assert {"small-a", "small-b", "big", "auto"} <= {m["id"] for m in listed}
    assert chat(swapd, FULL, "big").status_code == 200
    assert call(swapd, FULL, "GET", "/api/config").status_code == 200
    assert call(swapd, FULL, "GET", "/running").status_code == 200
    assert call(swapd, FULL, "GET", "/upstream/big/sleep").status_code == 200
    who = call(swapd, FULL, "GET", "/api/auth").json()
    assert who == {
        "name": "key-1",
        "scopes": ["inference", "read", "admin"],
        "models": ["*"],
        "keys_required": True,
    }


def test_an_inference_key_sees_and_reaches_only_its_models(swapd: SwapdProcess) -> None:
    client = openai.OpenAI(base_url=f"{swapd.url}/v1", api_key=APP, max_retries=0)
    assert sorted(m.id for m in client.models.list()) == ["small-a", "small-b"]
    reply = client.chat.completions.create(
        model="small-a", messages=[{"role": "user", "content": "hello"}]
    )
    assert reply.choices[0].message.content == "echo small-a: hello"
    with pytest.raises(openai.NotFoundError) as hidden:
        client.chat.completions.create(model="big", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    shown, absent = hidden.value.body, unknown.value.body
    assert isinstance(shown, dict) and isinstance(absent, dict)
    assert shown["message"] == "model 'big' not found; available models: small-a, small-b"
    assert absent["message"] == "model 'nope' not found; available models: small-a, small-b"
    assert {k: v for k, v in shown.items() if k != "message"} == {
        k: v for k, v in absent.items() if k != "message"
    }
    # an alias or selector whose name matches but whose model does not: the name decides
    assert chat(swapd, APP, "small-big").status_code == 200
    assert chat(swapd, APP, "auto").status_code == 404
    assert call(swapd, APP, "GET", "/api/auth").json()["models"] == ["small-*"]


def test_an_inference_key_gets_403_on_status_and_admin_routes(swapd: SwapdProcess) -> None:
    refused(call(swapd, APP, "GET", "/running"), "read")
    refused(call(swapd, APP, "GET", "/logs"), "read")
    refused(call(swapd, APP, "POST", "/api/models/unload"), "admin")
    refused(call(swapd, APP, "GET", "/unload"), "admin")
    refused(call(swapd, APP, "GET", "/api/config"), "admin")
    refused(call(swapd, APP, "POST", "/api/models/small-a/start"), "admin")


def test_upstream_hides_other_models_and_guards_engine_control(swapd: SwapdProcess) -> None:
    assert call(swapd, APP, "GET", "/upstream/small-a/echo").status_code == 200
    hidden = call(swapd, APP, "GET", "/upstream/big/echo")
    unknown = call(swapd, APP, "GET", "/upstream/nope/echo")
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["error"]["message"] == "no model matches '/upstream/big/echo'"
    assert call(swapd, APP, "GET", "/upstream/big").status_code == 404  # no redirect either
    refused(call(swapd, APP, "POST", "/upstream/small-a/sleep"), "admin")
    refused(call(swapd, APP, "POST", "/upstream/small-a//v1/../wake_up"), "admin")
    refused(call(swapd, APP, "POST", "/upstream/small-a/slots/0?action=save"), "admin")
    refused(call(swapd, APP, "GET", "/upstream/small-a/slots"), "read")
    assert call(swapd, OPS, "POST", "/upstream/small-a/sleep").status_code == 200
    assert call(swapd, OPS, "GET", "/upstream/small-a/slots").status_code == 200  # admin: read
    refused(call(swapd, DASH, "GET", "/upstream/small-a/slots"), "inference")


def test_websockets_follow_the_same_rules(swapd: SwapdProcess) -> None:
    ws = swapd.url.replace("http://", "ws://")
    for key, path, status in ((APP, "/upstream/big/ws", 404), (DASH, "/upstream/small-a/ws", 403)):
        headers = {"Authorization": f"Bearer {key}"}
        with pytest.raises(InvalidStatus) as info, connect(ws + path, additional_headers=headers):
            pass
        assert info.value.response.status_code == status
    headers = {"Authorization": f"Bearer {APP}"}
    with connect(ws + "/upstream/small-a/ws", additional_headers=headers) as sock:
        assert json.loads(sock.recv(timeout=10))["event"] == "connected"


def test_a_read_key_sees_status_and_logs_but_changes_nothing(swapd: SwapdProcess) -> None:
    for path in ("/running", "/logs", "/api/models", "/metrics", "/api/activity", "/api/version"):
        assert call(swapd, DASH, "GET", path).status_code == 200, path
    refused(call(swapd, DASH, "POST", "/api/models/unload"), "admin")
    refused(call(swapd, DASH, "GET", "/unload"), "admin")
    refused(call(swapd, DASH, "GET", "/api/config"), "admin")
    refused(call(swapd, DASH, "POST", "/api/config/reload"), "admin")
    refused(call(swapd, DASH, "GET", "/api/captures/1"), "admin")
    refused(chat(swapd, DASH, "small-a"), "inference")


def test_an_admin_key_may_unload_and_read_the_config(swapd: SwapdProcess) -> None:
    assert chat(swapd, OPS, "small-b").status_code == 200
    view = call(swapd, OPS, "GET", "/api/config")
    assert view.status_code == 200
    assert all(k not in view.text for k in (FULL, APP, DASH, OPS))
    assert call(swapd, OPS, "GET", "/unload").status_code == 200
    assert call(swapd, OPS, "POST", "/api/models/unload").json()["msg"] == "ok"
    assert call(swapd, OPS, "GET", "/api/auth").json()["scopes"] == ["inference", "read", "admin"]


def test_key_names_not_values_in_activity_and_request_log(swapd: SwapdProcess) -> None:
    assert chat(swapd, APP, "small-b").status_code == 200
    activity = call(swapd, OPS, "GET", "/api/activity")
    records = activity.json()["activity"]
    assert records[0]["model"] == "small-b" and records[0]["metadata"]["key"] == "app"
    assert all(k not in activity.text for k in (FULL, APP, DASH, OPS))
    wanted = '"POST /v1/chat/completions" small-b 200'
    deadline = time.monotonic() + 10
    while not any(wanted in line and line.endswith(" key=app") for line in list(swapd.log)):
        assert time.monotonic() < deadline, f"no request line for key app:\n{swapd.output()}"
        time.sleep(0.02)
    assert not [k for k in (FULL, APP, DASH, OPS) if k in swapd.output()]


def test_without_keys_everyone_is_the_anonymous_full_access_principal(start_port: int) -> None:
    cfg = f"startPort: {start_port}\nmodels:\n  small-a:\n    cmd: {echo_cmd()}\n"
    with run_swapd(cfg) as plain:
        assert call(plain, None, "GET", "/api/auth").json() == {
            "name": None,
            "scopes": ["inference", "read", "admin"],
            "models": ["*"],
            "keys_required": False,
        }
        assert call(plain, None, "GET", "/api/config").status_code == 200


def swapd_cli(swapd: SwapdProcess, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SWAPD_API_KEY": key, "SWAPD_URL": swapd.url}
    argv = [sys.executable, "-m", "swapd", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_the_cli_shows_the_key_scope_and_exits_5_without_it(swapd: SwapdProcess) -> None:
    shown = swapd_cli(swapd, APP, "whoami")
    assert (shown.returncode, shown.stdout) == (0, "key app: inference; models small-*\n")
    assert swapd_cli(swapd, OPS, "whoami").stdout == "key ops: inference, read, admin; models *\n"
    refused = swapd_cli(swapd, DASH, "stop", "--all")
    assert refused.returncode == 5
    assert "'admin' scope" in refused.stderr and "key 'dash' has read" in refused.stderr


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("POST", "/v1/chat/completions", "inference"),
        ("GET", "/v1/audio/voices", "inference"),
        ("GET", "/upstream/m/health", "inference"),
        ("GET", "/comfyui/", "inference"),
        ("GET", "/v1/models", None),
        ("GET", "/api/auth", None),
        ("GET", "/openapi.json", None),
        ("GET", "/v1/chat/completions", None),  # 405 for any key
        ("GET", "/running", "read"),
        ("GET", "/api/models", "read"),
        ("GET", "/api/activity", "read"),
        ("GET", "/api/inflight", "read"),
        ("GET", "/api/events", "read"),
        ("GET", "/logs", "read"),
        ("GET", "/logs/stream/upstream", "read"),
        ("GET", "/metrics", "read"),
        ("GET", "/api/hardware", "read"),
        ("GET", "/api/version", "read"),
        ("GET", "/api/profiles", "read"),
        ("GET", "/unload", "admin"),
        ("GET", "/api/config", "admin"),
        ("GET", "/api/captures/req-1", "admin"),
        ("POST", "/api/models/unload", "admin"),
        ("POST", "/api/models/unload/m", "admin"),
        ("POST", "/api/models/m/start", "admin"),
        ("POST", "/api/models/m/sleep", "admin"),
        ("POST", "/api/models/stop", "admin"),
        ("POST", "/api/config/reload", "admin"),
        ("PUT", "/api/profiles/active", "admin"),
        ("POST", "/api/inflight/req-1/cancel", "admin"),
    ],
)
def test_each_route_needs_its_scope(method: str, path: str, scope: str | None) -> None:
    assert auth.request_scope(method, path) == scope


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("POST", "/sleep", "admin"),
        ("POST", "/SLEEP", "admin"),
        ("POST", "//v1/../wake_up", "admin"),
        ("POST", "/./collective_rpc", "admin"),
        ("POST", "/v1/load_lora_adapter", "admin"),
        ("POST", "/slots/0", "admin"),
        ("GET", "/slots", "read"),
        ("GET", "/is_sleeping", "read"),
        ("GET", "/metrics", "read"),
        ("POST", "/v1/chat/completions", None),
        ("GET", "/props", None),
        ("GET", "/sleepy/v1/models", None),
    ],
)
def test_upstream_engine_paths_need_admin_or_read(
    method: str, path: str, scope: str | None
) -> None:
    assert auth.upstream_scope(Config(), method, path) == scope
