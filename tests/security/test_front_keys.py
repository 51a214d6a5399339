"""The native front checks API keys as Python does: random credentials (Bearer tokens, Basic
passwords, ``x-api-key``, both at once, odd spacing and case, bytes beyond ASCII) sent to a
swapd with the front and to the same swapd without it get the same status every time, and the
engine never sees a credential. A key the front accepted that Python would refuse would be a
way past ``apiKeys``: hypothesis looks for one.
"""

from __future__ import annotations

import base64
import json
import os
import socket
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes import raw_engine_cmd
from swapd import native
from swapd.testing import SwapdProcess, free_port_range, run_swapd

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(native.library() is None, reason="the native library is not built here"),
]

KEYS = ("sekret", "beta-only", "watcher")


def config(start_port: int) -> str:
    return f"""
startPort: {start_port}
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


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[SwapdProcess, SwapdProcess]]:
    """Two swapds, the front on in the first and off in the second, both models ready."""
    with (
        run_swapd(config(free_port_range(8)), env={**os.environ, "SWAPD_NATIVE_FRONT": "1"}) as on,
        run_swapd(config(free_port_range(8)), env={**os.environ, "SWAPD_NATIVE_FRONT": "0"}) as off,
    ):
        for swapd in (on, off):
            for model in ("alpha", "beta"):
                status, _ = ask(swapd, model, [("x-api-key", b"sekret")])
                assert status == 200
        yield on, off
        records = httpx.get(f"{on.url}/api/activity", headers={"x-api-key": "sekret"}).json()
        served = [r["metadata"] for r in records["activity"] if r["metadata"].get("front")]
        assert served and {m.get("key") for m in served} <= {"key-1", "narrow"}, served


def ask(swapd: SwapdProcess, model: str, fields: list[tuple[str, bytes]]) -> tuple[int, bytes]:
    """POST a chat request with ``fields`` on a new connection: the status and the body."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{swapd.port}\r\n"
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


@st.composite
def credentials(draw: st.DrawFn) -> list[tuple[str, bytes]]:
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


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(model=st.sampled_from(["alpha", "beta"]), fields=credentials())
def test_the_front_and_python_answer_every_credential_alike(
    pair: tuple[SwapdProcess, SwapdProcess], model: str, fields: list[tuple[str, bytes]]
) -> None:
    on, off = pair
    fronted, python = ask(on, model, fields), ask(off, model, fields)
    assert fronted[0] == python[0], (fields, fronted, python)
    if fronted[0] == 200:  # the engine got no credentials, whoever served it
        seen = set(json.loads(fronted[1])["fields"])
        assert not {"authorization", "x-api-key"} & seen, fields
