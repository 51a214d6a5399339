from __future__ import annotations

import sys

import pytest

from swapd.config import DEFAULT_GROUP, load_demo, load_text
from swapd.config.demo import demo_text


def test_demo_config() -> None:
    cfg = load_demo()
    assert list(cfg.models) == ["echo-a", "echo-b"]
    assert cfg.warnings == ()
    assert cfg.start_port == 5800
    for port, model in enumerate(cfg.models.values(), start=5800):
        assert model.cmd == (
            sys.executable,
            "-m",
            "swapd.echo",
            "--port",
            str(port),
            "--model",
            model.id,
        )
        assert model.proxy == f"http://127.0.0.1:{port}"
        assert model.check_endpoint == "/health"
        assert model.name and model.description
        assert model.group == "demo"
    demo = cfg.groups["demo"]
    assert (demo.swap, demo.exclusive, demo.members) == (True, True, ("echo-a", "echo-b"))
    assert cfg.groups[DEFAULT_GROUP].members == ()


def test_demo_text_is_a_plain_copyable_config() -> None:
    text = demo_text()
    assert len(text.splitlines()) < 40
    cfg = load_text(text, env={})
    assert cfg.models["echo-a"].cmd[0] == "python3"


def test_interpreter_path_is_shell_quoted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/opt/my python/bin/python3")
    assert load_demo().models["echo-a"].cmd[0] == "/opt/my python/bin/python3"
