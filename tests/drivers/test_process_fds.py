"""Engines inherit only stdin, stdout and stderr from swapd, on both event loops."""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import anyio
import pytest

from swapd.config.model import ModelConfig
from swapd.drivers.base import Upstream
from swapd.drivers.process import ProcessDriver

from .conftest import Lines

pytestmark = pytest.mark.anyio

CHILD = "import time; print('up', flush=True); time.sleep(60)"


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


async def test_an_engine_holds_no_descriptor_of_swapd_but_stdio(lines: Lines) -> None:
    # What app.bind() used to do with the listening socket: an inheritable descriptor.
    with socket.socket() as leaked:
        leaked.bind(("127.0.0.1", 0))
        leaked.listen()
        leaked.set_inheritable(True)
        model = ModelConfig(
            id="fds",
            cmd=(sys.executable, "-c", CHILD),
            proxy="http://127.0.0.1:9",
            check_endpoint=None,
        )
        async with anyio.create_task_group() as tg:
            upstream: Upstream = await tg.start(ProcessDriver(model, lines).serve)
            with anyio.fail_after(20):
                await lines.wait_for("up")
            assert upstream.pid is not None
            fds = sorted(int(fd) for fd in os.listdir(f"/proc/{upstream.pid}/fd"))
            tg.cancel_scope.cancel()
    assert fds == [0, 1, 2]
