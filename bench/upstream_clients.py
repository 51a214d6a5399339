"""Which upstream HTTP client should carry swapd's hot path? Measured, not guessed.

A minimal pure-ASGI forwarder (uvicorn + uvloop + httptools, the same stack as swapd) relays
small chat requests to the echo engine through each candidate client; the same closed-loop
load runs against the engine directly for reference:

    python bench/upstream_clients.py [--duration 4] [--concurrency 1 32 64]

Prints req/s, p50/p99 and the ratio to direct per client and concurrency. swapd uses the
client that wins here (aiohttp; see src/swapd/proxy/forward.py).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from proxy_overhead import MODEL, load

from swapd.testing import free_port, run_echo, wait_http

HERE = Path(__file__).resolve().parent
LOADGEN = HERE / "loadgen.py"

FORWARDER = HERE / "forwarder.py"


def available(client: str) -> bool:
    module = {"aiohttp": "aiohttp", "httpx": "httpx", "httpx-aiohttp": "httpx_aiohttp"}[client]
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32, 64])
    parser.add_argument("--clients", nargs="+", default=["httpx", "httpx-aiohttp", "aiohttp"])
    args = parser.parse_args()
    rows: list[tuple[str, int, dict[str, Any]]] = []
    with run_echo(model=MODEL) as engine:
        for c in args.concurrency:
            rows.append(("direct", c, load(engine.url, c, False, args.duration)))
        for client in args.clients:
            if not available(client):
                print(f"{client}: not installed, skipped")
                continue
            port = free_port()
            proc = subprocess.Popen([sys.executable, str(FORWARDER), client, engine.url, str(port)])
            try:
                wait_http(f"http://127.0.0.1:{port}/health", 30)
                for c in args.concurrency:
                    rows.append(
                        (client, c, load(f"http://127.0.0.1:{port}", c, False, args.duration))
                    )
            finally:
                proc.terminate()
                proc.wait()
    direct = {c: r for name, c, r in rows if name == "direct"}
    print(f"{'client':15} {'c':>4} {'req/s':>9} {'ratio':>6} {'p50 ms':>8} {'p99 ms':>8} errors")
    for name, c, r in rows:
        ratio = r["rps"] / direct[c]["rps"] if direct[c]["rps"] else float("nan")
        print(
            f"{name:15} {c:>4} {r['rps']:>9,.0f} {ratio:>6.2f} {r['p50_ms']:>8.2f} "
            f"{r['p99_ms']:>8.2f} {r['errors']}"
        )


if __name__ == "__main__":
    main()
