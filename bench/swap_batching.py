"""Batching with slow engines: how many starts and how long for concurrent alternating clients.

    .venv/bin/python bench/swap_batching.py [--clients 12] [--delay 2.5] [--models 2] [--runs 3]

Two (or ``--models``) echo models in one swap group, each taking ``--delay`` seconds to pass
its health check; ``--clients`` concurrent requests alternating over the models (a b a b …),
all sent at once to a fresh ``swapd serve``. Prints the wall time until every answer is in and
the engine starts swapd made (``swapd_swaps_total``). The floor is one start per model and
about ``models * delay`` seconds. Figures only, never assertions.
"""

from __future__ import annotations

import argparse
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from swapd.testing import echo_cmd, free_port_range, run_swapd


def one_run(clients: int, delay: float, models: int) -> tuple[float, int, set[int]]:
    names = [chr(ord("a") + i) for i in range(models)]
    entries = "".join(f"  {n}:\n    cmd: {echo_cmd(f'--health-delay {delay}')}\n" for n in names)
    config = (
        f"startPort: {free_port_range(models + 2)}\nhealthCheckTimeout: 120\nmodels:\n{entries}"
    )
    with run_swapd(config) as swapd, httpx.Client(base_url=swapd.url, timeout=300) as http:

        def ask(model: str) -> int:
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            return http.post("/v1/chat/completions", json=body).status_code

        began = time.monotonic()
        with ThreadPoolExecutor(clients) as pool:
            codes = set(pool.map(ask, [names[i % models] for i in range(clients)]))
        took = time.monotonic() - began
        metrics = http.get("/metrics").text
    found = re.findall(r'^swapd_swaps_total\{model="[^"]+"\} ([0-9.]+)$', metrics, re.M)
    return took, int(sum(float(n) for n in found)), codes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=12)
    p.add_argument("--delay", type=float, default=2.5)
    p.add_argument("--models", type=int, default=2)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    print(
        f"{a.clients} concurrent clients alternating over {a.models} models, "
        f"engines {a.delay:g} s to healthy (floor: {a.models} starts, ~{a.models * a.delay:g} s)"
    )
    for run in range(1, a.runs + 1):
        took, starts, codes = one_run(a.clients, a.delay, a.models)
        print(f"run {run}: {took:5.1f} s  {starts} starts  statuses {sorted(codes)}")


if __name__ == "__main__":
    main()
