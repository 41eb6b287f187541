"""The SQLite backend's granule layout: what the contract suite cannot see from outside.

Granules hold up to ``GRANULE_RECORDS`` records of one day and family; lookup keys are crc32
hashes. These pin: every record stored once and read back in order at every size around the
granule boundary; one file per family; lookups that probe the key index (no table scan);
a key collision that costs a decode but never a wrong answer; and retention rewriting a
granule with its keys, so nothing deleted can still be found and nothing kept is lost.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import zlib
from array import array
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from storage_records import MIDNIGHT, dns, http, login, nat, session, strip

from collector.storage import sqlite as backend
from collector.storage.granules import CHUNK_GRANULES, GRANULE_RECORDS, prepare, unpack
from collector.storage.keys import CHUNK_KINDS, HOUR_SHIFT, INDEX_BITS, KIND_UID, key_of, kind_of, record_keys
from collector.storage.rows import record_columns
from collector.storage.sqlite import SqliteStorage


@pytest.fixture
def sq(tmp_path: Path) -> Iterator[SqliteStorage]:
    store = SqliteStorage(tmp_path)
    yield store
    store.close()


def _sessions(n: int, ts: float) -> list[dict[str, Any]]:
    return [session(ts + i * 1e-3, f"C{i:08d}", sport=1024 + i % 60000) for i in range(n)]


@pytest.mark.parametrize("n", [0, 1, GRANULE_RECORDS - 1, GRANULE_RECORDS, GRANULE_RECORDS + 1,
                               2 * GRANULE_RECORDS + 7])
def test_every_record_stored_once_and_read_in_order(sq: SqliteStorage, n: int) -> None:
    recs = _sessions(n, MIDNIGHT + 100)
    assert sq.insert_batch("gw", "u", 1, recs).accepted == n
    assert sq.count() == n
    again = sq.insert_batch("gw", "u", 1, recs)
    assert again.duplicate and again.accepted == n and sq.count() == n
    got, cursor = [], None
    while True:
        page = sq.records(limit=200, cursor=cursor)
        got += [strip(r) for r in page.records]
        if (cursor := page.cursor) is None:
            break
    assert got == recs
    if n:
        assert sq.connection(f"C{n - 1:08d}")[0]["ts"] == recs[-1]["ts"]
        assert len(prepare(recs)) == -(-n // GRANULE_RECORDS)


def test_one_file_per_day_and_family(tmp_path: Path, sq: SqliteStorage) -> None:
    recs = [session(MIDNIGHT + 1, "C1"), http(MIDNIGHT + 2, "C1"), dns(MIDNIGHT + 3, "C2", "a.example"),
            login(MIDNIGHT + 4, "login", "10.0.0.5", "alice"),
            nat(MIDNIGHT + 5, "create", ("10.0.0.5", 50000), ("198.51.100.7", 40000))]
    sq.insert_batch("gw", "u", 1, recs)
    files = {p.name: sqlite3.connect(p).execute("SELECT total(n) FROM granules").fetchone()[0]
             for p in tmp_path.glob("records-*.sqlite")}
    assert files == {"records-2024-03-01.flow.sqlite": 1, "records-2024-03-01.app.sqlite": 2,
                     "records-2024-03-01.identity.sqlite": 1, "records-2024-03-01.nat.sqlite": 1}
    assert [r["type"] for r in sq.records().records] == ["session", "http", "dns", "login", "nat"]


def test_lookups_probe_the_key_index() -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript(backend._DAY_SCHEMA)
    where = "id IN (SELECT gid FROM keys WHERE key = ?) AND ts_max >= ? AND ts_min <= ?"
    plan = " ".join(str(row[3]) for row in conn.execute(
        f"EXPLAIN QUERY PLAN {backend._SELECT_GRANULE} WHERE {where}", [1, 2, 3]))
    assert "SCAN granules" not in plan and "SCAN keys" not in plan, plan
    conn.close()


def _colliding_uids() -> tuple[str, str]:
    seen: dict[int, str] = {}
    i = 0
    while True:
        uid = f"C{i:x}"
        h = zlib.crc32(uid.encode())
        if h in seen:
            return seen[h], uid
        seen[h] = uid
        i += 1


def test_a_key_collision_never_answers_wrong(sq: SqliteStorage) -> None:
    one, two = _colliding_uids()
    assert key_of(KIND_UID, one) == key_of(KIND_UID, two)
    sq.insert_batch("gw", "u", 1, [http(MIDNIGHT + 1, one, host="one.example")])
    sq.insert_batch("gw", "u", 2, [http(MIDNIGHT + 2, two, host="two.example")])
    assert [r["host"] for r in sq.connection(one)] == ["one.example"]
    assert [r["host"] for r in sq.connection(two)] == ["two.example"]


def _fresh_of(conn: sqlite3.Connection) -> set[tuple[int, int]]:
    """The (key, granule or chunk id) pairs waiting in ``fresh_keys``."""
    out: set[tuple[int, int]] = set()
    for chunk, keys, chunk_keys in conn.execute("SELECT chunk, keys, chunk_keys FROM fresh_keys"):
        out |= {(v >> 8, chunk + (v & 255)) for v in json.loads(keys)}
        out |= {(v, chunk) for v in json.loads(chunk_keys)}
    return out


def _keys_of_file(path: Path) -> set[tuple[int, int]]:
    """The granule keys stored (indexed or fresh), checked against the granules' records:
    each granule's index lists exactly its records' keys, the keys its granule keys exactly
    and its chunk keys (address, account) as a superset of what the chunk's records need."""
    conn = sqlite3.connect(path)
    stored = set(conn.execute("SELECT key, gid FROM keys")) | _fresh_of(conn)
    wanted: set[tuple[int, int]] = set()
    wanted_chunk: set[tuple[int, int]] = set()
    for gid, chunk, data, rindex in conn.execute("SELECT id, chunk, data, rindex FROM granules"):
        entries: set[int] = set()
        for idx, rec in enumerate(unpack(data)):
            cols = record_columns(idx, rec)
            entries |= {(k << INDEX_BITS) | idx for k in record_keys(cols[0], cols)}
        index = array("Q")
        index.frombytes(rindex)
        assert set(index) == entries and list(index) == sorted(index)
        keys = {e >> INDEX_BITS for e in entries}
        wanted |= {(k, gid) for k in keys if kind_of(k) not in CHUNK_KINDS}
        wanted_chunk |= {(k, chunk) for k in keys if kind_of(k) in CHUNK_KINDS}
    conn.close()
    granule_level = {(k, g) for k, g in stored if kind_of(k) not in CHUNK_KINDS}
    assert granule_level == wanted
    assert wanted_chunk <= stored - granule_level
    return granule_level


