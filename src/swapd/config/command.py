"""Command lines (``cmd``/``cmdStop``): comments, continuation lines, POSIX shell words."""

from __future__ import annotations

import shlex
from collections.abc import Sequence


def strip_comments(text: str) -> str:
    """Drop the lines whose stripped form starts with ``#`` (done before macro expansion)."""
    return "\n".join(line for line in text.split("\n") if not line.strip().startswith("#"))


def parse_command(text: str) -> tuple[str, ...]:
    """argv for ``text``: comment lines dropped, ``\\`` at a line end joins the next line, then
    POSIX shell-words (quotes and escapes; no shell, so no pipes or ``&&``).

    Raises ``ValueError`` for unbalanced quotes. An empty result is the caller's to reject.
    """
    lines = strip_comments(text).split("\n")
    joined = [line.rstrip()[:-1] + " " if line.rstrip().endswith("\\") else line for line in lines]
    return tuple(shlex.split("\n".join(joined), posix=True))


def flag_value(argv: Sequence[str], *names: str) -> str | None:
    """The value of the last ``--flag VALUE`` or ``--flag=VALUE`` among ``names`` in a
    command line (an engine's flags, read by swapd to know what the engine will do)."""
    value: str | None = None
    for i, arg in enumerate(argv):
        name, eq, inline = arg.partition("=")
        if name in names:
            if eq:
                value = inline
            elif i + 1 < len(argv):
                value = argv[i + 1]
    return value
