"""SQLite ingest fast path: multi-row INSERT chunks, partial indexes, lookup query plans.

`SqliteStorage.insert_batch` writes `INSERT_CHUNK` rows per statement (plus one statement for
the rest) instead of `executemany`; the nat/addr/account indexes are partial; the lookups keep
the planner off `records_type_ts`. These tests pin what must not change with that: every row
stored once, in batch order, at every size around the chunk boundary; idempotent repeats; and
the lookups answering through the address indexes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from collector.storage import sqlite as backend
from collector.storage.sqlite import INSERT_CHUNK, SqliteStorage

DAY0 = 1_719_792_000.0  # 2024-07-01 00:00 UTC


def _session(i: int, ts: float) -> dict[str, Any]:
    return {"type": "session", "ts": ts, "uid": f"C{i:08d}", "proto": "tcp", "src_ip": "10.0.0.1",
            "src_port": 1024 + i % 60000, "dst_ip": "192.0.2.1", "dst_port": 80, "duration": 1.0}


@pytest.mark.parametrize("n", [0, 1, INSERT_CHUNK - 1, INSERT_CHUNK, INSERT_CHUNK + 1, 2 * INSERT_CHUNK + 7])
def test_every_row_stored_once_in_batch_order(tmp_path: Path, n: int) -> None:
    store = SqliteStorage(tmp_path)
    try:
        recs = [_session(i, DAY0 + 100 + i * 1e-3) for i in range(n)]
        assert store.insert_batch("gw", "u", 1, recs).accepted == n
        assert store.count() == n
        again = store.insert_batch("gw", "u", 1, recs)
        assert again.duplicate and again.accepted == n and store.count() == n
        if n:
            conn = sqlite3.connect(tmp_path / "records-2024-07-01.sqlite")
            idx = [r[0] for r in conn.execute("SELECT idx FROM records ORDER BY id")]
            conn.close()
            assert idx == list(range(n))
            assert store.connection(f"C{n - 1:08d}")[0]["ts"] == recs[-1]["ts"]
    finally:
        store.close()


def test_batch_across_midnight_split_by_day(tmp_path: Path) -> None:
    store = SqliteStorage(tmp_path)
    try:
        recs = [_session(i, DAY0 + 86_400 - 1.0 + i * 0.001) for i in range(INSERT_CHUNK + 500)]
        store.insert_batch("gw", "u", 7, recs)
        per_day = {
            p.name: sqlite3.connect(p).execute("SELECT count(*) FROM records").fetchone()[0]
            for p in sorted(tmp_path.glob("records-*.sqlite"))
        }
        assert per_day == {"records-2024-07-01.sqlite": 1000, "records-2024-07-02.sqlite": 500}
    finally:
        store.close()


def test_lookups_use_the_address_indexes_not_the_type_index() -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript(backend._DAY_SCHEMA)
    lookups = [
        "nat_ip = ? AND nat_port = ? AND +type = 'nat' AND ts >= ? AND ts <= ?",
        "src_ip = ? AND src_port = ? AND +type = 'session' AND ts >= ? AND ts <= ? AND end_ts >= ?",
        "nat_ip = ? AND nat_port = ? AND +type = 'session' AND ts >= ? AND ts <= ? AND end_ts >= ?",
        "addr = ? AND +type = 'login' AND ts >= ? AND ts <= ?",
        "(src_ip = ? OR dst_ip = ? OR nat_ip = ? OR addr = ?)",
        "account = ?",
    ]
    for where in lookups:
        sql = f"EXPLAIN QUERY PLAN {backend._SELECT} WHERE {where} ORDER BY ts, id"
        plan = " ".join(str(row[3]) for row in conn.execute(sql, [1] * where.count("?")))
        assert "records_type_ts" not in plan and "SCAN records" not in plan, (where, plan)
    conn.close()
