"""Peers end to end: a real `swapd serve` forwarding to a second real `swapd serve` (the peer,
with its own API key) and to echo engines that show the headers they received."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from swapd.testing import (
    EchoProcess,
    SwapdProcess,
    echo_cmd,
    free_port,
    free_port_range,
    run_echo,
    run_swapd,
)

pytestmark = pytest.mark.timeout(120)

FRONT_KEY = "front-secret"
PEER_KEY = "peer-secret"
ECHO_KEY = "echo-secret"


@dataclass
class Pair:
    front: SwapdProcess
    back: SwapdProcess
    echo: EchoProcess
    dead_port: int

    def post(self, path: str, body: dict[str, Any], **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {FRONT_KEY}", **kw.pop("headers", {})}
        return httpx.post(f"{self.front.url}{path}", json=body, headers=headers, timeout=30, **kw)

    def get(self, url: str) -> Any:
        reply = httpx.get(url, headers={"authorization": f"Bearer {FRONT_KEY}"}, timeout=10)
        reply.raise_for_status()
        return reply.json()


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    back_config = f"""
startPort: {free_port_range(8)}
apiKeys: [{PEER_KEY}]
models:
  m1:
    cmd: {echo_cmd()}
  m2:
    cmd: {echo_cmd()}
"""
    dead_port = free_port()
    with (
        run_swapd(back_config) as back,
        run_echo(model="remote-echo") as echo,
    ):
        front_config = f"""
startPort: {free_port_range(8)}
apiKeys: [{FRONT_KEY}]
models:
  local:
    cmd: {echo_cmd()}
peers:
  back:
    proxy: {back.url}
    apiKey: {PEER_KEY}
    models: [m1, m2]
    filters:
      setParams: {{temperature: 0.25}}
  keyed:
    proxy: {echo.url}
    apiKey: {ECHO_KEY}
    models: [tts-keyed]
  open:
    proxy: {echo.url}/
    models: [tts-open]
  down:
    proxy: http://user:pw@127.0.0.1:{dead_port}
    models: [ghost]
"""
        with run_swapd(front_config) as front:
            yield Pair(front, back, echo, dead_port)


def test_peer_models_are_listed_under_their_fqn_owned_by_the_peer(pair: Pair) -> None:
    data = pair.get(f"{pair.front.url}/v1/models")["data"]
    records = {r["id"]: r for r in data}
    assert {"local", "back/m1", "back/m2", "keyed/tts-keyed", "down/ghost"} <= set(records)
    m1 = records["back/m1"]
    assert m1["owned_by"] == "back" and m1["name"] == "back: m1"
    assert m1["meta"]["llamaswap"] == {"type": "peer", "peerID": "back"}
    assert m1["status"] == {"value": "unloaded"}
    assert "m1" not in records  # the bare name routes but is not listed twice


def test_openai_sdk_reaches_the_peers_engine_by_fqn_and_by_bare_name(pair: Pair) -> None:
    client = openai.OpenAI(base_url=f"{pair.front.url}/v1", api_key=FRONT_KEY)
    reply = client.chat.completions.create(
        model="back/m1", messages=[{"role": "user", "content": "over there"}]
    )
    assert reply.choices[0].message.content == "echo m1: over there"
    # the engine got the peer's own model id, and the peer's filters applied
    sent = reply.model_extra["request"]  # type: ignore[index]
    assert sent["model"] == "m1" and sent["temperature"] == 0.25
    stream = client.chat.completions.create(
        model="m2", messages=[{"role": "user", "content": "one two"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "echo m2: one two"
    # the peer ran its engines; the local scheduler never heard of these requests
    assert pair.get(f"{pair.front.url}/running") == {"running": []}
    back_running = httpx.get(
        f"{pair.back.url}/running", headers={"x-api-key": PEER_KEY}, timeout=10
    ).json()["running"]
    assert [r["model"] for r in back_running] == ["m2"]


def test_a_streamed_peer_answer_is_not_buffered(pair: Pair) -> None:
    body = {"model": "back/m1", "messages": [{"role": "user", "content": "x"}], "stream": True}
    headers = {"authorization": f"Bearer {FRONT_KEY}"}
    with httpx.stream(
        "POST", f"{pair.front.url}/v1/chat/completions", json=body, headers=headers, timeout=30
    ) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        assert reply.headers["x-accel-buffering"] == "no"
        frames = [line for line in reply.iter_lines() if line.startswith("data: ")]
    assert frames[-1] == "data: [DONE]"


def echoed(reply: httpx.Response) -> dict[str, Any]:
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()
    return data


def test_a_peer_with_an_api_key_gets_it_instead_of_the_clients(pair: Pair) -> None:
    seen = echoed(
        pair.post(
            "/v1/audio/speech",
            {"model": "keyed/tts-keyed", "input": "hi"},
            headers={"x-api-key": FRONT_KEY},
        )
    )
    assert seen["path"] == "/v1/audio/speech"
    assert seen["headers"]["authorization"] == f"Bearer {ECHO_KEY}"
    assert seen["headers"]["x-api-key"] == ECHO_KEY
    assert json.loads(seen["body"])["model"] == "tts-keyed"
    assert seen["headers"]["host"] == f"127.0.0.1:{pair.echo.port}"


def test_a_peer_without_an_api_key_never_sees_swapds_key(pair: Pair) -> None:
    seen = echoed(
        pair.post(
            "/v1/audio/speech",
            {"model": "tts-open", "input": "hi"},
            headers={"x-api-key": FRONT_KEY},
        )
    )
    assert "authorization" not in seen["headers"] and "x-api-key" not in seen["headers"]
    assert FRONT_KEY not in json.dumps(seen)
    assert json.loads(seen["body"])["model"] == "tts-open"  # the bare name is the peer's id


def test_the_forwarded_path_is_joined_to_the_peers_proxy_url(pair: Pair) -> None:
    # `open` is configured as `…/` (trailing slash); /audioapi is stripped as for engines
    seen = echoed(pair.post("/audioapi/v1/tasks/run?x=1", {"model": "open/tts-open"}))
    assert (seen["path"], seen["query"]) == ("/v1/tasks/run", "x=1")


def test_a_peer_that_is_down_is_a_502_envelope_naming_the_peer(pair: Pair) -> None:
    reply = pair.post("/v1/chat/completions", {"model": "down/ghost", "messages": []})
    assert reply.status_code == 502
    error = reply.json()["error"]
    assert error["code"] == "bad_gateway" and error["type"] == "server_error"
    message = error["message"]
    assert message.startswith(f"peer down (http://127.0.0.1:{pair.dead_port}) unreachable: ")
    assert "pw" not in message  # the URL's credentials are not shown
    assert pair.get(f"{pair.front.url}/running") == {"running": []}


def test_the_client_still_needs_swapds_own_key_for_peer_models(pair: Pair) -> None:
    reply = httpx.post(
        f"{pair.front.url}/v1/chat/completions",
        json={"model": "back/m1", "messages": []},
        headers={"authorization": f"Bearer {PEER_KEY}"},
        timeout=10,
    )
    assert reply.status_code == 401
