"""Engine lines carry their time (#15): stamped per ``logTimeFormat`` in the text views, a field
in ``/api/logs``; ``/logs`` and ``swapd logs`` interleave swapd's and the engines' lines by
time; a stop request is logged as a TTL unload is."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx
import pytest

from swapd.observe.logs import Entry, LogRing, merged
from swapd.testing import run_swapd

from .helpers import chat, config, swapd_cli

pytestmark = pytest.mark.timeout(120)

RFC3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d) "
CLOCK = r"\d\d:\d\d:\d\d\.\d{3}"


def test_rings_merge_in_time_order_and_keep_the_text_as_written() -> None:
    a, b = LogRing("a"), LogRing("b")
    a.write("first", at=10.0)
    b.write("second", at=11.0)
    a.write("third", at=12.0)
    b.write("same time as third", at=12.0)
    assert merged([("a", a), ("b", b)]) == [
        ("a", Entry(10.0, "first")),
        ("b", Entry(11.0, "second")),
        ("a", Entry(12.0, "third")),
        ("b", Entry(12.0, "same time as third")),
    ]
    try:
        LogRing.time_format = "rfc3339"
        assert re.fullmatch(RFC3339 + "first", a.history()[0])
        assert a.tail(1) == ["third"], "swapd reads the text back without the time"
    finally:
        LogRing.time_format = ""
    assert a.history() == ["first", "third"]


def test_engine_lines_are_stamped_with_the_time_format(start_port: int) -> None:
    with run_swapd(config(start_port, top="logTimeFormat: rfc3339")) as swapd:
        assert chat(swapd.url, "alpha").status_code == 200
        text = httpx.get(f"{swapd.url}/logs", timeout=10).text.splitlines()
        engine = [line for line in text if line.startswith("[alpha] ")]
        assert engine and all(re.match(r"\[alpha\] " + RFC3339, line) for line in engine)
        with httpx.stream("GET", f"{swapd.url}/logs/stream/alpha", timeout=10) as response:
            first = next(response.iter_lines())
        assert re.match(RFC3339 + r"\[swapd\] starting alpha: ", first), first
        api = httpx.get(f"{swapd.url}/api/logs", params={"model": "a"}, timeout=10).json()
        assert api["lines"][0]["text"].startswith("[swapd] starting alpha: ")  # unchanged text
        assert {e["source"] for e in api["lines"]} == {"alpha"}
        assert abs(api["lines"][0]["time"] - time.time()) < 60


def test_without_a_time_format_engine_lines_are_as_the_engine_wrote_them(
    start_port: int,
) -> None:
    with run_swapd(config(start_port)) as swapd:
        assert chat(swapd.url, "alpha").status_code == 200
        with httpx.stream("GET", f"{swapd.url}/logs/stream/alpha", timeout=10) as response:
            first = next(response.iter_lines())
        assert first.startswith("[swapd] starting alpha: ")


def test_logs_interleave_swapd_and_engines_by_time(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        assert swapd_cli("start", "alpha", url=swapd.url).returncode == 0
        assert swapd_cli("start", "beta", url=swapd.url).returncode == 0
        entries = httpx.get(f"{swapd.url}/api/logs", timeout=10).json()["lines"]
        times = [e["time"] for e in entries]
        assert times == sorted(times)
        sources = [e["source"] for e in entries]
        first_beta = sources.index("beta")
        assert "swapd" in sources[first_beta:] and "alpha" in sources[:first_beta]
        # /logs is the same history as text: swapd's lines between the engines', not first
        text = httpx.get(f"{swapd.url}/logs", timeout=10).text.splitlines()
        tags = ["beta" if t.startswith("[beta] ") else "x" for t in text]
        assert "INFO" in " ".join(text[tags.index("beta") :])

        last = swapd_cli("logs", "-n", "5", url=swapd.url)
        assert last.returncode == 0, last.stderr
        rows = last.stdout.splitlines()
        assert len(rows) == 5
        assert all(re.match(CLOCK + r" (swapd|alpha|beta) +\S", row) for row in rows), rows
        shown = [row.split()[1] for row in rows]
        assert shown == [e["source"] for e in entries[-5:]]
        assert len(set(shown)) > 1, "the last lines of every source, not of one"

        one = swapd_cli("logs", "beta", "-n", "2", url=swapd.url)
        assert one.returncode == 0
        assert all(re.match(CLOCK + r"  \S", row) for row in one.stdout.splitlines())

        assert swapd_cli("stop", "--all", url=swapd.url).returncode == 0
        beta = httpx.get(f"{swapd.url}/api/logs?model=beta", timeout=10).json()["lines"]
        said = "[swapd] unloading beta: stopped by admin (stop request)"
        assert said in [e["text"] for e in beta]  # no keys: the admin did it


def test_a_stop_request_is_logged_like_a_ttl_unload(start_port: int) -> None:
    top = "apiKeys: [{key: sekret, name: ops, scopes: [admin, inference, read]}]"
    with run_swapd(config(start_port, top=top)) as swapd:
        key = {"authorization": "Bearer sekret"}
        httpx.post(f"{swapd.url}/api/models/alpha/start?wait=true", headers=key, timeout=30)
        stopped = swapd_cli("stop", "alpha", url=swapd.url, key="sekret")
        assert stopped.returncode == 0, stopped.stderr
        said = "unloading alpha: stopped by ops (stop request)"
        model = swapd_cli("logs", "alpha", url=swapd.url, key="sekret").stdout
        assert f"[swapd] {said}" in model
        own = httpx.get(f"{swapd.url}/api/logs", headers=key, timeout=10).json()["lines"]
        assert {"source": "swapd", "text": f"INFO {said}"} in [
            {"source": e["source"], "text": e["text"]} for e in own
        ]


def test_followed_lines_are_tagged_with_their_source(start_port: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWAPD_")}
    with run_swapd(config(start_port)) as swapd:
        follow = subprocess.Popen(
            [sys.executable, "-m", "swapd", "logs", "-f", "-n", "0", "--url", swapd.url],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(2)  # the stream is open
            assert swapd_cli("start", "alpha", url=swapd.url).returncode == 0
            seen: list[str] = []
            assert follow.stdout is not None
            for row in follow.stdout:
                seen.append(row.rstrip("\n"))
                if "INFO alpha ready in" in row:
                    break
        finally:
            follow.terminate()
            follow.wait(timeout=10)
            if follow.stdout is not None:
                follow.stdout.close()
    assert re.fullmatch(CLOCK + r" alpha   \[swapd\] starting alpha: .*", seen[0]), seen
    assert re.fullmatch(CLOCK + r" swapd   INFO alpha ready in .*", seen[-1]), seen
