"""wrk as the load generator, the fastsse upstream, and per-process CPU, for proxy_overhead.py.

wrk (``apt-get install wrk``) is a C load generator: on a small machine it needs far less CPU per
request than any Python client, so the client is never the bottleneck. A generated Lua script
makes it POST a fixed JSON body and print one ``WRKJSON {...}`` line from ``done()``: requests,
bytes read (status lines, headers and chunk framing included), duration, errors and latency
percentiles.

fastsse (``../shared/tools/fastsse/``, Go standard library only) is the upstream: every frame is
written and flushed on its own, every frame has the same size. It is built once into
``~/.cache/swapd-bench/fastsse`` (or taken from ``$FASTSSE``).

goproxy (``bench/goproxy/``, Go standard library only) is Go's ``httputil.ReverseProxy`` set up
as llama-swap's data path is: the proxy every run compares with where llama-swap is not given.
It is built once per version of its source into ``~/.cache/swapd-bench/goproxy-<hash>`` (or
taken from ``$GOPROXY_BIN``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FASTSSE_BUILD = REPO.parent / "shared" / "tools" / "fastsse" / "build.sh"
CACHE = Path.home() / ".cache" / "swapd-bench"
FASTSSE_CACHE = CACHE / "fastsse"
GOPROXY_SOURCE = REPO / "bench" / "goproxy"

LUA = """\
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{headers}done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests":%d,"bytes":%d,"duration_us":%d,"connect":%d,"read":%d,'
    .. '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}}\\n',
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def fastsse_binary() -> Path:
    """``$FASTSSE``, else the cached build, else build it now (about a minute)."""
    return _go_binary("fastsse", "FASTSSE", FASTSSE_BUILD, FASTSSE_CACHE)


def goproxy_binary() -> Path:
    """``$GOPROXY_BIN``, else the build of this source, else build it now (about a minute)."""
    digest = hashlib.sha256((GOPROXY_SOURCE / "main.go").read_bytes()).hexdigest()[:12]
    build = GOPROXY_SOURCE / "build.sh"
    return _go_binary("goproxy", "GOPROXY_BIN", build, CACHE / f"goproxy-{digest}")


def _go_binary(name: str, variable: str, build: Path, cached: Path) -> Path:
    """The binary ``$variable`` names, else ``cached``, built there now by ``build`` if absent."""
    given = os.environ.get(variable)
    if given:
        return Path(given)
    if cached.is_file():
        return cached
    if not build.is_file():
        raise SystemExit(f"no {name}: set {variable}=/path/to/{name} (no {build})")
    cached.parent.mkdir(parents=True, exist_ok=True)
    print(f"building {name} into {cached} (about a minute)...", flush=True)
    subprocess.run(["bash", str(build), str(cached)], check=True)
    return cached


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk not found: apt-get install wrk")
    return found


@dataclass(frozen=True)
class WrkResult:
    requests: int
    bytes: int
    seconds: float
    errors: dict[str, int]
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk(
    url: str,
    body: dict[str, Any],
    conns: int,
    seconds: float,
    script_dir: Path,
    headers: Mapping[str, str] | None = None,
) -> WrkResult:
    """``conns`` keep-alive connections POST ``body`` (with ``headers``) to ``url`` for
    ``seconds``."""
    extra = "".join(
        f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}\n" for k, v in (headers or {}).items()
    )
    text = LUA.format(body=_lua_string(json.dumps(body)), headers=extra)
    script = script_dir / f"post-{abs(hash(text))}.lua"
    script.write_text(text, encoding="utf-8")
    threads = max(1, min(conns, os.cpu_count() or 1))
    argv = [wrk_binary(), f"-t{threads}", f"-c{conns}", f"-d{seconds:g}s", "--timeout", "30s"]
    argv += ["-s", str(script), url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    errors = {k: raw[k] for k in ("connect", "read", "write", "status", "timeout") if raw[k]}
    return WrkResult(
        requests=raw["requests"],
        bytes=raw["bytes"],
        seconds=raw["duration_us"] / 1e6,
        errors=errors,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
    )


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def response_bytes(url: str, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> int:
    """Bytes one answer to ``body`` takes on the wire (head + body, chunk framing included).

    wrk counts exactly these bytes, so bytes read / this = answers relayed, partial ones at the
    end of a run included in proportion.
    """
    host, _, rest = url.removeprefix("http://").partition("/")
    name, _, port = host.partition(":")
    payload = json.dumps(body).encode()
    fields = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (
        f"POST /{rest} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"{fields}Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    with socket.create_connection((name, int(port)), timeout=30) as sock:
        sock.sendall(head + payload)
        data = b""
        while not _complete(data):
            more = sock.recv(65536)
            if not more:
                break
            data += more
    return len(data)


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return body.endswith(b"0\r\n\r\n")


def cpu_seconds(pid: int, skip: frozenset[str] | None = None, *, kernel: bool = False) -> float:
    """User + system CPU seconds of ``pid`` so far (from /proc/PID/stat); with ``skip``, plus its
    live descendants whose process name is not in ``skip``; ``kernel``: system time only."""
    stats = {pid: _stat(pid)} if skip is None else _all_stats()
    tree = {pid}
    grew = skip is not None
    while grew:
        grew = False
        for child, (ppid, *_) in stats.items():
            if ppid in tree and child not in tree:
                tree.add(child)
                grew = True
    return sum(
        sys if kernel else user + sys
        for p, (_pp, comm, user, sys) in stats.items()
        if p in tree and comm not in (skip or ())
    )


def _all_stats() -> dict[int, tuple[int, str, float, float]]:
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = _stat(int(entry.name))
            except (OSError, ValueError):
                continue  # gone meanwhile
    return stats


def _stat(pid: int) -> tuple[int, str, float, float]:
    """(parent pid, process name, user CPU seconds, system CPU seconds)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text.rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[1]), comm, int(fields[11]) / tick, int(fields[12]) / tick
