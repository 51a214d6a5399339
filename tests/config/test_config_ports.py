"""``${PORT}`` numbers are stable across reloads: a model keeps the port it had."""

from __future__ import annotations

import httpx
import pytest
from config_helpers import load

from swapd.config import Config
from swapd.config.macros import PreviousPorts, allocate_ports
from swapd.testing import echo_cmd, run_swapd


def models(*ids: str, start: int = 5800) -> str:
    lines = [f"startPort: {start}", "models:"]
    for model_id in ids:
        lines += [f"  {model_id}:", "    cmd: srv --port ${PORT}"]
    return "\n".join(lines) + "\n"


def ports(cfg: Config) -> dict[str, int | None]:
    return {m.id: m.port for m in cfg.models.values()}


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(
            ("llama", "qwen"),
            ("gemma", "llama", "qwen"),
            {"gemma": 5802, "llama": 5800, "qwen": 5801},
            id="added model sorts first: the others keep their ports",
        ),
        pytest.param(
            ("a", "b", "c"),
            ("a", "c", "d"),
            {"a": 5800, "c": 5802, "d": 5801},
            id="removed model's port is reused by a new one",
        ),
        pytest.param(
            ("a", "b", "c"),
            ("a", "c"),
            {"a": 5800, "c": 5802},
            id="removing a model renumbers nothing",
        ),
        pytest.param(
            ("m", "n"),
            ("a", "b", "m", "n"),
            {"a": 5802, "b": 5803, "m": 5800, "n": 5801},
            id="several new models fill upwards in id order",
        ),
    ],
)
def test_a_reload_keeps_every_models_port(
    before: tuple[str, ...], after: tuple[str, ...], expected: dict[str, int]
) -> None:
    previous = load(models(*before))
    assert ports(load(models(*after), previous=previous)) == expected


def test_first_load_hands_out_ports_in_sorted_id_order() -> None:
    assert ports(load(models("qwen", "gemma", "llama"))) == {
        "gemma": 5800,
        "llama": 5801,
        "qwen": 5802,
    }


def test_a_kept_port_is_substituted_everywhere_in_the_model() -> None:
    previous = load(models("llama"))
    cfg = load(models("gemma", "llama"), previous=previous)
    llama = cfg.models["llama"]
    assert llama.cmd == ("srv", "--port", "5800")
    assert llama.proxy == "http://127.0.0.1:5800"


def test_a_model_that_stops_using_port_gives_its_port_up() -> None:
    previous = load(models("a", "b"))
    text = models("b", "c") + "  a:\n    cmd: srv --port 9000\n    proxy: http://127.0.0.1:9000\n"
    assert ports(load(text, previous=previous)) == {"a": None, "b": 5801, "c": 5800}


def test_a_changed_start_port_renumbers_every_model() -> None:
    previous = load(models("a", "b"))
    cfg = load(models("c", "a", "b", start=7000), previous=previous)
    assert ports(cfg) == {"a": 7000, "b": 7001, "c": 7002}


def test_allocation_never_hands_out_a_port_twice() -> None:
    previous = PreviousPorts(5800, {"a": 5801, "b": 5801, "c": 5700})
    assert allocate_ports(["a", "b", "c", "d"], 5800, previous) == {
        "a": 5801,
        "b": 5800,
        "c": 5802,
        "d": 5803,
    }


def _chat(url: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)


def test_adding_a_model_does_not_restart_a_serving_one(start_port: int) -> None:
    def config(*ids: str) -> str:
        text = (
            f"startPort: {start_port}\ngroups:\n  all:\n    swap: false\n    members: {list(ids)}\n"
        )
        text += "models:\n"
        for model_id in ids:
            text += f"  {model_id}:\n    cmd: {echo_cmd()}\n"
        return text

    with run_swapd(config("llama")) as swapd:
        first = _chat(swapd.url, "llama")
        assert first.status_code == 200, first.text
        pid = first.headers["x-engine-pid"]
        swapd.config_path.write_text(config("gemma", "llama"))  # gemma sorts before llama
        reload = httpx.post(f"{swapd.url}/api/config/reload", timeout=30).json()
        assert reload["ok"], reload
        assert "llama" not in reload["changes"].get("restarted", []), reload
        again = _chat(swapd.url, "llama")
        assert again.status_code == 200, again.text
        assert again.headers["x-engine-pid"] == pid  # the same engine, on the same port
        gemma = _chat(swapd.url, "gemma")
        assert gemma.status_code == 200, gemma.text  # on the next free port, no collision
        assert _chat(swapd.url, "llama").headers["x-engine-pid"] == pid
