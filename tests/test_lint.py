"""swapd.lint: runtime mistakes in a valid config (program not on PATH, proxy port not in cmd)."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from swapd.config import load_text
from swapd.config.model import Config, ModelConfig
from swapd.extensions import standard
from swapd.lint import exposure, is_loopback, lint
from swapd.testing import echo_cmd


def config(text: str) -> Config:
    return load_text(text, extensions=standard())


def executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_a_program_missing_from_path_is_named_with_the_path_searched(tmp_path: Path) -> None:
    cfg = config("models:\n  m:\n    cmd: no-such-engine-xyz --port ${PORT}\n")
    (warning,) = lint(cfg, {"PATH": str(tmp_path)})
    assert warning.startswith("model m: program 'no-such-engine-xyz' not found on PATH")
    assert str(tmp_path) in warning and "swapd's environment" in warning
    assert "absolute path" in warning  # the hint


def test_a_program_on_the_given_path_is_fine(tmp_path: Path) -> None:
    executable(tmp_path / "my-engine")
    cfg = config("models:\n  m:\n    cmd: my-engine --port ${PORT}\n")
    assert lint(cfg, {"PATH": str(tmp_path)}) == []
    assert lint(cfg, {"PATH": "/nonexistent"}) != []


def test_the_models_own_env_path_is_the_one_searched(tmp_path: Path) -> None:
    executable(tmp_path / "my-engine")
    cfg = config(
        f"models:\n  m:\n    cmd: my-engine --port ${{PORT}}\n    env: ['PATH={tmp_path}']\n"
    )
    assert lint(cfg, {"PATH": "/nonexistent"}) == []
    cfg = config("models:\n  m:\n    cmd: my-engine --port ${PORT}\n    env: ['PATH=/nowhere']\n")
    (warning,) = lint(cfg, {"PATH": str(tmp_path)})
    assert "from the model's env: /nowhere" in warning


def test_absolute_paths_are_checked_for_existence_and_the_executable_bit(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("not a program")
    cfg = config(
        f"""
models:
  gone:
    cmd: {tmp_path}/missing --port ${{PORT}}
  plain:
    cmd: {plain} --port ${{PORT}}
  dir:
    cmd: {tmp_path} --port ${{PORT}}
  ok:
    cmd: {executable(tmp_path / "ok")} --port ${{PORT}}
"""
    )
    warnings = sorted(lint(cfg, {"PATH": ""}))
    assert len(warnings) == 3
    assert warnings[0].startswith(f"model dir: program '{tmp_path}' is not an executable file")
    assert (
        warnings[1]
        == f"model gone: program '{tmp_path}/missing' does not exist; fix the path in cmd"
    )
    assert warnings[2].startswith(f"model plain: program '{plain}' is not an executable file")


def test_a_fixed_proxy_port_that_cmd_never_mentions() -> None:
    cfg = config(
        f"""
models:
  other-port:
    cmd: {sys.executable} -m swapd.echo --port 9999
    proxy: http://127.0.0.1:9503
  no-port:
    cmd: {sys.executable} -m swapd.echo
    proxy: http://localhost:9503
"""
    )
    warnings = dict(w.split(":", 1) for w in lint(cfg))
    assert set(warnings) == {"model other-port", "model no-port"}
    assert (
        "proxy http://127.0.0.1:9503 expects port 9503, but cmd never mentions 9503"
        in (warnings["model other-port"])
    )
    assert "--port 9503" in warnings["model no-port"]  # the hint


def test_a_proxy_port_mentioned_in_cmd_or_env_in_any_form_is_fine() -> None:
    py = sys.executable
    cfg = config(
        f"""
models:
  flag:
    cmd: {py} -m swapd.echo --host 127.0.0.1 --port 9503
    proxy: http://127.0.0.1:9503
  equals:
    cmd: {py} -m swapd.echo --port=9504
    proxy: http://127.0.0.1:9504
  publish:
    cmd: {py} -m swapd.echo -p 9505:8080
    proxy: http://127.0.0.1:9505
  env:
    cmd: {py} -m swapd.echo
    env: [ENGINE_PORT=9506]
    proxy: http://127.0.0.1:9506
"""
    )
    assert lint(cfg) == []


def test_a_longer_number_containing_the_port_is_not_a_mention() -> None:
    cfg = config(
        f"models:\n  m:\n    cmd: {sys.executable} -m swapd.echo --port 19503\n"
        "    proxy: http://127.0.0.1:9503\n"
    )
    (warning,) = lint(cfg)
    assert "expects port 9503" in warning


def test_port_allocated_models_and_the_echo_engine_get_no_warning() -> None:
    cfg = config(
        f"""
models:
  echo:
    cmd: {echo_cmd()}
  explicit:
    cmd: {echo_cmd()}
    proxy: http://127.0.0.1:${{PORT}}/v1
"""
    )
    assert lint(cfg) == []


def test_port_allocated_in_cmd_but_a_different_fixed_proxy_port() -> None:
    cfg = config(
        f"startPort: 7100\nmodels:\n  m:\n    cmd: {echo_cmd()}\n    proxy: http://127.0.0.1:8999\n"
    )
    (warning,) = lint(cfg)
    assert "expects port 8999" in warning and "(its ${PORT} is 7100)" in warning


def test_an_allocated_port_is_left_to_the_loader() -> None:
    model = ModelConfig(id="m", cmd=(sys.executable,), proxy="http://127.0.0.1:5800", port=5800)
    assert lint(Config(models={"m": model})) == []  # the loader warns about a cmd without it


def test_remote_proxies_and_llama_servers_default_port_are_not_checked() -> None:
    remote = config(
        f"models:\n  r:\n    cmd: {sys.executable} -m swapd.echo\n"
        "    proxy: http://192.168.1.23:9000\n"
    )
    assert lint(remote) == []
    llama = "models:\n  l:\n    cmd: /usr/bin/llama-server -m x.gguf{}\n    proxy: {}\n"
    assert _port_warnings(config(llama.format("", "http://127.0.0.1:8080"))) == []
    told = config(llama.format(" --port 8081", "http://127.0.0.1:8080"))
    assert len(_port_warnings(told)) == 1  # told to listen elsewhere: 8080 is wrong now
    other = config(llama.format("", "http://127.0.0.1:9000"))
    assert len(_port_warnings(other)) == 1


def _port_warnings(cfg: Config) -> list[str]:
    return [w for w in lint(cfg) if "expects port" in w]


def test_docker_models_are_skipped() -> None:
    cfg = config(
        """
models:
  d:
    driver: docker
    docker:
      image: vllm/vllm-openai:latest
      command: [serve, --port, "8000"]
    proxy: http://127.0.0.1:9503
"""
    )
    assert lint(cfg, {"PATH": ""}) == []


def test_loopback_and_exposure() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.1.2.3"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "[::]", "192.168.1.2", "example"))
    open_config = config("models: {}\n")
    warning = exposure("0.0.0.0", open_config)
    assert warning is not None and "without apiKeys" in warning
    assert exposure("127.0.0.1", open_config) is None
    assert exposure("0.0.0.0", config("apiKeys: [sekret]\nmodels: {}\n")) is None


def test_the_demo_config_is_clean() -> None:
    from swapd.config import load_demo

    assert lint(load_demo(), {"PATH": os.defpath}) == []
