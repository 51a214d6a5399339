"""What crosses the control channel besides plain values: errors and engine addresses.

An error travels as its class's dotted name, message and attributes, and is made again on the
other side without calling its ``__init__`` (several take more than the message): only classes
of ``swapd.errors`` are made, anything else arrives as a plain :class:`SwapdError`. An engine's
address travels as the tuple of its fields.
"""

from __future__ import annotations

from typing import Any

from swapd import errors
from swapd.errors import SwapdError
from swapd.upstream import Upstream

Frozen = tuple[str, str, dict[str, Any]]


def freeze(exc: SwapdError) -> Frozen:
    return (type(exc).__name__, exc.message, dict(vars(exc)))


def thaw(frozen: Frozen) -> SwapdError:
    name, message, attrs = frozen
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, SwapdError)):
        return SwapdError(message)
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(attrs)
    exc.message = message
    return exc


def freeze_upstream(upstream: Upstream) -> tuple[Any, ...]:
    return (upstream.base_url, upstream.pid, upstream.container, upstream.node)


def upstream_of(fields: tuple[Any, ...]) -> Upstream:
    return Upstream(*fields)