def test_retention_rewrites_a_granule_and_its_keys(tmp_path: Path, sq: SqliteStorage) -> None:
    old = [http(MIDNIGHT + 10 + i, f"old{i}", host=f"old{i}.example", src=f"10.0.1.{i}") for i in range(5)]
    new = [http(MIDNIGHT + 100 + i, f"new{i}", host=f"new{i}.example") for i in range(5)]
    sq.insert_batch("gw", "u", 1, old + new)  # one granule
    path = tmp_path / "records-2024-03-01.app.sqlite"
    before = _keys_of_file(path)
    res = sq.expire(MIDNIGHT + 50, [])
    assert (res.deleted, res.held, res.days_dropped) == (5, 0, [])
    after = _keys_of_file(path)
    assert after < before
    assert sq.connection("old0") == [] and sq.records(ip="10.0.1.3").records == []
    assert [r["host"] for r in sq.connection("new4")] == ["new4.example"]
    assert [strip(r) for r in sq.records().records] == new


def test_group_commit_stores_every_concurrent_batch_once(sq: SqliteStorage) -> None:
    # 8 agents x 10 batches from 16 threads, every batch sent twice at about the same time
    jobs = [(f"gw{a}", seq, _sessions(50, MIDNIGHT + a * 1000 + seq * 10))
            for a in range(8) for seq in range(10)]
    results: dict[tuple[str, int], list[tuple[int, bool]]] = {}
    lock = threading.Lock()

    def send(job: tuple[str, int, list[dict[str, Any]]]) -> None:
        agent, seq, recs = job
        res = sq.insert_batch(agent, "u", seq, recs)
        with lock:
            results.setdefault((agent, seq), []).append((res.accepted, res.duplicate))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(send, jobs + jobs))
    assert sq.count() == 80 * 50
    for key, got in results.items():
        assert sorted(got) == [(50, False), (50, True)], key


