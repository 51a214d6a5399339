"""HTTP details of the proxy: error envelopes on every route, raw paths, hop-by-hop headers."""

from __future__ import annotations

import httpx
import pytest

from fakes import raw_engine_cmd
from swapd.testing import echo_cmd, run_swapd

pytestmark = pytest.mark.timeout(90)


def config(start_port: int) -> str:
    raw = raw_engine_cmd()
    return f"""
startPort: {start_port}
healthCheckTimeout: 20
models:
  alpha:
    cmd: {echo_cmd()}
  author/model:
    cmd: {raw}
"""


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/api/nope", 404, "not_found"),
        ("GET", "/api/models/alpha/start", 405, "method_not_allowed"),
        ("POST", "/api/models", 405, "method_not_allowed"),
        ("DELETE", "/metrics", 405, "method_not_allowed"),
        ("GET", "/nowhere", 404, "not_found"),
        ("GET", "/v1/chat/completions", 405, "method_not_allowed"),
    ],
)
def test_unknown_routes_and_wrong_methods_get_json_envelopes(
    start_port: int, method: str, path: str, status: int, code: str
) -> None:
    with run_swapd(config(start_port)) as swapd:
        r = httpx.request(method, f"{swapd.url}{path}")
        assert r.status_code == status
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"]["code"] == code


def test_upstream_route_matches_an_encoded_model_name_and_forwards_the_path_raw(
    start_port: int,
) -> None:
    with run_swapd(config(start_port)) as swapd:
        r = httpx.get(f"{swapd.url}/upstream/author%2Fmodel/a%2Fb/c%41d?q=%20x&y=%2F", timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["target"] == "/a%2Fb/c%41d?q=%20x&y=%2F"
        r = httpx.get(f"{swapd.url}/upstream/author/model/plain", timeout=30)
        assert r.json()["target"] == "/plain"
        redirect = httpx.get(f"{swapd.url}/upstream/author%2Fmodel?x=1")
        assert redirect.status_code == 301
        assert redirect.headers["location"] == "/upstream/author%2Fmodel/?x=1"


def test_model_routes_forward_the_raw_path(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        r = httpx.post(f"{swapd.url}/v1/audio/a%2Fb?model=author/model", content=b"x", timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["target"] == "/v1/audio/a%2Fb?model=author/model"


def test_relayed_responses_carry_the_engines_date_and_server_once(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        r = httpx.get(f"{swapd.url}/upstream/author%2Fmodel/x", timeout=30)
        assert r.status_code == 200
        assert r.headers.get_list("server") == ["raw-engine"]
        assert len(r.headers.get_list("date")) == 1
        # An engine that sends no date (the echo engine) gets one; swapd's own answers too.
        body = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}]}
        r = httpx.post(f"{swapd.url}/v1/chat/completions", json=body, timeout=30)
        assert len(r.headers.get_list("date")) == 1 and "server" not in r.headers
        own = httpx.get(f"{swapd.url}/health")
        assert len(own.headers.get_list("date")) == 1 and "server" not in own.headers


def test_headers_named_in_connection_and_expect_are_not_forwarded(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        r = httpx.post(
            f"{swapd.url}/upstream/alpha/echo",
            content=b"payload",
            headers={
                "connection": "keep-alive, X-Hop",
                "x-hop": "secret-to-this-hop",
                "x-kept": "1",
                "expect": "100-continue",
            },
            timeout=30,
        )
        assert r.status_code == 200, r.text
        seen = r.json()["headers"]
        assert "x-hop" not in seen and "expect" not in seen and "connection" not in seen
        assert seen["x-kept"] == "1" and r.json()["body"] == "payload"
