"""The Ollama ↔ OpenAI translation on its own: requests (swapd.proxy.ollamabody) and answers
(swapd.proxy.ndjson), including what the echo engine cannot produce (tool calls, reasoning)."""

from __future__ import annotations

import json
import math
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swapd.errors import RequestError
from swapd.proxy import ndjson, ollamabody


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        ("0", 0.0),
        ("0s", 0.0),
        (300, 300.0),
        ("300", 300.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("250ms", 0.25),
        (-1, math.inf),
        ("-1", math.inf),
        ("-5m", math.inf),
    ],
)
def test_keep_alive_reads_numbers_and_go_durations(value: object, seconds: float) -> None:
    assert ollamabody.duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "5 minutes", "m5", "", True, [1]])
def test_keep_alive_refuses_what_is_not_a_duration(value: object) -> None:
    with pytest.raises(RequestError, match="keep_alive"):
        ollamabody.duration(value)


@given(
    st.lists(
        st.tuples(st.integers(0, 999), st.sampled_from(["h", "m", "s", "ms"])),
        min_size=1,
        max_size=4,
        unique_by=lambda p: p[1],
    )
)
def test_a_go_duration_is_the_sum_of_its_parts(parts: list[tuple[int, str]]) -> None:
    unit = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    text = "".join(f"{n}{u}" for n, u in parts)
    assert ollamabody.duration(text) == pytest.approx(sum(n * unit[u] for n, u in parts))


def test_chat_options_map_to_openai_params_and_the_rest_is_left_out() -> None:
    call = ollamabody.chat(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "options": {
                "temperature": 0.2,
                "top_p": 0.9,
                "top_k": 7,
                "num_predict": 5,
                "stop": ["x"],
                "seed": 42,
                "frequency_penalty": 0.5,
                "presence_penalty": 0.25,
                "num_ctx": 8192,
                "repeat_penalty": 1.1,
                "mirostat": 2,
            },
            "format": "json",
        }
    )
    body = call.body
    assert call.stream and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert {k: body[k] for k in ("temperature", "top_p", "top_k", "seed", "stop")} == {
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 7,
        "seed": 42,
        "stop": ["x"],
    }
    assert body["max_tokens"] == 5
    assert body["frequency_penalty"] == 0.5 and body["presence_penalty"] == 0.25
    assert body["response_format"] == {"type": "json_object"}
    for left_out in ("num_ctx", "repeat_penalty", "mirostat", "options", "num_predict"):
        assert left_out not in body


def test_num_predict_without_a_limit_sends_no_max_tokens() -> None:
    for unlimited in (-1, -2):
        call = ollamabody.generate(
            {"model": "m", "prompt": "p", "options": {"num_predict": unlimited}}
        )
        assert "max_tokens" not in call.body


def test_a_schema_format_becomes_a_json_schema_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    call = ollamabody.chat({"model": "m", "messages": [], "format": schema, "stream": False})
    assert call.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema, "strict": True},
    }
    assert call.load_only and not call.stream and call.body["stream"] is False


def test_generate_puts_system_and_prompt_into_messages_and_images_into_parts() -> None:
    png = "iVBORw0KGgoAAAANSUhEUg"
    call = ollamabody.generate(
        {"model": "m", "prompt": "what is it", "system": "be brief", "images": [png]}
    )
    assert call.path == "/v1/chat/completions" and call.kind == "generate"
    assert call.body["messages"] == [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is it"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
            ],
        },
    ]


def test_raw_generate_is_a_plain_completion_and_suffix_is_refused() -> None:
    call = ollamabody.generate({"model": "m", "prompt": "[INST] hi", "raw": True})
    assert call.path == "/v1/completions" and call.body["prompt"] == "[INST] hi"
    with pytest.raises(RequestError, match="suffix"):
        ollamabody.generate({"model": "m", "prompt": "def f(", "suffix": "return 1"})


