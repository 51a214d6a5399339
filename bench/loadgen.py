"""A small closed-loop HTTP load generator (aiohttp, uvloop), run as its own process.

    python bench/loadgen.py --url http://127.0.0.1:8080/v1/chat/completions \
        --concurrency 32 --duration 5 [--stream --chunks 200] [--requests N] [--warmup 0.5]

Each of ``--concurrency`` workers sends one request, reads the whole answer and sends the next.
Prints one JSON object: requests, errors, elapsed, rps, latency percentiles (ms), time to first
byte, and for streams the SSE frames received per second. Figures only, never assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import aiohttp


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": args.model,
        "messages": [{"role": "user", "content": "hello from the load generator"}],
        "max_tokens": 16,
    }
    if args.stream:
        body["stream"] = True
        body["chunks"] = args.chunks
    body.update(json.loads(args.extra))  # e.g. {"max_tokens": 200, "ignore_eos": true}
    payload = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    latencies: list[float] = []
    ttfbs: list[float] = []
    errors = 0
    failures: dict[str, int] = {}
    frames = 0
    done = 0
    measuring = False
    stop_at = 0.0

    connector = aiohttp.TCPConnector(limit=0, force_close=args.fresh, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> None:
            nonlocal errors, frames, done
            start = time.perf_counter()
            try:
                async with session.post(args.url, data=payload, headers=headers) as resp:
                    first = None
                    count = 0
                    tail = b""
                    async for chunk in resp.content.iter_any():
                        if first is None:
                            first = time.perf_counter()
                        count += (tail + chunk[:1]).count(b"\n\n") + chunk.count(b"\n\n")
                        tail = chunk[-1:]
                    status = str(resp.status)
            except (TimeoutError, aiohttp.ClientError) as exc:
                status = type(exc).__name__
            ok = status == "200"
            end = time.perf_counter()
            if not measuring:
                return
            if not ok:
                errors += 1
                failures[status] = failures.get(status, 0) + 1
                return
            done += 1
            latencies.append(end - start)
            ttfbs.append((first or end) - start)
            frames += count

        async def worker() -> None:
            while time.perf_counter() < stop_at and (args.requests <= 0 or done < args.requests):
                await one()

        # Warm up: open the connections and let everything settle, without measuring.
        stop_at = time.perf_counter() + args.warmup
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        measuring = True
        began = time.perf_counter()
        stop_at = began + (args.duration if args.requests <= 0 else 3600.0)
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - began

    return {
        "url": args.url,
        "concurrency": args.concurrency,
        "stream": args.stream,
        "requests": done,
        "errors": errors,
        "failures": failures,
        "elapsed": round(elapsed, 3),
        "rps": round(done / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(_pct(latencies, 0.50) * 1000, 3),
        "p90_ms": round(_pct(latencies, 0.90) * 1000, 3),
        "p99_ms": round(_pct(latencies, 0.99) * 1000, 3),
        "ttfb_p50_ms": round(_pct(ttfbs, 0.50) * 1000, 3),
        "frames": frames,
        "frames_per_s": round(frames / elapsed, 1) if elapsed else 0.0,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--model", default="bench")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--requests", type=int, default=0, help="stop after N requests instead")
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--stream", action="store_true")
    p.add_argument("--chunks", type=int, default=200)
    p.add_argument("--extra", default="{}", help="JSON merged into the request body")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="a new connection per request (llama-server drops kept-alive ones silently)",
    )
    args = p.parse_args()
    try:
        import uvloop

        result = uvloop.run(_run(args))
    except ImportError:
        result = asyncio.run(_run(args))
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
