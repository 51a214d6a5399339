"""Shared bits for the operate tests: a config with echo engines, a CLI runner, chat calls."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from swapd.testing import echo_cmd


def config(start_port: int, top: str = "") -> str:
    return f"""
startPort: {start_port}
healthCheckTimeout: 10
{top}
models:
  alpha:
    cmd: {echo_cmd()}
    aliases: [a]
  beta:
    cmd: {echo_cmd()}
  broken:
    cmd: {echo_cmd("--exit-after 0 --exit-code 7")}
"""


def swapd_cli(
    *args: str, url: str, key: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWAPD_")}
    env["SWAPD_URL"] = url
    if key is not None:
        env["SWAPD_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "swapd", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def chat(url: str, model: str, text: str = "hi", **kw: object) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **kw}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
