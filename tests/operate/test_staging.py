"""A request's record is made off the next request's path (swapd.observe.observer: staging),
and no reader ever misses a request whose answer is out."""

from __future__ import annotations

import http.client
import json
import re

import httpx

from swapd.testing import run_swapd

from .helpers import config

HEADERS = {"content-type": "application/json"}
BODY = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def _requests_total(metrics: str) -> float:
    found = re.findall(r'^swapd_requests_total\{[^}]*model="alpha"[^}]*\} (\S+)$', metrics, re.M)
    return sum(float(v) for v in found)


def test_a_reader_sees_each_request_as_soon_as_its_answer_is_out(start_port: int) -> None:
    with run_swapd(config(start_port)) as swapd:
        conn = http.client.HTTPConnection("127.0.0.1", swapd.port, timeout=30)
        for n in range(1, 31):  # the reader asks on the same connection the moment it can
            conn.request("POST", "/v1/chat/completions", json.dumps(BODY), HEADERS)
            answer = conn.getresponse()
            assert answer.status == 200
            answer.read()
            conn.request("GET", "/api/activity?limit=100")
            records = json.loads(conn.getresponse().read())["activity"]
            assert len(records) == n
            assert records[0]["completion_tokens"] is not None
        conn.close()
        assert _requests_total(httpx.get(f"{swapd.url}/metrics").text) == 30


def test_a_request_is_recorded_without_another_request_to_carry_it(start_port: int) -> None:
    with run_swapd(config(start_port, "logRequests: true")) as swapd:
        assert httpx.post(f"{swapd.url}/v1/chat/completions", json=BODY, timeout=30).is_success
        swapd.wait_for_log('"POST /v1/chat/completions" alpha 200', timeout=5)  # no one asked
