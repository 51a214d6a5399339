"""The echo engine, driven by the real openai and anthropic SDKs and over raw HTTP."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator

import anthropic
import anyio
import httpx
import openai
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect
from websockets.typing import Subprotocol

from swapd.testing import EchoProcess, run_echo, wait_http


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def engine() -> Iterator[EchoProcess]:
    with run_echo(model="m1") as proc:
        yield proc


@pytest.fixture(scope="module")
def oai(engine: EchoProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{engine.url}/v1", api_key="k", max_retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def claude(engine: EchoProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=engine.url, api_key="k", max_retries=0) as client:
        yield client


def _stats(engine: EchoProcess) -> dict[str, int]:
    data: dict[str, int] = httpx.get(f"{engine.url}/_echo/stats").json()
    return data


# -- OpenAI ------------------------------------------------------------------------------------


def test_chat_completion(oai: openai.OpenAI, engine: EchoProcess) -> None:
    resp = oai.chat.completions.create(
        model="whatever",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there"},
        ],
    )
    assert resp.choices[0].message.content == "echo m1: hello there"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (4, 4)
    assert resp.usage.total_tokens == 8
    extra = resp.model_extra or {}
    assert extra["timings"]["prompt_n"] == 4
    assert extra["timings"]["predicted_n"] == 4
    assert extra["request"]["model"] == "whatever"
    assert extra["request"]["messages"][1]["content"] == "hello there"


def test_chat_headers(engine: EchoProcess) -> None:
    resp = httpx.post(f"{engine.url}/v1/chat/completions", json={"messages": []})
    assert resp.headers["x-engine-pid"] == str(engine.pid)
    assert resp.headers["x-engine-model"] == "m1"
    assert resp.json()["choices"][0]["message"]["content"] == "echo m1: "


def test_chat_content_parts(oai: openai.OpenAI) -> None:
    resp = oai.chat.completions.create(
        model="m1",
        messages=[{"role": "user", "content": [{"type": "text", "text": "part one"}]}],
    )
    assert resp.choices[0].message.content == "echo m1: part one"


def test_chat_stream(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="m1",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert "".join(pieces) == "echo m1: one two three"
    assert len(pieces) == 5
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == 5 and usage.prompt_tokens == 3


def test_chat_stream_chunks_override(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="m1",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        extra_body={"chunks": 200},
    )
    pieces = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) == 200
    assert "".join(pieces).startswith("echo m1: hi echo m1: hi")


def test_chat_fewer_chunks_keeps_text(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="m1",
        messages=[{"role": "user", "content": "a b c d e"}],
        stream=True,
        extra_body={"chunks": 2},
    )
    pieces = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert pieces == ["echo", " m1: a b c d e"]


def test_chat_stream_raw_frames(engine: EchoProcess) -> None:
    body = {"messages": [{"role": "user", "content": "x"}], "stream": True}
    with httpx.stream("POST", f"{engine.url}/v1/chat/completions", json=body) as resp:
        assert resp.headers["content-type"] == "text/event-stream"
        text = resp.read().decode()
    frames = [f for f in text.split("\n\n") if f]
    assert frames[-1] == "data: [DONE]"
    last = json.loads(frames[-2].removeprefix("data: "))
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["timings"]["predicted_n"] == 3


def test_completions(oai: openai.OpenAI) -> None:
    resp = oai.completions.create(model="m1", prompt="say this")
    assert resp.choices[0].text == "echo m1: say this"
    assert resp.usage is not None and resp.usage.prompt_tokens == 2
    stream = oai.completions.create(model="m1", prompt="say this", stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices) == "echo m1: say this"


def test_responses(oai: openai.OpenAI) -> None:
    resp = oai.responses.create(model="m1", input="tell me")
    assert resp.output_text == "echo m1: tell me"
    assert resp.usage is not None and resp.usage.input_tokens == 2


def test_embeddings(oai: openai.OpenAI) -> None:
    resp = oai.embeddings.create(model="m1", input=["a", "b", "a"])
    vectors = [d.embedding for d in resp.data]
    assert [len(v) for v in vectors] == [8, 8, 8]
    assert vectors[0] == vectors[2] != vectors[1]


def test_rerank(engine: EchoProcess) -> None:
    for path in ("/v1/rerank", "/rerank", "/v1/reranking"):
        body = {"model": "m1", "query": "red fox", "documents": ["blue sky", "a red fox"]}
        results = httpx.post(f"{engine.url}{path}", json=body).json()["results"]
        assert [r["index"] for r in results] == [1, 0]
        assert all(isinstance(r["relevance_score"], float) for r in results)


def test_transcription(oai: openai.OpenAI) -> None:
    resp = oai.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"RIFF0000WAVE"))
    assert resp.text == "echo m1: model=whisper-1"


def test_images(oai: openai.OpenAI) -> None:
    resp = oai.images.generate(model="m1", prompt="a cat")
    assert resp.data and resp.data[0].b64_json
    assert resp.data[0].revised_prompt == "echo m1: a cat"


def test_models(oai: openai.OpenAI) -> None:
    assert [m.id for m in oai.models.list()] == ["m1"]


def test_llama_native(engine: EchoProcess) -> None:
    resp = httpx.post(f"{engine.url}/completion", json={"prompt": "abc"}).json()
    assert resp["content"] == "echo m1: abc"
    assert resp["timings"]["predicted_n"] == 3
    infill = httpx.post(f"{engine.url}/infill", json={"input_prefix": "x", "input_suffix": "y"})
    assert infill.json()["content"] == "echo m1: xy"
    with httpx.stream(
        "POST", f"{engine.url}/completion", json={"prompt": "a", "stream": True}
    ) as r:
        frames = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert "".join(f["content"] for f in frames) == "echo m1: a"
    assert frames[-1]["stop"] is True and "timings" in frames[-1]


def test_bad_json(engine: EchoProcess) -> None:
    resp = httpx.post(f"{engine.url}/v1/chat/completions", content=b"{not json")
    assert resp.status_code == 400
    assert "error" in resp.json()


def test_passthrough_echo(engine: EchoProcess) -> None:
    resp = httpx.request(
        "PUT",
        f"{engine.url}/foo/bar?x=1&y=2",
        content=b"raw \xc3\xa9 body",
        headers={"X-Custom": "v", "Authorization": "Bearer secret"},
    )
    assert resp.status_code == 200
    data = resp.json()
    assert data["method"] == "PUT"
    assert data["path"] == "/foo/bar"
    assert data["query"] == "x=1&y=2"
    assert data["body"] == "raw é body"
    assert data["headers"]["x-custom"] == "v"
    assert data["headers"]["authorization"] == "Bearer secret"
    assert data["pid"] == engine.pid and data["model"] == "m1"
    props = httpx.get(f"{engine.url}/props").json()
    assert props["method"] == "GET" and props["path"] == "/props"


def test_delay_field(oai: openai.OpenAI) -> None:
    start = time.monotonic()
    oai.chat.completions.create(
        model="m1", messages=[{"role": "user", "content": "x"}], extra_body={"delay": 0.3}
    )
    assert time.monotonic() - start >= 0.3


def test_slow_route(engine: EchoProcess) -> None:
    start = time.monotonic()
    resp = httpx.post(f"{engine.url}/slow?delay=0.2", content=b"hi")
    assert time.monotonic() - start >= 0.2
    assert resp.json()["body"] == "hi"


def test_stream_disconnect_is_seen(engine: EchoProcess) -> None:
    before = _stats(engine)["disconnects"]
    body = {"messages": [{"role": "user", "content": "x"}], "stream": True, "chunks": 1000}
    body["chunk_delay"] = 0.01
    with httpx.stream("POST", f"{engine.url}/v1/chat/completions", json=body) as resp:
        for _ in resp.iter_lines():
            break
    engine.wait_for_log("client disconnected", timeout=5)
    assert _stats(engine)["disconnects"] == before + 1


# -- Anthropic ---------------------------------------------------------------------------------


def test_messages(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(
        model="claude-x",
        max_tokens=50,
        system="be nice",
        messages=[{"role": "user", "content": "hi there"}],
    )
    assert msg.content[0].type == "text"
    assert msg.content[0].text == "echo m1: hi there"
    assert msg.model == "claude-x"
    assert msg.stop_reason == "end_turn"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (4, 4)


def test_messages_stream(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="claude-x", max_tokens=50, messages=[{"role": "user", "content": "a b"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo m1: a b"
    assert final.usage.output_tokens == 4
    assert final.stop_reason == "end_turn"


def test_count_tokens(claude: anthropic.Anthropic) -> None:
    count = claude.messages.count_tokens(
        model="claude-x", messages=[{"role": "user", "content": "one two three"}]
    )
    assert count.input_tokens == 3


# -- async, concurrent -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_concurrent_async_streams(engine: EchoProcess) -> None:
    results: list[str] = []
    async with openai.AsyncOpenAI(base_url=f"{engine.url}/v1", api_key="k") as client:

        async def one(i: int) -> None:
            stream = await client.chat.completions.create(
                model="m1",
                messages=[{"role": "user", "content": f"n{i}"}],
                stream=True,
                extra_body={"chunk_delay": 0.01},
            )
            parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            results.append("".join(parts))

        start = time.monotonic()
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(one, i)
    assert sorted(results) == sorted(f"echo m1: n{i}" for i in range(20))
    assert time.monotonic() - start < 2.0  # concurrent, not one after another


# -- lifecycle switches ------------------------------------------------------------------------


def test_health_delay() -> None:
    with run_echo("--health-delay", "0.6", wait=False) as eng:
        eng.wait_for_log("listening on")
        start = time.monotonic()
        first = httpx.get(f"{eng.url}/health")
        assert first.status_code == 503
        assert first.json() == {"status": "loading"}
        wait_http(f"{eng.url}/health", timeout=5)
        assert 0.3 < time.monotonic() - start < 1.5
        assert httpx.get(f"{eng.url}/health").json() == {"status": "ok"}


def test_start_delay() -> None:
    start = time.monotonic()
    with run_echo("--start-delay", "0.5") as eng:
        assert time.monotonic() - start >= 0.5
        assert "listening on" in eng.output()


def test_crash_switch() -> None:
    with run_echo() as eng:
        with pytest.raises(httpx.TransportError):
            httpx.post(f"{eng.url}/crash")
        assert eng.proc.wait(5) == 3


def test_exit_after() -> None:
    with run_echo("--exit-after", "0.5", "--exit-code", "7") as eng:
        assert eng.proc.wait(5) == 7
    with run_echo("--exit-after", "0", "--exit-code", "5", wait=False) as eng:
        assert eng.proc.wait(5) == 5
        assert "listening" not in eng.output()


def test_sigterm_exits_promptly() -> None:
    with run_echo() as eng:
        start = time.monotonic()
        eng.proc.send_signal(signal.SIGTERM)
        assert eng.proc.wait(5) == 0
        assert time.monotonic() - start < 1.0
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", eng.port), 0.5):
            pass


def test_ignore_sigterm() -> None:
    with run_echo("--ignore-sigterm") as eng:
        eng.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert eng.proc.poll() is None
        assert httpx.get(f"{eng.url}/health").status_code == 200
        eng.proc.send_signal(signal.SIGKILL)
        assert eng.proc.wait(5) == -signal.SIGKILL


# -- WebSocket ---------------------------------------------------------------------------------


def _ws_url(engine: EchoProcess, path: str) -> str:
    return engine.url.replace("http://", "ws://") + path


def _websocket_closes(engine: EchoProcess) -> list[list[object]]:
    closes: list[list[object]] = httpx.get(f"{engine.url}/_echo/stats").json()["websocket_closes"]
    return closes


def test_websocket_says_what_it_saw_then_echoes_text_and_binary(engine: EchoProcess) -> None:
    with ws_connect(
        _ws_url(engine, "/ws?x=1"),
        subprotocols=[Subprotocol("chat")],
        additional_headers={"X-T": "v"},
    ) as ws:
        hello = json.loads(ws.recv(timeout=5))
        assert hello["event"] == "connected"
        assert (hello["path"], hello["query"], hello["subprotocol"]) == ("/ws", "x=1", "chat")
        assert hello["headers"]["x-t"] == "v"
        assert ws.subprotocol == "chat"
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        ws.send(b"\x00\xffbin")
        assert ws.recv(timeout=5) == b"\x00\xffbin"


def test_websocket_close_command_closes_with_that_code_and_reason(engine: EchoProcess) -> None:
    with ws_connect(_ws_url(engine, "/ws")) as ws:
        ws.recv(timeout=5)
        ws.send("close 4001 bye now")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "bye now")


def test_websocket_records_the_clients_close_code(engine: EchoProcess) -> None:
    with ws_connect(_ws_url(engine, "/ws")) as ws:
        ws.recv(timeout=5)
        ws.close(4321, "done here")
    deadline = time.monotonic() + 5
    while [4321, "done here"] not in (closes := _websocket_closes(engine)):
        assert time.monotonic() < deadline, closes
        time.sleep(0.02)


def test_websocket_refuse_path_answers_403_with_json(engine: EchoProcess) -> None:
    with pytest.raises(InvalidStatus) as info, ws_connect(_ws_url(engine, "/ws/refuse")):
        pass
    assert info.value.response.status_code == 403
    assert json.loads(info.value.response.body)["error"] == "refused by the echo engine"