def test_a_failed_group_fails_each_of_its_batches_and_a_resend_stores_them(
        sq: SqliteStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    real = SqliteStorage._insert_chunk

    def failing(conn: sqlite3.Connection, agent: str, *args: Any) -> int:
        if agent == "bad":
            raise sqlite3.OperationalError("disk I/O error")
        return real(conn, agent, *args)

    monkeypatch.setattr(SqliteStorage, "_insert_chunk", staticmethod(failing))
    with pytest.raises(sqlite3.OperationalError):
        sq.insert_batch("bad", "u", 1, _sessions(3, MIDNIGHT))
    assert sq.count() == 0
    monkeypatch.setattr(SqliteStorage, "_insert_chunk", staticmethod(real))
    assert sq.insert_batch("bad", "u", 1, _sessions(3, MIDNIGHT)).duplicate is False
    assert sq.count() == 3


def test_keys_carry_the_hour_and_lookups_probe_each_hour_of_their_window(sq: SqliteStorage) -> None:
    # the same address and uid in every hour of a day, one batch per hour
    for h in range(24):
        sq.insert_batch("gw", "u", h, [http(MIDNIGHT + h * 3600 + 1800, "Cday", src="10.9.9.9",
                                           host=f"h{h}.example")])
    got = sq.records(ip="10.9.9.9", start=MIDNIGHT + 2 * 3600 + 1000, end=MIDNIGHT + 5 * 3600 + 1000).records
    assert [r["host"] for r in got] == ["h2.example", "h3.example", "h4.example"]
    assert len(sq.connection("Cday")) == 24
    assert [r["host"] for r in sq.connection("Cday", start=MIDNIGHT + 23 * 3600)] == ["h23.example"]
    uid_keys = [k for k, _ in _keys_of_file(sq._path(("2024-03-01", "app"))) if kind_of(k) == KIND_UID]
    assert sorted((k >> HOUR_SHIFT) & 0x1F for k in uid_keys) == list(range(24))


def test_identity_reads_granules_newest_first_across_overlapping_ones(sq: SqliteStorage) -> None:
    # three batches whose time spans overlap: the newest login is not in the newest-ending batch
    sq.insert_batch("gw", "u", 1, [login(MIDNIGHT + 100, "login", "10.0.0.5", "alice"),
                                   http(MIDNIGHT + 900, "C1")])
    sq.insert_batch("gw", "u", 2, [login(MIDNIGHT + 300, "login", "10.0.0.5", "bob"),
                                   login(MIDNIGHT + 50, "login", "10.0.0.6", "carol")])
    sq.insert_batch("gw", "u", 3, [login(MIDNIGHT + 350, "logout", "10.0.0.5", "bob"),
                                   login(MIDNIGHT + 800, "login", "10.0.0.6", "dave")])
    assert (sq.identity_at("10.0.0.5", MIDNIGHT + 320) or {}).get("account") == "bob"
    assert (sq.identity_at("10.0.0.5", MIDNIGHT + 360) or {}).get("account") == "alice"
    assert (sq.identity_at("10.0.0.5", MIDNIGHT + 200) or {}).get("account") == "alice"
    assert sq.identity_at("10.0.0.5", MIDNIGHT + 99) is None
    assert (sq.identity_at("10.0.0.6", MIDNIGHT + 700) or {}).get("account") == "carol"


def test_nat_granules_are_small(sq: SqliteStorage) -> None:
    recs = [nat(MIDNIGHT + i, "create", ("10.0.0.5", 40000 + i), ("198.51.100.7", 20000 + i))
            for i in range(100)]
    granules = prepare(recs)
    assert [g.n for g in granules] == [32, 32, 32, 4]
    sq.insert_batch("gw", "u", 1, recs)
    assert [r["inside_port"] for r in sq.nat_at("198.51.100.7", 20077, MIDNIGHT + 80)] == [40077]


def test_a_batch_of_more_granules_than_a_chunk_takes(tmp_path: Path, sq: SqliteStorage) -> None:
    n = CHUNK_GRANULES * 32 + 100  # NAT granules of 32: two chunks in one file
    recs = [nat(MIDNIGHT + i * 0.001, "create", ("10.0.0.5", 1024 + i % 60000),
                ("198.51.100.7", 1024 + i % 60000), remote=("203.0.113.1", 1 + i // 60000)) for i in range(n)]
    granules = prepare(recs)
    assert [g.part for g in granules if g.keys is not None] == [0, CHUNK_GRANULES]
    assert sq.insert_batch("gw", "u", 1, recs).accepted == n
    for i in (0, 31, 32, CHUNK_GRANULES * 32 - 1, CHUNK_GRANULES * 32, n - 1):
        got = sq.nat_at("198.51.100.7", 1024 + i % 60000, MIDNIGHT + i * 0.001)
        assert [r["inside_port"] for r in got] == [1024 + i % 60000], i
    _keys_of_file(tmp_path / "records-2024-03-01.nat.sqlite")
    conn = sqlite3.connect(tmp_path / "records-2024-03-01.nat.sqlite")
    assert conn.execute("SELECT count(DISTINCT chunk) FROM granules").fetchone() == (2,)
    conn.close()


def _tables(path: Path) -> tuple[int, int]:
    """(rows of ``keys``, chunks in ``fresh_keys``) of a day file."""
    conn = sqlite3.connect(path)
    try:
        return (conn.execute("SELECT count(*) FROM keys").fetchone()[0],
                conn.execute("SELECT count(*) FROM fresh_keys").fetchone()[0])
    finally:
        conn.close()


def test_fresh_keys_are_found_then_indexed_when_a_file_has_enough(
        tmp_path: Path, sq: SqliteStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "INDEX_IDLE", 3600.0)  # only the size rule here
    path = tmp_path / "records-2024-03-01.app.sqlite"
    sq.insert_batch("gw", "u", 1, [http(MIDNIGHT + 1, "C1", src="10.0.0.1", host="one.example")])
    assert _tables(path) == (0, 1) and sq.unindexed_bytes() > 0
    # found while fresh: granule keys (uid) and chunk keys (address) alike
    assert [r["host"] for r in sq.connection("C1")] == ["one.example"]
    assert [r["host"] for r in sq.records(ip="10.0.0.1").records] == ["one.example"]
    monkeypatch.setattr(backend, "INDEX_BATCH_BYTES", 1)
    sq.insert_batch("gw", "u", 2, [http(MIDNIGHT + 2, "C2", src="10.0.0.2", host="two.example")])
    keys, fresh = _tables(path)
    assert keys > 0 and fresh == 0 and sq.unindexed_bytes() == 0
    assert [r["host"] for r in sq.connection("C1")] == ["one.example"]
    assert [r["host"] for r in sq.records(ip="10.0.0.2").records] == ["two.example"]
    _keys_of_file(path)


def test_fresh_keys_of_an_idle_file_are_indexed(tmp_path: Path, sq: SqliteStorage,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "INDEX_IDLE", 0.2)
    sq.insert_batch("gw", "u", 1, [http(MIDNIGHT + 1, "C1", host="one.example")])
    deadline = time.monotonic() + 10
    while sq.unindexed_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sq.unindexed_bytes() == 0
    path = tmp_path / "records-2024-03-01.app.sqlite"
    assert _tables(path)[1] == 0 and _tables(path)[0] > 0
    assert [r["host"] for r in sq.connection("C1")] == ["one.example"]


_CRASH = """
import os, sys
sys.path.insert(0, sys.argv[2])
from storage_records import MIDNIGHT, http
from collector.storage.sqlite import SqliteStorage
sq = SqliteStorage(sys.argv[1])
sq.insert_batch("gw", "u", 1, [http(MIDNIGHT + 1, "C1", src="10.0.0.1", host="one.example")])
os._exit(0)  # no close: the fresh keys stay fresh
"""


def test_fresh_keys_left_by_a_crash_are_found_and_then_indexed(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    subprocess.run([sys.executable, "-c", _CRASH, str(tmp_path), str(Path(__file__).parent)], check=True,
                   env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=60)
    path = tmp_path / "records-2024-03-01.app.sqlite"
    assert _tables(path) == (0, 1)
    monkeypatch.setattr(backend, "INDEX_IDLE", 0.2)
    sq = SqliteStorage(tmp_path)
    try:
        assert [r["host"] for r in sq.records(ip="10.0.0.1").records] == ["one.example"]
        deadline = time.monotonic() + 10
        while sq.unindexed_bytes() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sq.unindexed_bytes() == 0 and _tables(path)[1] == 0
        assert [r["host"] for r in sq.connection("C1")] == ["one.example"]
    finally:
        sq.close()
    _keys_of_file(path)


def test_close_indexes_every_fresh_key(tmp_path: Path) -> None:
    sq = SqliteStorage(tmp_path)
    sq.insert_batch("gw", "u", 1, [http(MIDNIGHT + 1, "C1"), nat(MIDNIGHT + 2, "create", ("10.0.0.5", 4000),
                                                                   ("198.51.100.7", 2000))])
    sq.close()
    for family in ("app", "nat"):
        keys, fresh = _tables(tmp_path / f"records-2024-03-01.{family}.sqlite")
        assert keys > 0 and fresh == 0
