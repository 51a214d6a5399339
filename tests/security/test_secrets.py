"""Secrets stay in: values from ``${env.X}`` and ``env:`` entries never reach a client — not in
``/api/config``, ``/running``, ``/api/models``, the logs served over HTTP, ``/api/events``, nor
a failed start's 503 body — on real ``swapd serve`` processes."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx
import pytest

from swapd.config import load_text
from swapd.errors import StartFailed
from swapd.proxy.envelope import shown
from swapd.secrets import MASK, Redactor, collect, masked_config, redactor
from swapd.testing import run_swapd

pytestmark = pytest.mark.timeout(120)

MACRO_SECRET = "macro-secret-7f3a9d"  # reaches the engine's argv through ${env.SWAPD_T_SECRET}
ENTRY_SECRET = "entry-secret-91bc04"  # an env: entry
SECRETS = (MACRO_SECRET, ENTRY_SECRET)
LEAKY = """\
import os, sys
print("token", os.environ["HF_TOKEN"], flush=True)
print("arg", sys.argv[1], flush=True)
sys.exit(3)
"""
CHAT = {"model": "leaky", "messages": [{"role": "user", "content": "hi"}]}


def config(start_port: int, tmp_path: Path, top: str = "") -> str:
    script = tmp_path / "leaky.py"
    script.write_text(LEAKY)
    cmd = f"{sys.executable} {script} ${{env.SWAPD_T_SECRET}} --port ${{PORT}}"
    return (
        f"startPort: {start_port}\n{top}\nmodels:\n  leaky:\n    cmd: {json.dumps(cmd)}\n"
        f'    env: ["HF_TOKEN={ENTRY_SECRET}"]\n'
    )


def assert_hidden(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret} leaked in {where}"


def poll(fetch: httpx.Client, path: str, needle: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        text = fetch.get(path).text
        if needle in text or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def read_stream_until(api: httpx.Client, path: str, needle: str, *, then: str = "") -> str:
    """Read a streaming response until ``needle`` shows up (POST ``then`` once it is open)."""
    seen = ""
    with api.stream("GET", path) as stream:
        if then:
            api.post(then)
        for chunk in stream.iter_text():
            seen += chunk
            if needle in seen:
                break
    return seen


def test_secrets_never_reach_a_client(start_port: int, tmp_path: Path) -> None:
    env = {"SWAPD_T_SECRET": MACRO_SECRET}
    with (
        run_swapd(config(start_port, tmp_path), env=env) as swapd,
        httpx.Client(base_url=swapd.url, timeout=30) as api,
    ):
        failed = api.post("/v1/chat/completions", json=CHAT)
        assert failed.status_code == 503
        assert failed.json()["error"]["code"] == "start_failed"
        assert_hidden(failed.text, "the 503 body")

        running = api.get("/running")
        assert [m["model"] for m in running.json()["running"]] == ["leaky"]
        assert MASK in running.json()["running"][0]["cmd"]  # the ${env.X} argument
        assert_hidden(running.text, "/running")
        models = api.get("/api/models")
        assert models.json()["models"][0]["state"] == "failed"
        assert_hidden(models.text, "/api/models")

        view = api.get("/api/config")
        leaky = view.json()["config"]["models"]["leaky"]
        assert leaky["env"] == {"HF_TOKEN": MASK}
        assert MASK in " ".join(leaky["cmd"])
        assert "secrets" not in view.json()["config"]
        assert_hidden(view.text, "/api/config")

        logs = poll(api, "/logs", f"arg {MASK}")
        assert f"token {MASK}" in logs and f"arg {MASK}" in logs  # the engine printed both
        assert_hidden(logs, "/logs")
        history = read_stream_until(api, "/logs/stream/leaky", f"arg {MASK}")
        assert f"token {MASK}" in history
        assert_hidden(history, "/logs/stream/leaky")
        live = read_stream_until(
            api, "/logs/stream?no-history", f"arg {MASK}", then="/api/models/leaky/start"
        )
        assert_hidden(live, "/logs/stream (live)")
        events = read_stream_until(
            api, "/api/events?logs=true", f"arg {MASK}", then="/api/models/leaky/start"
        )
        assert "event: snapshot" in events and f"arg {MASK}" in events
        assert_hidden(events, "/api/events")


def test_start_failures_show_engine_lines_only_with_admin_detail(
    start_port: int, tmp_path: Path
) -> None:
    keys = (
        "apiKeys:\n  - {key: inference-key-1, name: app, scopes: [inference]}\n"
        "  - {key: admin-key-1, name: ops, scopes: [admin, inference]}"
    )
    env = {"SWAPD_T_SECRET": MACRO_SECRET}
    with (
        run_swapd(config(start_port, tmp_path, keys), env=env) as swapd,
        httpx.Client(base_url=swapd.url, timeout=30) as api,
    ):
        app = {"authorization": "Bearer inference-key-1"}
        failed = api.post("/v1/chat/completions", json=CHAT, headers=app)
        assert failed.status_code == 503
        message = failed.json()["error"]["message"]
        assert "\n" not in message and "token" not in message  # the reason's first line only
        assert_hidden(failed.text, "the 503 body")

        ops = {"authorization": "Bearer admin-key-1"}
        for _ in range(5):  # the engine's lines reach the reason as soon as its pipe is read
            failed = api.post("/v1/chat/completions", json=CHAT, headers=ops)
            assert failed.status_code == 503
            assert_hidden(failed.text, "the admin's 503 body")
            if f"token {MASK}" in failed.json()["error"]["message"]:
                break
        else:
            pytest.fail(f"the admin never saw the engine's lines: {failed.text}")


# ── the pieces, without a server ─────────────────────────────────────────────────────────────


def test_the_redactor_hides_values_in_text_bytes_json_and_escaped_forms() -> None:
    hide = Redactor(["s3cr3t-value", 'quo"ted\\value', "short"])
    assert hide.text("key=s3cr3t-value;") == f"key={MASK};"
    assert hide.bytes(b"[s3cr3t-value]") == f"[{MASK}]".encode()
    encoded = json.dumps({"line": 'x quo"ted\\value y'}).encode()
    assert b"quo" not in hide.bytes(encoded) and json.loads(hide.bytes(encoded))["line"]
    assert hide.value({"a": ["s3cr3t-value", 1, None]}) == {"a": [MASK, 1, None]}
    assert hide.text("a short line") == "a short line"  # under MIN_LENGTH: left alone
    assert not Redactor(["tiny"]) and Redactor([]).text("x") == "x"


def test_the_config_records_env_macro_values_and_api_config_masks_every_env() -> None:
    text = """
