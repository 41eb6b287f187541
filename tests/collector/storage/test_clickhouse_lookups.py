"""ClickHouse backend: the traceback lookups read their keyed tables by primary-key range.

Each lookup (``nat_at``, ``sessions_at`` both ways, ``identity_at``, ``connection``) runs under
``max_rows_to_read`` smaller than the rows of its type in the window: it passes only if
ClickHouse reads the key's granules, not the table (a scan of ``records`` by type and time,
the layout before the lookup tables, is shown to trip the same limit). Also: a store created
before the lookup tables existed is backfilled on open, and retention drops a day from every
table while a held record stays findable.
"""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from clickhouse_server import ClickHouseServer, find_binary
from storage_records import DAY, MIDNIGHT, login, nat, session

from collector.storage import Hold
from collector.storage.clickhouse import LOOKUPS, RECORD_TABLES, ClickHouseStorage

pytestmark = pytest.mark.skipif(
    find_binary() is None, reason="clickhouse-server is not installed (apt-get install clickhouse-server)"
)

#: Rows of each kind: several index granules (8192 rows) per table.
N = 30_000
#: Less than a scan of N rows, more than the two granules a key range can straddle.
LIMIT = 3 * 8192
T = MIDNIGHT + 3600.0  # everything in one day partition
OUT_IP = "192.0.2.1"


def _query(server: ClickHouseServer, sql: str, **settings: str) -> bytes:
    qs = "&".join(f"{k}={v}" for k, v in settings.items())
    req = urllib.request.Request(server.url + ("?" + qs if qs else ""), data=sql.encode())
    with urllib.request.urlopen(req, timeout=60) as resp:
        data: bytes = resp.read()
        return data


def _bulk() -> list[dict[str, Any]]:
    recs: list[dict[str, Any]] = []
    for i in range(N):
        port = 1024 + i
        ts = T + i * 0.01
        inside = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        recs.append(
            {
                "type": "nat", "ts": ts, "event": "create", "proto": "tcp",
                "inside_ip": inside, "inside_port": 40000, "outside_ip": OUT_IP, "outside_port": port,
                "remote_ip": "203.0.113.9", "remote_port": 80,
            }
        )  # fmt: skip
        recs.append(
            {
                "type": "session", "ts": ts, "uid": f"C{i}", "proto": "tcp", "src_ip": "10.0.0.5",
                "src_port": port, "dst_ip": "203.0.113.9", "dst_port": 80, "duration": 1.0,
                "nat_ip": OUT_IP, "nat_port": port,
            }
        )  # fmt: skip
        recs.append(
            {
                "type": "login", "ts": ts, "event": "login", "account": f"user{i}", "ip": inside,
                "mac": None, "calling_station": None, "source": "radius", "session_id": f"s{i}",
                "duration": None,
            }
        )  # fmt: skip
    return recs


@pytest.fixture(scope="module")
def loaded(clickhouse_server: ClickHouseServer) -> Iterator[str]:
    """A database holding the bulk records; yields its name."""
    database = f"t_{uuid.uuid4().hex}"
    store = ClickHouseStorage(clickhouse_server.url, database)
    try:
        recs = _bulk()
        for start in range(0, len(recs), 30_000):
            store.insert_batch("gw", "u", start, recs[start : start + 30_000])
    finally:
        store.close()
    yield database


@pytest.fixture
def limited(clickhouse_server: ClickHouseServer, loaded: str) -> Iterator[ClickHouseStorage]:
    """The loaded store, every query of which may read at most ``LIMIT`` rows."""
    store = ClickHouseStorage(clickhouse_server.url, loaded, settings={"max_rows_to_read": LIMIT})
    yield store
    store.close()


def test_lookups_read_only_their_key_range(limited: ClickHouseStorage) -> None:
    i = N // 2
    port = 1024 + i
    (mapping,) = limited.nat_at(OUT_IP, port, T + i * 0.01 + 0.5)
    assert (mapping["outside_port"], mapping["inside_ip"]) == (port, f"10.0.{i // 256 % 256}.{i % 256}")
    assert [r["uid"] for r in limited.sessions_at(OUT_IP, port, T + i * 0.01, outside=True)] == [f"C{i}"]
    assert [r["uid"] for r in limited.sessions_at("10.0.0.5", port, T + i * 0.01, outside=False)] == [f"C{i}"]
    who = limited.identity_at(mapping["inside_ip"], T + DAY / 2)
    assert who is not None and who["account"] == f"user{i}"
    assert [r["type"] for r in limited.connection(f"C{i}")] == ["session"]


def test_a_scan_trips_the_same_limit(clickhouse_server: ClickHouseServer, limited: ClickHouseStorage) -> None:
    """The limit is real: a query without the key (and the pre-lookup-table form of nat_at,
    ``records`` by type and time) reads more than ``LIMIT`` rows and is refused."""
    with pytest.raises(RuntimeError, match="Limit for rows"):
        limited.records(type="nat", ip="10.0.58.152")
    loaded = limited._database
    port = 1024 + N // 2
    old_nat_at = (
        f"SELECT json FROM {loaded}.records WHERE type = 'nat' AND nat_ip = '{OUT_IP}'"
        f" AND nat_port = {port} AND ts >= {T - 432000} AND ts <= {T + DAY} FORMAT JSONEachRow"
    )
    assert b"outside_port" in _query(clickhouse_server, old_nat_at)
    with pytest.raises(urllib.error.HTTPError):
        _query(clickhouse_server, old_nat_at, max_rows_to_read=str(LIMIT))


