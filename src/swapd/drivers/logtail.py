"""A log sink wrapper that drivers use to quote an engine's last lines in error messages."""

from __future__ import annotations

from collections import deque

from swapd.drivers.base import LogSink

ERROR_TAIL_LINES = 20


class LogTail:
    """Forwards lines to the model's sink and remembers the last few for error messages."""

    def __init__(self, sink: LogSink, keep: int = ERROR_TAIL_LINES) -> None:
        self.sink = sink
        self.lines: deque[str] = deque(maxlen=keep)

    def write(self, line: str) -> None:
        self.sink.write(line)
        self.lines.append(line)

    def text(self) -> str:
        return "\n".join(self.lines)
