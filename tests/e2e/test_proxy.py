"""End to end: real `swapd serve`, real echo engines, real openai/anthropic SDK clients."""

from __future__ import annotations

import base64
import os
import signal
import time
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from fakes import raw_engine_cmd
from swapd.testing import echo_cmd, pids_alive, run_swapd, wait_for

pytestmark = pytest.mark.timeout(90)


def two_models(start_port: int, extra: str = "", top: str = "") -> str:
    return f"""
startPort: {start_port}
healthCheckTimeout: 20
{top}
models:
  alpha:
    cmd: {echo_cmd()}
    aliases: [a]
{extra}
  beta:
    cmd: {echo_cmd()}
"""


def chat(url: str, model: str, text: str = "hi", **kw: object) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **kw}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)


def test_openai_sdk_streaming_and_not_through_swapd(start_port: int) -> None:
    with run_swapd(two_models(start_port)) as swapd:
        client = openai.OpenAI(base_url=f"{swapd.url}/v1", api_key="none")
        reply = client.chat.completions.create(
            model="alpha", messages=[{"role": "user", "content": "hello there"}]
        )
        assert reply.choices[0].message.content == "echo alpha: hello there"
        assert reply.usage is not None and reply.usage.prompt_tokens > 0
        stream = client.chat.completions.create(
            model="a", messages=[{"role": "user", "content": "one two three"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "echo alpha: one two three"


def test_anthropic_sdk_streaming_and_not_through_swapd(start_port: int) -> None:
    with run_swapd(two_models(start_port)) as swapd:
        client = anthropic.Anthropic(base_url=swapd.url, api_key="none")
        msg = client.messages.create(
            model="beta", max_tokens=50, messages=[{"role": "user", "content": "yo"}]
        )
        assert "echo beta: yo" in msg.content[0].text  # type: ignore[union-attr]
        with client.messages.stream(
            model="beta", max_tokens=50, messages=[{"role": "user", "content": "a b"}]
        ) as stream:
            assert "".join(stream.text_stream) == "echo beta: a b"


def test_default_group_swaps_engines_and_stops_the_previous_one(start_port: int) -> None:
    with run_swapd(two_models(start_port)) as swapd:
        first = chat(swapd.url, "alpha")
        pid_a = int(first.headers["x-engine-pid"])
        second = chat(swapd.url, "beta")
        pid_b = int(second.headers["x-engine-pid"])
        assert pid_a != pid_b
        assert pids_alive([pid_a]) == []
        running = httpx.get(f"{swapd.url}/running").json()["running"]
        assert [(r["model"], r["state"]) for r in running] == [("beta", "ready")]
        assert (
            chat(swapd.url, "alpha").json()["choices"][0]["message"]["content"] == "echo alpha: hi"
        )


@pytest.mark.parametrize(
    ("body", "ctype", "status", "needle"),
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b'{"messages": []}', "application/json", 400, "does not name a model"),
        (b'{"model": "nope"}', "application/json", 404, "available models: alpha, beta"),
        (b'{"model": "alpha", "x": "\xff\xfe"}', "application/json", 400, "UTF-8"),
        (b"[1, 2]", "application/json", 400, "JSON object"),
    ],
)
def test_bad_requests_get_json_envelopes(
    start_port: int, body: bytes, ctype: str, status: int, needle: str
) -> None:
    with run_swapd(two_models(start_port)) as swapd:
        r = httpx.post(
            f"{swapd.url}/v1/chat/completions", content=body, headers={"content-type": ctype}
        )
        assert r.status_code == status
        err = r.json()["error"]
        assert needle in err["message"] and err["type"] and err["code"]


def test_anthropic_route_errors_use_anthropic_shape(start_port: int) -> None:
    with run_swapd(two_models(start_port)) as swapd:
        r = httpx.post(f"{swapd.url}/v1/messages", json={"model": "zzz", "max_tokens": 5})
        assert r.status_code == 404
        assert r.json()["type"] == "error" and r.json()["error"]["type"] == "not_found_error"


def test_body_over_the_cap_is_413(start_port: int) -> None:
    with run_swapd(two_models(start_port, top="maxBodySize: 1000")) as swapd:
        r = chat(swapd.url, "alpha", "x" * 5000)
        assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
        assert chat(swapd.url, "alpha").status_code == 200


def test_engine_that_never_gets_healthy_gives_503_with_reason(start_port: int) -> None:
    cfg = f"""
startPort: {start_port}
healthCheckTimeout: 1
models:
  slow:
    cmd: {echo_cmd("--health-delay 60")}
"""
    with run_swapd(cfg) as swapd:
        r = chat(swapd.url, "slow")
        assert r.status_code == 503
        assert "timed out after 1s" in r.json()["error"]["message"]
        assert "listening on" in r.json()["error"]["message"]  # the engine's last log lines


def test_engine_that_exits_at_once_gives_503_with_its_last_lines(start_port: int) -> None:
    cfg = f"""
startPort: {start_port}
models:
  dies:
    cmd: {echo_cmd("--exit-after 0 --exit-code 7")}
"""
    with run_swapd(cfg) as swapd:
        r = chat(swapd.url, "dies")
        assert r.status_code == 503
        assert "exited prematurely with code 7" in r.json()["error"]["message"]


def test_missing_program_gives_503_naming_it(start_port: int) -> None:
    cfg = f"""
startPort: {start_port}
models:
  ghost:
    cmd: /nonexistent/llama-server --port ${{PORT}}
"""
    with run_swapd(cfg) as swapd:
        r = chat(swapd.url, "ghost")
        assert r.status_code == 503
        assert "/nonexistent/llama-server" in r.json()["error"]["message"], r.text


def test_port_already_in_use_gives_503(start_port: int) -> None:
    import socket

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", start_port))
        blocker.listen()
        with run_swapd(two_models(start_port)) as swapd:
            r = chat(swapd.url, "alpha")
            assert r.status_code == 503
            assert f"port {start_port}" in r.json()["error"]["message"]


def test_concurrency_limit_answers_429_with_retry_after(start_port: int) -> None:
    cfg = two_models(start_port, extra="    concurrencyLimit: 1")
    with run_swapd(cfg) as swapd, httpx.Client(timeout=30) as client:
        assert chat(swapd.url, "alpha").status_code == 200
        body = {"model": "alpha", "messages": [{"role": "user", "content": "x"}], "delay": 2}
        import threading

        slow = threading.Thread(
            target=lambda: client.post(f"{swapd.url}/v1/chat/completions", json=body)
        )
        slow.start()
        # the slow request holds the one place before the second is sent
        wait_for(lambda: httpx.get(f"{swapd.url}/api/inflight").json()["requests"], "the slow one")
        r = chat(swapd.url, "alpha")
        slow.join()
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "concurrency_limit"


def test_api_keys_required_and_not_forwarded(start_port: int) -> None:
    cfg = two_models(start_port, top='apiKeys: ["sekret"]')
    with run_swapd(cfg) as swapd:
        assert chat(swapd.url, "alpha").status_code == 401
        assert httpx.get(f"{swapd.url}/health").status_code == 200
        bad = httpx.get(f"{swapd.url}/v1/models", headers={"authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.json()["error"]["type"] == "authentication_error"
        basic = "Basic " + base64.b64encode(b"user:sekret").decode()
        for headers in (
            {"authorization": "Bearer sekret"},
            {"x-api-key": "sekret"},
            {"authorization": basic},
        ):
            r = httpx.get(f"{swapd.url}/upstream/alpha/echo", headers=headers, timeout=30)
            assert r.status_code == 200, r.text
            seen = {k.lower() for k in r.json()["headers"]}
            assert "authorization" not in seen and "x-api-key" not in seen


def test_use_model_name_and_filters_rewrite_the_body(start_port: int) -> None:
    extra = """    useModelName: upstream-name
    filters:
      stripParams: "temperature, top_p"
      setParams:
        max_tokens: 7
        chat_template_kwargs.enable_thinking: false"""
    with run_swapd(two_models(start_port, extra=extra)) as swapd:
        r = chat(swapd.url, "alpha", temperature=0.3, top_p=0.1)
        seen = r.json()["request"]
        assert seen["model"] == "upstream-name"
        assert "temperature" not in seen and "top_p" not in seen
        assert seen["max_tokens"] == 7
        assert seen["chat_template_kwargs"] == {"enable_thinking": False}


def test_multipart_model_field_routes_and_is_renamed(start_port: int) -> None:
    extra = "    useModelName: whisper-large"
    with run_swapd(two_models(start_port, extra=extra)) as swapd:
        r = httpx.post(
            f"{swapd.url}/v1/audio/transcriptions",
            files={"file": ("a.wav", b"RIFF....", "audio/wav")},
            data={"model": "alpha"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        assert r.json()["text"] == "echo alpha: model=whisper-large"


def test_upstream_passthrough_and_redirect(start_port: int) -> None:
    with run_swapd(two_models(start_port)) as swapd:
        r = httpx.put(f"{swapd.url}/upstream/a/some/path?x=1", content=b"raw", timeout=30)
        assert r.status_code == 200
        assert r.json()["method"] == "PUT" and r.json()["path"] == "/some/path"
        assert r.json()["body"] == "raw"
        redirect = httpx.get(f"{swapd.url}/upstream/beta")
        assert redirect.status_code == 301 and redirect.headers["location"] == "/upstream/beta/"


def test_v1_models_lists_models_aliases_and_hides_unlisted(start_port: int) -> None:
    extra = (
        "    name: Alpha One\n    description: first\n"
        "  hidden:\n    cmd: x\n    proxy: http://127.0.0.1:1\n    unlisted: true"
    )
    with run_swapd(two_models(start_port, extra=extra, top="includeAliasesInList: true")) as swapd:
        data = httpx.get(f"{swapd.url}/v1/models").json()["data"]
        ids = [m["id"] for m in data]
        assert ids == ["a", "alpha", "beta"]
        alpha = data[1]
        assert alpha["name"] == "Alpha One" and alpha["description"] == "first"


def test_send_loading_state_streams_progress_then_the_answer(start_port: int) -> None:
    cfg = f"""
startPort: {start_port}
sendLoadingState: true
models:
  slow:
    cmd: {echo_cmd("--health-delay 1.6")}
"""
    with run_swapd(cfg) as swapd:
        client = openai.OpenAI(base_url=f"{swapd.url}/v1", api_key="none")
        stream = client.chat.completions.create(
            model="slow", messages=[{"role": "user", "content": "hey"}], stream=True
        )
        reasoning, content = "", ""
        for chunk in stream:
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            reasoning += getattr(delta, "reasoning_content", None) or ""
            content += delta.content or ""
        assert "loading model slow" in reasoning and "Done!" in reasoning
        assert content == "echo slow: hey"


def test_unload_endpoints_stop_engines(start_port: int) -> None:
    with run_swapd(two_models(start_port)) as swapd:
        pid = int(chat(swapd.url, "alpha").headers["x-engine-pid"])
        r = httpx.post(f"{swapd.url}/api/models/unload/a", timeout=30)
        assert r.status_code == 200 and r.json()["stopped"] == ["alpha"]
        assert pids_alive([pid]) == []
        pid = int(chat(swapd.url, "beta").headers["x-engine-pid"])
        assert httpx.get(f"{swapd.url}/unload", timeout=30).text == "OK"
        assert pids_alive([pid]) == []
        assert httpx.post(f"{swapd.url}/api/models/unload/nope").status_code == 404


def test_client_disconnect_mid_stream_cancels_the_upstream_request(start_port: int) -> None:
    with run_swapd(two_models(start_port)) as swapd:
        body = {
            "model": "alpha",
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
            "chunks": 500,
            "chunk_delay": 0.02,
        }
        with httpx.stream("POST", f"{swapd.url}/v1/chat/completions", json=body, timeout=30) as r:
            for _ in r.iter_raw():
                break
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            stats = httpx.get(f"{swapd.url}/upstream/alpha/_echo/stats").json()
            if stats["disconnects"] >= 1:
                break
            time.sleep(0.1)
        assert stats["disconnects"] >= 1


def test_engine_dying_mid_stream_cuts_the_client_stream_and_next_request_restarts(
    start_port: int,
) -> None:
    with run_swapd(two_models(start_port)) as swapd:
        body = {
            "model": "alpha",
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
            "chunks": 100,
            "chunk_delay": 0.05,
        }
        pid = int(chat(swapd.url, "alpha").headers["x-engine-pid"])
        got = b""
        url = f"{swapd.url}/v1/chat/completions"
        with (
            pytest.raises(httpx.RemoteProtocolError),  # truncated, visibly: no final chunk
            httpx.stream("POST", url, json=body, timeout=30) as r,
        ):
            for chunk in r.iter_raw():
                got += chunk
                if len(got) > 200 and pid:
                    os.kill(pid, signal.SIGKILL)
                    pid = 0
        assert b"[DONE]" not in got
        r = chat(swapd.url, "alpha")
        assert r.status_code == 200 and int(r.headers["x-engine-pid"]) != pid


def test_nothing_swapd_started_outlives_it(start_port: int) -> None:
    with run_swapd(two_models(start_port)) as swapd:
        pids = [int(chat(swapd.url, m).headers["x-engine-pid"]) for m in ("alpha",)]
    assert pids_alive(pids) == []


def test_engine_ignoring_sigterm_is_killed_after_unload_timeout(start_port: int) -> None:
    extra = f"  stubborn:\n    cmd: {echo_cmd('--ignore-sigterm')}\n    unloadTimeout: 1"
    with run_swapd(two_models(start_port, extra=extra)) as swapd:
        pid = int(chat(swapd.url, "stubborn").headers["x-engine-pid"])
        began = time.monotonic()
        httpx.post(f"{swapd.url}/api/models/unload/stubborn", timeout=30)
        assert time.monotonic() - began >= 0.9
        assert pids_alive([pid]) == []


def test_shutdown_drains_in_flight_requests_before_stopping_engines(start_port: int) -> None:
    import threading

    result: dict[str, httpx.Response] = {}
    with run_swapd(two_models(start_port)) as swapd:
        assert chat(swapd.url, "alpha").status_code == 200
        body = {"model": "alpha", "messages": [{"role": "user", "content": "slow"}], "delay": 1.5}
        t = threading.Thread(
            target=lambda: result.update(
                r=httpx.post(f"{swapd.url}/v1/chat/completions", json=body, timeout=30)
            )
        )
        t.start()
        wait_for(lambda: httpx.get(f"{swapd.url}/api/inflight").json()["requests"], "the request")
        swapd.proc.send_signal(signal.SIGTERM)
        t.join()
    assert result["r"].status_code == 200
    assert result["r"].json()["choices"][0]["message"]["content"] == "echo alpha: slow"


def test_sighup_reload_keeps_unchanged_models_and_rejects_bad_config(start_port: int) -> None:
    cfg = two_models(start_port)
    with run_swapd(cfg) as swapd:
        pid = int(chat(swapd.url, "alpha").headers["x-engine-pid"])
        swapd.config_path.write_text(cfg + "  gamma:\n    cmd: x\n    proxy: http://127.0.0.1:9\n")
        swapd.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "gamma" in httpx.get(f"{swapd.url}/v1/models").text, "gamma", 10)
        assert int(chat(swapd.url, "alpha").headers["x-engine-pid"]) == pid
        swapd.config_path.write_text("models: [this is: not valid")
        swapd.proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert int(chat(swapd.url, "alpha").headers["x-engine-pid"]) == pid
        assert "config reload rejected" in httpx.get(f"{swapd.url}/logs").text


def test_ttl_unloads_idle_models(start_port: int) -> None:
    with run_swapd(two_models(start_port, extra="    ttl: 1")) as swapd:
        pid = int(chat(swapd.url, "alpha").headers["x-engine-pid"])
        wait_for(lambda: not pids_alive([pid]), "the engine to stop", 10)


def test_preload_starts_models_at_startup(start_port: int) -> None:
    cfg = two_models(start_port, top="hooks:\n  on_startup:\n    preload: [a]")
    with run_swapd(cfg) as swapd:

        def ready() -> list[dict[str, str]]:
            running: list[dict[str, str]] = httpx.get(f"{swapd.url}/running").json()["running"]
            return running if running and running[0]["state"] == "ready" else []

        assert [r["model"] for r in wait_for(ready, "a ready model", 10)] == ["alpha"]


def test_watch_config_reloads_on_file_change(start_port: int) -> None:
    cfg = two_models(start_port)
    with run_swapd(cfg, extra_args=["--watch-config"]) as swapd:
        pid = int(chat(swapd.url, "alpha").headers["x-engine-pid"])
        swapd.config_path.write_text(cfg.replace("aliases: [a]", "aliases: [a, first]"))

        def served() -> httpx.Response | None:
            r = chat(swapd.url, "first")
            return r if r.status_code == 200 else None

        r = wait_for(served, "the new alias to be served", 10)
        assert int(r.headers["x-engine-pid"]) == pid  # aliases do not restart the engine


def test_a_watched_config_file_caught_empty_mid_save_keeps_every_model(start_port: int) -> None:
    cfg = two_models(start_port)
    with run_swapd(cfg, extra_args=["--watch-config"]) as swapd:
        pid = int(chat(swapd.url, "alpha").headers["x-engine-pid"])
        swapd.config_path.write_text("")  # an editor's save, caught between truncate and write
        swapd.wait_for_log("the file is empty (still being saved?)")
        assert int(chat(swapd.url, "alpha").headers["x-engine-pid"]) == pid
        assert pids_alive([pid])
        swapd.config_path.write_text(cfg.replace("aliases: [a]", "aliases: [a, first]"))

        def served() -> httpx.Response | None:  # the whole file, once saved, is read
            r = chat(swapd.url, "first")
            return r if r.status_code == 200 else None

        r = wait_for(served, "the new alias to be served", 10)
        assert int(r.headers["x-engine-pid"]) == pid


def test_grandchildren_of_an_engine_are_stopped_with_it(start_port: int, tmp_path: Path) -> None:
    marker = tmp_path / "grandchild.pid"
    script = f"sleep 300 & echo $! > {marker}; exec {echo_cmd()}"
    cfg = f"""
startPort: {start_port}
models:
  family:
    cmd: sh -c '{script}'
"""
    with run_swapd(cfg) as swapd:
        assert chat(swapd.url, "family").status_code == 200
        grandchild = int(marker.read_text())
        assert pids_alive([grandchild]) == [grandchild]
    assert pids_alive([grandchild]) == []


def test_failed_start_leaves_nothing_running(start_port: int, tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    script = f"echo $$ > {marker}; exec {echo_cmd('--health-delay 60')}"
    cfg = f"""
startPort: {start_port}
healthCheckTimeout: 1
models:
  never:
    cmd: sh -c '{script}'
"""
    with run_swapd(cfg) as swapd:
        assert chat(swapd.url, "never").status_code == 503
        assert pids_alive([int(marker.read_text())]) == []


def test_engines_left_by_a_killed_swapd_are_stopped_by_the_next_one(
    start_port: int, tmp_path: Path
) -> None:
    env = {**os.environ, "SWAPD_STATE_DIR": str(tmp_path)}
    cfg = two_models(start_port)
    with run_swapd(cfg, env=env) as first:
        pid = int(chat(first.url, "alpha").headers["x-engine-pid"])
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        assert pids_alive([pid]) == [pid]  # orphaned, in its own session
        with run_swapd(cfg, env=env) as second:
            assert pids_alive([pid]) == []
            assert "left behind by an earlier swapd" in second.output()


def test_engine_closing_kept_alive_connections_silently_gets_fresh_ones(start_port: int) -> None:
    import concurrent.futures

    cfg = f"""
startPort: {start_port}
models:
  oneshot:
    cmd: {raw_engine_cmd("--drop-reused")}
"""
    with run_swapd(cfg) as swapd:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:  # four pooled connections
            first = list(pool.map(lambda _: chat(swapd.url, "oneshot").status_code, range(4)))
        assert first == [200] * 4
        # Each of these would reuse a dead pooled connection; a single retry on the pool would
        # find another dead one. swapd retries on a fresh connection and then stops reusing.
        assert [chat(swapd.url, "oneshot").status_code for _ in range(6)] == [200] * 6


def test_request_right_after_an_engine_died_gets_a_fresh_engine(start_port: int) -> None:
    cfg = f"""
startPort: {start_port}
models:
  fragile:
    cmd: {raw_engine_cmd()}
"""
    with run_swapd(cfg) as swapd:
        first = int(chat(swapd.url, "fragile").headers["x-engine-pid"])
        httpx.post(f"{swapd.url}/upstream/fragile/close", timeout=10)
        # The engine no longer listens but has not exited yet: swapd still has it as ready.
        r = chat(swapd.url, "fragile")
        assert r.status_code == 200, r.text
        assert int(r.headers["x-engine-pid"]) != first


def test_reload_preloads_the_new_configs_preload_list(start_port: int) -> None:
    cfg = two_models(start_port)
    with run_swapd(cfg) as swapd:
        swapd.config_path.write_text(cfg + "hooks:\n  on_startup:\n    preload: [beta]\n")
        swapd.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        running: list[dict[str, str]] = []
        while time.monotonic() < deadline:
            running = httpx.get(f"{swapd.url}/running").json()["running"]
            if running and running[0]["state"] == "ready":
                break
            time.sleep(0.1)
        assert [(r["model"], r["state"]) for r in running] == [("beta", "ready")]
