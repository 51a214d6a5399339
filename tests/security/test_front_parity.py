"""The native front lets through exactly what Python lets through: random credentials (Bearer
tokens, Basic passwords, ``x-api-key``, both at once, odd spacing and case, bytes beyond
ASCII) and random ``Host``, ``Origin`` and ``Sec-Fetch-Site`` fields sent to a swapd with the
front and to the same swapd without it get the same status every time, and the engine never
sees a credential. A key or a Host the front accepted that Python would refuse would be a way
past ``apiKeys`` or the DNS-rebinding guard: hypothesis looks for one.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes import raw_engine_cmd
from swapd import native
from swapd.testing import SwapdProcess, free_port_range, run_swapd, wait_for

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(native.library() is None, reason="the native library is not built here"),
]

KEYS = ("sekret", "beta-only", "watcher")


def config(start_port: int, trusted: str) -> str:
    return f"""
startPort: {start_port}
logRequests: true
server: {{allowedHosts: [gpu-box, .example.com], trustedProxies: {trusted}}}
apiKeys:
  - {KEYS[0]}
  - {{key: {KEYS[1]}, name: narrow, models: [beta]}}
  - {{key: {KEYS[2]}, name: dash, scopes: [read]}}
models:
  alpha:
    cmd: {raw_engine_cmd()}
  beta:
    cmd: {raw_engine_cmd()}
groups:
  both: {{swap: false, members: [alpha, beta]}}
"""


# the peer (127.0.0.1) trusted or not: forwarding fields believed, or dropped
@pytest.fixture(scope="module", params=["[127.0.0.1, 10.0.0.0/8, '2001:db8::/32']", "[]"])
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[SwapdProcess, SwapdProcess]]:
    """Two swapds, the front on in the first and off in the second, both models ready."""
    trusted = request.param
    with (
        run_swapd(
            config(free_port_range(8), trusted), env={**os.environ, "SWAPD_NATIVE_FRONT": "1"}
        ) as on,
        run_swapd(
            config(free_port_range(8), trusted), env={**os.environ, "SWAPD_NATIVE_FRONT": "0"}
        ) as off,
    ):
        for swapd in (on, off):
            for model in ("alpha", "beta"):
                status, _ = ask(swapd, model, [("Host", b"127.0.0.1"), ("x-api-key", b"sekret")])
                assert status == 200
            ANSWERED[swapd.port] = 2
        yield on, off
        records = httpx.get(f"{on.url}/api/activity", headers={"x-api-key": "sekret"}).json()
        served = [r["metadata"] for r in records["activity"] if r["metadata"].get("front")]
        assert served and {m.get("key") for m in served} <= {"key-1", "narrow"}, served


Fields = list[tuple[str, bytes]]


def ask(swapd: SwapdProcess, model: str, fields: Fields) -> tuple[int, bytes]:
    """POST a chat request with ``fields`` on a new connection: the status and the body."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    ).encode()
    head += b"".join(name.encode() + b": " + value + b"\r\n" for name, value in fields)
    with socket.create_connection(("127.0.0.1", swapd.port), timeout=30) as sock:
        sock.sendall(head + b"\r\n" + body)
        data = b""
        while piece := sock.recv(65536):
            data += piece
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


PIECES = [*KEYS, "nope", "sekret ", " sekret", "Sekret", "sekre", "sekrett", ""]
SPACE = st.sampled_from(["", " ", "  ", "\t"])
TOKEN = st.one_of(
    st.sampled_from(KEYS),
    st.sampled_from(PIECES),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF), max_size=12),
)


HOSTS = [
    *("127.0.0.1", "127.0.0.1:8080", "127.0.0.1.", "10.1.2.3:1", "0.0.0.0", "[::1]", "[::1]:80"),
    *("localhost", "LOCALHOST:1", "a.localhost", "localhost.", ".localhost", "x.localhost:2"),
    *("gpu-box", "GPU-Box:8080", "gpu-box.", "gpu-box:", "gpu-box:x", "gpu-box:1:2", "gpu-boxx"),
    *("example.com", "a.EXAMPLE.com:3", "badexample.com", "example.com.", "evil.com", ""),
    *("1.2.3", "01.2.3.4", "256.1.1.1", "1.2.3.4.5", "1.2.3.4:", "[::2]", "::1", "[gpu-box]"),
]


