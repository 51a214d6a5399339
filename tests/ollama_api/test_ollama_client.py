"""The real ``ollama`` Python client against a real ``swapd serve`` with echo engines."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from swapd.testing import SwapdProcess, echo_cmd, free_port_range, run_swapd

pytestmark = pytest.mark.timeout(120)

PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452")  # enough of a PNG for its magic


def config(start_port: int, gguf: Path | None = None, top: str = "ollama: {enabled: true}") -> str:
    weights = f"    env: [LLAMA_ARG_MODEL={gguf}]\n" if gguf is not None else ""
    return f"""
startPort: {start_port}
healthCheckTimeout: 20
{top}
groups:
  together: {{swap: false, members: [alpha, beta, gamma]}}
models:
  alpha:
    cmd: {echo_cmd()}
  beta:
    cmd: {echo_cmd()}
    ttl: 300
{weights}    capabilities: {{in: [text, image], out: [text], tools: true, context: 2048}}
  gamma:
    cmd: {echo_cmd()}
  delta:
    cmd: {echo_cmd("--served-model-name other-name")}
"""


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("gguf")
    from swapd.testing import write_tiny_gguf

    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", seed=3)


@pytest.fixture(scope="module")
def swapd(gguf_file: Path) -> Iterator[SwapdProcess]:
    with run_swapd(config(free_port_range(8), gguf_file)) as proc:
        yield proc


@pytest.fixture
def client(swapd: SwapdProcess) -> Iterator[ollama.Client]:
    with ollama.Client(host=swapd.url, timeout=60) as c:
        yield c


def running(url: str) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in httpx.get(f"{url}/running", timeout=10).json()["running"]}


def engine_received(url: str, path: str = "/v1/chat/completions") -> dict[str, Any]:
    """The body swapd sent the engine for the latest request on ``path`` (its capture)."""
    deadline = time.monotonic() + 10
    while True:
        records = httpx.get(f"{url}/api/activity?limit=5", timeout=10).json()["activity"]
        latest = next((r for r in records if r["path"] == path and r["has_capture"]), None)
        if latest is not None or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert latest is not None, records
    capture = httpx.get(f"{url}/api/captures/{latest['id']}", timeout=10).json()
    return json.loads(base64.b64decode(capture["req_body"]))


# ── plain HTTP: /, /api/version ──────────────────────────────────────────────────────────────


def test_root_says_ollama_is_running_to_clients_and_redirects_browsers(swapd: SwapdProcess) -> None:
    plain = httpx.get(f"{swapd.url}/")
    assert plain.status_code == 200 and plain.text == "Ollama is running"
    assert plain.headers["content-type"].startswith("text/plain")
    assert httpx.head(f"{swapd.url}/").status_code == 200
    browser = httpx.get(f"{swapd.url}/", headers={"accept": "text/html,application/xhtml+xml"})
    assert browser.status_code == 302 and browser.headers["location"] == "/ui/"


def test_version_is_ollamas_with_swapds_fields_alongside(swapd: SwapdProcess) -> None:
    body = httpx.get(f"{swapd.url}/api/version").json()
    major, minor, patch = (int(p) for p in body["version"].split("."))
    assert (major, minor, patch) >= (0, 6, 4)  # VS Code Copilot refuses older
    assert body["swapd_version"] and "commit" in body


# ── list, show, ps ─────────────────────────────────────────────────────────────────────────


def test_list_names_every_model_in_ollamas_shape(
    client: ollama.Client, gguf_file: Path, swapd: SwapdProcess
) -> None:
    models = {m.model: m for m in client.list().models}
    assert set(models) == {"alpha", "beta", "gamma", "delta"}
    beta = models["beta"]
    assert beta.size == gguf_file.stat().st_size
    assert beta.details is not None and beta.details.family == "llama"
    assert beta.details.format == "gguf" and beta.details.quantization_level == "F32"
    assert beta.digest is not None and len(beta.digest) == 64
    again = httpx.get(f"{swapd.url}/api/tags").json()["models"]
    assert {m["name"]: m["digest"] for m in again}["beta"] == beta.digest  # stable
    assert models["alpha"].size == 0 and models["alpha"].details.family == ""  # type: ignore[union-attr]


def test_show_reads_gguf_metadata_and_configured_capabilities(client: ollama.Client) -> None:
    shown = client.show("beta")
    assert shown.details is not None and shown.details.family == "llama"
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.modelinfo["llama.context_length"] == 2048  # capabilities.context wins
    assert shown.modelinfo["llama.block_count"] == 2
    assert shown.capabilities == ["completion", "tools", "vision"]
    plain = client.show("alpha:latest")  # Ollama's default tag names the model
    assert plain.capabilities == ["completion"] and plain.modelinfo == {}


def test_show_of_an_unknown_model_is_a_404_with_a_string_error(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        client.show("nope")
    assert err.value.status_code == 404
    assert isinstance(err.value.error, str) and "'nope' not found" in err.value.error


def test_ps_lists_running_models_with_their_ttl_deadline(
    client: ollama.Client, swapd: SwapdProcess
) -> None:
    client.generate(model="beta", prompt="wake up", stream=False)
    client.generate(model="alpha", prompt="wake up", stream=False)
    now = datetime.now(UTC)
    ps = {m.model: m for m in client.ps().models}
    assert {"alpha", "beta"} <= set(ps)
    beta = ps["beta"].expires_at
    assert beta is not None and now + timedelta(seconds=290) < beta < now + timedelta(seconds=310)
    alpha = ps["alpha"].expires_at  # ttl 0: never
    assert alpha is not None and alpha > now + timedelta(days=365 * 50)
    assert ps["beta"].context_length == 2048


# ── chat and generate ───────────────────────────────────────────────────────────────────────


def test_chat_streams_ndjson_lines_that_end_with_done_and_stats(client: ollama.Client) -> None:
    parts = list(
        client.chat(
            model="alpha", messages=[{"role": "user", "content": "one two three"}], stream=True
        )
    )
    assert "".join(p.message.content or "" for p in parts) == "echo alpha: one two three"
    assert all(not p.done for p in parts[:-1]) and len(parts) > 2
    last = parts[-1]
    assert last.done and last.done_reason == "stop"
    assert last.eval_count == 5 and last.prompt_eval_count == 3
    assert last.total_duration and last.total_duration > 0
    assert last.model == "alpha"


def test_chat_without_stream_answers_one_message(client: ollama.Client) -> None:
    reply = client.chat(
        model="alpha:latest", messages=[{"role": "user", "content": "hello there"}], stream=False
    )
    assert reply.message.role == "assistant"
    assert reply.message.content == "echo alpha: hello there"
    assert reply.done and reply.model == "alpha:latest" and reply.eval_count == 4


def test_chat_options_and_format_reach_the_engine_as_openai_params(
    client: ollama.Client, swapd: SwapdProcess
) -> None:
    client.chat(
        model="alpha",
        messages=[{"role": "user", "content": "x"}],
        options={
            "temperature": 0.2,
            "top_p": 0.9,
            "top_k": 7,
            "num_predict": 5,
            "stop": ["zz"],
            "seed": 42,
            "num_ctx": 8192,
            "repeat_penalty": 1.1,
            "frequency_penalty": 0.5,
        },
        format="json",
        stream=False,
    )
    sent = engine_received(swapd.url)
    assert sent["model"] == "alpha" and sent["stream"] is False
    assert sent["temperature"] == 0.2 and sent["top_p"] == 0.9 and sent["top_k"] == 7
    assert sent["max_tokens"] == 5 and sent["stop"] == ["zz"] and sent["seed"] == 42
    assert sent["frequency_penalty"] == 0.5
    assert sent["response_format"] == {"type": "json_object"}
    assert "num_ctx" not in sent and "repeat_penalty" not in sent and "options" not in sent


def test_a_schema_format_reaches_the_engine_as_json_schema(
    client: ollama.Client, swapd: SwapdProcess
) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    messages = [{"role": "user", "content": "x"}]
    list(client.chat(model="alpha", messages=messages, format=schema, stream=True))
    sent = engine_received(swapd.url)
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"] == schema
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_a_request_without_stream_streams_as_ollama_does(swapd: SwapdProcess) -> None:
    body = {"model": "alpha", "messages": [{"role": "user", "content": "a b"}]}
    reply = httpx.post(f"{swapd.url}/api/chat", json=body, timeout=30)
    assert reply.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in reply.text.splitlines()]
    assert [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]
    assert "".join(line["message"]["content"] for line in lines) == "echo alpha: a b"


def test_generate_streams_and_not_with_a_system_prompt(
    client: ollama.Client, swapd: SwapdProcess
) -> None:
    parts = list(client.generate(model="alpha", prompt="red green", system="be brief", stream=True))
    assert "".join(p.response or "" for p in parts) == "echo alpha: red green"
    assert parts[-1].done and parts[-1].done_reason == "stop"
    whole = client.generate(model="alpha", prompt="blue", system="be brief", stream=False)
    assert whole.response == "echo alpha: blue" and whole.done
    sent = engine_received(swapd.url)
    assert sent["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "blue"},
    ]


def test_generate_images_reach_the_engine_as_image_url_parts(
    client: ollama.Client, swapd: SwapdProcess
) -> None:
    client.generate(model="beta", prompt="describe", images=[PNG], stream=False)
    content = engine_received(swapd.url)["messages"][-1]["content"]
    encoded = base64.b64encode(PNG).decode()
    assert content == [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}},
    ]


def test_raw_generate_is_a_plain_completion(client: ollama.Client, swapd: SwapdProcess) -> None:
    reply = client.generate(model="alpha", prompt="[INST] hi [/INST]", raw=True, stream=False)
    assert reply.response == "echo alpha: [INST] hi [/INST]"
    assert engine_received(swapd.url, "/v1/completions")["prompt"] == "[INST] hi [/INST]"


# ── embeddings ──────────────────────────────────────────────────────────────────────────────


def test_embed_and_legacy_embeddings_return_the_engines_vectors(client: ollama.Client) -> None:
    many = client.embed(model="alpha", input=["first", "second"])
    assert len(many.embeddings) == 2 and all(len(v) == 8 for v in many.embeddings)
    assert many.embeddings[0] != many.embeddings[1]
    one = client.embed(model="alpha", input="first")
    assert one.embeddings == [many.embeddings[0]]
    legacy = client.embeddings(model="alpha", prompt="first")
    assert list(legacy.embedding) == many.embeddings[0]


# ── keep_alive ──────────────────────────────────────────────────────────────────────────────


def test_keep_alive_zero_unloads_the_model_after_the_request(
    client: ollama.Client, swapd: SwapdProcess
) -> None:
    reply = client.chat(
        model="gamma", messages=[{"role": "user", "content": "bye"}], keep_alive=0, stream=True
    )
    assert "".join(p.message.content or "" for p in reply) == "echo gamma: bye"
    assert "gamma" not in running(swapd.url)  # stopped before the last line was sent


def test_keep_alive_duration_sets_the_ttl_of_this_load(
    client: ollama.Client, swapd: SwapdProcess
) -> None:
    client.generate(model="gamma", prompt="hi", keep_alive="10m", stream=False)
    gamma = running(swapd.url)["gamma"]
    assert gamma["ttl"] == 600 and 590 < gamma["ttl_left"] <= 600
    client.generate(model="gamma", prompt="", keep_alive=0)  # Ollama's unload request
    assert "gamma" not in running(swapd.url)
    client.generate(model="gamma", prompt="")  # Ollama's load request: a new load, the config's
    assert running(swapd.url)["gamma"]["ttl"] == 0


def test_a_short_keep_alive_unloads_the_idle_model_when_it_runs_out(
    client: ollama.Client, swapd: SwapdProcess
) -> None:
    client.chat(model="gamma", messages=[{"role": "user", "content": "x"}], keep_alive="1s")
    assert running(swapd.url)["gamma"]["ttl"] == 1
    deadline = time.monotonic() + 10
    while "gamma" in running(swapd.url) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "gamma" not in running(swapd.url)  # the config's ttl is 0: only keep_alive did it


def test_an_engine_error_keeps_its_status_and_message_as_a_string(client: ollama.Client) -> None:
    messages = [{"role": "user", "content": "x"}]
    calls = [
        lambda: client.chat(model="delta", messages=messages, stream=False),
        lambda: list(client.chat(model="delta", messages=messages, stream=True)),
    ]
    for call in calls:
        with pytest.raises(ollama.ResponseError) as err:
            call()
        assert err.value.status_code == 404  # vLLM's answer to a name it does not serve
        assert isinstance(err.value.error, str) and "does not exist" in err.value.error


# ── what swapd does not do ──────────────────────────────────────────────────────────────────


def test_model_file_operations_are_refused_with_501(client: ollama.Client) -> None:
    calls = [
        lambda: client.pull("qwen3"),
        lambda: client.push("alpha"),
        lambda: client.create(model="mine", from_="alpha"),
        lambda: client.delete("alpha"),
        lambda: client.copy("alpha", "alpha2"),
    ]
    for call in calls:
        with pytest.raises(ollama.ResponseError) as err:
            call()
        assert err.value.status_code == 501
        assert "swapd does not manage model files" in err.value.error


def test_disabled_ollama_api_is_not_there(start_port: int) -> None:
    with run_swapd(config(start_port, top="")) as swapd:
        assert httpx.get(f"{swapd.url}/api/tags").status_code == 404
        chat = httpx.post(f"{swapd.url}/api/chat", json={"model": "alpha", "messages": []})
        assert chat.status_code in (404, 405)
        assert httpx.get(f"{swapd.url}/").status_code == 302  # the UI, for everyone
        assert "swapd_version" not in httpx.get(f"{swapd.url}/api/version").json()


def test_scoped_keys_see_and_use_only_their_models(start_port: int) -> None:
    keys = """ollama: {enabled: true}
apiKeys:
  - {key: k-alpha, models: [alpha]}
"""
    with run_swapd(config(start_port, top=keys)) as swapd:
        auth = {"Authorization": "Bearer k-alpha"}
        with ollama.Client(host=swapd.url, headers=auth) as client:
            assert [m.model for m in client.list().models] == ["alpha"]
            assert client.chat(model="alpha", messages=[{"role": "user", "content": "x"}]).done
            with pytest.raises(ollama.ResponseError) as err:
                client.chat(model="beta", messages=[{"role": "user", "content": "x"}])
            assert err.value.status_code == 404
            assert httpx.get(
                f"{swapd.url}/api/version", headers={"x-api-key": "k-alpha"}
            ).is_success
        anonymous = httpx.get(f"{swapd.url}/api/tags")
        assert anonymous.status_code == 401 and isinstance(anonymous.json()["error"], str)
