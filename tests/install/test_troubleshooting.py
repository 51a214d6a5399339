"""docs/troubleshooting.md quotes swapd's messages as swapd prints them: each one is produced
here (a config loaded in-process, real ``swapd serve`` processes with echo engines, fake GPUs)
and must appear in the document, numbers aside (line:col, ports, sizes, seconds). The two
messages that need a Docker daemon are matched against the f-strings that print them."""

from __future__ import annotations

import ast
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from swapd.config import load_text
from swapd.errors import ConfigError
from swapd.testing import GIB, FakeGpus, echo_cmd, free_port, run_swapd

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "troubleshooting.md"
ADMIN, READER = "sk-admin-000000000001", "sk-reader-00000000001"


def _numbers_aside(text: str) -> str:
    return re.sub(r"\d+(?:\.\d+)?", "#", text)


def _assert_quoted(message: str) -> None:
    doc = _numbers_aside(DOC.read_text(encoding="utf-8"))
    assert _numbers_aside(message) in doc, f"not in {DOC.name}:\n{message}"


def _config_error(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_text(text, "config.yaml", env=env or {})
    return str(caught.value).splitlines()[0]


def test_config_errors_are_quoted() -> None:
    _assert_quoted(_config_error("models:\n  qwen:\n    cmd: x\n    ttl: a: b\n"))
    _assert_quoted(_config_error("models:\n  qwen:\n    cmd: llama-server -m ${model_dir}/x\n"))
    _assert_quoted(_config_error("startPort: eight-thousand\nmodels: {}\n"))
    _assert_quoted(_config_error("apiKeys:\n  - ${env.SWAPD_API_KEY}\nmodels: {}\n"))


def test_swapd_port_in_use_is_quoted(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "swapd", "serve", "--listen", f"127.0.0.1:{port}"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    _assert_quoted(done.stderr.strip().splitlines()[-1])


def _error(url: str, model: str, key: str | None = ADMIN, host: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if host:
        headers["Host"] = host
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    reply = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=60)
    assert reply.status_code >= 400, reply.text
    message: str = reply.json()["error"]["message"]
    return message.splitlines()[0]


@pytest.fixture
def crash_script(tmp_path: Path) -> Path:
    script = tmp_path / "crash.py"
    script.write_text(
        "import sys\nprint('error: cannot load model', file=sys.stderr)\nsys.exit(1)\n"
    )
    return script


def test_engine_port_in_use_is_quoted() -> None:
    port = free_port()
    cfg = f"startPort: {port}\nmodels:\n  qwen:\n    cmd: {echo_cmd()}\n"
    # Held after swapd gave qwen this ${PORT}.
    with run_swapd(cfg) as swapd, socket.socket() as held:
        held.bind(("127.0.0.1", port))
        held.listen()
        _assert_quoted(_error(swapd.url, "qwen", key=None))


def test_start_key_and_host_errors_are_quoted(crash_script: Path, start_port: int) -> None:
    python = sys.executable
    cfg = f"""
startPort: {start_port}
healthCheckTimeout: 1
apiKeys:
  - {ADMIN}
  - {{name: reader, key: {READER}, scopes: [inference]}}
models:
  qwen:
    cmd: {echo_cmd()}
  gpt-oss:
    cmd: llama-server --port ${{PORT}}
  qwen-embed:
    cmd: {python} {crash_script} --port ${{PORT}}
  qwen-vl:
    cmd: {python} -c "import time; time.sleep(30)" ${{PORT}}
    checkEndpoint: /health
"""
    with run_swapd(cfg) as swapd:
        url = swapd.url
        gpt_oss = _error(url, "gpt-oss")
        _assert_quoted(gpt_oss.replace("gpt-oss", "qwen"))
        _assert_quoted(_error(url, "qwen-embed"))
        _assert_quoted(_error(url, "qwen-vl"))
        _assert_quoted(_error(url, "qwen3"))
        _assert_quoted(_error(url, "qwen", key=None))
        _assert_quoted(_error(url, "qwen", key="sk-wrong"))
        unload = httpx.post(
            f"{url}/api/models/unload", headers={"Authorization": f"Bearer {READER}"}
        )
        assert unload.status_code == 403
        _assert_quoted(unload.json()["error"]["message"])
        _assert_quoted(_error(url, "qwen", host="swapd.lan"))


def test_cross_site_refusal_is_quoted() -> None:
    with run_swapd(f"models:\n  qwen:\n    cmd: {echo_cmd()}\n") as swapd:
        refused = httpx.post(
            f"{swapd.url}/api/models/unload", headers={"Sec-Fetch-Site": "cross-site"}
        )
    assert refused.status_code == 403
    _assert_quoted(refused.json()["error"]["message"])


def test_insufficient_memory_is_quoted(tmp_path: Path) -> None:
    fake = FakeGpus(tmp_path, {"a": [24 * GIB]})
    cfg = f"models:\n  big:\n    cmd: {echo_cmd('--allocate 40GiB')}\n"
    cfg += "    resources: {memory: 40GiB}\n"
    env = {**fake.env(), "SWAPD_STATE_DIR": str(tmp_path / "state")}
    with run_swapd(cfg, env=env) as swapd:
        _assert_quoted(_error(swapd.url, "big", key=None))


def _templates(path: Path) -> list[re.Pattern[str]]:
    """Every f-string (and plain string) in ``path`` as a regex: each {…} matches anything."""
    found: list[re.Pattern[str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.JoinedStr):
            parts = [
                re.escape(v.value) if isinstance(v, ast.Constant) else ".*?" for v in node.values
            ]
            found.append(re.compile("".join(parts)))
    return found


@pytest.mark.parametrize(
    ("source", "start"),
    [
        ("src/swapd/drivers/docker/driver.py", "image '"),
        ("src/swapd/recipes/start.py", "model llama (vllm/llama-3.1-8b-instruct) is gated"),
    ],
)
def test_docker_messages_are_quoted_as_the_source_prints_them(source: str, start: str) -> None:
    lines = [line for line in DOC.read_text().splitlines() if line.startswith(start)]
    assert len(lines) == 1, lines
    assert any(t.fullmatch(lines[0]) for t in _templates(ROOT / source)), lines[0]
