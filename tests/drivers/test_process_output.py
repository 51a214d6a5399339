"""An engine's output reaches its log as bounded lines, progress bars included."""

from __future__ import annotations

import sys

import anyio
import pytest

from swapd.config.model import ModelConfig
from swapd.drivers.process import ProcessDriver

from .conftest import Lines

pytestmark = pytest.mark.anyio


def engine(code: str) -> ModelConfig:
    """A Python one-liner as an engine that is ready as soon as it runs."""
    return ModelConfig(
        id="out", cmd=(sys.executable, "-c", code), proxy="http://127.0.0.1:9", check_endpoint=None
    )


async def test_a_carriage_return_progress_bar_reaches_the_log_before_any_newline(
    lines: Lines,
) -> None:
    code = (
        "import sys, time\n"
        "for pct in (10, 50, 90):\n"
        "    sys.stdout.write(f'\\rdownloading {pct}%'); sys.stdout.flush()\n"
        "time.sleep(60)\n"
    )
    async with anyio.create_task_group() as tg:
        await tg.start(ProcessDriver(engine(code), lines).serve)
        with anyio.fail_after(20):
            await lines.wait_for("downloading 50%")  # the 90% redraw has no end yet
        tg.cancel_scope.cancel()
    assert lines.lines[:2] == ["downloading 10%", "downloading 50%"]


async def test_a_line_without_end_is_cut_at_64_kib_and_marked(lines: Lines) -> None:
    code = "import sys; sys.stdout.write('z' * 1_000_000 + '\\nafter\\n')"
    async with anyio.create_task_group() as tg:
        await tg.start(ProcessDriver(engine(code), lines).serve)
        with anyio.fail_after(20):
            await lines.wait_for("exited with code 0")
        tg.cancel_scope.cancel()
    assert [len(line) for line in lines.lines[:1]] == [64 * 1024 + len("…[truncated]")]
    assert lines.lines[0].endswith("z…[truncated]")
    assert lines.lines[1] == "after"
