"""schemathesis fuzzes a real ``swapd serve`` from its own ``/openapi.json``.

Every operation the document describes (admin and inference routes) gets generated requests,
valid and invalid, with no keys configured, with a full-access key, with scoped keys and with
a wrong key. The properties, for every response:

- it comes within ``TIMEOUT`` seconds (nothing hangs);
- no 500, ever; a 502/503/504 is allowed only as swapd's JSON envelope (an engine down or
  starting); every 4xx/5xx is a JSON envelope: OpenAI's shape, Anthropic's on ``/v1/messages``;
- the document tells the truth: a 2xx JSON body matches its schema, and a valid request gets
  a status the document lists (401 and 403 aside: any route may answer them when keys are set).

The streams (``/api/events``, ``/logs/stream…``) never end by design: for them only the
headers are awaited, and a refusal must be an envelope. Examples are derandomized, so a
CI failure reproduces locally; ``SWAPD_FUZZ_EXAMPLES`` sets how many per operation and mode, and
``SWAPD_FUZZ_RANDOM=1`` draws new ones.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from swapd.testing import SwapdProcess, echo_cmd, run_swapd

TIMEOUT = 15.0  # seconds; no request may take longer
EXAMPLES = int(os.environ.get("SWAPD_FUZZ_EXAMPLES", "40"))
MODELS = ("echo-a", "echo-b", "slow")
ADMIN_KEY = "fuzz-admin-key-1"
READ_KEY = "fuzz-read-key-1"
INFER_KEY = "fuzz-infer-key-1"
STREAMS = re.compile(r"^/(api/events|logs/stream)")

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(120 + 10 * EXAMPLES)]


def config(start_port: int, keys: bool) -> str:
    api_keys = (
        f"apiKeys:\n  - {ADMIN_KEY}\n"
        f"  - {{key: {READ_KEY}, name: reader, scopes: [read]}}\n"
        f"  - {{key: {INFER_KEY}, name: app, scopes: [inference], models: ['echo-*']}}\n"
        if keys
        else ""
    )
    return (
        f"startPort: {start_port}\n"
        "healthCheckTimeout: 20\n"
        f"{api_keys}"
        "models:\n"
        f"  echo-a:\n    cmd: {echo_cmd('--chunks 3')}\n    aliases: [a]\n"
        f"  echo-b:\n    cmd: {echo_cmd('--chunks 2')}\n    ttl: 5\n"
        f"  slow:\n    cmd: {echo_cmd('--health-delay 0.5 --chunks 2 --chunk-delay 0.05')}\n"
        "groups:\n"
        "  together:\n    swap: false\n    members: [echo-a, echo-b]\n"
    )


@dataclass
class Findings:
    """Problems found, at most a few per operation, reported together at the end."""

    problems: list[str] = field(default_factory=list)
    per_operation: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)

    def add(self, label: str, problem: str) -> None:
        seen = self.per_operation.get(label, 0)
        self.per_operation[label] = seen + 1
        if seen < 3:
            self.problems.append(f"{label}: {problem}")


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def envelope_problem(path: str, status: int, body: bytes) -> str | None:
    """Why ``body`` is not swapd's error envelope for ``path`` (None when it is)."""
    data = _json(body)
    if path.startswith("/v1/messages"):
        error = data.get("error") if isinstance(data, dict) else None
        ok = (
            isinstance(data, dict)
            and data.get("type") == "error"
            and isinstance(error, dict)
            and isinstance(error.get("type"), str)
            and isinstance(error.get("message"), str)
        )
        return None if ok else "not an Anthropic error envelope"
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return "not a JSON error envelope"
    for key in ("message", "type"):
        if not isinstance(error.get(key), str) or not error[key]:
            return f"envelope without a string error.{key}"
    if isinstance(error.get("code"), int):  # an engine's own error (llama.cpp's shape), passed on
        return None
    if not isinstance(error.get("code"), str) or not error["code"]:
        return "envelope without a string error.code"
    return None


def check(case: Any, response: Any, findings: Findings, *, documented: bool) -> None:
    """The properties; with ``documented``, the status must be one the document lists."""
    status: int = response.status_code
    findings.statuses[status] = findings.statuses.get(status, 0) + 1
    path = case.formatted_path
    sent = f"{case.method} {response.request.url} body={str(case.body)[:200]!r}"
    got = f"-> {status} {response.content[:300]!r}"
    if status == 500:
        findings.add(case.operation.label, f"500 from swapd: {sent} {got}")
    elif status >= 400 and (problem := envelope_problem(path, status, response.content)):
        findings.add(case.operation.label, f"{problem}: {sent} {got}")
    elif 200 <= status < 300 and "json" in (response.headers.get("content-type") or [""])[0]:
        conforms(case, response, schemathesis.checks.response_schema_conformance, findings)
    if documented and status not in (401, 403):  # the document does not list these per route
        conforms(case, response, schemathesis.checks.status_code_conformance, findings)


def conforms(case: Any, response: Any, check: Any, findings: Findings) -> None:
    """Record where ``response`` is not what the OpenAPI document says (one schemathesis check)."""
    try:
        case.validate_response(response, checks=[check])
    except (AssertionError, BaseExceptionGroup) as exc:  # schemathesis raises a FailureGroup
        what = f"{case.method} {case.formatted_path} -> {response.status_code}"
        findings.add(case.operation.label, f"not as documented: {what}: {exc}")


