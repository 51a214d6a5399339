"""A chaos soak: one real ``swapd serve``, misbehaving engines, random clients, reloads.

Engines: fast ones, one slow to start, one that crashes a few seconds after every start, and a
flaky one that fails 40 % of its starts. Clients, concurrently and at random: chat and stream
requests (Anthropic's too), streams dropped after the first chunk, unloads and stops, unknown
models, bad JSON, bodies over ``maxBodySize``, JSON nested too deep; a reloader edits the
config and sends SIGHUP. Asserted:

- nothing hangs: every request finishes within ``REQUEST_BOUND`` seconds;
- every answer is the one to its own request, whole: the echo engines repeat each request's
  random words, so an answer another client's bytes got into, or a stream that lost or
  reordered a frame, or one that ended without ``[DONE]`` and was not cut, is caught;
- no 500; every error swapd makes is a JSON envelope (Anthropic's shape on ``/v1/messages``);
- once settled nothing is in flight, and swapd holds no more file descriptors than after the
  warm-up (beyond a small margin): no client's or engine's connection is left behind;
- with the native front on, it served some of the requests (its records say so);
- after swapd stops, no engine process it ever ran is left;
- swapd's RSS after the soak (settled) is within 10 % of its RSS after the warm-up.

2 minutes by default (CI); ``SWAPD_SOAK_SECONDS=1800`` soaks for half an hour.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx
import pytest

from swapd.proxy import front
from swapd.testing import SwapdProcess, echo_cmd, pids_alive, rss_kib, run_swapd

SOAK_SECONDS = float(os.environ.get("SWAPD_SOAK_SECONDS", "120"))
WARMUP_SECONDS = max(20.0, SOAK_SECONDS * 0.25)
REQUEST_BOUND = 60.0  # seconds: a request still open after this is a hang
CLIENTS = 6
RSS_GROWTH = 1.10
FD_MARGIN = 16  # descriptors: engine connections kept for the next request, say
KEEP_ALIVE = 5.0  # swapd's default keepAliveTimeout (s)

pytestmark = [pytest.mark.anyio, pytest.mark.soak, pytest.mark.timeout(SOAK_SECONDS + 240)]

MODELS = ("fast", "stream", "slow", "crashy", "flaky")
# Dies 1.2 s after each start, often in the middle of a 1 s stream.
CRASHY = "--exit-after 1.2 --exit-code 9 --chunks 20 --chunk-delay 0.05"
FLAKY = """\
import os, random, sys
if random.random() < 0.4:
    print("flaky engine: failing this start", flush=True)
    sys.exit(3)
os.execv(sys.executable, [sys.executable, "-m", "swapd.echo", *sys.argv[1:]])
"""


def config(start_port: int, flaky: Path, variant: int = 0) -> str:
    """The soak's config; ``variant`` changes what a reload changes (ttl, args, a model)."""
    python = shlex.quote(sys.executable)
    extra = f"  extra:\n    cmd: {echo_cmd()}\n" if variant % 2 else ""
    return (
        f"startPort: {start_port}\n"
        "healthCheckTimeout: 20\n"
        "maxBodySize: 256KiB\n"
        "models:\n"
        f"  fast:\n    cmd: {echo_cmd('--chunks 4')}\n    ttl: {5 + variant % 3}\n"
        f"  stream:\n    cmd: {echo_cmd(f'--chunks {20 + variant % 4} --chunk-delay 0.02')}\n"
        f"  slow:\n    cmd: {echo_cmd('--start-delay 1 --health-delay 0.5')}\n"
        f"  crashy:\n    cmd: {echo_cmd(CRASHY)}\n"
        f"  flaky:\n    cmd: {python} {flaky} --port ${{PORT}} --model ${{MODEL_ID}}\n"
        f"{extra}"
        "groups:\n"
        "  pool:\n    swap: false\n    exclusive: false\n    members: [fast, stream, crashy]\n"
    )


@dataclass
class Tally:
    problems: list[str] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    engine_pids: set[int] = field(default_factory=set)
    slowest: float = 0.0

    def problem(self, text: str) -> None:
        if len(self.problems) < 30:
            self.problems.append(text)


