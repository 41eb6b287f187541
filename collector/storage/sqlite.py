"""SQLite storage backend: one database file per UTC day, the embedded default (no service).

What: ``SqliteStorage(data_dir)`` implements ``collector.storage.base.Storage``. Records live
in ``records-YYYY-MM-DD.sqlite`` chosen by the record's ``ts`` (UTC day); batch markers
``(agent, batch_seq)`` live in ``meta.sqlite``. Each row keeps the whole record as JSON text
plus columns extracted for the indexed lookups (addresses, ports, account, uid, a
case-folded search text). Extraction checks types itself instead of trusting the payload.

Why one file per day: retention drops a whole file (unlink, no vacuum) when no legal hold
touches it, and a day's indexes stay small enough to be cached. Queries know from the time
range which files to open; files are opened lazily and at most ``MAX_OPEN_DAYS`` stay open
(least recently used closed first), so a 180-day store does not hold 180 descriptors.

Atomicity: a batch may span midnight and so touch several files, and SQLite cannot commit
several files atomically (ATTACH + WAL is not atomic across files). So:
1. each day's rows go in one transaction (multi-row ``INSERT OR IGNORE`` statements) on a
   unique ``(agent, batch_seq, idx)`` key, ``idx`` being the record's index in the batch;
2. the marker is written to ``meta.sqlite`` last, after every day file committed.
A crash before step 2 leaves rows but no marker: the agent retries the batch (it is not
acknowledged), the rows already stored are ignored by the unique key, the rest inserted,
then the marker written. No duplicate, no loss. The limit: this relies on a retried batch
having the same content (the agent resends it from its spool); a batch with the same
``batch_seq`` but different records *after such a crash* would keep the first rows at each
index. With a marker present, a repeat never touches the day files at all.

Durability: WAL mode everywhere. DESIGN.md asks to acknowledge only after durability, so
both the marker DB and (by default) the day files use ``synchronous=FULL``: in WAL mode that
is one fsync of the WAL per commit, i.e. one or two per batch of thousands of records.
``synchronous=NORMAL`` (``sync="NORMAL"``) survives an application crash but a power loss
may roll back the last commits; with the marker written last, a lost day commit under a
surviving marker would drop an acknowledged batch for good, which is why it is not the
default. Use NORMAL only where the disk has a power-loss-safe cache or for tests. FULL costs
little here: one commit per batch of thousands of records, and the inserts are bound by
index maintenance (bench/bench_collector.py: FULL, NORMAL and OFF within ~10% of each other).

Concurrency: one ``threading.RLock`` serialises all calls on an instance (SQLite has one
writer per file anyway; the HTTP layer calls from a thread pool). One process owns
``data_dir``.

Lookup windows (named limits in ``base``, shared by every backend; older data is not considered):
- ``NAT_DEFAULT_LIFETIME``: a ``nat`` create without a later destroy, or a later create on
  the same outside/remote tuple, is taken to be valid this long (conntrack's established
  TCP timeout). A destroy at exactly ``ts`` still counts as valid at ``ts``.
- ``MAX_SESSION_SPAN``: longest session ``sessions_at`` finds (ts is the session start).
- ``IDENTITY_LOOKBACK``: oldest login ``identity_at`` considers.

Not done here: ``dhcp.uids`` (a list) is not indexed for ``connection``; batch markers are
never pruned (one small row per batch); ``text`` search scans the rows the other filters
leave (no full-text index).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

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
    ExpireResult,
    Hold,
    InsertResult,
    Page,
)
from collector.storage.rows import Row, furthest_sessions, login_in_force, nat_in_force, record_row
from wire.addresses import canonical_ip

#: Day files kept open at once (LRU); a query over more days reopens files as it walks.
MAX_OPEN_DAYS: Final = 16
#: SQLite busy timeout (seconds): another process (backup, sqlite3 shell) holding a lock briefly.
BUSY_TIMEOUT: Final = 10.0

_DAY: Final = 86_400
_DAY_FILE_RE: Final = re.compile(r"records-(\d{4}-\d{2}-\d{2})\.sqlite")
# The nat, addr and account indexes are partial (most records have none of these: only nat
# records have a nat address, only identity records an addr): an insert skips them for those
# rows. Every query on them has ``col = ?``, which implies ``col IS NOT NULL``, so SQLite uses
# them as before. Files made before this keep their full indexes, which answer the same.
_DAY_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    agent TEXT NOT NULL,
    unit TEXT NOT NULL,
    batch_seq INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    type TEXT NOT NULL,
    ts REAL NOT NULL,
    end_ts REAL NOT NULL,
    uid TEXT,
    src_ip TEXT,
    src_port INTEGER,
    dst_ip TEXT,
    dst_port INTEGER,
    nat_ip TEXT,
    nat_port INTEGER,
    addr TEXT,
    account TEXT,
    search TEXT,
    json TEXT NOT NULL,
    UNIQUE (agent, batch_seq, idx)
);
CREATE INDEX IF NOT EXISTS records_ts ON records (ts);
CREATE INDEX IF NOT EXISTS records_type_ts ON records (type, ts);
CREATE INDEX IF NOT EXISTS records_src ON records (src_ip, src_port, ts);
CREATE INDEX IF NOT EXISTS records_dst ON records (dst_ip, ts);
CREATE INDEX IF NOT EXISTS records_nat ON records (nat_ip, nat_port, ts) WHERE nat_ip IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_addr ON records (addr, ts) WHERE addr IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_account ON records (account, ts) WHERE account IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_uid ON records (uid) WHERE uid IS NOT NULL;
"""

