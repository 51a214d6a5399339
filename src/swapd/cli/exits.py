"""Errors → exit codes: the one place that maps them (every command reports through :func:`fail`).

Exit codes: 0 success; 1 runtime error (e.g. a model failed to start); 2 invalid config or
usage; 3 swapd is not reachable at ``--url``; 4 unknown model; 5 API key missing or rejected,
or without the scope the command needs; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import sys

import click

from swapd.errors import ConfigError, NotFound, SwapdError

EXIT_UNREACHABLE = 3
EXIT_NOT_FOUND = 4
EXIT_UNAUTHORIZED = 5


def exit_code(exc: SwapdError) -> int:
    from swapd.client import ApiError, Unreachable

    if isinstance(exc, Unreachable):
        return EXIT_UNREACHABLE
    if isinstance(exc, NotFound) or (isinstance(exc, ApiError) and exc.status == 404):
        return EXIT_NOT_FOUND
    if isinstance(exc, ApiError) and exc.status in (401, 403):
        return EXIT_UNAUTHORIZED
    return exc.exit_code


def fail(exc: SwapdError) -> None:
    if isinstance(exc, ConfigError):
        for issue in exc.issues:
            click.echo(str(issue), err=True)
    else:
        click.echo(f"swapd: {exc.message}", err=True)
    sys.exit(exit_code(exc))
