"""How long a swap takes through swapd, against the engine's own start-to-healthy time.

    .venv/bin/python bench/swap_latency.py [--swaps 20] [--starts 5] [--engine echo]

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
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

from swapd.testing import echo_cmd, free_port, rss_kib, run_swapd

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # local URLs only
CONFIG = """\
healthCheckTimeout: 60
models:
  a:
    cmd: {cmd}
  b:
    cmd: {cmd}
groups:
  pair:
    swap: true
    exclusive: true
    members: [a, b]
"""


def start_to_healthy() -> float:
    """Seconds from spawning the echo engine to its first 200 on /health (polled every 5 ms)."""
    port = free_port()
    argv = [sys.executable, "-m", "swapd.echo", "--port", str(port), "--model", "solo"]
    url = f"http://127.0.0.1:{port}/health"
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


def chat(base: str, model: str) -> float:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "swap"}]})
    req = urllib.request.Request(
        f"{base}/v1/chat/completions",
        data=body.encode(),
        headers={"content-type": "application/json"},
    )
    start = time.perf_counter()
    with OPENER.open(req, timeout=120) as resp:
        data = json.loads(resp.read())
    elapsed = time.perf_counter() - start
    content = data["choices"][0]["message"]["content"]
    if not content.startswith(f"echo {model}:"):
        raise RuntimeError(f"request for {model} answered by another engine: {content!r}")
    return elapsed


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--swaps", type=int, default=20)
    p.add_argument("--starts", type=int, default=5, help="direct engine starts to time")
    p.add_argument("--engine", default="echo", choices=["echo"])
    args = p.parse_args()

    starts = [start_to_healthy() for _ in range(args.starts)]
    healthy = statistics.median(starts)

    with run_swapd(CONFIG.format(cmd=echo_cmd())) as swapd:
        time.sleep(1.0)
        idle_rss = rss_kib(swapd.pid)
        first = chat(swapd.url, "a")  # cold start of a (nothing to stop)
        warm = [chat(swapd.url, "a") for _ in range(20)]
        swaps: list[float] = []
        for i in range(args.swaps):
            swaps.append(chat(swapd.url, "b" if i % 2 == 0 else "a"))
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