_META_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS batches (
    agent TEXT NOT NULL,
    batch_seq INTEGER NOT NULL,
    unit TEXT NOT NULL,
    count INTEGER NOT NULL,
    stored_at REAL NOT NULL,
    PRIMARY KEY (agent, batch_seq)
) WITHOUT ROWID;
"""

_INSERT: Final = (
    "INSERT OR IGNORE INTO records (agent, unit, batch_seq, idx, type, ts, end_ts, uid, src_ip,"
    " src_port, dst_ip, dst_port, nat_ip, nat_port, addr, account, search, json)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT: Final = "SELECT id, ts, agent, unit, json FROM records"
_N_COLS: Final = 18
#: Rows per multi-row INSERT statement (18 parameters each: 18,000 of SQLite's 32,766).
INSERT_CHUNK: Final = 1000
_INSERT_CHUNK_SQL: Final = _INSERT.partition(" VALUES ")[0] + " VALUES " + ", ".join(
    ["(" + ", ".join("?" * _N_COLS) + ")"] * INSERT_CHUNK
)


def _insert_rows(conn: sqlite3.Connection, rows: Sequence[Row]) -> None:
    """Insert ``rows`` (inside the caller's transaction), ``INSERT_CHUNK`` rows per statement.

    Why not ``executemany``: it runs one statement per row and re-takes the GIL after each,
    and in the collector another thread (decoding the next batch) holds the GIL most of the
    time; each re-take then waits out the interpreter's switch interval (5 ms), which made
    inserts ~10x slower under load (bench/bench_collector.py). One statement of a thousand
    rows re-takes the GIL once per thousand rows, and SQLite also runs it a little faster.
    """
    full = len(rows) - len(rows) % INSERT_CHUNK
    for i in range(0, full, INSERT_CHUNK):
        conn.execute(_INSERT_CHUNK_SQL, [v for row in rows[i : i + INSERT_CHUNK] for v in row])
    if full < len(rows):
        conn.execute(
            _INSERT.partition(" VALUES ")[0] + " VALUES " + ", ".join(
                ["(" + ", ".join("?" * _N_COLS) + ")"] * (len(rows) - full)
            ),
            [v for row in rows[full:] for v in row],
        )

# --- days and cursors ------------------------------------------------------------------------


def _day_of(ts: float) -> str:
    return datetime.fromtimestamp(math.floor(ts / _DAY) * _DAY, UTC).strftime("%Y-%m-%d")


def _day_start(day: str) -> float:
    return datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()


def _encode_cursor(day: str, row_id: int, ts: float) -> str:
    # float.hex keeps the exact ts, so the next page starts exactly after the last row.
    raw = f"{day}|{row_id}|{ts.hex()}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, int, float]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        day, row_id, ts_hex = raw.split("|")
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
            raise ValueError(day)
        return day, int(row_id), float.fromhex(ts_hex)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ValueError("invalid cursor") from None


def _record(row: Row) -> dict[str, Any]:
    """A stored row (id, ts, agent, unit, json) back to the record plus provenance keys."""
    rec: dict[str, Any] = orjson.loads(row[4])
    rec[AGENT_KEY] = row[2]
    rec[UNIT_KEY] = row[3]
    return rec


def _hold_clause(holds: Sequence[Hold]) -> tuple[str, list[Any]]:
    """SQL (fixed fragments only) and parameters true for a row matched by any hold."""
    clauses: list[str] = []
    params: list[Any] = []
    for h in holds:
        parts: list[str] = []
        # IS, not =: a NULL account must give false, never NULL (NOT NULL would keep the row
        # out of the DELETE and report it as neither deleted nor held).
        if h.unit is not None:
            parts.append("unit IS ?")
            params.append(h.unit)
        if h.account is not None:
            parts.append("account IS ?")
            params.append(h.account)
        if h.start is not None:
            parts.append("ts >= ?")
            params.append(h.start)
        if h.end is not None:
            parts.append("ts < ?")
            params.append(h.end)
        clauses.append("(" + (" AND ".join(parts) or "1") + ")")
    return ("(" + " OR ".join(clauses) + ")" if clauses else "0"), params


class SqliteStorage:
    """The ``Storage`` protocol on per-day SQLite files under ``data_dir`` (see module doc)."""

    def __init__(self, data_dir: Path, *, sync: Literal["FULL", "NORMAL"] = "FULL") -> None:
        self._dir = Path(data_dir)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._sync = sync
        self._lock = threading.RLock()
        self._open_days: OrderedDict[str, sqlite3.Connection] = OrderedDict()
        # The marker DB is always FULL: it is what makes a batch count as acknowledged.
        self._meta = self._connect(self._dir / "meta.sqlite", "FULL", _META_SCHEMA)
        self._closed = False

    # -- connections --

    @staticmethod
    def _connect(path: Path, sync: str, schema: str) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a batch is one transaction.
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=" + ("FULL" if sync == "FULL" else "NORMAL"))
        conn.executescript(schema)
        return conn

    def _path(self, day: str) -> Path:
        return self._dir / f"records-{day}.sqlite"

    def _day_conn(self, day: str) -> sqlite3.Connection:
        conn = self._open_days.get(day)
        if conn is not None:
            self._open_days.move_to_end(day)
            return conn
        conn = self._connect(self._path(day), self._sync, _DAY_SCHEMA)
        self._open_days[day] = conn
        while len(self._open_days) > MAX_OPEN_DAYS:
            _, old = self._open_days.popitem(last=False)
            old.close()
        return conn

    def _days(self, lo: float | None = None, hi: float | None = None) -> list[str]:
        """Existing day files, oldest first, whose day may hold a ts in [lo, hi]."""
        days = sorted(
            m.group(1) for p in self._dir.iterdir() if (m := _DAY_FILE_RE.fullmatch(p.name)) is not None
        )
        first = _day_of(lo) if lo is not None else None
        last = _day_of(hi) if hi is not None else None
        return [d for d in days if (first is None or d >= first) and (last is None or d <= last)]

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("storage is closed")

    # -- ingest --

    def insert_batch(
        self, agent: str, unit: str, batch_seq: int, records: Sequence[Mapping[str, Any]]
    ) -> InsertResult:
        # Build every row first, outside the lock: a bad record refuses the batch before any
        # file is touched, and this Python work of one batch overlaps another batch's SQLite
        # work (which runs without the GIL) instead of queueing behind it.
        by_day: dict[str, list[Row]] = {}
        # keyed by _day_of's own day number, so _day_of runs once per day, not once per row
        day_rows: dict[int, list[Row]] = {}
        for idx, rec in enumerate(records):
            row = record_row(agent, unit, batch_seq, idx, rec)
            rows = day_rows.get(key := math.floor(row[5] / _DAY))
            if rows is None:
                rows = day_rows[key] = by_day.setdefault(_day_of(row[5]), [])
            rows.append(row)
        with self._lock:
            self._check_open()
            prior = self._marker(agent, batch_seq)
            if prior is not None:
                return InsertResult(accepted=prior, duplicate=True)
            for day in sorted(by_day):
                conn = self._day_conn(day)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    _insert_rows(conn, by_day[day])
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            # The marker last: see "Atomicity" in the module docstring.
            cur = self._meta.execute(
                "INSERT OR IGNORE INTO batches (agent, batch_seq, unit, count, stored_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (agent, batch_seq, unit, len(records), time.time()),
            )
            if cur.rowcount == 0:  # another process wrote it meanwhile; the rows were ignored
                prior = self._marker(agent, batch_seq)
                return InsertResult(accepted=prior or 0, duplicate=True)
            return InsertResult(accepted=len(records), duplicate=False)

    def _marker(self, agent: str, batch_seq: int) -> int | None:
        row = self._meta.execute(
            "SELECT count FROM batches WHERE agent = ? AND batch_seq = ?", (agent, batch_seq)
        ).fetchone()
        return None if row is None else int(row[0])

    # -- queries --

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
        params: list[Any] = []
        if type is not None:
            where.append("type = ?")
            params.append(type)
        if start is not None:
            where.append("ts >= ?")
            params.append(start)
        if end is not None:
            where.append("ts < ?")
            params.append(end)
        if ip is not None:
            where.append("(src_ip = ? OR dst_ip = ? OR nat_ip = ? OR addr = ?)")
            params.extend([canonical_ip(ip)] * 4)
        if account is not None:
            where.append("account = ?")
            params.append(account)
        if text is not None:
            where.append("instr(search, ?) > 0")
            params.append(text.casefold())
        after = _decode_cursor(cursor) if cursor is not None else None
        with self._lock:
            self._check_open()
            days = self._days(start, end)
            if after is not None:
                days = [d for d in days if d >= after[0]]
            need = limit + 1  # one more than the page tells whether another page exists
            found: list[tuple[str, Row]] = []
            for day in days:
                clauses, args = list(where), list(params)
                if after is not None and day == after[0]:
                    clauses.append("(ts > ? OR (ts = ? AND id > ?))")
                    args.extend([after[2], after[2], after[1]])
                sql = _SELECT + (" WHERE " + " AND ".join(clauses) if clauses else "")
                sql += " ORDER BY ts, id LIMIT ?"
                args.append(need - len(found))
                found.extend((day, row) for row in self._day_conn(day).execute(sql, args))
                if len(found) >= need:
                    break
        page = found[:limit]
        next_cursor = None
        if len(found) > limit:
            day, row = page[-1]
            next_cursor = _encode_cursor(day, int(row[0]), float(row[1]))
        return Page(records=[_record(row) for _, row in page], cursor=next_cursor)

    def _select(self, days: Sequence[str], where: str, params: Sequence[Any]) -> Iterator[tuple[str, Row]]:
        """(day, row) of every day file in ``days`` matching ``where``, each day by ts, id."""
        for day in days:
            sql = f"{_SELECT} WHERE {where} ORDER BY ts, id"  # `where` is a fixed fragment
            for row in self._day_conn(day).execute(sql, params):
                yield day, row

    # The lookups below write ``+type``: the unary plus keeps SQLite's planner (no ANALYZE
    # statistics) off ``records_type_ts``, which it would otherwise prefer and which walks every
    # record of that type in the lookback window (days of sessions: seconds on a busy store);
    # the address index (``records_nat``/``records_src``/``records_addr``) finds a handful.

    def nat_at(self, ip: str, port: int, ts: float, proto: str | None = None) -> list[dict[str, Any]]:
        ip = canonical_ip(ip)
        lo, hi = ts - NAT_DEFAULT_LIFETIME, ts + NAT_CLOCK_SLACK
        with self._lock:
            self._check_open()
            rows = list(
                self._select(
                    self._days(lo, hi),
                    "nat_ip = ? AND nat_port = ? AND +type = 'nat' AND ts >= ? AND ts <= ?",
                    (ip, port, lo, hi),
                )
            )
        return nat_in_force((_record(row) for _, row in rows), ts, proto)

    def sessions_at(self, ip: str, port: int, ts: float, *, outside: bool,
                    proto: str | None = None) -> list[dict[str, Any]]:
        ip = canonical_ip(ip)
        # Column names come from this fixed choice, never from input.
        cols = "nat_ip = ? AND nat_port = ?" if outside else "src_ip = ? AND src_port = ?"
        lo = ts - MAX_SESSION_SPAN
        hi = ts + SESSION_TOLERANCE
        with self._lock:
            self._check_open()
            rows = list(
                self._select(
                    self._days(lo, hi),
                    cols + " AND +type = 'session' AND ts >= ? AND ts <= ? AND end_ts >= ?",
                    (ip, port, lo, hi, ts - SESSION_TOLERANCE),
                )
            )
        return furthest_sessions((_record(row) for _, row in rows), proto)

    def identity_at(self, ip: str, ts: float) -> dict[str, Any] | None:
        ip = canonical_ip(ip)
        lo = ts - IDENTITY_LOOKBACK
        with self._lock:
            self._check_open()
            # Newest day first, newest row first (login_in_force stops at the answer).
            rows = (row for day in reversed(self._days(lo, ts)) for row in self._day_conn(day).execute(
                _SELECT + " WHERE addr = ? AND +type = 'login' AND ts >= ? AND ts <= ?"
                " ORDER BY ts DESC, id DESC",
                (ip, lo, ts),
            ))
            return login_in_force(_record(row) for row in rows)

    def connection(self, uid: str, *, agent: str | None = None, start: float | None = None,
                   end: float | None = None) -> list[dict[str, Any]]:
        where = "uid = ?"
        params: list[Any] = [uid]
        if agent is not None:
            where += " AND agent = ?"
            params.append(agent)
        if start is not None:
            where += " AND ts >= ?"
            params.append(start)
        if end is not None:
            where += " AND ts <= ?"
            params.append(end)
        with self._lock:
            self._check_open()
            # One indexed probe per day file that may hold the window (every day without one).
            days = self._days(start, end)
            return [_record(row) for _, row in self._select(days, where, tuple(params))]

    # -- retention --

    def expire(self, before: float, holds: Sequence[Hold]) -> ExpireResult:
        hold_sql, hold_params = _hold_clause(holds)
        deleted = held = 0
        dropped: list[str] = []
        with self._lock:
            self._check_open()
            for day in self._days(None, before):
                if _day_start(day) >= before:
                    continue
                conn = self._day_conn(day)
                whole = _day_start(day) + _DAY <= before
                n_held = int(
                    conn.execute(
                        f"SELECT count(*) FROM records WHERE ts < ? AND {hold_sql}", [before, *hold_params]
                    ).fetchone()[0]
                )
                if whole and n_held == 0:
                    # Fast path: nothing held in this day, drop the file.
                    deleted += int(conn.execute("SELECT count(*) FROM records").fetchone()[0])
                    self._drop_day(day)
                    dropped.append(day)
                    continue
                conn.execute("BEGIN IMMEDIATE")
                try:
                    cur = conn.execute(
                        f"DELETE FROM records WHERE ts < ? AND NOT {hold_sql}", [before, *hold_params]
                    )
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                deleted += cur.rowcount
                held += n_held
        return ExpireResult(deleted=deleted, days_dropped=dropped, held=held)

    def _drop_day(self, day: str) -> None:
        conn = self._open_days.pop(day, None)
        if conn is not None:
            conn.close()
        path = self._path(day)
        # The -wal/-shm files first would be wrong only with a reader open; we closed ours.
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)

    # -- misc --

    def count(self) -> int:
        with self._lock:
            self._check_open()
            return sum(
                int(self._day_conn(d).execute("SELECT count(*) FROM records").fetchone()[0])
                for d in self._days()
            )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            while self._open_days:
                _, conn = self._open_days.popitem()
                conn.close()
            self._meta.close()
