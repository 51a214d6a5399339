"""`/v1/models` and `/models` with llama-swap's fields, and llama-swap's extra model routes
(versionless `/v/…`, `/sdapi/v1/*`, `/audioapi/…`, audio and images), against echo engines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from swapd.testing import SwapdProcess, echo_cmd, free_port_range, run_swapd

pytestmark = pytest.mark.timeout(120)


def config() -> str:
    return f"""
startPort: {free_port_range(8)}
includeAliasesInList: true
models:
  vision:
    cmd: {echo_cmd()}
    name: Vision model
    aliases: [eyes]
    metadata: {{family: qwen, context_length: 1}}
    capabilities:
      in: [text, image]
      out: [text]
      tools: true
      context: 32768
  plain:
    cmd: {echo_cmd()}
  secret:
    cmd: {echo_cmd()}
    unlisted: true
"""


@pytest.fixture(scope="module")
def swapd() -> Iterator[SwapdProcess]:
    with run_swapd(config()) as proc:
        yield proc


def models(swapd: SwapdProcess, path: str = "/v1/models", **kw: Any) -> httpx.Response:
    return httpx.get(f"{swapd.url}{path}", timeout=10, **kw)


def test_models_carry_capabilities_status_and_meta(swapd: SwapdProcess) -> None:
    reply = models(swapd, headers={"origin": "http://ui.example"})
    assert reply.headers["access-control-allow-origin"] == "http://ui.example"
    data = reply.json()["data"]
    assert [r["id"] for r in data] == ["eyes", "plain", "vision"]
    vision = data[2]
    assert vision["name"] == "Vision model" and vision["owned_by"] == "swapd"
    assert vision["architecture"]["modality"] == "text+image->text"
    assert vision["capabilities"] == {"vision": True, "function_calling": True}
    assert vision["supported_parameters"] == ["tools", "tool_choice"]
    assert vision["context_length"] == 32768 and vision["meta"]["n_ctx"] == 32768
    # user metadata keys that capabilities render are dropped; internal keys are added
    assert vision["meta"]["llamaswap"] == {"family": "qwen", "type": "model", "aliases": ["eyes"]}
    assert data[0]["meta"]["llamaswap"]["type"] == "alias"
    assert data[0]["meta"]["llamaswap"]["modelID"] == "vision"
    assert vision["status"] == {"value": "unloaded"}
    assert models(swapd, "/models").json()["data"][1]["id"] == "plain"


def test_status_follows_the_engine(swapd: SwapdProcess) -> None:
    body = {"model": "plain", "messages": [{"role": "user", "content": "x"}]}
    httpx.post(f"{swapd.url}/v1/chat/completions", json=body, timeout=30).raise_for_status()
    records = {r["id"]: r for r in models(swapd).json()["data"]}
    assert records["plain"]["status"] == {"value": "loaded"}


def echoed(reply: httpx.Response) -> dict[str, Any]:
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()
    return data


@pytest.mark.parametrize(
    ("path", "upstream"),
    [
        ("/sdapi/v1/txt2img", "/sdapi/v1/txt2img"),
        ("/sdapi/v1/img2img", "/sdapi/v1/img2img"),
        ("/audioapi/v1/tasks/run", "/v1/tasks/run"),
        ("/v1/audio/speech", "/v1/audio/speech"),
        ("/v/messages/count_tokens", "/messages/count_tokens"),
    ],
)
def test_llama_swaps_model_routes_reach_the_engine(
    swapd: SwapdProcess, path: str, upstream: str
) -> None:
    seen = echoed(httpx.post(f"{swapd.url}{path}", json={"model": "eyes"}, timeout=30))
    assert seen["path"] == upstream and seen["model"] == "vision"
    assert json.loads(seen["body"]) == {"model": "eyes"}


def test_versionless_chat_is_forwarded_without_the_v(swapd: SwapdProcess) -> None:
    body = {"model": "plain", "messages": [{"role": "user", "content": "v less"}]}
    reply = httpx.post(f"{swapd.url}/v/chat/completions", json=body, timeout=30)
    assert reply.json()["choices"][0]["message"]["content"] == "echo plain: v less"


def test_get_routes_take_the_model_from_the_query(swapd: SwapdProcess) -> None:
    seen = echoed(httpx.get(f"{swapd.url}/sdapi/v1/loras?model=plain&x=1", timeout=30))
    assert seen["path"] == "/sdapi/v1/loras" and seen["query"] == "model=plain&x=1"


def test_image_generation_reaches_the_engine(swapd: SwapdProcess) -> None:
    body = {"model": "vision", "prompt": "a cat"}
    reply = httpx.post(f"{swapd.url}/v1/images/generations", json=body, timeout=30)
    assert reply.status_code == 200 and reply.json()["data"][0]["b64_json"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/sdapi/v1/txt2img", {"prompt": "x"}, 400),  # no model named
        ("POST", "/audioapi/v1/tasks/run", {"model": "nope"}, 404),
        ("GET", "/sdapi/v1/txt2img", None, 405),
        ("GET", "/sdapi/v1/loras", None, 400),
    ],
)
def test_model_route_errors_are_envelopes(
    swapd: SwapdProcess, method: str, path: str, body: Any, status: int
) -> None:
    reply = httpx.request(method, f"{swapd.url}{path}", json=body, timeout=10)
    assert reply.status_code == status
    assert reply.json()["error"]["message"]


def test_logs_send_a_browser_to_the_ui(swapd: SwapdProcess) -> None:
    reply = httpx.get(f"{swapd.url}/logs", headers={"accept": "text/html,*/*"}, timeout=10)
    assert reply.status_code == 302 and reply.headers["location"] == "/ui/"
    text = httpx.get(f"{swapd.url}/logs", timeout=10)
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
