"""What only the SQLite backend promises: files per day and family, pragmas, crash-idempotence, bounds."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_records import DAY, MIDNIGHT, http, session

from collector.storage import Hold, SqliteStorage
from collector.storage.sqlite import MAX_OPEN_FILES, LayoutError


@pytest.fixture
def sq(tmp_path: Path) -> Iterator[SqliteStorage]:
    store = SqliteStorage(tmp_path)
    yield store
    store.close()


def day_files(where: Path) -> list[str]:
    return sorted(p.name for p in where.glob("records-*.sqlite"))


def test_batch_across_midnight_writes_two_day_files(tmp_path: Path, sq: SqliteStorage) -> None:
    sq.insert_batch("a", "u", 1, [http(MIDNIGHT - 1, "C1"), http(MIDNIGHT, "C2")])
    assert day_files(tmp_path) == ["records-2024-02-29.app.sqlite", "records-2024-03-01.app.sqlite"]
    for name in day_files(tmp_path):
        with sqlite3.connect(tmp_path / name) as db:
            assert db.execute("SELECT total(n) FROM granules").fetchone() == (1,)
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_crash_before_the_marker_does_not_duplicate(tmp_path: Path, sq: SqliteStorage) -> None:
    recs = [http(MIDNIGHT - 1, "C1"), http(MIDNIGHT, "C2"), http(MIDNIGHT + 1, "C3")]
    sq.insert_batch("a", "u", 1, recs)
    # Simulate a crash after the day files committed but before the marker: remove the marker.
    with sqlite3.connect(tmp_path / "meta.sqlite") as meta:
        meta.execute("DELETE FROM batches")
    res = sq.insert_batch("a", "u", 1, recs)
    assert (res.accepted, res.duplicate) == (3, False)
    assert sq.count() == 3
    assert sq.insert_batch("a", "u", 1, recs).duplicate is True


def test_a_record_without_ts_refuses_the_whole_batch(sq: SqliteStorage) -> None:
    bad = dict(http(MIDNIGHT, "C2"))
    bad["ts"] = "yesterday"
    with pytest.raises(ValueError):
        sq.insert_batch("a", "u", 1, [http(MIDNIGHT, "C1"), bad])
    assert sq.count() == 0
    assert sq.insert_batch("a", "u", 1, [http(MIDNIGHT, "C1")]).duplicate is False


def test_open_files_are_bounded(sq: SqliteStorage) -> None:
    n = MAX_OPEN_FILES + 4
    sq.insert_batch("a", "u", 1, [session(MIDNIGHT + k * DAY, f"C{k}") for k in range(n)])
    assert sq.count() == n
    assert len(sq._open) <= MAX_OPEN_FILES
    assert len(sq.records().records) == n


def test_expire_removes_dropped_files(tmp_path: Path, sq: SqliteStorage) -> None:
    recs = [http(MIDNIGHT - 1, "C1"), http(MIDNIGHT + 1, "C2"), http(MIDNIGHT + DAY, "C3")]
    sq.insert_batch("a", "u", 1, recs)
    res = sq.expire(MIDNIGHT + DAY, [Hold(start=MIDNIGHT, end=MIDNIGHT + 10)])
    assert res.days_dropped == ["2024-02-29"]
    assert day_files(tmp_path) == ["records-2024-03-01.app.sqlite", "records-2024-03-02.app.sqlite"]
    assert not list(tmp_path.glob("records-2024-02-29*"))


def test_closed_store_refuses_calls(sq: SqliteStorage) -> None:
    sq.close()
    with pytest.raises(RuntimeError):
        sq.count()
    sq.close()  # idempotent


def test_files_of_the_row_layout_are_refused_not_ignored(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "records-2024-02-29.sqlite").close()
    with pytest.raises(LayoutError, match="row-per-record layout"):
        SqliteStorage(tmp_path)
