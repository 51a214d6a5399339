"""The activity store: records keep their routing metadata, and an older store is migrated."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

from swapd.observe.activity import ActivityLog, Record

OLD_COLUMNS = (
    "id, time, model, path, status, duration, ttfb, prompt_tokens, completion_tokens, "
    "cached_tokens, tokens_per_second"
)


def record(n: int, metadata: dict[str, object] | None = None) -> Record:
    return Record(
        f"req-{n}", 1.0, "m", "/v1/chat/completions", 200, 0.1, 0.05, 3, 4, None, 9.5, metadata
    )


def test_metadata_survives_a_restart_of_the_store(tmp_path: Path) -> None:
    store = tmp_path / "activity.db"
    log = ActivityLog(10, store)
    log.add(record(1, {"selector": "fast", "fifo_priority": 2}))
    log.add(record(2))
    log.close()
    again = ActivityLog(10, store)
    assert [r["metadata"] for r in again.recent()] == [
        None,
        {"selector": "fast", "fifo_priority": 2},
    ]
    again.close()


def test_a_store_written_before_metadata_existed_is_migrated(tmp_path: Path) -> None:
    store = tmp_path / "old.db"
    db = sqlite3.connect(store)
    db.execute(f"CREATE TABLE activity ({OLD_COLUMNS})")
    db.execute(
        "INSERT INTO activity VALUES ('req-7', 1.0, 'old', '/v1/completions', 200, 0.2, "
        "NULL, NULL, NULL, NULL, NULL)"
    )
    db.commit()
    db.close()
    log = ActivityLog(10, store)
    log.add(record(8, {"fifo_priority": 1}))
    assert [(r["id"], r["metadata"]) for r in log.recent()] == [
        ("req-8", {"fifo_priority": 1}),
        ("req-7", None),
    ]
    assert log.next_number() == 9
    log.close()


def test_records_are_kept_in_the_order_requests_arrived(tmp_path: Path) -> None:
    """A request's record booked after a later request's (Python books after the last byte,
    the native front may book the client's next request first) still comes before it, in
    memory, when the log is full, and after a restart."""
    store = tmp_path / "activity.db"
    log = ActivityLog(3, store)
    for n, arrived in [(1, 10.0), (3, 12.0), (2, 11.0), (5, 14.0), (4, 13.0)]:
        log.add(dataclasses.replace(record(n), time=arrived))
    assert [r["id"] for r in log.recent()] == ["req-5", "req-4", "req-3"]
    log.close()
    again = ActivityLog(3, store)
    assert [r["id"] for r in again.recent()] == ["req-5", "req-4", "req-3"]
    again.close()