def test_tool_calls_and_results_get_openai_ids_and_json_text_arguments() -> None:
    msgs = ollamabody.messages(
        [
            {"role": "user", "content": "weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"function": {"name": "weather", "arguments": {"city": "Paris"}}},
                    {"function": {"name": "time", "arguments": {"tz": "CET"}}},
                ],
            },
            {"role": "tool", "content": "12C", "tool_name": "weather"},
            {"role": "tool", "content": "13:00", "tool_name": "time"},
        ]
    )
    calls = msgs[1]["tool_calls"]
    assert [c["id"] for c in calls] == ["call_0", "call_1"]
    assert calls[0]["type"] == "function"
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    assert msgs[2]["tool_call_id"] == "call_0" and msgs[2]["name"] == "weather"
    assert msgs[3]["tool_call_id"] == "call_1"


def test_embed_takes_a_string_or_a_list() -> None:
    assert ollamabody.embed({"model": "m", "input": "a"}).body["input"] == ["a"]
    assert ollamabody.embed({"model": "m", "input": ["a", "b"]}).body["input"] == ["a", "b"]
    legacy = ollamabody.embeddings({"model": "m", "prompt": "a"})
    assert legacy.body == {"model": "m", "input": "a"} and not legacy.stream


def _chunk(delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_streamed_tool_call_fragments_become_one_line_with_object_arguments() -> None:
    t = ndjson.Translation("chat", "m:latest", time.monotonic())
    lines = []
    lines += t.chunk(_chunk({"reasoning_content": "let me think"}))
    lines += t.chunk(
        _chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "weather"}}]})
    )
    lines += t.chunk(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}))
    lines += t.chunk(
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Oslo"}'}}]})
    )
    lines += t.chunk(_chunk({}, "tool_calls"))
    lines += t.chunk({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 4}})
    final = t.final()
    assert lines[0]["message"] == {"role": "assistant", "content": "", "thinking": "let me think"}
    assert lines[1]["message"]["tool_calls"] == [
        {"function": {"name": "weather", "arguments": {"city": "Oslo"}}}
    ]
    assert len(lines) == 2 and all(not line["done"] for line in lines)
    assert final["done"] is True and final["done_reason"] == "stop"
    assert final["prompt_eval_count"] == 11 and final["eval_count"] == 4
    assert final["model"] == "m:latest" and final["total_duration"] >= final["load_duration"]


def test_llama_server_timings_give_the_eval_durations() -> None:
    t = ndjson.Translation("generate", "m", time.monotonic())
    out = t.whole(
        {
            "choices": [{"index": 0, "message": {"content": "hi"}, "finish_reason": "length"}],
            "timings": {"prompt_n": 3, "prompt_ms": 1.5, "predicted_n": 2, "predicted_ms": 20.0},
        }
    )
    assert out["response"] == "hi" and out["done_reason"] == "length"
    assert out["prompt_eval_count"] == 3 and out["eval_count"] == 2
    assert out["prompt_eval_duration"] == 1_500_000 and out["eval_duration"] == 20_000_000


def test_a_whole_answer_with_tool_calls_and_reasoning() -> None:
    t = ndjson.Translation("chat", "m", time.monotonic())
    message = {
        "content": None,
        "reasoning_content": "hmm",
        "tool_calls": [{"id": "x", "function": {"name": "f", "arguments": "not json"}}],
    }
    out = t.whole({"choices": [{"message": message, "finish_reason": "tool_calls"}]})
    assert out["message"]["thinking"] == "hmm"
    assert out["message"]["tool_calls"] == [
        {"function": {"name": "f", "arguments": {"arguments": "not json"}}}
    ]
    assert out["done_reason"] == "stop"


def test_think_false_drops_reasoning() -> None:
    call = ollamabody.chat(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "think": False}
    )
    t = ndjson.Translation("chat", "m", time.monotonic(), thinking=call.thinking)
    assert t.chunk(_chunk({"reasoning_content": "secret"})) == []
