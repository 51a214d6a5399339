"""swapd's own log lines (`logTimeFormat`, `logRequests`) and the `/logs/stream/proxy` and
`/logs/stream/upstream` streams, against a real `swapd serve`."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from datetime import UTC, datetime, timedelta, timezone

import anyio
import httpx
import pytest

from swapd.observe.logs import TIME_LAYOUTS, LineFormatter, LogRing, RingHandler, time_layout
from swapd.testing import run_swapd

from .helpers import chat, config

pytestmark = pytest.mark.timeout(120)

# Go's reference time with its reference zone, and what Go prints for each named layout.
GO_TIME = datetime(2006, 1, 2, 15, 4, 5, 123456, tzinfo=timezone(timedelta(hours=-7), "MST"))
GO_PRINTS = {
    "ansic": "Mon Jan  2 15:04:05 2006",
    "unixdate": "Mon Jan  2 15:04:05 MST 2006",
    "rubydate": "Mon Jan 02 15:04:05 -0700 2006",
    "rfc822": "02 Jan 06 15:04 MST",
    "rfc822z": "02 Jan 06 15:04 -0700",
    "rfc850": "Monday, 02-Jan-06 15:04:05 MST",
    "rfc1123": "Mon, 02 Jan 2006 15:04:05 MST",
    "rfc1123z": "Mon, 02 Jan 2006 15:04:05 -0700",
    "rfc3339": "2006-01-02T15:04:05-07:00",
    "rfc3339nano": "2006-01-02T15:04:05.123456-07:00",  # Go would show up to 9 digits
    "kitchen": "3:04PM",
    "stamp": "Jan  2 15:04:05",
    "stampmilli": "Jan  2 15:04:05.123",
    "stampmicro": "Jan  2 15:04:05.123456",
    "stampnano": "Jan  2 15:04:05.123456000",
}
RFC3339_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d) (INFO|WARNING) ")


def test_every_go_layout_prints_as_go_does() -> None:
    assert set(TIME_LAYOUTS) == set(GO_PRINTS)
    for name, expected in GO_PRINTS.items():
        assert TIME_LAYOUTS[name](GO_TIME) == expected, name


def test_utc_is_z_in_rfc3339_and_midnight_is_twelve_in_kitchen() -> None:
    midnight = datetime(2026, 3, 4, 0, 7, 0, tzinfo=UTC)
    assert TIME_LAYOUTS["rfc3339"](midnight) == "2026-03-04T00:07:00Z"
    assert TIME_LAYOUTS["rfc3339nano"](midnight) == "2026-03-04T00:07:00Z"  # zeros trimmed
    assert TIME_LAYOUTS["kitchen"](midnight) == "12:07AM"


def test_unknown_or_empty_layout_means_no_timestamp() -> None:
    assert time_layout("") is None and time_layout("iso8601") is None
    assert time_layout(" RFC3339 ") is TIME_LAYOUTS["rfc3339"]
    record = logging.LogRecord("swapd", logging.INFO, __file__, 1, "hello", None, None)
    assert LineFormatter("").format(record) == "INFO hello"
    assert re.match(r"^\d\d?:\d\d(AM|PM) INFO hello$", LineFormatter("kitchen").format(record))


def test_a_line_logged_from_a_thread_reaches_the_ring_on_the_loop() -> None:
    # The ring's subscribers (the events bus, log streams) are not thread-safe: a record
    # logged by work handed to a thread is written by the loop, after the lines before it.
    async def main() -> None:
        ring = LogRing("swapd")
        pushed: list[tuple[str, int]] = []
        ring.subscribe(lambda line: pushed.append((line, threading.get_ident())) or True)
        logger = logging.getLogger("swapd.test-thread")
        logger.handlers[:] = [RingHandler(ring, False, asyncio.get_running_loop())]
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.info("before")
        await anyio.to_thread.run_sync(logger.info, "from a thread")
        logger.info("after")
        await anyio.sleep(0.01)
        assert [line for line, _ in pushed] == ["INFO before", "INFO from a thread", "INFO after"]
        assert {thread for _, thread in pushed} == {threading.get_ident()}
        logger.handlers.clear()

    anyio.run(main)


def test_proxy_and_upstream_streams_and_the_time_format(start_port: int) -> None:
    # The loopback hop is a trusted proxy here, so its X-Real-IP names the client.
    top = "logTimeFormat: rfc3339\nlogRequests: true\nserver: {trustedProxies: [127.0.0.1]}"
    with run_swapd(config(start_port, top=top)) as swapd:
        reply = chat(swapd.url, "alpha")
        assert reply.status_code == 200
        httpx.post(
            f"{swapd.url}/v1/chat/completions",
            json={"model": "a", "messages": [{"role": "user", "content": "x"}]},
            headers={"X-Real-IP": "198.51.100.7"},
            timeout=30,
        )
        with httpx.stream("GET", f"{swapd.url}/logs/stream/proxy", timeout=10) as response:
            assert response.headers["content-type"].startswith("text/plain")
            proxy = next(response.iter_lines())
        history = httpx.get(f"{swapd.url}/logs").text.splitlines()
        own = [line for line in history if not line.startswith("[")]
        assert own and all(RFC3339_LINE.match(line) for line in own), own
        assert RFC3339_LINE.match(proxy) and "listening" in proxy
        requests = [line for line in own if '"POST /v1/chat/completions"' in line]
        assert len(requests) == 2
        assert re.search(r'127\.0\.0\.1 "POST /v1/chat/completions" alpha 200 \d+B ', requests[0])
        assert "198.51.100.7" in requests[1]  # the client address from a trusted X-Real-IP

        with httpx.stream("GET", f"{swapd.url}/logs/stream/upstream", timeout=10) as response:
            first = next(response.iter_lines())
        assert first.startswith("[alpha] ")

        with httpx.stream(
            "GET", f"{swapd.url}/logs/stream/upstream?no-history", timeout=10
        ) as response:
            httpx.post(f"{swapd.url}/api/models/beta/start", timeout=30)
            seen = []
            for line in response.iter_lines():
                seen.append(line)
                if line.startswith("[beta] "):
                    break
        # engine output only (alpha's as it stops, beta's): swapd's own lines are not here
        assert all(line.startswith(("[alpha] ", "[beta] ")) for line in seen), seen

        with httpx.stream(
            "GET", f"{swapd.url}/logs/stream/proxy?no-history", timeout=10
        ) as response:
            httpx.post(f"{swapd.url}/api/models/alpha/start", timeout=30)
            live = next(response.iter_lines())
        assert RFC3339_LINE.match(live) and not live.startswith("[")

        with httpx.stream("GET", f"{swapd.url}/logs/stream/a", timeout=10) as response:
            assert response.status_code == 200  # an alias names its model's log


def test_without_a_time_format_lines_have_no_timestamp(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        assert chat(swapd.url, "alpha").status_code == 200
        own = [line for line in httpx.get(f"{swapd.url}/logs").text.splitlines() if line]
        assert own[0].startswith("INFO swapd listening")
        assert not any('"POST /v1/chat/completions"' in line for line in own)  # logRequests off
