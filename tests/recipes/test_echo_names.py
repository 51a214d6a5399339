"""The echo engine's ``--served-model-name``: vLLM's 404 for a name it does not serve."""

from __future__ import annotations

import httpx

from swapd.testing import run_echo


def test_the_echo_engine_answers_only_to_its_names() -> None:
    with run_echo("--served-model-name", "qwen", "qwen3-8b", model="qwen") as echo:
        listed = httpx.get(f"{echo.url}/v1/models").json()
        assert [m["id"] for m in listed["data"]] == ["qwen", "qwen3-8b"]
        chat = f"{echo.url}/v1/chat/completions"
        messages = [{"role": "user", "content": "hi"}]
        for name in ("qwen", "qwen3-8b"):
            ok = httpx.post(chat, json={"model": name, "messages": messages})
            assert ok.status_code == 200 and ok.json()["model"] == name
        other = httpx.post(chat, json={"model": "qwen-alias", "messages": messages})
        assert other.status_code == 404
        assert other.json()["error"] == {
            "message": "The model `qwen-alias` does not exist.",
            "type": "NotFoundError",
            "param": "model",
            "code": 404,
        }
        unnamed = httpx.post(chat, json={"messages": messages})
        assert unnamed.status_code == 200
        streamed = httpx.post(chat, json={"model": "qwen", "messages": messages, "stream": True})
        assert streamed.status_code == 200 and "data: [DONE]" in streamed.text
        assert httpx.get(f"{echo.url}/health").status_code == 200


def test_without_the_flag_any_name_goes() -> None:
    with run_echo(model="m") as echo:
        reply = httpx.post(
            f"{echo.url}/v1/chat/completions",
            json={"model": "anything", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert reply.status_code == 200
