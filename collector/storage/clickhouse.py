"""ClickHouse storage backend: the scale-out store (many collectors, one ClickHouse cluster).

What: ``ClickHouseStorage(url, database)`` implements ``collector.storage.base.Storage`` over
ClickHouse's HTTP interface through aiohttp. Tables in ``database`` (created if missing; all
DDL is rendered by ``schema_ddl`` from one column list, ``COLUMN_TYPES``):
- ``records``: ``MergeTree() PARTITION BY day ORDER BY (type, ts, ins, agent, batch_seq, idx)``;
  ``day`` is the record's UTC day as ``UInt32`` YYYYMMDD, computed here (not with
  ``toYYYYMMDD`` on the server, whose result depends on the server's time zone). Columns
  mirror the SQLite backend's extracted columns (agent, unit, batch_seq, idx, type, ts,
  end_ts, uid, src/dst/nat ip and port, addr, account, search, json) plus ``ins``, the
  batch's insertion stamp (see ordering). ``records`` answers ``records`` and ``count``.
- lookup tables, the same columns and partitions, each sorted by the key of one traceback
  lookup and holding only the rows that lookup can want:
  ``records_by_nat`` (nat and session rows by ``nat_ip, nat_port, type``: ``nat_at`` and
  ``sessions_at(outside=True)``), ``records_by_src`` (sessions by ``src_ip, src_port``),
  ``records_by_addr`` (logins by ``addr``: ``identity_at``), ``records_by_uid`` (every row
  with a uid: ``connection``). Each is filled by a ``MATERIALIZED VIEW ... TO`` it on
  ``records``. A sort key cannot be Nullable on 18.16, so a Nullable key column enters the
  key as ``ifNull(col, '')``/``ifNull(col, 0)`` (the view takes only rows where it is set) and
  lookups compare that same expression, the form ClickHouse matches against the primary
  index: a lookup reads the granules of its key and time range, not every row of its type in
  the window (``tests/collector/storage/test_clickhouse_lookups.py`` runs them under
  ``max_rows_to_read``). (No data-skipping indexes: 18.16 has none to rely on.)
- ``batches``: ``MergeTree() ORDER BY (agent, batch_seq)``, the batch markers, one row per
  state change (``done`` 0 = rows being written, 1 = stored), each with the batch's digest
  (hex SHA-256 of its records as sent, ``wire.envelope.records_digest``; ``''`` for markers
  written before digests were kept, to which the column was added at open).

Why views rather than inserting into each lookup table from here: one INSERT per batch, the
fan-out done by the server next to the data, and on a cluster the views run on each shard's
local tables, so a collector only ever writes ``records`` (the Distributed table). Nothing
else changes: a retried batch re-inserts ``records`` and so re-fires the views with the same
full sort keys (``_KEY_TAIL`` ends every table's key), and reads drop the copies with the same
``LIMIT 1 BY``; retention drops a day partition from every table (lookups first, ``records``
last, so a crash half-way leaves the day in ``records`` for the next ``expire`` to finish;
dropping an absent partition is a no-op) and runs the partial-day delete, with the same hold
expression (lookup rows carry unit, account and ts), on every table, so a held record stays
findable by the lookups. The cost is storage: a session is stored up to four times (json
dominates; ClickHouse compresses it).

Upgrade: a store created before the lookup tables gets them on the next open, and each new
lookup table is backfilled from ``records`` with ``INSERT ... SELECT`` right after its view is
created (so no row falls between the two; a row inserted concurrently may land twice and is
dropped at read). The backfill runs once, when the view is new; if the process dies during
it, ``DROP TABLE <lookup>_mv`` and reopen to run it again.

Cluster (``cluster=NAME``): the tables already exist, created from ``cluster_ddl`` (the
script in ``deploy/clickhouse/cluster.sql``): ``<table>_local`` ReplicatedMergeTree tables
with the same columns, partitions and sort keys, views between the local tables, and
Distributed tables under the single-node names, so reads and inserts are unchanged (inserts
are synchronous, ``insert_distributed_sync``, so a batch marker is there for the next
request); retention alters the ``_local`` tables ``ON CLUSTER`` and waits for mutations on
``cluster(NAME, system, mutations)``. ``records`` and ``batches`` shard by
``cityHash64(agent, batch_seq)``: a batch, its retries and its marker land on one shard.

Constraints of the ClickHouse Debian ships (18.16, the CI server) that shape the SQL:
- no query parameters (``{name:Type}`` arrived in 19.x): every value is a literal built by
  ``_str_lit`` (backslash, quote and control characters escaped) or ``_num_lit`` (finite
  numbers via ``repr``, integers via ``int``); identifiers are checked against a strict regex.
  Never anything else is pasted into SQL.
- no ``TTL``, ``IPv4``, ``LowCardinality``, ``mutations_sync``: retention drops partitions, and
  a partial-day delete is an ``ALTER TABLE ... DELETE`` mutation whose completion is polled in
  ``system.mutations``.
- 64-bit integers come back quoted in JSON output; ``int()`` takes both forms.
- in a view, ``SELECT f(col) AS col ... WHERE g(col)`` filters on the alias, not the column,
  and a view does not cast Nullable to non-Nullable: hence the ``ifNull`` key expressions
  rather than non-Nullable key columns.

Ordering: every read orders by ``(ts, ins, agent, batch_seq, idx)``; ``ins`` is a nanosecond
stamp taken once per batch (monotonic within a process), so ties on ts keep insertion order
(batch, then index within the batch) and the cursor is that 5-tuple, compared as a tuple,
valid across partitions.

Idempotency / atomicity (ClickHouse has no transactions):
1. read the markers of ``(agent, batch_seq)``: one with another digest means other records
   under a used number, refused (``BatchConflict``) with nothing written; a ``done`` one
   means duplicate; a ``pending`` one (an earlier attempt died mid-way) gives back that
   attempt's ``ins``;
2. otherwise write a ``pending`` marker carrying a fresh ``ins``;
3. insert every row in one HTTP INSERT (one block per day partition; the views fill the
   lookup tables from the same blocks);
4. write the ``done`` marker with the record count.
A retry after a crash between 2 and 4 re-inserts rows with the *same* full sort key, so the
copies are adjacent and every read removes them with ``LIMIT 1 BY agent, batch_seq, idx``
(``count`` counts distinct keys, ``expire`` counts distinct keys deleted/held). As with SQLite,
this needs a retried batch to have the same content, which the digest of step 1 checks.

Limits: two collectors inserting the same ``(agent, batch_seq)`` at the same moment can both
see no marker and both answer "not duplicate" (rows are still deduplicated at read; one
agent talks to one collector in practice), and with other records each can store its own
(a read then takes each index's row from either: the digest check is per collector, under
its per-agent lock); on a cluster the same holds while a marker has not yet reached the
replica a collector reads. ClickHouse acknowledges an INSERT once the part is
written, without fsync (18.16 has no ``fsync_after_insert``): durability against power loss
comes from replication, not from this backend. ``dhcp.uids`` is not indexed for
``connection``; batch markers are never pruned; ``text`` search is a substring scan;
``records(account=...)``/``records(ip=...)`` scan ``records`` by type and time (no lookup
table for them).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math
import re
import threading
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import aiohttp
import orjson

from collector.storage.base import (
    AGENT_KEY,
    IDENTITY_LOOKBACK,
    MAX_PAGE,
    MAX_SESSION_SPAN,
    NAT_CLOCK_SLACK,
    NAT_DEFAULT_LIFETIME,
    SESSION_TOLERANCE,
    UNIT_KEY,
    BatchConflict,
    ExpireResult,
    Hold,
    InsertResult,
    Page,
    StorageUnavailable,
)
from collector.storage.rows import furthest_sessions, login_in_force, nat_in_force, record_row
from wire.addresses import canonical_ip
from wire.envelope import records_digest

log = logging.getLogger("edgeaudit.collector")

#: Seconds one HTTP request may take.
REQUEST_TIMEOUT: Final = 120.0
#: Seconds ``expire`` waits for its delete mutation to finish.
MUTATION_TIMEOUT: Final = 300.0

_DAY: Final = 86_400
_IDENT_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1

_COLUMNS: Final = (
    "agent", "unit", "batch_seq", "idx", "type", "ts", "end_ts", "uid", "src_ip", "src_port",
    "dst_ip", "dst_port", "nat_ip", "nat_port", "addr", "account", "search", "json",
)  # fmt: skip

#: Every column of ``records`` and of each lookup table, in table order (the one column list:
#: single-node and cluster DDL are both rendered from it by ``schema_ddl``).
COLUMN_TYPES: Final = (
    ("day", "UInt32"), ("ins", "UInt64"), ("agent", "String"), ("unit", "String"),
    ("batch_seq", "Int64"), ("idx", "UInt32"), ("type", "String"), ("ts", "Float64"),
    ("end_ts", "Float64"), ("uid", "Nullable(String)"), ("src_ip", "Nullable(String)"),
    ("src_port", "Nullable(Int64)"), ("dst_ip", "Nullable(String)"), ("dst_port", "Nullable(Int64)"),
    ("nat_ip", "Nullable(String)"), ("nat_port", "Nullable(Int64)"), ("addr", "Nullable(String)"),
    ("account", "Nullable(String)"), ("search", "Nullable(String)"), ("json", "String"),
)  # fmt: skip

BATCH_COLUMN_TYPES: Final = (
    ("agent", "String"), ("batch_seq", "Int64"), ("unit", "String"), ("ins", "UInt64"),
    ("done", "UInt8"), ("count", "UInt64"), ("stored_at", "Float64"), ("digest", "String"),
)  # fmt: skip
#: Columns ``batches`` gained after its first layout: added to an older store at open (its
#: markers read ``''``: digest unknown, matching any content).
BATCH_COLUMNS_ADDED: Final = ("digest",)

#: The sort-key tail every record table shares: a retried batch's copies are adjacent.
_KEY_TAIL: Final = ("ts", "ins", "agent", "batch_seq", "idx")


@dataclass(frozen=True, slots=True)
class _Table:
    """One table holding records: ``key`` leads its sort key (then ``_KEY_TAIL``); a lookup
    table (``rows`` not None) takes the records matching ``rows``, through its view."""

    name: str
    key: tuple[str, ...]
    rows: str | None = None


RECORDS: Final = _Table("records", ("type",))
#: Lookup tables: nat_at and sessions_at(outside=True), sessions_at(outside=False),
#: identity_at, connection.
BY_NAT: Final = _Table("records_by_nat", ("nat_ip", "nat_port", "type"), "type IN ('nat', 'session')")
BY_SRC: Final = _Table("records_by_src", ("src_ip", "src_port"), "type = 'session'")
BY_ADDR: Final = _Table("records_by_addr", ("addr",), "type = 'login'")
BY_UID: Final = _Table("records_by_uid", ("uid",), "1")
LOOKUPS: Final = (BY_NAT, BY_SRC, BY_ADDR, BY_UID)
#: Every table with record rows; retention drops a day from each, lookups first.
RECORD_TABLES: Final = (*LOOKUPS, RECORDS)


def _key_expr(column: str) -> str:
    """A sort-key expression for ``column``: a key cannot be Nullable (18.16), so a Nullable
    one is wrapped in ``ifNull``; lookups compare the same expression, which uses the index."""
    ctype = dict(COLUMN_TYPES)[column]
    if not ctype.startswith("Nullable("):
        return column
    default = "''" if ctype == "Nullable(String)" else "0"
    return f"ifNull({column}, {default})"


def _nullable(column: str) -> bool:
    return dict(COLUMN_TYPES)[column].startswith("Nullable(")


def _order_by(table: _Table) -> str:
    return "(" + ", ".join([*(_key_expr(c) for c in table.key), *_KEY_TAIL]) + ")"


def _view_select(table: _Table, source: str) -> str:
    """The rows of ``source`` (a records table) that ``table`` holds: its ``rows`` filter with
    every key column set (a record without the key is never looked up by it)."""
    assert table.rows is not None
    rows = [table.rows] if table.rows != "1" else []
    where = " AND ".join([*rows, *(f"isNotNull({c})" for c in table.key if _nullable(c))])
    return f"SELECT {', '.join(n for n, _ in COLUMN_TYPES)} FROM {source} WHERE {where}"


def _columns_sql(columns: Sequence[tuple[str, str]]) -> str:
    return ",\n".join(f"    {name} {ctype}" for name, ctype in columns)


def schema_ddl(database: str, *, cluster: str | None = None) -> list[str]:
    """The DDL of the store, one statement per item, from ``COLUMN_TYPES`` and the tables above.

    Single node (``cluster`` None): ``MergeTree`` tables under the names the backend reads and
    writes, and a ``MATERIALIZED VIEW ... TO`` per lookup table. Cluster: each table as
    ``<name>_local`` (``ReplicatedMergeTree``, ZooKeeper path ``/clickhouse/tables/{shard}/
    <database>/<name>``, replica ``{replica}``: macros of each server's config) plus a
    ``Distributed`` table ``<name>`` over it on every server, everything ``ON CLUSTER``; the
    views read ``records_local`` and fill ``<lookup>_local`` on the shard the rows land on.
    Same columns, partitioning and sort keys either way.
    """
    db = _ident(database)
    on = f" ON CLUSTER {_ident(cluster)}" if cluster is not None else ""
    suffix = "_local" if cluster is not None else ""

    def engine(name: str) -> str:
        if cluster is None:
            return "MergeTree()"
        return f"ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{database}/{name}', '{{replica}}')"

    def table(name: str, columns: Sequence[tuple[str, str]], tail: str) -> list[str]:
        cols = _columns_sql(columns)
        out = [
            f"CREATE TABLE IF NOT EXISTS {db}.{_ident(name + suffix)}{on} (\n{cols}\n)"
            f" ENGINE = {engine(name)} {tail}"
        ]
        if cluster is not None:
            # rows of a batch (and of its retries) go to one shard: LIMIT 1 BY sees the copies
            # together, and the batch marker sits with them
            shard_by = ", cityHash64(agent, batch_seq)" if name in ("records", "batches") else ""
            out.append(
                f"CREATE TABLE IF NOT EXISTS {db}.{_ident(name)}{on} (\n{cols}\n)"
                f" ENGINE = Distributed({_ident(cluster)}, {db}, {_ident(name + suffix)}{shard_by})"
            )
        return out

    stmts = [f"CREATE DATABASE IF NOT EXISTS {db}{on}"]
    for t in RECORD_TABLES[::-1]:  # records first: the views read it
        stmts += table(t.name, COLUMN_TYPES, f"PARTITION BY day ORDER BY {_order_by(t)}")
        if t.rows is not None:
            src = f"{db}.{_ident(RECORDS.name + suffix)}"
            stmts.append(
                f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{_ident(t.name + '_mv')}{on}"
                f" TO {db}.{_ident(t.name + suffix)} AS {_view_select(t, src)}"
            )
    stmts += table("batches", BATCH_COLUMN_TYPES, "ORDER BY (agent, batch_seq)")
    return stmts


def cluster_ddl(cluster: str, database: str) -> str:
    """``schema_ddl`` for a cluster as one SQL script (``deploy/clickhouse/cluster.sql``)."""
    head = (
        "-- Generated by collector.storage.clickhouse.cluster_ddl"
        f"({cluster!r}, {database!r}); do not edit.\n"
        "-- Apply once, on any one server of the cluster (statements run ON CLUSTER).\n\n"
    )
    return head + "".join(s + ";\n\n" for s in schema_ddl(database, cluster=cluster)).rstrip("\n") + "\n"


#: Row order of every read; duplicates of a retried batch share it, so LIMIT 1 BY drops them.
_ORDER: Final = "ORDER BY ts, ins, agent, batch_seq, idx LIMIT 1 BY agent, batch_seq, idx"
_FIELDS: Final = "ts, ins, agent, unit, batch_seq, idx, json"

_T = TypeVar("_T")


# --- literals: the only way values reach SQL ---------------------------------------------------

_ESCAPES: Final = {
    "\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r",
    "\t": "\\t", "\0": "\\0", "\b": "\\b", "\f": "\\f",
}  # fmt: skip
_ESCAPE_RE: Final = re.compile(r"[\\'\n\r\t\0\b\f]")


def _str_lit(value: str) -> str:
    """A ClickHouse string literal for ``value`` (backslash, quote and control chars escaped)."""
    return "'" + _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], value) + "'"


def _num_lit(value: float | int) -> str:
    """A numeric literal: ints as they are, floats by their shortest exact ``repr``."""
    if type(value) is int:
        return str(value)
    f = float(value)
    if not math.isfinite(f):
        raise ValueError(f"not a finite number: {value!r}")
    return repr(f)


def _ident(name: str) -> str:
    if not _IDENT_RE.fullmatch(name):
        raise ValueError(f"invalid ClickHouse identifier: {name!r}")
    return f"`{name}`"


# --- days and cursors --------------------------------------------------------------------------


def _day_num(ts: float) -> int:
    """UTC day of ``ts`` as YYYYMMDD (the partition value)."""
    return int(datetime.fromtimestamp(math.floor(ts / _DAY) * _DAY, UTC).strftime("%Y%m%d"))


def _day_name(day: int) -> str:
    s = f"{day:08d}"
    return f"{s[:4]}-{s[4:6]}-{s[6:]}"


def _day_start(day: int) -> float:
    return datetime.strptime(f"{day:08d}", "%Y%m%d").replace(tzinfo=UTC).timestamp()


Key = tuple[float, int, str, int, int]


def _encode_cursor(key: Key) -> str:
    ts, ins, agent, batch_seq, idx = key
    raw = orjson.dumps([ts.hex(), ins, agent, batch_seq, idx])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> Key:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts_hex, ins, agent, batch_seq, idx = orjson.loads(raw)
        if not (type(ins) is int and type(agent) is str and type(batch_seq) is int and type(idx) is int):
            raise ValueError(cursor)
        ts = float.fromhex(ts_hex)
        if not math.isfinite(ts):
            raise ValueError(cursor)
        return ts, ins, agent, batch_seq, idx
    except (ValueError, TypeError, UnicodeDecodeError, binascii.Error, orjson.JSONDecodeError):
        raise ValueError("invalid cursor") from None


def _record(row: Mapping[str, Any]) -> dict[str, Any]:
    rec: dict[str, Any] = orjson.loads(row["json"])
    rec[AGENT_KEY] = row["agent"]
    rec[UNIT_KEY] = row["unit"]
    return rec


def _key(row: Mapping[str, Any]) -> Key:
    return float(row["ts"]), int(row["ins"]), str(row["agent"]), int(row["batch_seq"]), int(row["idx"])


def _hold_clause(holds: Sequence[Hold]) -> str:
    """An expression (UInt8, never NULL) true for a row matched by any hold."""
    clauses: list[str] = []
    for h in holds:
        parts: list[str] = []
        if h.unit is not None:
            parts.append(f"unit = {_str_lit(h.unit)}")
        if h.account is not None:
            # ifNull: a NULL account must give 0, or NOT(...) would be NULL too
            parts.append(f"ifNull(account = {_str_lit(h.account)}, 0)")
        if h.start is not None:
            parts.append(f"ts >= {_num_lit(h.start)}")
        if h.end is not None:
            parts.append(f"ts < {_num_lit(h.end)}")
        clauses.append("(" + (" AND ".join(parts) or "1") + ")")
    return "(" + " OR ".join(clauses) + ")" if clauses else "0"


def _int64_or_none(v: Any) -> int | None:
    return v if type(v) is int and _INT64_MIN <= v <= _INT64_MAX else None


class ClickHouseStorage:
    """The ``Storage`` protocol on a ClickHouse database over HTTP (see the module doc).

    ``session``: an ``aiohttp.ClientSession`` to share, with ``loop`` the event loop it
    belongs to, running in another thread; both stay the caller's. Without them the store
    runs a private loop in a daemon thread with its own session, closed by ``close``.
    ``cluster``: the ClickHouse cluster whose tables ``deploy/clickhouse/cluster.sql`` created
    (nothing is created here). ``settings``: ClickHouse settings sent with every request
    (e.g. ``max_execution_time``, ``max_rows_to_read``).
    """

    def __init__(
        self,
        url: str,
        database: str,
        *,
        session: aiohttp.ClientSession | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        cluster: str | None = None,
        settings: Mapping[str, str | int] | None = None,
    ) -> None:
        self._url = url
        self._cluster = cluster
        self._on_cluster = f" ON CLUSTER {_ident(cluster)}" if cluster is not None else ""
        self._settings = {_ident(k).strip("`"): str(v) for k, v in (settings or {}).items()}
        self._database = database
        self._db = _ident(database)
        self._lock = threading.RLock()
        self._agent_locks: dict[str, threading.Lock] = {}
        self._last_ins = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        if session is not None:
            if loop is None:
                raise ValueError("a shared session needs the event loop it runs on")
            self._loop = loop
            self._session = session
            self._own_session = False
        else:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="clickhouse-io", daemon=True)
            self._thread.start()
            self._session = self._run(self._new_session())
            self._own_session = True
        # whether ``batches`` has every column of BATCH_COLUMN_TYPES (see _add_batch_columns)
        self._digests = True
        try:
            if cluster is None:
                self._create_schema()
            else:
                self._digests = not self._missing_batch_columns()
                if not self._digests:
                    log.warning(
                        "ClickHouse cluster %s: %s.batches has no digest column (made by an older"
                        " deploy/clickhouse/cluster.sql): a batch number used again for other records"
                        " is taken for a duplicate until it is added: ALTER TABLE %s.batches_local ON"
                        " CLUSTER %s ADD COLUMN digest String, and ALTER TABLE %s.batches ADD COLUMN"
                        " digest String on every server", cluster, database, database, cluster, database)
        except BaseException:
            self.close()
            raise

    def _create_schema(self) -> None:
        """Create what is missing; a lookup table new to an existing store is backfilled
        from ``records`` (after its view exists, so no row falls between the two)."""
        tables = {
            str(r["name"])
            for r in self._rows(
                f"SELECT name FROM system.tables WHERE database = {_str_lit(self._database)}",
                database="default",
            )
        }
        for stmt in schema_ddl(self._database):
            self._execute(stmt, database="default")
        if RECORDS.name not in tables:
            return
        self._add_batch_columns()
        for t in LOOKUPS:
            if t.name + "_mv" not in tables:
                # rows a concurrent insert also gave the new view are stored twice: reads drop
                # the copy (LIMIT 1 BY), as for a retried batch
                self._execute(f"INSERT INTO {_ident(t.name)} {_view_select(t, _ident(RECORDS.name))}")

    def _missing_batch_columns(self) -> list[str]:
        """``BATCH_COLUMNS_ADDED`` that ``batches`` lacks (a store made by an older version)."""
        have = {str(r["name"]) for r in self._rows(
            f"SELECT name FROM system.columns WHERE database = {_str_lit(self._database)}"
            " AND table = 'batches'", database="default")}
        return [c for c in BATCH_COLUMNS_ADDED if c not in have]

    def _add_batch_columns(self) -> None:
        """Add what ``_missing_batch_columns`` names (18.16 has no ``ADD COLUMN IF NOT EXISTS``).
        On a cluster the collector creates nothing: the operator runs the ALTERs its warning
        names, and meanwhile markers are written and read without a digest."""
        types = dict(BATCH_COLUMN_TYPES)
        for column in self._missing_batch_columns():
            self._execute(f"ALTER TABLE {_ident('batches')} ADD COLUMN {_ident(column)} {types[column]}")

    # -- HTTP --

    @staticmethod
    async def _new_session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT))

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _post(self, params: dict[str, str], body: bytes) -> bytes:
        async with self._session.post(self._url, params=params, data=body) as resp:
            data = await resp.read()
            if resp.status != 200:
                raise StorageUnavailable(f"ClickHouse error {resp.status}: "
                                         f"{data.decode(errors='replace')[:2000]}")
            return data

    def _execute(self, sql: str, *, database: str | None = None) -> bytes:
        """Run one statement (in the body of a POST) and return the raw answer."""
        if self._closed:
            raise RuntimeError("storage is closed")
        params = {**self._settings, "database": database or self._database}
        return self._run(self._post(params, sql.encode()))

    def _rows(self, sql: str, *, database: str | None = None) -> list[dict[str, Any]]:
        raw = self._execute(sql + " FORMAT JSONEachRow", database=database)
        return [orjson.loads(line) for line in raw.splitlines() if line.strip()]

    def _insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if self._closed:
            raise RuntimeError("storage is closed")
        body = b"\n".join(orjson.dumps(r) for r in rows)
        params = {
            **self._settings,
            "database": self._database,
            "query": f"INSERT INTO {_ident(table)} FORMAT JSONEachRow",
        }
        if self._cluster is not None:
            # a Distributed insert is queued and sent later unless synchronous: the batch
            # marker must be readable by the next request
            params["insert_distributed_sync"] = "1"
        self._run(self._post(params, body))

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("storage is closed")

    # -- ingest --

    def _agent_lock(self, agent: str) -> threading.Lock:
        with self._lock:
            lock = self._agent_locks.get(agent)
            if lock is None:
                lock = self._agent_locks[agent] = threading.Lock()
            return lock

    def _next_ins(self) -> int:
        self._last_ins = max(time.time_ns(), self._last_ins + 1)
        return self._last_ins

    def insert_batch(
        self, agent: str, unit: str, batch_seq: int, records: Sequence[Mapping[str, Any]],
        digest: bytes | None = None,
    ) -> InsertResult:
        self._check_open()
        # Build every row first, outside any lock: a bad record refuses the batch before
        # anything is written, and one agent's rows are built while another's are sent.
        built = [record_row(agent, unit, batch_seq, idx, rec) for idx, rec in enumerate(records)]
        content = (records_digest(records) if digest is None else digest).hex()
        # One batch of an agent at a time (a resend racing its original); different agents'
        # batches go to ClickHouse concurrently (the requests run on the event loop thread).
        with self._agent_lock(agent):
            self._check_open()
            markers = self._rows(
                f"SELECT ins, done, count{', digest' if self._digests else ''} FROM batches"
                f" WHERE agent = {_str_lit(agent)} AND batch_seq = {_num_lit(batch_seq)}"
            )
            for m in markers:
                if m.get("digest") and m["digest"] != content:
                    raise BatchConflict(batch_seq, "stored" if any(int(m["done"]) for m in markers)
                                        else "partly stored")
            for m in markers:
                if int(m["done"]):
                    return InsertResult(accepted=int(m["count"]), duplicate=True)
            if markers:  # an earlier attempt died before its done marker: reuse its stamp
                ins = int(markers[0]["ins"])
            else:
                with self._lock:
                    ins = self._next_ins()
                self._insert("batches", [self._marker(agent, batch_seq, unit, ins, 0, len(records), content)])
            rows = []
            for r in built:
                row = dict(zip(_COLUMNS, r, strict=True))
                for port in ("src_port", "dst_port", "nat_port"):
                    row[port] = _int64_or_none(row[port])
                row["day"] = _day_num(row["ts"])
                row["ins"] = ins
                rows.append(row)
            if rows:
                self._insert("records", rows)
            self._insert("batches", [self._marker(agent, batch_seq, unit, ins, 1, len(records), content)])
            return InsertResult(accepted=len(records), duplicate=False)

    def _marker(self, agent: str, batch_seq: int, unit: str, ins: int, done: int, count: int,
                digest: str) -> dict[str, Any]:
        marker: dict[str, Any] = {
            "agent": agent, "batch_seq": batch_seq, "unit": unit, "ins": ins,
            "done": done, "count": count, "stored_at": time.time(),
        }  # fmt: skip
        if self._digests:
            marker["digest"] = digest
        return marker

    # -- queries --

    def _select(
        self, where: Sequence[str], *, table: _Table = RECORDS, limit: int | None = None
    ) -> list[dict[str, Any]]:
        sql = f"SELECT {_FIELDS} FROM {_ident(table.name)}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " " + _ORDER
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._rows(sql)

    def records(
        self,
        *,
        type: str | None = None,
        start: float | None = None,
        end: float | None = None,
        ip: str | None = None,
        account: str | None = None,
        text: str | None = None,
        limit: int = MAX_PAGE,
        cursor: str | None = None,
    ) -> Page:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        limit = min(limit, MAX_PAGE)
        where: list[str] = []
        if type is not None:
            where.append(f"type = {_str_lit(type)}")
        if start is not None:
            where.append(f"ts >= {_num_lit(start)}")
            where.append(f"day >= {_day_num(start)}")
        if end is not None:
            where.append(f"ts < {_num_lit(end)}")
            where.append(f"day <= {_day_num(end)}")
        if ip is not None:
            lit = _str_lit(canonical_ip(ip))
            where.append(f"(src_ip = {lit} OR dst_ip = {lit} OR nat_ip = {lit} OR addr = {lit})")
        if account is not None:
            where.append(f"account = {_str_lit(account)}")
        if text is not None:
            where.append(f"position(search, {_str_lit(text.casefold())}) > 0")
        if cursor is not None:
            ts, ins, agent, batch_seq, idx = _decode_cursor(cursor)
            where.append(
                f"(ts, ins, agent, batch_seq, idx) > ({_num_lit(ts)}, {_num_lit(ins)},"
                f" {_str_lit(agent)}, {_num_lit(batch_seq)}, {_num_lit(idx)})"
            )
            where.append(f"day >= {_day_num(ts)}")
        with self._lock:
            self._check_open()
            found = self._select(where, limit=limit + 1)
        page = found[:limit]
        next_cursor = _encode_cursor(_key(page[-1])) if len(found) > limit else None
        return Page(records=[_record(row) for row in page], cursor=next_cursor)

    @staticmethod
    def _keyed(table: _Table, *values: str | int) -> list[str]:
        """``table``'s leading key columns equal to ``values``, compared as the key expression
        itself (``ifNull(...)``): the form ClickHouse matches against the primary index."""
        out = []
        for column, value in zip(table.key, values, strict=False):
            lit = _str_lit(value) if isinstance(value, str) else _num_lit(value)
            out.append(f"{_key_expr(column)} = {lit}")
        return out

    @staticmethod
    def _range(lo: float, hi: float) -> list[str]:
        return [
            f"ts >= {_num_lit(lo)}",
            f"ts <= {_num_lit(hi)}",
            f"day >= {_day_num(lo)}",
            f"day <= {_day_num(hi)}",
        ]

    def nat_at(self, ip: str, port: int, ts: float, proto: str | None = None) -> list[dict[str, Any]]:
        ip = canonical_ip(ip)
        lo, hi = ts - NAT_DEFAULT_LIFETIME, ts + NAT_CLOCK_SLACK
        with self._lock:
            self._check_open()
            rows = self._select([*self._keyed(BY_NAT, ip, port, "nat"), *self._range(lo, hi)], table=BY_NAT)
        return nat_in_force((_record(row) for row in rows), ts, proto)

    def sessions_at(self, ip: str, port: int, ts: float, *, outside: bool,
                    proto: str | None = None) -> list[dict[str, Any]]:
        ip = canonical_ip(ip)
        table = BY_NAT if outside else BY_SRC
        lo = ts - MAX_SESSION_SPAN
        hi = ts + SESSION_TOLERANCE
        with self._lock:
            self._check_open()
            rows = self._select(
                [
                    *self._keyed(table, ip, port, "session"),
                    "type = 'session'",
                    f"end_ts >= {_num_lit(ts - SESSION_TOLERANCE)}",
                    *self._range(lo, hi),
                ],
                table=table,
            )
        return furthest_sessions((_record(row) for row in rows), proto)

    def identity_at(self, ip: str, ts: float) -> dict[str, Any] | None:
        ip = canonical_ip(ip)
        lo = ts - IDENTITY_LOOKBACK
        with self._lock:
            self._check_open()
            rows = self._select(
                [*self._keyed(BY_ADDR, ip), "type = 'login'", *self._range(lo, ts)], table=BY_ADDR
            )
        return login_in_force(_record(row) for row in reversed(rows))

    def connection(self, uid: str, *, agent: str | None = None, start: float | None = None,
                   end: float | None = None) -> list[dict[str, Any]]:
        where = self._keyed(BY_UID, uid)
        if agent is not None:
            where.append(f"agent = {_str_lit(agent)}")
        if start is not None:
            where += [f"ts >= {_num_lit(start)}", f"day >= {_day_num(start)}"]
        if end is not None:
            where += [f"ts <= {_num_lit(end)}", f"day <= {_day_num(end)}"]
        with self._lock:
            self._check_open()
            return [_record(row) for row in self._select(where, table=BY_UID)]

    # -- retention --

    def _local(self, table: _Table, *, qualified: bool = True) -> str:
        """Where ``table``'s rows are stored: itself, or on a cluster its ``_local`` table."""
        name = table.name + ("_local" if self._cluster is not None else "")
        return f"{self._db}.{_ident(name)}" if qualified else name

    def expire(self, before: float, holds: Sequence[Hold]) -> ExpireResult:
        hold = _hold_clause(holds)
        old = f"ts < {_num_lit(before)}"
        deleted = held = 0
        dropped: list[str] = []
        partial: list[int] = []
        with self._lock:
            self._check_open()
            stats = self._rows(
                "SELECT day, uniqExact(agent, batch_seq, idx) AS total,"
                f" uniqExactIf(agent, batch_seq, idx, {old}) AS n_old,"
                f" uniqExactIf(agent, batch_seq, idx, {old} AND {hold}) AS n_held"
                f" FROM records WHERE day <= {_day_num(before)} GROUP BY day ORDER BY day"
            )
            for s in stats:
                day, total, n_old, n_held = int(s["day"]), int(s["total"]), int(s["n_old"]), int(s["n_held"])
                if _day_start(day) >= before:
                    continue
                if _day_start(day) + _DAY <= before and n_held == 0:
                    # lookups first: a crash half-way leaves the day in records, which the next
                    # expire reads and drops again (dropping a missing partition is a no-op)
                    for t in RECORD_TABLES:
                        self._execute(
                            f"ALTER TABLE {self._local(t)}{self._on_cluster} DROP PARTITION {_num_lit(day)}"
                        )
                    deleted += total
                    dropped.append(_day_name(day))
                    continue
                held += n_held
                if n_old > n_held:
                    deleted += n_old - n_held
                    partial.append(day)
            if partial:
                days = ", ".join(_num_lit(d) for d in partial)
                for t in RECORD_TABLES:
                    self._execute(
                        f"ALTER TABLE {self._local(t)}{self._on_cluster}"
                        f" DELETE WHERE day IN ({days}) AND {old} AND NOT {hold}"
                    )
                self._wait_mutations()
        return ExpireResult(deleted=deleted, days_dropped=dropped, held=held)

    def _wait_mutations(self) -> None:
        """Block until no mutation of a records table is pending (18.16 has no mutations_sync);
        on a cluster, on one replica of every shard (the ``cluster`` table function)."""
        deadline = time.monotonic() + MUTATION_TIMEOUT
        delay = 0.01
        while True:
            source = "system.mutations"
            if self._cluster is not None:
                source = f"cluster({_ident(self._cluster)}, system, mutations)"
            names = ", ".join(_str_lit(self._local(t, qualified=False)) for t in RECORD_TABLES)
            (row,) = self._rows(
                f"SELECT count() AS n FROM {source} WHERE database = "
                f"{_str_lit(self._database)} AND table IN ({names}) AND is_done = 0"
            )
            if int(row["n"]) == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"records mutation still running after {MUTATION_TIMEOUT}s")
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    # -- misc --

    def count(self) -> int:
        with self._lock:
            self._check_open()
            (row,) = self._rows("SELECT uniqExact(agent, batch_seq, idx) AS n FROM records")
            return int(row["n"])

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._own_session:
                self._run(self._session.close())
            if self._thread is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=10)
                self._loop.close()
