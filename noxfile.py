"""Developer sessions: ``nox`` runs tests, lint and typecheck (the CI runs the same)."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "workers", "python", "security", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_external_run = True


# The fuzzers and the chaos soak (tests/security): their own session, so their minutes show.
SECURITY = (
    "tests/security/test_fuzz_api.py",
    "tests/security/test_fuzz_config.py",
    "tests/security/test_soak.py",
)


@nox.session
def tests(session: nox.Session) -> None:
    """pytest, including the soak-marked concurrency tests (not the security session's)."""
    session.install("-e", ".[test]")
    skip = [] if session.posargs else [f"--ignore={path}" for path in SECURITY]
    session.run("pytest", *skip, *session.posargs)


@nox.session
def workers(session: nox.Session) -> None:
    """The end-to-end suite again, every swapd it starts with 2 data-plane worker processes
    (``SWAPD_WORKERS``, swapd.dataplane) and the relay in Python (``SWAPD_NATIVE_RELAY=0``):
    the same answers as one process with the native front and relay (the tests session)."""
    session.install("-e", ".[test]")
    # test_shutdown.py is left out here: in one of two CI runs its swapd took over 20 s to exit
    # with workers (many reruns passed; the cause is not found yet, issue 13's note has it).
    # tests/dataplane checks that SIGTERM ends the workers and frees the port. A slow exit now
    # fails with swapd's output, where a shutdown past 5 s logs what it still waits for.
    args = session.posargs or [
        "tests/e2e",
        "tests/operate/test_inflight.py",
        "--ignore=tests/e2e/test_shutdown.py",
    ]
    session.run("pytest", *args, env={"SWAPD_WORKERS": "2", "SWAPD_NATIVE_RELAY": "0"})


@nox.session
def python(session: nox.Session) -> None:
    """The end-to-end and operations suites again with the native front off
    (``SWAPD_NATIVE_FRONT=0``): Python's path serves every request, as where the native library
    cannot be built; the same answers, records and events as with the front."""
    session.install("-e", ".[test]")
    args = session.posargs or ["tests/e2e", "tests/operate"]
    session.run("pytest", *args, env={"SWAPD_NATIVE_FRONT": "0"})


@nox.session
def security(session: nox.Session) -> None:
    """schemathesis on the HTTP API, hypothesis on the config loader, a 2-minute chaos soak
    (``SWAPD_SOAK_SECONDS`` for longer, ``SWAPD_FUZZ_EXAMPLES`` for more examples)."""
    # Only what these tests import (the test extra also builds llama.cpp, installs playwright…).
    session.install("-e", ".", "pytest>=8", "pytest-timeout>=2.3", "hypothesis>=6.100")
    session.install("schemathesis>=4.0")
    session.run("pytest", *SECURITY, *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "bench", "plugins", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "bench", "plugins", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[test]", "mypy")
    session.run("mypy", "--strict", "src/swapd")