apiKeys: [plain-key-123]
peers:
  far: {proxy: "http://10.0.0.1:8080", apiKey: peer-key-4567, models: [m]}
models:
  docked:
    driver: docker
    docker:
      image: vllm/vllm-openai
      env: {HF_TOKEN: "${env.HF}", CUDA: "0"}
    proxy: http://127.0.0.1:9000
  local:
    cmd: serve --port ${PORT} --key ${env.KEY}
    env: ["A=1", "B=entry-value-99"]
"""
    config = load_text(text, env={"HF": "hf-token-abcdef", "KEY": "macro-key-012345"})
    assert config.secrets == {"hf-token-abcdef", "macro-key-012345"}
    assert {"entry-value-99", "1", "0", "plain-key-123", "peer-key-4567"} <= collect(config)
    from swapd.proxy.admin import jsonable

    data = masked_config(config, jsonable(config))
    assert data["models"]["docked"]["options"]["env"] == {"HF_TOKEN": MASK, "CUDA": MASK}
    assert data["models"]["docked"]["options"]["image"] == "vllm/vllm-openai"
    assert data["models"]["local"]["env"] == {"A": MASK, "B": MASK}
    assert data["models"]["local"]["cmd"][-1] == MASK
    assert data["api_keys"] == [MASK] and data["peers"]["far"]["api_key"] == MASK
    dumped = json.dumps(data)
    for secret in ("hf-token-abcdef", "macro-key-012345", "entry-value-99", "peer-key-4567"):
        assert secret not in dumped
    assert redactor(config) is redactor(config)  # built once per config


def test_an_error_shown_without_detail_keeps_its_first_line_and_the_original_is_kept() -> None:
    error = StartFailed("m", "model m exited with code 3\ntoken s3cr3t-value")
    brief = shown(error, Redactor([]).text, detail=False)
    assert brief.message == "model m exited with code 3" and isinstance(brief, StartFailed)
    full = shown(error, Redactor(["s3cr3t-value"]).text, detail=True)
    assert full.message == f"model m exited with code 3\ntoken {MASK}"
    assert error.message.endswith("s3cr3t-value") and brief.http_status == 503
