"""WebSockets through ``swapd serve`` to the echo engine: /upstream/{model}/…, /comfyui/…, peers."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as sync_connect
from websockets.typing import Subprotocol

from swapd.testing import SwapdProcess, echo_cmd, run_swapd, wait_for

pytestmark = pytest.mark.timeout(120)

KEY = "sk-ws-test"


def config(start_port: int, extra: str = "") -> str:
    return f"""
startPort: {start_port}
healthCheckTimeout: 20
groups:
  pair:
    swap: true
    exclusive: true
    members: [alpha, beta]
models:
  alpha:
    cmd: {echo_cmd()}
  beta:
    cmd: {echo_cmd()}
  quiet:
    cmd: {echo_cmd()}
    compat:
      ignoreWebsockets: true
  slow:
    cmd: {echo_cmd("--health-delay 2")}
{extra}"""


@pytest.fixture
def swapd(start_port: int) -> Iterator[SwapdProcess]:
    with run_swapd(config(start_port)) as proc:
        yield proc


def ws_url(swapd: SwapdProcess, path: str) -> str:
    return swapd.url.replace("http://", "ws://") + path


def connect(swapd: SwapdProcess, path: str, **kwargs: Any) -> ClientConnection:
    ws: ClientConnection = sync_connect(ws_url(swapd, path), open_timeout=30, **kwargs)
    return ws


def hello(ws: ClientConnection) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ws.recv(timeout=10))
    assert data["event"] == "connected"
    return data


def refusal(swapd: SwapdProcess, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body of an upgrade swapd refuses."""
    with pytest.raises(InvalidStatus) as info, connect(swapd, path, **kwargs):
        pass
    response = info.value.response
    return response.status_code, json.loads(response.body)


def states(swapd: SwapdProcess) -> dict[str, str]:
    running = httpx.get(f"{swapd.url}/running", timeout=10).json()["running"]
    return {r["model"]: r["state"] for r in running}


def info(swapd: SwapdProcess, model: str) -> dict[str, Any]:
    models = httpx.get(f"{swapd.url}/api/models", timeout=10).json()["models"]
    found: dict[str, Any] = next(m for m in models if m["id"] == model)
    return found


def engine_closes(swapd: SwapdProcess, model: str) -> list[list[Any]]:
    stats = httpx.get(f"{swapd.url}/upstream/{model}/_echo/stats", timeout=10).json()
    closes: list[list[Any]] = stats["websocket_closes"]
    return closes


def test_text_and_binary_round_trip_and_the_upgrade_starts_the_model(
    swapd: SwapdProcess,
) -> None:
    assert "alpha" not in states(swapd)
    with connect(
        swapd,
        "/upstream/alpha/ws/a%2Fb?x=1",
        subprotocols=[Subprotocol("chat"), Subprotocol("other")],
        additional_headers={"X-Client": "yes"},
    ) as ws:
        seen = hello(ws)
        assert (seen["path"], seen["query"]) == ("/ws/a/b", "x=1")
        assert seen["model"] == "alpha"
        assert seen["headers"]["x-client"] == "yes"
        assert ws.subprotocol == seen["subprotocol"] == "chat"
        assert states(swapd)["alpha"] == "ready"
        for message in ("hello", "ünïcode ✓", b"\x00\x01\xfe\xff", b"x" * 300_000):
            ws.send(message)
            assert ws.recv(timeout=10) == message


def test_close_codes_pass_both_ways(swapd: SwapdProcess) -> None:
    with connect(swapd, "/upstream/alpha/ws") as ws:
        hello(ws)
        ws.send("close 4002 engine says bye")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4002, "engine says bye")

    with connect(swapd, "/upstream/alpha/ws") as ws:
        hello(ws)
        ws.close(4100, "client says bye")
    wait_for(lambda: [4100, "client says bye"] in engine_closes(swapd, "alpha"), "the close")


def test_an_open_socket_keeps_its_model_from_being_swapped_out(swapd: SwapdProcess) -> None:
    answers: list[int] = []

    def ask_beta() -> None:
        r = httpx.post(
            f"{swapd.url}/v1/chat/completions",
            json={"model": "beta", "messages": [{"role": "user", "content": "hi"}]},
            timeout=60,
        )
        answers.append(r.status_code)

    with connect(swapd, "/upstream/alpha/ws") as ws:
        hello(ws)
        asker = threading.Thread(target=ask_beta)
        asker.start()
        try:
            wait_for(lambda: info(swapd, "beta")["queued"] == 1, "beta's request to queue")
            ws.send("still here")  # alpha still serves the socket while beta waits
            assert ws.recv(timeout=10) == "still here"
            assert states(swapd)["alpha"] == "ready"
            assert answers == []
        finally:
            ws.close()
            asker.join(60)
    assert answers == [200]
    assert states(swapd).get("alpha", "stopped") == "stopped"