def envelope_problem(path: str, body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return "not JSON"
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return "no error.message"
    if path.startswith("/v1/messages"):
        return None if data.get("type") == "error" and "type" in error else "not Anthropic's shape"
    return None if isinstance(error.get("type"), str) and "code" in error else "no type/code"


class Chaos:
    def __init__(self, swapd: SwapdProcess, client: httpx.AsyncClient, tally: Tally) -> None:
        self.swapd = swapd
        self.client = client
        self.tally = tally

    async def request(
        self,
        label: str,
        method: str,
        path: str,
        *,
        drop_stream: bool = False,
        expect: str = "",
        **kwargs: object,
    ) -> None:
        """One request, bounded; its status (or failure) is tallied and checked: a 200 that
        ``expect``s a text must carry it (see :func:`answer_problem`)."""
        start = time.monotonic()
        status = 0
        body = b""
        try:
            with anyio.fail_after(REQUEST_BOUND):
                async with self.client.stream(method, path, **kwargs) as response:  # type: ignore[arg-type]
                    status = response.status_code
                    if drop_stream and status == 200:
                        async for _ in response.aiter_raw():
                            break  # the client goes away mid-stream
                    else:
                        body = await response.aread()
        except TimeoutError:
            self.tally.problem(f"{label}: {method} {path} still open after {REQUEST_BOUND:g}s")
            self.tally.outcomes["hang"] += 1
            return
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            # A stream cut short: an engine that crashed mid-answer (swapd drops the connection,
            # no terminating chunk). Anything else is not expected.
            self.tally.outcomes[f"{label}:cut"] += 1
            if label not in ("stream", "drop", "chat", "anthropic"):
                self.tally.problem(f"{label}: {method} {path}: {exc!r}")
            return
        except httpx.TransportError as exc:
            self.tally.problem(f"{label}: {method} {path}: {exc!r}")
            return
        self.tally.slowest = max(self.tally.slowest, time.monotonic() - start)
        self.tally.outcomes[f"{label}:{status}"] += 1
        if status == 500:
            self.tally.problem(f"{label}: {method} {path} -> 500 {body[:300]!r}")
        elif status >= 400 and (why := envelope_problem(path, body)):
            self.tally.problem(f"{label}: {method} {path} -> {status} {why}: {body[:300]!r}")
        elif status == 200 and expect and not drop_stream and (why := answer_problem(body, expect)):
            self.tally.problem(f"{label}: {method} {path}: {why}: {body[-300:]!r}")

    async def act(self, rng: random.Random) -> None:
        model = rng.choice(MODELS)
        words = f"hello {rng.random()}"
        messages = [{"role": "user", "content": words}]
        chat = {"model": model, "messages": messages}
        expect = f"echo {model}: {words}"  # what the echo engine answers, first
        action = rng.choices(
            ["chat", "stream", "drop", "anthropic", "unload", "bad", "unknown", "big", "deep"],
            weights=[6, 5, 3, 2, 1, 1, 1, 1, 1],
        )[0]
        if action == "chat":
            await self.request("chat", "POST", "/v1/chat/completions", json=chat, expect=expect)
        elif action in ("stream", "drop"):
            await self.request(
                action,
                "POST",
                "/v1/chat/completions",
                json={**chat, "stream": True},
                drop_stream=action == "drop",
                expect=expect,
            )
        elif action == "anthropic":
            body = {**chat, "max_tokens": 16, "stream": rng.random() < 0.5}
            await self.request("anthropic", "POST", "/v1/messages", json=body, expect=expect)
        elif action == "unload":
            path = rng.choice(
                ["/unload", f"/api/models/unload/{model}", f"/api/models/{model}/stop"]
            )
            await self.request("unload", "GET" if path == "/unload" else "POST", path)
        elif action == "bad":
            await self.request("bad", "POST", "/v1/chat/completions", content=b'{"model": "fa')
        elif action == "unknown":
            await self.request(
                "unknown", "POST", "/v1/chat/completions", json={**chat, "model": "nope"}
            )
        elif action == "big":
            padding = "x" * (300 * 1024)
            await self.request("big", "POST", "/v1/chat/completions", json={**chat, "pad": padding})
        else:
            deep = '{"model": "fast", "x": ' + "[" * 5000 + "]" * 5000 + "}"
            await self.request("deep", "POST", "/v1/chat/completions", content=deep.encode())

    async def client_loop(self, seed: int, until: float) -> None:
        rng = random.Random(seed)
        while time.monotonic() < until:
            await self.act(rng)

    async def reloader(self, start_port: int, flaky: Path, until: float, seed: int) -> None:
        rng = random.Random(seed)
        variant = 0
        while time.monotonic() < until:
            await anyio.sleep(rng.uniform(3, 8))
            variant += 1
            self.swapd.config_path.write_text(config(start_port, flaky, variant), encoding="utf-8")
            os.kill(self.swapd.pid, signal.SIGHUP)
            self.tally.outcomes["reload"] += 1

    async def watcher(self, until: float) -> None:
        """Every engine pid swapd reports, and every child of swapd, for the final check."""
        while time.monotonic() < until:
            try:
                models = (await self.client.get("/api/models", timeout=10)).json()["models"]
                self.tally.engine_pids.update(m["pid"] for m in models if m.get("pid"))
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            self.tally.engine_pids.update(children(self.swapd.pid))
            await anyio.sleep(0.3)

    async def phase(self, seconds: float, start_port: int, flaky: Path, seed: int) -> None:
        until = time.monotonic() + seconds
        async with anyio.create_task_group() as tg:
            for i in range(CLIENTS):
                tg.start_soon(self.client_loop, seed * 100 + i, until)
            tg.start_soon(self.reloader, start_port, flaky, until, seed)
            tg.start_soon(self.watcher, until)

    async def settle(self) -> tuple[int, int]:
        """swapd's RSS (KiB) and open file descriptors once nothing is in flight: the median
        of a few samples. Something still in flight after 30 s is a problem."""
        deadline = time.monotonic() + 30
        while inflight := (await self.client.get("/api/inflight", timeout=10)).json()["requests"]:
            if time.monotonic() > deadline:
                self.tally.problem(f"still in flight once settled: {inflight}")
                break
            await anyio.sleep(0.2)
        await anyio.sleep(KEEP_ALIVE + 1.0)  # the clients' idle connections closed by swapd
        rss, fds = [], []
        for _ in range(5):
            rss.append(rss_kib(self.swapd.pid) or 0)
            fds.append(len(os.listdir(f"/proc/{self.swapd.pid}/fd")))
            await anyio.sleep(0.3)
        return sorted(rss)[2], sorted(fds)[2]


def answer_problem(body: bytes, expect: str) -> str | None:
    """What is wrong with a 200 answer whose text should begin with ``expect``: a JSON
    answer (OpenAI's or Anthropic's) or a whole event stream of either, its pieces in order."""
    text = body.decode("utf-8", "replace")
    if not text.startswith(("data:", "event:")):
        try:
            data = json.loads(text)
        except ValueError:
            return "not JSON"
        if "choices" in data:
            said = str(data["choices"][0]["message"]["content"])
        else:
            said = "".join(str(part.get("text", "")) for part in data.get("content", []))
        return None if said.startswith(expect) else f"not the answer to {expect!r}"
    pieces = []
    ended = False
    for line in text.split("\n"):
        if not line.startswith("data: "):
            continue
        if line == "data: [DONE]":
            ended = True
            continue
        try:
            event = json.loads(line[6:])
        except ValueError:
            return f"a frame that is not JSON: {line[:80]!r}"
        if event.get("type") == "message_stop":
            ended = True
        for choice in event.get("choices", []):
            pieces.append(str(choice.get("delta", {}).get("content") or ""))
        pieces.append(str(event.get("delta", {}).get("text", "")))
    said = "".join(pieces)
    if not ended:
        return "a stream that ended without its last event and was not cut"
    return None if said.startswith(expect) else f"not the stream answering {expect!r}: {said!r}"


def children(pid: int) -> set[int]:
    """The pids whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry.name))
    return found


async def test_chaos_soak_never_hangs_leaks_or_answers_without_an_envelope(
    start_port: int, tmp_path: Path
) -> None:
    flaky = tmp_path / "flaky.py"
    flaky.write_text(FLAKY, encoding="utf-8")
    tally = Tally()
    limits = httpx.Limits(max_connections=CLIENTS * 4)
    timeout = httpx.Timeout(REQUEST_BOUND + 10)  # the bound itself is fail_after(REQUEST_BOUND)
    with run_swapd(config(start_port, flaky)) as swapd:
        async with httpx.AsyncClient(
            base_url=swapd.url, limits=limits, timeout=timeout, trust_env=False
        ) as client:
            chaos = Chaos(swapd, client, tally)
            await chaos.phase(WARMUP_SECONDS, start_port, flaky, seed=1)
            warm, warm_fds = await chaos.settle()
            await chaos.phase(SOAK_SECONDS - WARMUP_SECONDS, start_port, flaky, seed=2)
            after, after_fds = await chaos.settle()
            records = (await client.get("/api/activity", timeout=10)).json()["activity"]
    log = swapd.output()
    fronted = sum(bool((r.get("metadata") or {}).get("front")) for r in records)
    summary = f"outcomes: {dict(sorted(tally.outcomes.items()))}; slowest {tally.slowest:.1f}s"
    summary += f"; RSS {warm} KiB after warm-up, {after} KiB after"
    summary += f"; {warm_fds} descriptors after warm-up, {after_fds} after"
    summary += f"; the front served {fronted} of the last {len(records)} records"
    print(summary)  # shown with -s, and with the failure report
    assert not tally.problems, "\n".join([summary, *tally.problems])
    assert sum(tally.outcomes.values()) > 50 * SOAK_SECONDS / 120, summary
    assert tally.outcomes["reload"] > 0 and tally.engine_pids, summary
    assert "Traceback" not in log, log[-6000:]
    assert not pids_alive(tally.engine_pids), f"engines left running: {tally.engine_pids}"
    assert after <= warm * RSS_GROWTH, summary
    assert after_fds <= warm_fds + FD_MARGIN, summary
    assert fronted > 0 or not front.enabled(), summary
