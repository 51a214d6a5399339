"""The admin API's JSON routes: models, start/stop, sleep, config, errors, OpenAPI."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from swapd.testing import run_swapd

from .helpers import config

pytestmark = pytest.mark.timeout(120)


def test_model_info_start_stop_and_errors(start_port: int) -> None:
    with (
        run_swapd(config(start_port)) as swapd,
        httpx.Client(base_url=swapd.url, timeout=30) as api,
    ):
        models = api.get("/api/models").json()["models"]
        assert [m["id"] for m in models] == ["alpha", "beta", "broken"]
        keys = {
            "id", "name", "description", "aliases", "group", "driver", "state", "node", "pid",
            "container", "port", "uptime", "inflight", "queued", "last_use", "ttl", "ttl_left",
            "progress", "error", "unlisted",
        }  # fmt: skip
        assert keys <= set(models[0])
        assert models[0]["state"] == "stopped" and models[0]["node"] == "local"

        started = api.post("/api/models/a/start?wait=true")
        assert started.status_code == 200
        info = started.json()
        assert (info["id"], info["state"], info["port"]) == ("alpha", "ready", start_port)
        assert info["pid"] > 0 and info["container"] is None

        failed = api.post("/api/models/broken/start?wait=true")
        assert failed.status_code == 503
        assert "exited" in failed.json()["error"]["message"]
        broken = next(m for m in api.get("/api/models").json()["models"] if m["id"] == "broken")
        assert broken["state"] == "failed" and broken["error"]

        unknown = api.post("/api/models/nope/start")
        assert unknown.status_code == 404
        assert "alpha, beta, broken" in unknown.json()["error"]["message"]

        not_running = api.post("/api/models/beta/stop")
        assert not_running.status_code == 200
        assert not_running.json() == {"stopped": [], "message": "model beta is not running"}

        sleep = api.post("/api/models/alpha/sleep")
        assert sleep.status_code == 409
        assert sleep.json()["error"]["message"].startswith("model alpha does not support sleep")
        assert api.post("/api/models/alpha/wake").status_code == 409

        api.post("/api/models/alpha/start?wait=true")
        assert api.post("/api/models/stop").json()["stopped"] == ["alpha"]

        spec = api.get("/openapi.json").json()
        assert "/api/models/{id}/start" in spec["paths"]
        for path in (
            "/api/captures/{id}",
            "/api/inflight",
            "/api/inflight/{id}/cancel",
            "/api/version",
            "/api/hardware",
            "/logs/stream/proxy",
            "/logs/stream/upstream",
        ):
            assert path in spec["paths"], path


def test_config_view_and_reload_errors(start_port: int, tmp_path: Path) -> None:
    path = tmp_path / "swapd.yaml"
    path.write_text(config(start_port, top="apiKeys: [sekret]"))
    with (
        run_swapd(path) as swapd,
        httpx.Client(base_url=swapd.url, headers={"x-api-key": "sekret"}) as api,
    ):
        view = api.get("/api/config").json()
        assert view["sources"] == [str(path)]
        assert set(view["config"]["models"]) == {"alpha", "beta", "broken"}
        assert view["config"]["api_keys"] == ["***"]
        assert view["errors"] == []

        path.write_text(path.read_text() + "\nglobalTTL: soon\n")
        rejected = api.post("/api/config/reload").json()
        assert rejected["ok"] is False
        assert rejected["errors"][0].startswith(f"{path}:")
        assert api.get("/api/config").json()["errors"] == rejected["errors"]

        path.write_text(config(start_port, top="apiKeys: [sekret]"))
        accepted = api.post("/api/config/reload").json()
        assert accepted["ok"] is True and "kept" in accepted["changes"]
        assert api.get("/api/config").json()["errors"] == []

        assert httpx.get(f"{swapd.url}/api/models").status_code == 401
        assert httpx.get(f"{swapd.url}/metrics", headers={"x-api-key": "x"}).status_code == 401
