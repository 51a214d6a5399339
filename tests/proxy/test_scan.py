"""The native scan of a JSON request body (relay.c's scan_request, swapd.proxy.body): wherever
it vouches for a body, json.loads accepts that body as an object and finds the same model and
stream; wherever it does not, Python parses the body and says what is wrong with it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swapd import native
from swapd.errors import RequestError
from swapd.proxy import body

scan = native.request_scan()
pytestmark = pytest.mark.skipif(scan is None, reason="the native library is not built here")

DEPTH = 8

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["", "0", "é", "\u2028", "\U0001f600", 'quo"te', "back\\slash"])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
keys = st.sampled_from(["model", "stream", "messages", "n", "mod\\u0065l", "é"]) | st.text(
    max_size=6
)


@st.composite
def objects(draw: st.DrawFn) -> bytes:
    """A JSON object as a client might send it: any keys and values (``model`` and ``stream``
    among them, repeated at times), written compactly or spaced, escaped or not."""
    pairs = draw(st.lists(st.tuples(keys, values), max_size=6))
    ascii_only = draw(st.booleans())
    spaced = draw(st.booleans())
    sep = (", ", ": ") if spaced else (",", ":")
    parts = []
    for key, value in pairs:
        name = key if "\\u" in key else json.dumps(key, ensure_ascii=ascii_only)[1:-1]
        parts.append(
            f'"{name}"{sep[1]}{json.dumps(value, ensure_ascii=ascii_only, separators=sep)}'
        )
    text = "{" + sep[0].join(parts) + "}"
    return (
        draw(st.sampled_from(["", " ", "\n\t"])) + text + draw(st.sampled_from(["", " \r\n"]))
    ).encode()


def python_reading(raw: bytes) -> tuple[str | None, bool] | None:
    """What json.loads makes of ``raw`` (None: refused, or not an object)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    model = data.get("model")
    return (model if isinstance(model, str) else None), bool(data.get("stream"))


def scan_reading(raw: bytes, depth: int = DEPTH) -> tuple[str | None, bool] | None:
    parsed = body._scanned(raw, depth)
    return None if parsed is None else (parsed.model, parsed.stream)


@settings(max_examples=400)
@given(objects())
def test_a_scanned_object_reads_as_json_loads_reads_it(raw: bytes) -> None:
    read = scan_reading(raw)
    if read is not None:
        assert read == python_reading(raw)
        assert body.json_depth(raw) <= DEPTH


plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(
    st.dictionaries(st.text(max_size=8), plain, max_size=5),
    st.none() | st.text(max_size=10) | st.integers(),
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    st.booleans(),
)
def test_a_body_json_dumps_wrote_is_vouched_for(
    rest: dict[str, Any], model: Any, stream: Any, ascii_only: bool
) -> None:
    """No float exponent, no escaped key at the top, no container for ``stream``, shallow:
    nothing the scan leaves to Python, so it must read the body itself."""
    raw = json.dumps({**rest, "model": model, "stream": stream}, ensure_ascii=ascii_only).encode()
    if body.json_depth(raw) > DEPTH or any("\\" in json.dumps(k) for k in rest):
        return
    assert scan_reading(raw) == python_reading(raw)


@settings(max_examples=600)
@given(objects(), st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(
    [b"", b'"', b"\\", b"{", b"}", b"[", b"]", b",", b":", b"0", b"-", b".", b"e", b"\x00",
     b"\x1f", b"\\u", b"\x80", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"t", b"NaN", b" "]
)), min_size=1, max_size=3))  # fmt: skip
def test_a_broken_body_is_never_vouched_for(raw: bytes, edits: list[tuple[int, bytes]]) -> None:
    """Bytes put in, replaced or cut anywhere: the scan vouches only for what json.loads takes."""
    data = bytearray(raw)
    for at, piece in edits:
        quotes = [i + 1 for i, b in enumerate(data) if b == 0x22]
        at = quotes[at % len(quotes)] if quotes and at % 2 else at % (len(data) + 1)
        if piece and at % 3 == 0:
            data[at : at + 1] = piece  # replace
        elif piece:
            data[at:at] = piece  # insert
        else:
            del data[at : at + 1]  # cut
    broken = bytes(data)
    read = scan_reading(broken)
    if read is not None:
        assert read == python_reading(broken)
        assert body.json_depth(broken) <= DEPTH


def test_the_usual_bodies_are_vouched_for_and_read() -> None:
    assert scan_reading(b'{"model":"qwen","messages":[{"role":"user","content":"hi"}]}') == (
        "qwen",
        False,
    )
    assert scan_reading(b'{"stream": true, "model": "a", "model": "b"}') == ("b", True)
    assert scan_reading(b'{"model": "caf\\u00e9", "stream": 0.0}') == ("café", False)
    assert scan_reading('{"model":"日本","stream":"no"}'.encode()) == ("日本", True)
    assert scan_reading(b'{"model": 7, "stream": null}') == (None, False)
    assert scan_reading(b"{}") == (None, False)
    for stream, truth in ((b'""', False), (b'"0"', True), (b"0", False), (b"-0.000", False),
                          (b"0.5", True), (b"{}", False)):  # fmt: skip
        read = scan_reading(b'{"stream":' + stream + b"}")
        assert read in ((None, truth), None)
        assert read is not None or stream == b"{}"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model":"a"',  # cut
        b'{"model":"a"} x',  # past the end
        b'{"model":NaN}',  # json.loads takes it; the scan leaves it to Python
        b'{"mod\\u0065l":"a"}',  # a key that spells model once decoded
        b'{"stream":[1]}',  # a container's truth
        b'{"stream":1e-400}',  # a float that Python reads as 0.0
        b'{"model":"a\x1fb"}',  # a control character in a string
        b'{"model":"\\u00zz"}',  # an escape that is not one
        b'{"model":"a","x":"\t"}',  # a tab, as it is, in a string
        b"\xef\xbb\xbf{}",  # a byte-order mark
        b'{"a":"\xed\xa0\x80"}',  # a surrogate in UTF-8
        b'{"a":' + b"[" * (DEPTH + 1) + b"]" * (DEPTH + 1) + b"}",
        b"[]",
    ],
)
def test_what_the_scan_does_not_follow_is_left_to_python(raw: bytes) -> None:
    assert scan_reading(raw) is None


def test_a_body_too_deep_for_the_scan_gets_pythons_error() -> None:
    raw = b'{"model":"a","x":' + b"[" * 20 + b"]" * 20 + b"}"
    with pytest.raises(RequestError, match="deeper than 8"):
        body.extract("POST", b"", b"application/json", raw, max_depth=DEPTH)


def test_a_scanned_body_is_parsed_when_a_rewrite_needs_it() -> None:
    raw = b'{"model":"alias","messages":[]}'
    parsed = body.extract("POST", b"", b"application/json", raw)
    assert parsed.scanned and parsed.data is None
    out, _ = body.rewrite(parsed, raw, b"", b"application/json", body.Rewrite(model="real"))
    changed: dict[str, Any] = json.loads(out)
    assert changed == {"model": "real", "messages": []}
    same, _ = body.rewrite(parsed, raw, b"", b"application/json", body.Rewrite())
    assert same is raw  # nothing to change: the client's bytes as they came
