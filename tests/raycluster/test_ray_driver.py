"""The ray driver against a real Ray cluster on loopback (head + two workers, see conftest).

swapd runs as a real process (``swapd serve``) connected to the cluster; engines are swapd's echo
engine run by Ray actors on the nodes. Where an engine really runs is read from the process
tree: an actor's worker is a child of its node's raylet.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from swapd.testing import echo_cmd, free_port, marked_pids, pids_alive, run_swapd

from .conftest import LOOPBACK, Lab

pytestmark = pytest.mark.timeout(240)

ENGINE = echo_cmd("--host ${NODE_IP}")


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "SWAPD_STATE_DIR": str(tmp_path), "RAY_NODE_IP_ADDRESS": LOOPBACK}


def _config(address: str, models: str) -> str:
    cluster = f"cluster:\n  ray: {{address: '{address}', namespace: swapd-test}}\n"
    return f"{cluster}logToStdout: both\nmodels:\n{models}"  # engine lines in swapd's output


def _chat(url: str, model: str, timeout: float = 90) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=timeout)


def _served(url: str, model: str) -> int:
    """Ask ``model`` once; the pid of the engine that answered."""
    reply = _chat(url, model)
    assert reply.status_code == 200, reply.text
    return int(reply.headers["x-engine-pid"])


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _node_of(lab: Lab, pid: int) -> str:
    """The worker node (label) whose raylet the engine ``pid`` descends from; "" if none."""
    raylets = {
        node.all_processes["raylet"][0].process.pid: name for name, node in lab.nodes.items()
    }
    while pid > 1:
        if pid in raylets:
            return raylets[pid]
        pid = _parent(pid)
    return ""


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:g}s")
        time.sleep(0.1)


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(e.decode().split("=", 1) for e in raw if b"=" in e)


def test_a_ray_model_starts_in_an_actor_serves_directly_and_stops(lab: Lab, tmp_path: Path) -> None:
    models = f"  alpha:\n    driver: ray\n    cmd: {ENGINE}\n    ray: {{resources: {{GPU: 1}}}}\n"
    with run_swapd(_config(lab.address, models), env=_env(tmp_path)) as swapd:
        began = time.monotonic()
        pid = _served(swapd.url, "alpha")
        print(f"first request, Ray model cold: {time.monotonic() - began:.2f}s")
        assert _node_of(lab, pid) in ("w1", "w2")  # the nodes with GPUs
        env = _environ(pid)
        assert env["CUDA_VISIBLE_DEVICES"] in ("0", "1")  # the GPU Ray gave it
        assert env["SWAPD_NODE"] == lab.node_id(_node_of(lab, pid))  # unpinned: Ray's node id
        line = swapd.wait_for_log("alpha runs on node")
        port = line.rsplit(":", 1)[1]
        guardian = _parent(pid)  # the pid swapd shows: its group's guardian (child.spawn)
        assert f"pid {guardian}, http://{LOOPBACK}:{port}" in line  # proxied to node_ip:port
        swapd.wait_for_log(f"echo engine alpha listening on http://{LOOPBACK}:{port}")  # output
        assert httpx.post(f"{swapd.url}/api/models/unload", timeout=60).status_code == 200
        _until(lambda: not pids_alive([pid]), 30, "the engine did not exit")


def test_an_engine_that_ignores_sigterm_is_killed_after_unload_timeout_by_its_actor(
    lab: Lab, tmp_path: Path
) -> None:
    engine = echo_cmd("--host ${NODE_IP} --ignore-sigterm")
    models = f"  stubborn:\n    driver: ray\n    cmd: {engine}\n    unloadTimeout: 1\n"
    with run_swapd(_config(lab.address, models), env=_env(tmp_path)) as swapd:
        pid = _served(swapd.url, "stubborn")
        began = time.monotonic()
        assert httpx.post(f"{swapd.url}/api/models/unload", timeout=60).status_code == 200
        _until(lambda: not pids_alive([pid]), 30, "the engine outlived SIGKILL")
        assert time.monotonic() - began >= 1.0  # SIGTERM ignored: killed after unloadTimeout


def test_pinned_models_on_different_nodes_swap_and_run_where_pinned(
    lab: Lab, tmp_path: Path
) -> None:
    models = (
        f"  alpha:\n    driver: ray\n    cmd: {ENGINE}\n    ray: {{node: w2}}\n"
        f"  beta:\n    driver: ray\n    cmd: {ENGINE}\n    ray: {{node: {lab.node_id('w1')}}}\n"
    )
    with run_swapd(_config(lab.address, models), env=_env(tmp_path)) as swapd:
        alpha = _served(swapd.url, "alpha")
        assert _node_of(lab, alpha) == "w2"  # pinned by label value
        beta = _served(swapd.url, "beta")
        assert _node_of(lab, beta) == "w1"  # pinned by Ray node id
        _until(lambda: not pids_alive([alpha]), 30, "the swap did not stop alpha on w2")
        again = _served(swapd.url, "alpha")
        assert again != alpha and _node_of(lab, again) == "w2"
        _until(lambda: not pids_alive([beta]), 30, "the swap did not stop beta on w1")


def test_a_model_pinned_to_a_node_that_is_not_there_fails_fast_naming_it(
    lab: Lab, tmp_path: Path
) -> None:
    models = f"  lost:\n    driver: ray\n    cmd: {ENGINE}\n    ray: {{node: nowhere}}\n"
    with run_swapd(_config(lab.address, models), env=_env(tmp_path)) as swapd:
        began = time.monotonic()
        reply = _chat(swapd.url, "lost")
        assert reply.status_code == 503
        assert "no capacity on node nowhere" in reply.json()["error"]["message"]
        assert time.monotonic() - began < 30


def test_a_model_whose_resources_are_taken_fails_fast_with_no_capacity(
    lab: Lab, tmp_path: Path
) -> None:
    both = "ray: {resources: {w2: 1}}"  # w2 has one
    models = (
        f"  holder:\n    driver: ray\n    cmd: {ENGINE}\n    {both}\n"
        f"  waiter:\n    driver: ray\n    cmd: {ENGINE}\n    {both}\n"
    )
    groups = "".join(  # side by side: neither evicts the other
        f"  {m}: {{swap: false, exclusive: false, members: [{m}]}}\n" for m in ("holder", "waiter")
    )
    config = f"healthCheckTimeout: 5\ngroups:\n{groups}" + _config(lab.address, models)
    with run_swapd(config, env=_env(tmp_path)) as swapd:
        holder = _served(swapd.url, "holder")
        began = time.monotonic()
        reply = _chat(swapd.url, "waiter", timeout=60)
        took = time.monotonic() - began
        assert reply.status_code == 503, swapd.output()[-5000:]
        message = reply.json()["error"]["message"]
        assert "no capacity on the Ray cluster" in message and "w2=1" in message
        assert took < 30, f"no capacity took {took:.1f}s"
        print(f"no capacity after {took:.1f}s: {message}")
        assert _served(swapd.url, "holder") == holder  # untouched


def test_a_swap_hands_the_reservation_over_and_a_different_one_is_still_made(
    lab: Lab, tmp_path: Path
) -> None:
    same = "ray: {node: w2, resources: {w2: 1}}"  # w2 has one: only one engine holds it
    other = "ray: {node: w2, resources: {w2: 1, GPU: 1}}\n    resources: {devices: [0]}"
    models = "".join(
        f"  {m}:\n    driver: ray\n    cmd: {ENGINE}\n    {r}\n"
        for m, r in (("alpha", same), ("beta", same), ("gamma", other))
    )
    config = "logLevel: debug\n" + _config(lab.address, models)
    with run_swapd(config, env=_env(tmp_path)) as swapd:
        for model in ("alpha", "beta", "alpha", "gamma", "beta"):
            assert _node_of(lab, _served(swapd.url, model)) == "w2"
        log = swapd.output()
        assert "alpha: reservation parked" in log and "beta: reservation parked" in log
        # alpha's was handed to beta and back; gamma's bundle differs: alpha's went first
        assert "gamma: resources reserved" in log


def test_a_node_leaving_mid_stream_ends_it_with_a_502_and_the_model_restarts_elsewhere(
    lab: Lab, tmp_path: Path
) -> None:
    lab.add("spare", spot=1)
    engine = echo_cmd("--host ${NODE_IP} --chunks 400 --chunk-delay 0.05")
    models = f"  gamma:\n    driver: ray\n    cmd: {engine}\n    ray: {{resources: {{spot: 1}}}}\n"
    body = {"model": "gamma", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with run_swapd(_config(lab.address, models), env=_env(tmp_path)) as swapd:
        url = f"{swapd.url}/v1/chat/completions"
        with (
            httpx.stream("POST", url, json=body, timeout=90) as stream,
            pytest.raises(httpx.RemoteProtocolError),
        ):
            assert stream.status_code == 200
            pid = int(stream.headers["x-engine-pid"])
            assert _node_of(lab, pid) == "spare"
            chunks = stream.iter_raw()
            next(chunks)
            lab.remove("spare")  # its raylet and workers go: the node leaves the cluster
            for _ in chunks:  # truncated, never a clean end
                pass
        gone = swapd.wait_for_log("is gone", timeout=60)
        print(gone)
        assert "gamma on node" in gone and "its node has died" in gone
        _until(lambda: not pids_alive([pid]), 30, "the engine outlived its actor")
        aborted = swapd.wait_for_log("stopped mid-response", timeout=10)  # the 502 recorded
        assert "engine for model 'gamma' on node " in aborted
        print(aborted)
        lab.add("spare2", spot=1)  # the next request starts gamma where there is room
        again = _served(swapd.url, "gamma")
        assert _node_of(lab, again) == "spare2"
    lab.remove("spare2")


def test_a_request_cut_off_before_the_engine_answered_by_its_node_leaving_gets_a_502(
    lab: Lab, tmp_path: Path
) -> None:
    lab.add("doomed", doomed=1)
    node_id = lab.node_id("doomed")
    ray = "ray: {resources: {doomed: 1}}"
    models = f"  delta:\n    driver: ray\n    cmd: {ENGINE}\n    {ray}\n"
    with run_swapd(_config(lab.address, models), env=_env(tmp_path)) as swapd:
        pid = _served(swapd.url, "delta")
        assert _node_of(lab, pid) == "doomed"
        body = {"model": "delta", "delay": 60, "messages": [{"role": "user", "content": "hi"}]}
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(
                httpx.post, f"{swapd.url}/v1/chat/completions", json=body, timeout=90
            )
            time.sleep(1.0)  # the request is at the engine, which sleeps before answering
            assert not waiting.done()
            lab.remove("doomed")
            reply = waiting.result(timeout=60)
        assert reply.status_code == 502, reply.text
        message = reply.json()["error"]["message"]
        print(message)
        assert f"on node {node_id}" in message


def test_swapd_killed_leaves_no_engine_process_on_any_node(lab: Lab, tmp_path: Path) -> None:
    mark = uuid.uuid4().hex  # in the environment of every process of the engine's tree
    engine = f"sh -c 'sleep 1000 & exec {ENGINE}'"  # the engine leaves a child of its own
    models = (
        f"  alpha:\n    driver: ray\n    cmd: {engine}\n    ray: {{node: w1}}\n"
        f"    env: [SWAPD_TEST_MARK={mark}]\n"
    )
    config = _config(lab.address, models)
    with run_swapd(config, env=_env(tmp_path)) as first:
        pid = _served(first.url, "alpha")
        assert len(marked_pids("SWAPD_TEST_MARK", mark)) == 4  # guardian, watchdog, engine, sleep
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        # Ray ends the dead driver's actors; each one's guardian ends its engine's group
        _until(lambda: not marked_pids("SWAPD_TEST_MARK", mark), 60, "the engine outlived swapd")
    with run_swapd(config, env=_env(tmp_path)) as second:
        assert "left behind" not in second.output()
        again = _served(second.url, "alpha")
        assert again != pid and _node_of(lab, again) == "w1"


def test_an_unreachable_cluster_fails_ray_models_clearly_and_others_serve(
    tmp_path: Path,
) -> None:
    address = f"{LOOPBACK}:{free_port()}"  # nothing listens there
    models = f"  far:\n    driver: ray\n    cmd: {ENGINE}\n  near:\n    cmd: {echo_cmd()}\n"
    with run_swapd(_config(address, models), env=_env(tmp_path)) as swapd:
        assert _chat(swapd.url, "near").status_code == 200
        reply = _chat(swapd.url, "far", timeout=30)
        assert reply.status_code == 503
        message = reply.json()["error"]["message"]
        assert f"the Ray cluster at {address} is unreachable" in message
        assert _chat(swapd.url, "near").status_code == 200