def _parts(server: ClickHouseServer, database: str) -> dict[str, set[str]]:
    raw = _query(
        server,
        f"SELECT table, partition FROM system.parts WHERE database = '{database}' AND active"
        " FORMAT TabSeparated",
    )
    out: dict[str, set[str]] = {}
    for line in raw.decode().splitlines():
        table, partition = line.split("\t")
        out.setdefault(table, set()).add(partition)
    return out


@pytest.fixture
def store(clickhouse_server: ClickHouseServer) -> Iterator[ClickHouseStorage]:
    s = ClickHouseStorage(clickhouse_server.url, f"t_{uuid.uuid4().hex}")
    yield s
    s.close()


def _few() -> list[dict[str, Any]]:
    return [
        nat(MIDNIGHT - 60, "create", ("10.0.0.1", 1000), (OUT_IP, 40000)),
        session(MIDNIGHT - 50, "C1", "10.0.0.1", 1000, nat_ip=OUT_IP, nat_port=40000, account="alice"),
        login(MIDNIGHT - 70, "login", "10.0.0.1", "alice"),
        session(MIDNIGHT + 50, "C2", "10.0.0.2", 2000, nat_ip=OUT_IP, nat_port=40001),
    ]


def test_lookup_tables_are_backfilled_on_open(
    clickhouse_server: ClickHouseServer, store: ClickHouseStorage
) -> None:
    store.insert_batch("gw", "u", 1, _few())
    database = store._database
    store.close()
    # what a store created by the old DDL looks like: records and batches only
    for t in LOOKUPS:
        _query(clickhouse_server, f"DROP TABLE {database}.{t.name}_mv")
        _query(clickhouse_server, f"DROP TABLE {database}.{t.name}")
    reopened = ClickHouseStorage(clickhouse_server.url, database)
    try:
        assert [r["inside_ip"] for r in reopened.nat_at(OUT_IP, 40000, MIDNIGHT)] == ["10.0.0.1"]
        assert [r["uid"] for r in reopened.sessions_at(OUT_IP, 40001, MIDNIGHT + 55, outside=True)] == ["C2"]
        who = reopened.identity_at("10.0.0.1", MIDNIGHT)
        assert who is not None and who["account"] == "alice"
        assert [r["uid"] for r in reopened.connection("C1")] == ["C1"]
        # and the new views fill them from here on, once: a reopen does not backfill again
        reopened.insert_batch("gw", "u", 2, [session(MIDNIGHT + 60, "C3", "10.0.0.3", 3000)])
        assert [r["uid"] for r in reopened.sessions_at("10.0.0.3", 3000, MIDNIGHT + 61, outside=False)] == [
            "C3"
        ]
    finally:
        reopened.close()
    again = ClickHouseStorage(clickhouse_server.url, database)
    try:
        raw = _query(clickhouse_server, f"SELECT count() FROM {database}.records_by_uid")
        assert int(raw) == 3  # C1, C2, C3: no second backfill
        assert len(again.connection("C1")) == 1
    finally:
        again.close()


def test_retention_drops_a_day_from_every_table(
    clickhouse_server: ClickHouseServer, store: ClickHouseStorage
) -> None:
    store.insert_batch("gw", "u", 1, _few())
    # a day with no row for any lookup table: its drop skips partitions they do not have
    store.insert_batch(
        "gw", "u", 2, [{"type": "weird", "ts": MIDNIGHT - 2 * DAY, "name": "w", "detail": None}]
    )
    database = store._database
    day_before, day_after = "20240229", "20240301"
    parts = _parts(clickhouse_server, database)
    assert {t.name for t in RECORD_TABLES} <= set(parts)
    # a hold on alice keeps her session (and so its lookup rows) on the old day
    result = store.expire(MIDNIGHT, [Hold(account="alice")])
    assert result.held == 2 and result.days_dropped == ["2024-02-28"]
    assert [r["uid"] for r in store.sessions_at("10.0.0.1", 1000, MIDNIGHT - 45, outside=False)] == ["C1"]
    assert [r["uid"] for r in store.sessions_at(OUT_IP, 40000, MIDNIGHT - 45, outside=True)] == ["C1"]
    assert store.nat_at(OUT_IP, 40000, MIDNIGHT) == []
    # without the hold the whole day goes, from records and from each lookup table
    result = store.expire(MIDNIGHT, [])
    assert result.days_dropped == ["2024-02-29"]
    parts = _parts(clickhouse_server, database)
    for t in RECORD_TABLES:
        assert day_before not in parts.get(t.name, set()), t.name
    assert day_after in parts["records_by_nat"] and day_after in parts["records"]
    assert [r["uid"] for r in store.sessions_at(OUT_IP, 40001, MIDNIGHT + 55, outside=True)] == ["C2"]