@dataclass(frozen=True)
class Client:
    """Who fuzzes: the headers sent, and whether swapd should let them in at all."""

    name: str
    headers: dict[str, str]


def fuzz(swapd: SwapdProcess, clients: list[Client]) -> Findings:
    """Every operation of swapd's document, in both generation modes, as every client."""
    auth = clients[0].headers
    schema = schemathesis.openapi.from_url(f"{swapd.url}/openapi.json", headers=auth, timeout=10)
    findings = Findings()
    session = requests.Session()
    session.trust_env = False  # never through an http_proxy from the environment
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run_operation(swapd, session, operation, mode, clients, findings)
    session.close()
    return findings


def run_operation(
    swapd: SwapdProcess,
    session: requests.Session,
    operation: Any,
    mode: GenerationMode,
    clients: list[Client],
    findings: Findings,
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    @settings(
        max_examples=EXAMPLES,
        derandomize=not os.environ.get("SWAPD_FUZZ_RANDOM"),  # set it to explore new examples
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: problems are collected
        suppress_health_check=list(HealthCheck),
    )
    def one(case: Any, data: st.DataObject) -> None:
        # Real model names half the time, so requests get past "not found" to the engines.
        if data.draw(st.booleans()):
            model = data.draw(st.sampled_from(MODELS))
            for params in (case.path_parameters, case.query):
                for key in ("id", "model"):
                    if isinstance(params, dict) and key in params:
                        params[key] = model
            if isinstance(case.body, dict) and "model" in case.body:
                case.body["model"] = model
        client = data.draw(st.sampled_from(clients))
        if STREAMS.match(operation.path):
            stream_opens(swapd, session, case, client, findings)
            return
        try:
            response = case.call(
                base_url=swapd.url, session=session, headers=client.headers, timeout=TIMEOUT
            )
        except requests.Timeout:
            findings.add(
                operation.label,
                f"no answer within {TIMEOUT:g}s: {case.method} "
                f"{case.formatted_path} body={str(case.body)[:200]!r} ({client.name})",
            )
            return
        except requests.ConnectionError as exc:
            findings.add(
                operation.label,
                f"connection error {exc}: {case.method} {case.formatted_path} ({client.name})",
            )
            return
        check(case, response, findings, documented=mode is GenerationMode.POSITIVE)

    try:
        one()
    except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
        assert mode is GenerationMode.NEGATIVE, operation.label


def stream_opens(
    swapd: SwapdProcess, session: requests.Session, case: Any, client: Client, findings: Findings
) -> None:
    """A stream never ends: its headers must come in time, and a refusal must be an envelope."""
    kwargs = case.as_transport_kwargs(base_url=swapd.url, headers=client.headers)
    what = f"{case.method} {kwargs['url']} ({client.name})"
    try:
        with session.request(**kwargs, stream=True, timeout=TIMEOUT) as response:
            status = response.status_code
            findings.statuses[status] = findings.statuses.get(status, 0) + 1
            if status >= 400 and (problem := envelope_problem(case.path, status, response.content)):
                findings.add(case.operation.label, f"{problem}: {what} -> {status}")
            elif status >= 500 or status not in (200, 400, 401, 403, 404):
                findings.add(case.operation.label, f"unexpected {status}: {what}")
    except requests.RequestException as exc:
        findings.add(case.operation.label, f"{exc!r}: {what}")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def swapd_no_keys(start_port: int) -> Iterator[SwapdProcess]:
    with run_swapd(config(start_port, keys=False)) as swapd:
        yield swapd


@pytest.fixture
def swapd_keys(start_port: int) -> Iterator[SwapdProcess]:
    with run_swapd(config(start_port, keys=True)) as swapd:
        yield swapd


def assert_clean(findings: Findings, swapd: SwapdProcess) -> None:
    assert sum(findings.statuses.values()) > 100, findings.statuses
    assert not findings.problems, (
        f"{len(findings.problems)} problems (statuses seen: {findings.statuses}):\n"
        + "\n".join(findings.problems)
    )
    assert "Traceback" not in swapd.output(), swapd.output()[-4000:]


def test_fuzzing_swapd_without_keys_finds_no_500_and_only_envelopes(
    swapd_no_keys: SwapdProcess,
) -> None:
    findings = fuzz(swapd_no_keys, [Client("anonymous", {})])
    assert_clean(findings, swapd_no_keys)


def test_fuzzing_swapd_with_scoped_keys_finds_no_500_and_only_envelopes(
    swapd_keys: SwapdProcess,
) -> None:
    clients = [
        Client("admin", bearer(ADMIN_KEY)),
        Client("read", bearer(READ_KEY)),
        Client("inference", {"x-api-key": INFER_KEY}),
        Client("wrong key", bearer("not-a-key")),
        Client("no key", {}),
    ]
    findings = fuzz(swapd_keys, clients)
    assert_clean(findings, swapd_keys)
    assert findings.statuses.get(401, 0) > 0 and findings.statuses.get(403, 0) > 0
