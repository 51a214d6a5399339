"""The matrix router end to end: real swapd, real echo engines, /running as the witness."""

from __future__ import annotations

import httpx
import pytest

from swapd.testing import echo_cmd, run_swapd

pytestmark = pytest.mark.timeout(120)


def running(http: httpx.Client) -> dict[str, str]:
    return {m["model"]: m["state"] for m in http.get("/running").json()["running"]}


def ask(http: httpx.Client, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return http.post("/v1/chat/completions", json=body)


def test_a_set_co_runs_and_a_newcomer_evicts_the_cheapest_running_model(start_port: int) -> None:
    config = f"""
startPort: {start_port}
models:
  llm:
    cmd: {echo_cmd()}
  cheap:
    cmd: {echo_cmd()}
  pricey:
    cmd: {echo_cmd()}
  loner:
    cmd: {echo_cmd()}
routing:
  router:
    use: matrix
    settings:
      matrix:
        vars:
          big: pricey
        evict_costs:
          big: 10
        sets:
          pair: "cheap & big"
          chat: "llm & (big | cheap)"
"""
    with run_swapd(config) as swapd, httpx.Client(base_url=swapd.url, timeout=60) as http:
        assert ask(http, "cheap").status_code == 200
        assert ask(http, "pricey").status_code == 200
        assert running(http) == {"cheap": "ready", "pricey": "ready"}

        # llm runs with either; dropping cheap costs 1, dropping pricey 10
        assert ask(http, "llm").status_code == 200
        assert running(http) == {"llm": "ready", "pricey": "ready"}
        assert any("matrix: model=llm set=chat evict=[cheap] cost=1" in line for line in swapd.log)

        # a model in no set runs alone
        assert ask(http, "loner").status_code == 200
        assert running(http) == {"loner": "ready"}
