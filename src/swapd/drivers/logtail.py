"""An engine's output as log lines: a bounded line reader, and the tail kept for error messages."""

from __future__ import annotations

import codecs
import re
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the Ray actor imports this module: it need not load the config models
    from swapd.drivers.base import LogSink

ERROR_TAIL_LINES = 20
MAX_LINE = 64 * 1024  # bytes of one line kept; the rest of it is dropped
TRUNCATED = "…[truncated]"

_EOL = re.compile(rb"\r\n|\r|\n")


class LineReader:
    """Splits an engine's byte stream into text lines, in linear time and bounded memory.

    A line ends at ``\\n``, ``\\r\\n`` or a bare ``\\r`` (progress bars redraw with ``\\r`` and
    may never print a newline), also when ``\\r`` and ``\\n`` arrive in different chunks. A line
    longer than ``max_line`` bytes keeps its first ``max_line`` bytes (cut at a character
    boundary) and ends with ``…[truncated]``. Bytes are decoded per line as UTF-8 with
    replacement, so a character split across chunks decodes whole. Empty lines ended by a bare
    ``\\r`` are dropped (a redraw from column 0); empty ``\\n`` lines are kept.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._parts: list[bytes] = []
        self._size = 0
        self._truncated = False
        self._after_cr = False  # the previous chunk ended with \r: a leading \n completes it

    @property
    def pending(self) -> int:
        """Bytes held for the line being read (at most ``max_line``)."""
        return self._size

    def feed(self, chunk: bytes) -> list[str]:
        """The lines that ``chunk`` completes (possibly none)."""
        lines: list[str] = []
        if not chunk:
            return lines
        pos = 1 if self._after_cr and chunk[:1] == b"\n" else 0
        self._after_cr = False
        for match in _EOL.finditer(chunk, pos):
            self._append(chunk[pos : match.start()])
            self._emit(lines, bare_cr=match.group() == b"\r")
            pos = match.end()
        self._append(chunk[pos:])
        self._after_cr = chunk[-1:] == b"\r"
        return lines

    def close(self) -> list[str]:
        """The last line, if the stream ended without a line break."""
        lines: list[str] = []
        if self._parts or self._truncated:
            self._emit(lines, bare_cr=False)
        return lines

    def _append(self, piece: bytes) -> None:
        if not piece or self._truncated:
            return
        room = self.max_line - self._size
        if len(piece) > room:
            piece = piece[:room]
            self._truncated = True
        self._parts.append(piece)
        self._size += len(piece)

    def _emit(self, lines: list[str], *, bare_cr: bool) -> None:
        data = b"".join(self._parts)
        if self._truncated:
            # final=False leaves out a character the cut split, instead of a U+FFFD.
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            lines.append(decoder.decode(data, final=False) + TRUNCATED)
        elif data or not bare_cr:
            lines.append(data.decode("utf-8", errors="replace"))
        self._parts = []
        self._size = 0
        self._truncated = False


async def pump(chunks: AsyncIterator[bytes], write: Callable[[str], None]) -> None:
    """Hand an engine's output to ``write`` line by line (a :class:`LineReader`), to its end."""
    reader = LineReader()
    async for chunk in chunks:
        for line in reader.feed(chunk):
            write(line)
    for line in reader.close():
        write(line)


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
