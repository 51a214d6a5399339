"""Adding a model from a recipe to a running swapd (a real ``swapd serve``): the file is
written, the server reloads it, the new model is listed while the running one keeps its
engine (same pid); through the admin API too, which needs the admin scope."""

from __future__ import annotations

from pathlib import Path

import httpx
from click.testing import CliRunner

from swapd.cli import main
from swapd.testing import echo_cmd, free_port_range, run_swapd

ADMIN, READER = "admin-key-for-recipes-test", "read-key-for-recipes-test"
CONFIG = """\
# a running swapd
startPort: {port}
apiKeys:
  - {admin}
  - {{key: {reader}, name: viewer, scopes: [read]}}
models:
  echo:
    cmd: {cmd}  # keeps running
"""


def _ids(url: str) -> list[str]:
    answer = httpx.get(f"{url}/v1/models", headers={"authorization": f"Bearer {ADMIN}"})
    return [m["id"] for m in answer.json()["data"]]


def _echo_pid(url: str) -> int:
    rows = httpx.get(f"{url}/api/models", headers={"authorization": f"Bearer {ADMIN}"}).json()
    [echo] = [m for m in rows["models"] if m["id"] == "echo"]
    assert echo["state"] == "ready"
    return int(echo["pid"])


def test_recipes_add_hot_applies_and_the_running_model_keeps_its_engine() -> None:
    text = CONFIG.format(port=free_port_range(6), admin=ADMIN, reader=READER, cmd=echo_cmd())
    with run_swapd(text) as swapd:
        auth = {"authorization": f"Bearer {ADMIN}"}
        url = swapd.url
        start = httpx.post(f"{url}/api/models/echo/start?wait=1", headers=auth, timeout=30)
        assert start.status_code == 200, start.text
        pid = _echo_pid(url)
        config = Path(swapd.config_path)

        cli = CliRunner().invoke(
            main,
            ["recipes", "add", "vllm/qwen3-8b-pip", "--as", "qwen", "--set", "max_model_len=8192",
             "--config", str(config), "--url", url, "--api-key", ADMIN],
        )  # fmt: skip
        assert cli.exit_code == 0, cli.output
        assert f"swapd at {url} reloaded: added qwen" in cli.output
        assert (
            "  echo:\n    cmd: " in config.read_text() and "# keeps running" in config.read_text()
        )
        assert _ids(url) == ["echo", "qwen"]
        assert _echo_pid(url) == pid

        # the UI's way: the server edits its own file (admin scope), then reloads
        body = {"recipe": "llamacpp/qwen3-8b", "id": "small", "set": ["ctx_size=4096"]}
        viewer = {"authorization": f"Bearer {READER}"}
        refused = httpx.post(f"{url}/api/recipes/models", json=body, headers=viewer)
        assert refused.status_code == 403
        added = httpx.post(f"{url}/api/recipes/models", json=body, headers=auth)
        assert added.status_code == 200, added.text
        assert added.json()["reload"]["ok"] is True
        assert added.json()["entry"] == {
            "recipe": {"name": "llamacpp/qwen3-8b", "set": {"ctx_size": 4096}}
        }
        assert _ids(url) == ["echo", "qwen", "small"]
        listing = httpx.get(f"{url}/api/recipes", headers=viewer).json()
        assert listing["file"] == str(config)
        assert [e["id"] for e in listing["entries"]] == ["qwen", "small"]

        before = config.read_text()
        bad = {**body, "id": "bad", "set": {"no_such_placeholder": 1}}
        rejected = httpx.post(f"{url}/api/recipes/models", json=bad, headers=auth)
        assert rejected.status_code == 400
        assert f"{config}:" in rejected.json()["error"]["message"]
        assert "unknown placeholder 'no_such_placeholder'" in rejected.json()["error"]["message"]
        assert config.read_text() == before

        gone = httpx.delete(f"{url}/api/recipes/models/qwen", headers=auth)
        assert gone.status_code == 200 and gone.json()["reload"]["ok"] is True
        assert _ids(url) == ["echo", "small"]
        with CliRunner().isolated_filesystem():  # no ./config.yaml: the server edits its own
            cli = CliRunner().invoke(
                main, ["recipes", "remove", "small", "--url", url, "--api-key", ADMIN]
            )
        assert cli.exit_code == 0, cli.output
        assert f"removed model small from {config}" in cli.output
        assert f"swapd at {url} reloaded: removed small" in cli.output
        assert _ids(url) == ["echo"]
        missing = httpx.delete(f"{url}/api/recipes/models/echo-nope", headers=auth)
        assert missing.status_code == 404
        assert _echo_pid(url) == pid


def test_the_recipe_page_data_has_the_catalog_and_the_docker_run_line() -> None:
    text = CONFIG.format(port=free_port_range(6), admin=ADMIN, reader=READER, cmd=echo_cmd())
    with run_swapd(text) as swapd:
        viewer = {"authorization": f"Bearer {READER}"}
        catalog = httpx.get(f"{swapd.url}/api/recipes", headers=viewer).json()
        by_name = {r["name"]: r for r in catalog["recipes"]}
        assert by_name["vllm/qwen3-8b"]["engine"] == "vllm"
        assert by_name["vllm/qwen3-8b"]["memory"]
        detail = httpx.get(
            f"{swapd.url}/api/recipes/vllm/qwen3-8b",
            params=[("set", "max_model_len=4096"), ("id", "qwen")],
            headers=viewer,
        ).json()
        assert detail["command"].startswith("docker run -d --name swapd-qwen-")
        assert "--max-model-len 4096" in detail["command"]
        assert detail["placeholders"]["max_model_len"] == 4096
        process = httpx.get(f"{swapd.url}/api/recipes/vllm/qwen3-8b-pip", headers=viewer).json()
        assert " serve Qwen/Qwen3-8B " in process["command"]
        unknown = httpx.get(f"{swapd.url}/api/recipes/vllm/nope", headers=viewer)
        assert unknown.status_code == 400 and "unknown recipe" in unknown.text
        spec = httpx.get(f"{swapd.url}/openapi.json", headers=viewer).json()
        assert {"/api/recipes", "/api/recipes/{name}", "/api/recipes/models"} <= set(spec["paths"])
        assert "delete" in spec["paths"]["/api/recipes/models/{id}"]


def test_with_a_config_dir_changes_go_to_the_main_file_and_say_so(tmp_path: Path) -> None:
    more = tmp_path / "conf.d"
    more.mkdir()
    (more / "extra.yaml").write_text(f"models:\n  side:\n    cmd: {echo_cmd()}\n")
    text = CONFIG.format(port=free_port_range(6), admin=ADMIN, reader=READER, cmd=echo_cmd())
    with run_swapd(text, extra_args=["--config-dir", str(more)]) as swapd:
        auth = {"authorization": f"Bearer {ADMIN}"}
        listing = httpx.get(f"{swapd.url}/api/recipes", headers=auth).json()
        assert listing["file"] == str(swapd.config_path)
        assert "the main config file; also read:" in listing["note"]
        body = {"recipe": "vllm/qwen3-8b", "id": "side"}
        clash = httpx.post(f"{swapd.url}/api/recipes/models", json=body, headers=auth)
        assert clash.status_code == 409 and "extra.yaml" in clash.json()["error"]["message"]
        added = httpx.post(
            f"{swapd.url}/api/recipes/models", json={**body, "id": "qwen"}, headers=auth
        ).json()
        assert added["file"] == str(swapd.config_path) and "extra.yaml" in added["note"]
        assert _ids(swapd.url) == ["echo", "qwen", "side"]
        assert "qwen" not in (more / "extra.yaml").read_text()
