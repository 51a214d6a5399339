"""Collects every problem found while loading, so one run reports them all."""

from __future__ import annotations

from swapd.config.tree import Path, Pos
from swapd.errors import ConfigError, ConfigIssue


class Issues:
    """Errors and warnings with positions.

    An error recorded with a ``path`` marks that part of the config as bad: later errors at the
    same path or below it are dropped, so one mistake (``ttl: ${TYPO}``) gives one message, not
    a cascade (unknown macro, then "expected a number").
    """

    def __init__(self, files: list[str] | None = None) -> None:
        self.files = list(files or [])
        self.errors: list[ConfigIssue] = []
        self.warnings: list[ConfigIssue] = []
        self._bad: set[Path] = set()

    def is_bad(self, path: Path) -> bool:
        return any(path[:i] in self._bad for i in range(len(path) + 1))

    def mark_bad(self, path: Path) -> None:
        """Suppress errors at ``path`` (another error already explains it)."""
        self._bad.add(path)

    def error(self, pos: Pos, message: str, path: Path | None = None) -> None:
        if path is not None:
            if self.is_bad(path):
                return
            self._bad.add(path)
        self.errors.append(ConfigIssue(pos.file, pos.line, pos.col, message))

    def warn(self, pos: Pos, message: str) -> None:
        self.warnings.append(ConfigIssue(pos.file, pos.line, pos.col, message))

    def _sorted(self, issues: list[ConfigIssue]) -> tuple[ConfigIssue, ...]:
        order = {name: i for i, name in enumerate(self.files)}
        unique = list(dict.fromkeys(issues))
        return tuple(sorted(unique, key=lambda i: (order.get(i.file, -1), i.line, i.col)))

    def sorted_warnings(self) -> tuple[ConfigIssue, ...]:
        return self._sorted(self.warnings)

    def check(self) -> None:
        """Raise ``ConfigError`` with every error so far, in file and line order."""
        if self.errors:
            raise ConfigError(self._sorted(self.errors))
