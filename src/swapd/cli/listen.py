"""``--listen``: the address ``swapd serve`` binds, in Go's spelling as llama-swap takes it.

``HOST:PORT`` (``127.0.0.1:8080``, ``localhost:8080``), ``:PORT`` for every interface (as Go's
``:8080``; swapd binds ``0.0.0.0``), and ``[IPV6]:PORT`` (``[::]:8080``, ``[::1]:8080``). The
default stays ``127.0.0.1:8080``: unlike llama-swap, swapd is reachable only from this machine
unless told otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import click

DEFAULT = "127.0.0.1:8080"
EVERY_INTERFACE = "0.0.0.0"


@dataclass(frozen=True, slots=True)
class Listen:
    host: str  # an address or a name; IPv6 without brackets
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse(text: str) -> Listen:
    """``text`` as a listen address; ``ValueError`` with the accepted forms when it is not one."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"expected HOST:PORT, :PORT (every interface) or [IPV6]:PORT, got {text!r}"
        )
    if host.startswith("["):
        if not host.endswith("]") or len(host) < 3:
            raise ValueError(f"an IPv6 address goes in brackets, as [::1]:8080, got {text!r}")
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"an IPv6 address goes in brackets, as [{host}]:{port}, got {text!r}")
    return Listen(host or EVERY_INTERFACE, int(port))


class ListenType(click.ParamType[Listen]):
    """A click parameter type for :func:`parse` (a wrong value is a usage error: exit 2)."""

    name = "HOST:PORT"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Listen:
        if isinstance(value, Listen):
            return value
        try:
            return parse(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