def test_engine_refusals_and_unknown_models_answer_over_http(swapd: SwapdProcess) -> None:
    status, body = refusal(swapd, "/upstream/alpha/ws/refuse")
    assert status == 403
    assert body == {"error": "refused by the echo engine"}
    status, body = refusal(swapd, "/upstream/nope/ws")
    assert status == 404
    assert body["error"]["code"] == "not_found"


def test_an_ignored_websocket_never_starts_its_model_nor_holds_it(swapd: SwapdProcess) -> None:
    status, body = refusal(swapd, "/upstream/quiet/ws")
    assert status == 409
    assert body["error"]["message"] == (
        "model quiet is not loaded; ignored websocket requests cannot start it"
    )
    assert "quiet" not in states(swapd)

    assert httpx.get(f"{swapd.url}/upstream/quiet/health", timeout=30).status_code == 200
    with connect(swapd, "/upstream/quiet/ws") as ws:
        assert hello(ws)["model"] == "quiet"
        assert info(swapd, "quiet")["inflight"] == 0  # no lease: nothing holds the model
        httpx.post(f"{swapd.url}/api/models/unload/quiet", timeout=30)
        with pytest.raises(ConnectionClosed) as closed:  # its engine stopped under it
            while True:
                ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1014


def test_websockets_need_the_api_key_which_is_not_passed_on(start_port: int) -> None:
    with run_swapd(config(start_port, f"apiKeys: [{KEY}]")) as swapd:
        status, body = refusal(swapd, "/upstream/alpha/ws")
        assert status == 401
        assert body["error"]["code"] == "unauthorized"
        assert "alpha" not in states_with_key(swapd)
        headers = {"Authorization": f"Bearer {KEY}"}
        with connect(swapd, "/upstream/alpha/ws", additional_headers=headers) as ws:
            seen = hello(ws)
        assert "authorization" not in seen["headers"]
        assert "x-api-key" not in seen["headers"]


def states_with_key(swapd: SwapdProcess) -> dict[str, str]:
    running = httpx.get(
        f"{swapd.url}/running", headers={"Authorization": f"Bearer {KEY}"}, timeout=10
    ).json()["running"]
    return {r["model"]: r["state"] for r in running}


def test_comfyui_websockets_only_once_its_root_started_the_model(start_port: int) -> None:
    extra = f"""  comfyui_auto:
    cmd: {echo_cmd()}
"""
    with run_swapd(config(start_port) + extra) as swapd:
        status, body = refusal(swapd, "/comfyui/ws?clientId=1")
        assert status == 409
        assert "only /comfyui/ can start it" in body["error"]["message"]
        assert "comfyui_auto" not in states(swapd)
        assert httpx.get(f"{swapd.url}/comfyui/", timeout=30).status_code == 200
        with connect(swapd, "/comfyui/ws?clientId=1") as ws:
            seen = hello(ws)
            assert (seen["path"], seen["query"]) == ("/ws", "clientId=1")
            ws.send(b"\x01preview")
            assert ws.recv(timeout=10) == b"\x01preview"


def test_a_peer_models_websocket_goes_to_the_peer(start_port: int) -> None:
    with run_swapd(config(start_port)) as peer:
        extra = f"""peers:
  far:
    proxy: {peer.url}/upstream/alpha
    models: [remote]
"""
        with (
            run_swapd(config(start_port + 4, extra)) as near,
            connect(near, "/upstream/far/remote/ws?q=1") as ws,
        ):
            seen = hello(ws)
            assert (seen["path"], seen["query"], seen["model"]) == ("/ws", "q=1", "alpha")
            ws.send("via the peer")
            assert ws.recv(timeout=10) == "via the peer"


def test_shutdown_closes_open_sockets_with_1012_and_does_not_wait_for_them(
    start_port: int,
) -> None:
    with run_swapd(config(start_port)) as swapd, connect(swapd, "/upstream/alpha/ws") as ws:
        hello(ws)
        swapd.proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=20)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1012  # service restart
        assert swapd.exit_status(20) == 0


def test_a_client_leaving_while_its_model_starts_gives_its_lease_back(swapd: SwapdProcess) -> None:
    with (
        pytest.raises(TimeoutError),
        sync_connect(ws_url(swapd, "/upstream/slow/ws"), open_timeout=0.5),
    ):
        pass
    assert states(swapd)["slow"] == "starting"  # the upgrade started it
    wait_for(lambda: states(swapd).get("slow") != "starting", "the start to end")
    left = info(swapd, "slow")
    assert (left["queued"], left["inflight"]) == (0, 0)  # a kept lease would be in flight now
