"""Request rewrites: the ``model`` value (JSON, multipart, query, form) and the filter order."""

from __future__ import annotations

import json
from typing import Any

import pytest

from swapd.config.model import Filters, ModelConfig, PeerConfig
from swapd.proxy import body
from swapd.proxy.body import Rewrite
from swapd.routing import Route

pytestmark = pytest.mark.anyio

JSON = b"application/json"
BOUNDARY = b"b0undary"
MULTIPART = b"multipart/form-data; boundary=" + BOUNDARY


def run(raw: bytes, change: Rewrite, *, ctype: bytes = JSON, query: bytes = b"") -> Any:
    parsed = body.extract("POST", query, ctype, raw)
    return body.rewrite(parsed, raw, query, ctype, change)


def as_json(raw: bytes, change: Rewrite) -> dict[str, Any]:
    out, _ = run(raw, change)
    data: dict[str, Any] = json.loads(out)
    return data


def test_filters_apply_in_order_strip_then_set_then_set_by_id() -> None:
    filters = Filters(
        strip_params=("temperature", "model", "top_k"),
        set_params={"top_k": 5, "temperature": 0.1, "model": "hijack"},
        set_params_by_id={"fast": {"temperature": 0.9, "model": "hijack"}, "slow": {"x": 1}},
    )
    raw = b'{"model": "fast", "temperature": 2, "top_k": 40, "top_p": 0.5}'
    data = as_json(raw, Rewrite(None, filters, "fast"))
    # stripped, then set back by setParams, then overridden by setParamsByID["fast"]
    assert data == {"model": "fast", "temperature": 0.9, "top_k": 5, "top_p": 0.5}
    other = as_json(raw, Rewrite(None, filters, "other"))
    assert other["temperature"] == 0.1 and "x" not in other


def test_dotted_filter_keys_address_nested_fields() -> None:
    filters = Filters(
        strip_params=("chat_template_kwargs.drop", "messages.0.name"),
        set_params={
            "chat_template_kwargs.enable_thinking": False,
            "a\\.b": 1,
            "new.deep": 2,
            "stop.-1": "END",
            "messages.0.role": "system",
        },
    )
    raw = json.dumps(
        {
            "model": "m",
            "chat_template_kwargs": {"drop": 1, "keep": 2},
            "messages": [{"role": "user", "name": "x"}],
            "stop": ["a"],
        }
    ).encode()
    data = as_json(raw, Rewrite(None, filters, "m"))
    assert data["chat_template_kwargs"] == {"keep": 2, "enable_thinking": False}
    assert data["messages"] == [{"role": "system"}]
    assert data["stop"] == ["a", "END"]
    assert data["a.b"] == 1 and data["new"] == {"deep": 2}


def test_an_unchanged_request_keeps_the_clients_bytes() -> None:
    raw = b'{"model":"m",   "messages": []}'
    filters = Filters(set_params_by_id={"other": {"x": 1}})
    assert run(raw, Rewrite(None, filters, "m")) == (raw, b"")


def test_the_json_model_is_rewritten_before_filters() -> None:
    filters = Filters(set_params={"n": 1})
    assert as_json(b'{"model": "alias"}', Rewrite("real", filters, "alias")) == {
        "model": "real",
        "n": 1,
    }


def multipart(model: bytes) -> bytes:
    def part(name: bytes, value: bytes, extra: bytes = b"") -> bytes:
        head = b'Content-Disposition: form-data; name="' + name + b'"' + extra
        return b"--" + BOUNDARY + b"\r\n" + head + b"\r\n\r\n" + value + b"\r\n"

    return (
        part(b"file", b"RIFF\r\n--x", b'; filename="a.wav"')
        + part(b"model", model)
        + b"--"
        + BOUNDARY
        + b"--\r\n"
    )


def test_the_multipart_model_field_is_rewritten_and_the_rest_kept() -> None:
    out, query = run(multipart(b"cloud/whisper"), Rewrite("whisper"), ctype=MULTIPART)
    assert out == multipart(b"whisper") and query == b""
    assert body.extract("POST", b"", MULTIPART, out).model == "whisper"


def test_filters_never_touch_a_multipart_body() -> None:
    raw = multipart(b"w")
    assert run(raw, Rewrite(None, Filters(set_params={"x": 1}), "w"), ctype=MULTIPART)[0] == raw


def test_the_get_query_model_is_rewritten_and_other_parameters_kept() -> None:
    query = b"a=%20x&model=peer%2Fvoices&stream=true"
    parsed = body.extract("GET", query, b"", b"")
    assert parsed.model == "peer/voices"
    out, new_query = body.rewrite(parsed, b"", query, b"", Rewrite("tts 1"))
    assert out == b"" and new_query == b"a=%20x&model=tts%201&stream=true"


def test_an_urlencoded_form_model_is_rewritten() -> None:
    raw = b"model=a&prompt=hi+there"
    out, _ = run(raw, Rewrite("b"), ctype=b"application/x-www-form-urlencoded")
    assert out == b"model=b&prompt=hi+there"


def test_the_rewrite_for_a_local_route_uses_the_name_after_rewriting_then_use_model_name() -> None:
    plain = ModelConfig(id="m", cmd=("x",), aliases=("fast",))
    pinned = Route(requested="chat", name="fast", model=plain)
    assert Rewrite.for_route(pinned, "chat") == Rewrite("fast", plain.filters, "fast")
    direct = Route(requested="fast", name="fast", model=plain)
    assert Rewrite.for_route(direct, "fast").model is None
    renamed = ModelConfig(id="m", cmd=("x",), use_model_name="org/m-q4")
    route = Route(requested="m", name="m", model=renamed)
    assert Rewrite.for_route(route, "m").model == "org/m-q4"


def test_the_rewrite_for_a_peer_route_sends_the_peers_model_id_and_peer_filters() -> None:
    filters = Filters(set_params_by_id={"cloud/gpt": {"temperature": 0}})
    peer = PeerConfig("cloud", "http://x", models=("gpt",), filters=filters)
    route = Route(requested="cloud/gpt", name="cloud/gpt", peer=peer, peer_model="gpt")
    change = Rewrite.for_route(route, "cloud/gpt")
    assert change == Rewrite("gpt", filters, "cloud/gpt")
    assert as_json(b'{"model": "cloud/gpt"}', change) == {"model": "gpt", "temperature": 0}
    bare = Route(requested="gpt", name="gpt", peer=peer, peer_model="gpt")
    assert Rewrite.for_route(bare, "gpt").model is None


async def test_a_big_multipart_rewrite_runs_off_the_event_loop() -> None:
    raw = multipart(b"a" + b"x" * (body.OFF_LOOP_BYTES + 10))
    raw = raw.replace(b"RIFF", b"RIFF" + bytes(body.OFF_LOOP_BYTES))
    parsed = await body.extract_async("POST", b"", MULTIPART, raw)
    out, _ = await body.rewrite_async(parsed, raw, b"", MULTIPART, Rewrite("short"))
    assert body.extract("POST", b"", MULTIPART, out).model == "short"
