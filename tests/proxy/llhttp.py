"""The oracle of the native head tests: what llhttp (uvicorn's parser, through httptools)
makes of some bytes, read when the head is complete (a message's end resets the parser)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httptools
from hypothesis import strategies as st


@dataclass
class Reading:
    url: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)  # names in lower case
    complete: bool = False
    error: str | None = None
    method: bytes = b""  # a request's
    status: int = 0  # a response's
    version: str = ""
    keep_alive: bool = False
    parser: Any = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.complete = True
        if isinstance(self.parser, httptools.HttpRequestParser):
            self.method = self.parser.get_method()
        else:
            self.status = self.parser.get_status_code()
        self.version = self.parser.get_http_version()
        self.keep_alive = self.parser.should_keep_alive()


def read(data: bytes, *, response: bool = False) -> Reading:
    reading = Reading()
    kind = httptools.HttpResponseParser if response else httptools.HttpRequestParser
    reading.parser = kind(reading)
    try:
        reading.parser.feed_data(data)
    except httptools.HttpParserError as exc:
        reading.error = f"{type(exc).__name__}: {exc}"
    return reading


def edited(head: bytes, data: st.DataObject, special: list[bytes]) -> bytes:
    """``head`` with one to three pieces (``special`` bytes or any) put in, replacing up to
    two bytes each, anywhere."""
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(head)))
        piece = data.draw(st.sampled_from(special) | st.binary(min_size=1, max_size=2))
        cut = data.draw(st.integers(0, 2))
        head = head[:at] + piece + head[at + cut :]
    return head