@st.composite
def credentials(draw: st.DrawFn) -> list[tuple[str, bytes]]:
    """A Bearer token, a Basic password, an x-api-key, both or none, in odd shapes."""
    fields: list[tuple[str, bytes]] = []
    if draw(st.booleans()):
        scheme = draw(st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Token", ""]))
        token = draw(TOKEN)
        if scheme == "Basic" and draw(st.booleans()):
            token = base64.b64encode(f"user:{draw(TOKEN)}".encode()).decode()
        value = f"{draw(SPACE)}{scheme}{draw(st.sampled_from([' ', '  ', '']))}{token}"
        fields.append(("Authorization", (value + draw(SPACE)).encode("latin-1")))
    if draw(st.booleans()):
        fields.append(("x-api-key", (draw(TOKEN) + draw(SPACE)).encode("latin-1")))
    return fields


@st.composite
def hosts(draw: st.DrawFn) -> list[tuple[str, bytes]]:
    """A Host (or none: a client that sends none is not a browser), maybe an Origin and a
    Sec-Fetch-Site."""
    fields: list[tuple[str, bytes]] = []
    if draw(st.integers(0, 9)):  # mostly a Host: a listed one, or made of a few characters
        made = st.text("abxe.:-[]0129", max_size=12)
        host = draw(made if draw(st.booleans()) else st.sampled_from(HOSTS))
        fields.append(("Host", host.encode()))
    if not draw(st.integers(0, 5)):
        origin = draw(st.sampled_from(["http://127.0.0.1:8080", "http://evil.com", "null"]))
        fields.append(("Origin", origin.encode()))
    if not draw(st.integers(0, 5)):
        site = draw(st.sampled_from(["same-origin", "cross-site", "none"]))
        fields.append(("Sec-Fetch-Site", site.encode()))
    return fields


LOGGED = re.compile(r'(\S*) "POST /v1/chat/completions" \w+ 200 ')
ANSWERED: dict[int, int] = {}  # per swapd (its port): chat requests answered 200 so far


def logged(swapd: SwapdProcess) -> list[str]:
    """The client addresses of the request log's lines for answered chat requests."""
    return [m[1] for line in list(swapd.log) if (m := LOGGED.search(line))]


def same_answers(pair: tuple[SwapdProcess, SwapdProcess], model: str, fields: Fields) -> None:
    """The same status from both; for a 200, the same forwarding fields at the engine (never a
    credential) and the same client address in the request log."""
    on, off = pair
    fronted, python = ask(on, model, fields), ask(off, model, fields)
    assert fronted[0] == python[0], (fields, fronted, python)
    if fronted[0] != 200:
        return
    got, expected = json.loads(fronted[1]), json.loads(python[1])
    assert not {"authorization", "x-api-key"} & set(got["fields"]), fields
    assert got["forwarded"] == expected["forwarded"], fields
    shown = []
    for swapd in pair:  # (a line is written once the answer is out: wait for it)
        n = ANSWERED[swapd.port] = ANSWERED[swapd.port] + 1
        shown.append(wait_for(lambda s=swapd, n=n: logged(s)[n - 1 : n], "its log line", 10))
    assert shown[0] == shown[1], (fields, shown)


EXAMPLES = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MODEL = st.sampled_from(["alpha", "beta"])


@EXAMPLES
@given(model=MODEL, fields=credentials())
def test_the_front_and_python_answer_every_credential_alike(
    pair: tuple[SwapdProcess, SwapdProcess], model: str, fields: Fields
) -> None:
    same_answers(pair, model, [("Host", b"127.0.0.1:8080"), *fields])


HOPS = ["1.2.3.4", "10.0.0.1", "10.9.9.9", "127.0.0.1", "2001:db8::1", "fe80::1%eth0", "::1"]
HOPS += ["garbage", "01.2.3.4", "", " 5.6.7.8 "]


@st.composite
def forwarding(draw: st.DrawFn) -> Fields:
    """X-Forwarded-For (none, one or two fields, hops apart by ", " or otherwise), X-Real-IP,
    Forwarded, sometimes X-Forwarded-Proto."""
    fields: Fields = []
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2]))):
        hops = draw(st.lists(st.sampled_from(HOPS), min_size=1, max_size=4))
        apart = draw(st.sampled_from([", ", ", ", ",", " , "]))
        fields.append(("X-Forwarded-For", apart.join(hops).encode()))
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        fields.append(("X-Real-IP", draw(st.sampled_from(HOPS)).encode()))
    if draw(st.booleans()):
        fields.append(("Forwarded", b"for=192.0.2.60;proto=http"))
    if not draw(st.integers(0, 9)):
        fields.append(("X-Forwarded-Proto", b"https"))
    draw(st.randoms()).shuffle(fields)
    return fields


@EXAMPLES
@given(fields=forwarding())
def test_the_front_and_python_pass_on_and_log_every_forwarding_alike(
    pair: tuple[SwapdProcess, SwapdProcess], fields: Fields
) -> None:
    same_answers(pair, "alpha", [("Host", b"127.0.0.1"), ("x-api-key", b"sekret"), *fields])


@pytest.mark.parametrize("host", HOSTS)
def test_the_front_and_python_answer_each_listed_host_alike(
    pair: tuple[SwapdProcess, SwapdProcess], host: str
) -> None:
    same_answers(pair, "beta", [("Host", host.encode()), ("x-api-key", b"sekret")])


@EXAMPLES
@given(model=MODEL, fields=hosts(), key=st.sampled_from(KEYS[:2]))
def test_the_front_and_python_answer_every_host_alike(
    pair: tuple[SwapdProcess, SwapdProcess], model: str, fields: Fields, key: str
) -> None:
    same_answers(pair, model, [*fields, ("x-api-key", key.encode())])
