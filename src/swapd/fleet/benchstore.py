"""Stored benchmark results, kept with the model's activity.

With ``store.path`` set (the SQLite file of activity records) a ``bench`` table in that file
holds them; otherwise they live in memory and in ``bench/results.json`` next to swapd's other
state (``$SWAPD_STATE_DIR``, default ``~/.local/state/swapd``), written atomically. Either way
the newest :data:`KEEP` results per model are kept.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

from swapd.drivers import pidfile

KEEP = 50  # results kept per model

log = logging.getLogger("swapd.bench")


def default_file() -> Path:
    return pidfile.state_dir().parent / "bench" / "results.json"


class BenchStore:
    """Results as JSON objects with at least ``id``, ``model`` and ``time`` (unix seconds)."""

    def __init__(self, sqlite: Path | None = None, file: Path | None = None) -> None:
        self._db: sqlite3.Connection | None = None
        self._file = file
        self._results: list[dict[str, Any]] = []
        if sqlite is not None:
            sqlite.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(sqlite, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS bench"
                " (id TEXT PRIMARY KEY, model TEXT, time REAL, data TEXT)"
            )
        elif file is not None:
            with contextlib.suppress(FileNotFoundError):
                try:
                    loaded = json.loads(file.read_text(encoding="utf-8"))
                    self._results = [r for r in loaded if isinstance(r, dict)]
                except (OSError, ValueError) as exc:
                    log.warning("bench results in %s not read: %s", file, exc)

    def add(self, result: dict[str, Any]) -> None:
        model = result["model"]
        if self._db is not None:
            self._db.execute(
                "INSERT OR REPLACE INTO bench (id, model, time, data) VALUES (?, ?, ?, ?)",
                (result["id"], model, result["time"], json.dumps(result)),
            )
            self._db.execute(
                "DELETE FROM bench WHERE model = ? AND id NOT IN "
                "(SELECT id FROM bench WHERE model = ? ORDER BY time DESC LIMIT ?)",
                (model, model, KEEP),
            )
            return
        mine = [r for r in self._results if r["model"] == model][-(KEEP - 1) :]
        others = [r for r in self._results if r["model"] != model]
        self._results = sorted([*others, *mine, result], key=lambda r: float(r["time"]))
        if self._file is not None:  # atomically: a crash leaves the old file or the new one
            tmp = self._file.with_name(f".{self._file.name}.{os.getpid()}.tmp")
            try:
                self._file.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_text(json.dumps(self._results, indent=1), encoding="utf-8")
                os.replace(tmp, self._file)
            except OSError as exc:
                log.warning("bench result not written to %s: %s", self._file, exc)
                tmp.unlink(missing_ok=True)

    def results(self, model: str) -> list[dict[str, Any]]:
        """The model's results, newest first."""
        if self._db is not None:
            rows = self._db.execute(
                "SELECT data FROM bench WHERE model = ? ORDER BY time DESC", (model,)
            ).fetchall()
            return [json.loads(row[0]) for row in rows]
        return [r for r in reversed(self._results) if r["model"] == model]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
