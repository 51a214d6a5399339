"""Runtime mistakes a valid config can still hold, found before the first request trips on them.

:func:`lint` reads a loaded :class:`~swapd.config.model.Config` and the machine it runs on and
returns warnings, one line each, ``model X: …`` with a hint. ``swapd check`` prints them;
``swapd serve`` logs them at start and after every reload. None of them stops a config from
loading: the machine may change (a program installed later, a ``PATH`` set by a service unit).

- The program of a process-driver model (``cmd``'s argv[0]) is not on the ``PATH`` the engine
  will get (the model's ``env`` ``PATH`` if it sets one, else swapd's), or an explicit path
  that does not exist or is not executable: the start would fail every time.
- A fixed local port in ``proxy`` that ``cmd`` never mentions (neither as an argument such as
  ``--port 9503``, ``-p 9503:8080``, ``127.0.0.1:9503`` nor in ``env``): the engine listens on
  another port and every start ends in a health-check timeout. Docker and recipe models are
  skipped (their options or templates own the ports), and so are llama-server's own default
  port 8080 and an allocated ``${PORT}`` (a cmd without it gets the loader's warning instead).

:func:`exposure` is the warning for a listen address other than loopback with no ``apiKeys``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from urllib.parse import urlsplit

from swapd.config.model import Config, ModelConfig
from swapd.llamacpp import is_llama_server

__all__ = ["exposure", "is_loopback", "lint"]

_LOCAL_HOSTS = ("localhost", "localhost.localdomain", "ip6-localhost")
LLAMA_SERVER_DEFAULT_PORT = 8080


def lint(config: Config, environ: Mapping[str, str] | None = None) -> list[str]:
    """Warnings about ``config`` on this machine (``environ`` defaults to ``os.environ``)."""
    env = os.environ if environ is None else environ
    warnings: list[str] = []
    for model in config.models.values():
        if model.driver != "process" or not model.cmd:
            continue
        warnings.extend(_program(model, env))  # a process recipe's program too (vllm, python3)
        if not model.recipe:  # a recipe's cmd listens where swapd says
            warnings.extend(_port(model))
    return warnings


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is loopback only."""
    host = host.strip("[]").lower()
    if host in _LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure(host: str, config: Config) -> str | None:
    """The warning for listening on ``host`` when it is reachable from other machines and
    ``config`` requires no API key; None when loopback or keys are set."""
    if is_loopback(host) or config.api_keys:
        return None
    shown = host or "every interface"
    return (
        f"listening on {shown} without apiKeys: anyone who can reach this machine can use "
        "(and start) every model; set apiKeys in the config, or listen on 127.0.0.1"
    )


def _program(model: ModelConfig, environ: Mapping[str, str]) -> Iterator[str]:
    program = model.cmd[0]
    if os.sep in program or (os.altsep and os.altsep in program):
        if not os.path.exists(program):
            yield f"model {model.id}: program '{program}' does not exist; fix the path in cmd"
        elif os.path.isdir(program) or not os.access(program, os.X_OK):
            yield (
                f"model {model.id}: program '{program}' is not an executable file; "
                f"check the path in cmd, or make it executable (chmod +x)"
            )
        return
    path = model.env.get("PATH", environ.get("PATH", os.defpath))
    if shutil.which(program, path=path) is None:
        source = "the model's env" if "PATH" in model.env else "swapd's environment"
        yield (
            f"model {model.id}: program '{program}' not found on PATH (from {source}: "
            f"{path or '(empty)'}); install it, add its folder to PATH, "
            f"or write its absolute path in cmd"
        )


def _port(model: ModelConfig) -> Iterator[str]:
    try:
        url = urlsplit(model.proxy)
        port = url.port
    except ValueError:
        return
    if port is None or url.hostname is None or not is_loopback(url.hostname):
        return  # no fixed port, or a remote engine that cmd may reach in ways not visible here
    if port == model.port:
        return  # the model's ${PORT}: in cmd, or the loader already warned that it is not
    told = any(arg == "--port" or arg.startswith("--port=") for arg in model.cmd)
    if is_llama_server(model.cmd) and port == LLAMA_SERVER_DEFAULT_PORT and not told:
        return  # llama-server listens on 8080 unless told otherwise
    mention = re.compile(rf"(?<!\d){port}(?!\d)")
    if any(mention.search(text) for text in (*model.cmd[1:], *model.env.values())):
        return
    allocated = (
        f" (its ${{PORT}} is {model.port})" if model.port is not None and model.port != port else ""
    )
    yield (
        f"model {model.id}: proxy {model.proxy} expects port {port}, but cmd never mentions "
        f"{port}{allocated}; the engine will listen elsewhere and every start will time out. "
        f"Pass the port in cmd (e.g. --port {port}), or use ${{PORT}} in both cmd and proxy"
    )
