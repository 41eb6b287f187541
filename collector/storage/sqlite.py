"""SQLite storage backend: files per UTC day and record-type family, the embedded default.

What: ``SqliteStorage(data_dir)`` implements ``collector.storage.base.Storage``. Records live
in ``records-YYYY-MM-DD.FAMILY.sqlite`` (day of the record's ``ts``; families ``flow``, ``nat``,
``app``, ``identity``, ``event``: ``collector.storage.granules.FAMILIES``, DESIGN.md's "one
database file per day and record type family"); batch markers ``(agent, batch_seq)``, each
with its batch's digest (``wire.envelope.records_digest``), live in ``meta.sqlite``.

Layout (why: issue 5's ≥ 100k records/s, see ``collector.storage.granules``): a file holds
*granules*, rows of up to 256 records packed as zstd msgpack with their time span, record
types, search text and provenance (agent, unit), and ``keys``, a ``WITHOUT ROWID`` table of
64-bit lookup keys pointing at the granules that hold them (outside and inside address and
port, uid) or at the *chunk* (a batch's granules in one file, ``granules.chunk``) that holds
them (address, account). A lookup probes ``keys``, decodes the granules found and tests each
of their records exactly (``collector.storage.rows.record_columns``), so a key collision costs
a decode, never a wrong answer. Per record this costs ~1.5 integer keys and ~100 bytes on
disk, where a row per record with text indexes cost five random B-tree inserts and ~670 bytes.
(The keys of recent batches wait in ``fresh_keys`` first: "Index" below.)
Ingest workers pack granules in other processes (``insert_prepared``); ``insert_batch`` packs
them in the calling thread.

Index: a batch's keys do not go into ``keys`` with it. They are committed with its granules
as the chunk's JSON key lists in ``fresh_keys`` (one small row per chunk, an append), and a
file's fresh keys move into ``keys`` in one transaction, in key order, once it has gathered
``INDEX_BATCH_BYTES`` of them (~50k keys), or once no batch wrote to it for ``INDEX_IDLE``
(the indexer thread), and at ``close``. Why: the keys of one batch land all over its hour of
the index, and a B-tree page dirtied by a commit is written to the WAL (and checkpointed)
once per commit, however few keys it took; a key per commit cost ~3.4 µs, ~1.4 µs when
~50k keys share the commit (bench/bench_collector.py: SQLite's work per record halved). A
lookup reads ``keys`` and scans the fresh lists (at most ``INDEX_BATCH_BYTES`` of JSON per
file, in SQLite's C), so a record is found from the moment its batch is acknowledged. A
crash loses nothing: the fresh rows are committed with their granules, and a file opened
with some left has them indexed once idle. Retention indexes a file before it reads holds.

Why files per day: retention drops a whole file (unlink, no vacuum) when no legal hold
touches it, and a day's keys stay small enough to be cached. Queries know from the time range
(and the record type) which files to open; files are opened lazily and at most
``MAX_OPEN_FILES`` stay open (least recently used closed first).

Order: every read returns records by (ts, family, granule, index in the granule), i.e. by
``ts`` and, for equal ``ts``, in a fixed order; the record search's cursor carries that key.
``records`` opens granules in order of their earliest ``ts`` and stops once no later granule
can hold an earlier record than the page's last.

Atomicity: a batch may span midnight and families and so touch several files, and SQLite
cannot commit several files atomically (ATTACH + WAL is not atomic across files). So:
1. a *pending* marker (``done`` = 0) with the batch's digest goes into ``meta.sqlite`` first;
2. each file's granules go in one transaction, on a unique ``(agent, batch_seq, part)`` key,
   ``part`` being the granule's number in the batch (``prepare`` is deterministic);
3. the marker is marked done last, after every file committed.
A crash (or a failed commit) before step 3 leaves granules and a pending marker: the agent
retries the batch (it is not acknowledged), the granules already stored are ignored by the
unique key (with their keys, committed with them), the rest inserted, then the marker marked
done. No duplicate, no loss. That needs the retry to hold the same records, and the digest
says whether it does: other records under a used ``(agent, batch_seq)``, pending or done,
are refused (``BatchConflict``) before anything is written, so they are neither dropped as
a duplicate nor mixed into another batch's granules. A repeat of a stored batch never
touches the files. The pending marker is not fsynced (a process crash keeps it; a power loss
may take it with the last commits: then a retry under the number is not compared).

Turns (why: one agent's batch must not stall the others): a batch of records on hundreds of
days writes hundreds of files (creating one costs ~40 ms of fsyncs here; 1,500 days took
11.6 s under the lock before, while another agent's 20 records waited). Each holder of the
lock runs one *turn* for every batch queued: it starts the new ones (step 1), commits files,
those of the batches with the fewest files left first, for at most ``TURN_SECONDS`` (always at
least one file), marks the finished ones done (step 3) and lets go. The lock (``FairLock``) is
granted in arrival order, so a batch arriving while another is half-way is committed within
about two turns, ~0.1 s plus one file's transaction each, while the big one advances a turn
at a time (``tests/collector/test_hostile_ingest.py``). The records of a batch being stored
may be read before it is acknowledged (as after a crash); they are its records.

Durability: WAL mode everywhere. DESIGN.md asks to acknowledge only after durability, so
both the marker DB and (by default) the files use ``synchronous=FULL``: in WAL mode that is
one fsync of the WAL per commit, i.e. a few per batch of thousands of records.
``synchronous=NORMAL`` (``sync="NORMAL"``) survives an application crash but a power loss
may roll back the last commits; with the marker written last, a lost commit under a
surviving marker would drop an acknowledged batch for good, which is why it is not the
default.

Retention: ``expire`` drops whole files nothing held touches; otherwise it deletes old
granules no hold may cover and rewrites the others with what is newer or held (a granule's
records, keys and span are recomputed, so its id stays and an old cursor stays valid).

Concurrency: one ``FairLock`` serialises all calls on an instance (SQLite has one writer per
file anyway; the HTTP layer calls from a thread pool); an ingest call holds it a turn at a
time. One process owns ``data_dir``.

Lookup windows (named limits in ``base``, shared by every backend; older data is not considered):
- ``NAT_DEFAULT_LIFETIME``: a ``nat`` create without a later destroy, or a later create on
  the same outside/remote tuple, is taken to be valid this long (conntrack's established
  TCP timeout). A destroy at exactly ``ts`` still counts as valid at ``ts``.
- ``MAX_SESSION_SPAN``: longest session ``sessions_at`` finds (ts is the session start).
- ``IDENTITY_LOOKBACK``: oldest login ``identity_at`` considers.

Not done here: ``dhcp.uids`` (a list) is not indexed for ``connection``; batch markers are
never pruned (one small row per batch); ``text`` search reads the granules whose joined
search text holds the string (a substring test in SQLite, no full-text index); files of the
earlier row-per-record layout (``records-YYYY-MM-DD.sqlite``) are not read: a data directory
holding them is refused at start with that message.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import heapq
import itertools
import math
import re
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

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
)
from collector.storage.fairlock import FairLock
from collector.storage.granules import (
    FAMILY_NAMES,
    Granule,
    day_of,
    family_of,
    granule_keys,
    prepare,
    records_with,
    regranule,
    unpack,
    unpack_some,
)
from collector.storage.keys import (
    CHUNK_KINDS,
    KIND_ACCOUNT,
    KIND_ENDPOINT,
    KIND_IP,
    KIND_OUTSIDE,
    KIND_UID,
    keys_between,
)
from collector.storage.rows import Columns, furthest_sessions, login_in_force, nat_in_force, record_columns
from wire.addresses import canonical_ip
from wire.envelope import packed_records, records_digest

#: Files kept open at once (LRU); a query over more days reopens files as it walks.
MAX_OPEN_FILES: Final = 32
#: SQLite busy timeout (seconds): another process (backup, sqlite3 shell) holding a lock briefly.
BUSY_TIMEOUT: Final = 10.0
#: Fresh keys (bytes of their JSON, ~20 per key) a file gathers before they go into its
#: ``keys`` in one transaction (module doc, "Index"): ~50k keys, ~25k records.
INDEX_BATCH_BYTES: Final = 1 << 20
#: A file written to no more for this long (seconds) has its fresh keys indexed then.
INDEX_IDLE: Final = 0.5
#: Seconds of file commits a turn starts at most (module doc, "Turns"): a batch spread over
#: many day files (creating one costs ~40 ms of fsyncs here) keeps no other waiting longer.
TURN_SECONDS: Final = 0.05
#: Page cache per open file, KiB. SQLite's default (2 MiB) makes every key insert of a busy
#: day a page read once the key index outgrows it: 68k records/s with it, 102k with 256 MiB
#: (bench/bench_collector.py). Only pages really used are allocated.
CACHE_KIB: Final = 262_144

_DAY: Final = 86_400
_FILE_RE: Final = re.compile(r"records-(\d{4}-\d{2}-\d{2})\.(" + "|".join(FAMILY_NAMES) + r")\.sqlite")
_FAMILY_RANK: Final[dict[str, int]] = {f: i for i, f in enumerate(FAMILY_NAMES)}
_ROW_LAYOUT_RE: Final = re.compile(r"records-\d{4}-\d{2}-\d{2}\.sqlite")

_DAY_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS granules (
    id INTEGER PRIMARY KEY,
    agent TEXT NOT NULL,
    unit TEXT NOT NULL,
    batch_seq INTEGER NOT NULL,
    part INTEGER NOT NULL,
    ts_min REAL NOT NULL,
    ts_max REAL NOT NULL,
    end_max REAL NOT NULL,
    n INTEGER NOT NULL,
    types TEXT NOT NULL,
    search TEXT,
    data BLOB NOT NULL,
    rindex BLOB NOT NULL,
    chunk INTEGER,
    UNIQUE (agent, batch_seq, part)
);
CREATE INDEX IF NOT EXISTS granules_ts ON granules (ts_min);
CREATE INDEX IF NOT EXISTS granules_chunk ON granules (chunk);
CREATE TABLE IF NOT EXISTS keys (
    key INTEGER NOT NULL,
    gid INTEGER NOT NULL,
    PRIMARY KEY (key, gid)
) WITHOUT ROWID;
-- Chunks whose keys are not in ``keys`` yet (module doc, "Index"): committed with the chunk,
-- moved into ``keys`` by ``_index_fresh``; lookups read both.
CREATE TABLE IF NOT EXISTS fresh_keys (
    chunk INTEGER PRIMARY KEY,
    keys BLOB NOT NULL,
    chunk_keys BLOB NOT NULL
);
"""

_META_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS batches (
    agent TEXT NOT NULL,
    batch_seq INTEGER NOT NULL,
    unit TEXT NOT NULL,
    count INTEGER NOT NULL,
    stored_at REAL NOT NULL,
    digest BLOB,                      -- SHA-256 of its records as sent; NULL: stored before digests
    done INTEGER NOT NULL DEFAULT 1,  -- 0: its granules are being (or were partly) written
    PRIMARY KEY (agent, batch_seq)
) WITHOUT ROWID;
"""
#: Columns added to ``batches`` since its first layout (added to an older meta.sqlite at open;
#: its markers read as stored, digest unknown).
_META_ADDED: Final = (("digest", "BLOB"), ("done", "INTEGER NOT NULL DEFAULT 1"))
_MARKER_INSERT: Final = (
    "INSERT INTO batches (agent, batch_seq, unit, count, stored_at, digest, done) VALUES (?, ?, ?, ?, ?, ?, ")
_PENDING_MARKER: Final = _MARKER_INSERT + "0)"
# stored, unless another attempt stored it meanwhile (rowcount 0)
_DONE_MARKER: Final = (
    _MARKER_INSERT + "1)"
    " ON CONFLICT (agent, batch_seq) DO UPDATE SET unit = excluded.unit, count = excluded.count,"
    " stored_at = excluded.stored_at, digest = coalesce(digest, excluded.digest), done = 1 WHERE done = 0")

_INSERT_GRANULE: Final = (
    "INSERT INTO granules (id, agent, unit, batch_seq, part, ts_min, ts_max, end_max, n, types,"
    " search, data, rindex, chunk) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# Key sets travel as JSON arrays: json_each unpacks them in C. A chunk's granule keys are each
# key << 8 | its granule's offset from the chunk's first id.
_INSERT_GRANULE_KEYS: Final = (
    "INSERT OR IGNORE INTO keys (key, gid) SELECT value >> 8, ? + (value & 255) FROM json_each(?)")
_INSERT_FRESH: Final = "INSERT INTO fresh_keys (chunk, keys, chunk_keys) VALUES (?, ?, ?)"
# Every fresh chunk's keys into ``keys`` in one statement, in key order (B-tree pages in turn).
_INDEX_FRESH: Final = (
    "INSERT OR IGNORE INTO keys (key, gid) SELECT k, g FROM ("
    " SELECT j.value >> 8 AS k, f.chunk + (j.value & 255) AS g FROM fresh_keys f, json_each(f.keys) j"
    " UNION ALL SELECT j.value, f.chunk FROM fresh_keys f, json_each(f.chunk_keys) j) ORDER BY k")
_SELECT_GRANULE: Final = "SELECT id, agent, unit, data, rindex FROM granules"

FileId = tuple[str, str]  # (day, family)


@dataclass(frozen=True, slots=True)
class _Found:
    """One stored record and where it is: ``order`` sorts records as every read returns them."""

    order: tuple[float, int, int, int]  # (ts, family rank, granule id, index in the granule)
    day: str
    record: dict[str, Any]


# --- days and cursors ------------------------------------------------------------------------


def _day_start(day: str) -> float:
    return datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()


def _encode_cursor(found: _Found) -> str:
    ts, rank, gid, idx = found.order
    # float.hex keeps the exact ts, so the next page starts exactly after the last record.
    raw = f"{found.day}|{ts.hex()}|{rank}|{gid}|{idx}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, tuple[float, int, int, int]]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        day, ts_hex, rank, gid, idx = raw.split("|")
        ts = float.fromhex(ts_hex)
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day) or not math.isfinite(ts):
            raise ValueError(cursor)  # nan/inf compare false with every time: a day skipped
        return day, (ts, int(rank), int(gid), int(idx))
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ValueError("invalid cursor") from None


def _held(holds: Sequence[Hold], unit: str, account: Any, ts: float) -> bool:
    return any(
        (h.unit is None or h.unit == unit)
        and (h.account is None or h.account == account)
        and (h.start is None or ts >= h.start)
        and (h.end is None or ts < h.end)
        for h in holds
    )


RecordTest = Callable[[Columns], bool]


class LayoutError(RuntimeError):
    """The data directory holds files this version does not read."""


@dataclass(slots=True)
class _Pending:
    """A batch in the group-commit queue, and (once stored or refused) its result or error."""

    agent: str
    unit: str
    batch_seq: int
    granules: Sequence[Granule]
    count: int
    digest: bytes | None
    # its granules not committed yet, by file (None: not started; see "Turns")
    todo: dict[FileId, list[Granule]] | None = None
    # the same batch (same digest) already being stored: this one ends with it, as a duplicate
    leader: _Pending | None = None
    followers: list[_Pending] = field(default_factory=list)
    result: InsertResult | None = None
    error: BaseException | None = None

    def finished(self) -> bool:
        return self.result is not None or self.error is not None


class _Marker(NamedTuple):
    """A batch's row in ``meta.sqlite``: its record count, digest, whether it is stored."""

    n: int
    digest: bytes | None
    done: bool


def _differs(a: bytes | None, b: bytes | None) -> bool:
    """Two batches under one number hold other records (an unknown digest matches any)."""
    return a is not None and b is not None and a != b


@contextlib.contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction on ``conn``: committed when the block ends, rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _holding(kind: int, keys: Sequence[int]) -> tuple[str, list[int]]:
    """SQL true for a granule holding any of ``keys`` (of one ``kind``: the hours of one
    value), and its parameters: through the granule's own id, or its chunk's for the kinds
    keyed per chunk (``keys.CHUNK_KINDS``); in ``keys``, or among the fresh keys (a scan of
    at most ``INDEX_BATCH_BYTES`` of JSON, none when the index has caught up)."""
    marks = ", ".join("?" * len(keys))
    if kind in CHUNK_KINDS:
        fresh = f"SELECT f.chunk FROM fresh_keys f, json_each(f.chunk_keys) j WHERE j.value IN ({marks})"
        column = "chunk"
    else:
        fresh = (f"SELECT f.chunk + (j.value & 255) FROM fresh_keys f, json_each(f.keys) j"
                 f" WHERE j.value >> 8 IN ({marks})")
        column = "id"
    return (f"{column} IN (SELECT gid FROM keys WHERE key IN ({marks}) UNION ALL {fresh})",
            [*keys, *keys])


def _day_keys(kind: int, value: str, port: int, day: str, lo: float | None, hi: float | None) -> list[int]:
    return keys_between(kind, value, port, _day_start(day), lo, hi)


class SqliteStorage:
    """The ``Storage`` protocol on per-day, per-family SQLite files of granules (module doc)."""

    def __init__(self, data_dir: Path, *, sync: Literal["FULL", "NORMAL"] = "FULL") -> None:
        self._dir = Path(data_dir)
        self._dir.mkdir(parents=True, exist_ok=True)
        old = sorted(p.name for p in self._dir.iterdir() if _ROW_LAYOUT_RE.fullmatch(p.name))
        if old:
            # Refused rather than ignored: a store that silently skipped them would answer
            # tracebacks over those days with nothing.
            raise LayoutError(
                f"{self._dir} holds {len(old)} day file(s) of the earlier row-per-record layout"
                f" ({old[0]}...), which this version does not read; keep them with the version"
                " that wrote them or move them out of the data directory")
        self._sync = sync
        # first come, first served: a batch committed in turns lets the others in ("Turns")
        self._lock = FairLock()
        self._open: OrderedDict[FileId, sqlite3.Connection] = OrderedDict()
        # batches not finished (insert_prepared); _queue_lock guards the list only
        self._queue_lock = threading.Lock()
        self._queue: list[_Pending] = []
        # (agent, batch_seq) -> the batch being stored under it (started, not finished)
        self._inflight: dict[tuple[str, int], _Pending] = {}
        # The marker DB is always FULL: it is what makes a batch count as acknowledged.
        self._meta = self._connect(self._dir / "meta.sqlite", "FULL", _META_SCHEMA)
        have = {str(row[1]) for row in self._meta.execute("PRAGMA table_info(batches)")}
        for column, decl in _META_ADDED:
            if column not in have:
                self._meta.execute(f"ALTER TABLE batches ADD COLUMN {column} {decl}")
        self._closed = False
        # Files with fresh keys (module doc, "Index"): bytes of their JSON, last write (monotonic)
        self._fresh: dict[FileId, tuple[int, float]] = {}
        self._stop = threading.Event()
        self._indexer = threading.Thread(target=self._index_idle, name="sqlite-indexer", daemon=True)
        self._indexer.start()

    # -- connections --

    @staticmethod
    def _connect(path: Path, sync: str, schema: str) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a batch is one transaction.
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=" + ("FULL" if sync == "FULL" else "NORMAL"))
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        conn.executescript(schema)
        return conn

    def _path(self, f: FileId) -> Path:
        return self._dir / f"records-{f[0]}.{f[1]}.sqlite"

    def _conn(self, f: FileId) -> sqlite3.Connection:
        conn = self._open.get(f)
        if conn is not None:
            self._open.move_to_end(f)
            return conn
        conn = self._connect(self._path(f), self._sync, _DAY_SCHEMA)
        self._open[f] = conn
        if f not in self._fresh:  # left by a crash: indexed when the file goes idle
            (size,) = conn.execute(
                "SELECT total(length(keys) + length(chunk_keys)) FROM fresh_keys").fetchone()
            if size:
                self._fresh[f] = (int(size), 0.0)
        while len(self._open) > MAX_OPEN_FILES:
            old_f, old = next(iter(self._open.items()))
            self._index_file(old_f)
            del self._open[old_f]
            old.close()
        return conn

    def _files(self, lo: float | None = None, hi: float | None = None,
               families: Sequence[str] = FAMILY_NAMES) -> list[FileId]:
        """Existing files of ``families``, oldest day first, whose day may hold a ts in [lo, hi]."""
        first = day_of(lo) if lo is not None else None
        last = day_of(hi) if hi is not None else None
        found = []
        for p in self._dir.iterdir():
            m = _FILE_RE.fullmatch(p.name)
            if m is None or m.group(2) not in families:
                continue
            day = m.group(1)
            if (first is None or day >= first) and (last is None or day <= last):
                found.append((day, m.group(2)))
        return sorted(found, key=lambda f: (f[0], _FAMILY_RANK[f[1]]))

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("storage is closed")

    # -- ingest --

    def insert_batch(
        self, agent: str, unit: str, batch_seq: int, records: Sequence[Mapping[str, Any]],
        digest: bytes | None = None,
    ) -> InsertResult:
        # Packed outside the lock: a bad record refuses the batch before any file is touched,
        # and this Python work overlaps another batch's SQLite work (which runs without the GIL).
        # Each record is packed once, for its granule and the batch's digest.
        payload, offsets = packed_records(records)
        return self.insert_prepared(agent, unit, batch_seq, prepare(records, payload, offsets), len(records),
                                    records_digest(records, payload, offsets) if digest is None else digest)

    def insert_prepared(self, agent: str, unit: str, batch_seq: int, granules: Sequence[Granule],
                        count: int, digest: bytes | None = None) -> InsertResult:
        """Store a batch ``collector.storage.granules.prepare`` packed (maybe in another
        process); ``count`` is its number of records, ``digest`` its content
        (``wire.envelope.records_digest``; None: not compared).

        Group commit: the batch joins the queue of batches waiting to be stored; whichever
        caller gets the lock runs a turn ("Turns" in the module doc) for every batch queued
        by then: their granules in one transaction per file, and one for their markers. With
        several agents uploading at once a commit carries several batches, and a key page
        dirtied by all of them is written to the WAL once instead of once per batch (~25% of
        SQLite's cost per record, bench/bench_collector.py). Alone, a batch commits by itself
        at once; a batch that needs more than a turn takes turns with the others.
        """
        mine = _Pending(agent, unit, batch_seq, granules, count, digest)
        with self._queue_lock:
            self._queue.append(mine)
        while not mine.finished():
            with self._lock:
                if mine.finished():
                    break
                if self._closed:
                    self._finish(mine, error=RuntimeError("storage is closed"))
                    break
                self._turn()
        if mine.error is not None:
            raise mine.error
        assert mine.result is not None
        return mine.result

    def _turn(self) -> None:
        """One turn for every queued batch (caller holds the lock): start the new ones, commit
        files for TURN_SECONDS (fewest files left first), then mark the finished stored."""
        with self._queue_lock:
            group = list(self._queue)
        self._start([p for p in group if p.todo is None and p.leader is None and not p.finished()])
        work = sorted((p for p in group if p.todo is not None and not p.finished()),
                      key=lambda p: len(p.todo or ()))
        if not work:
            return
        written: dict[FileId, int] = {}  # bytes of fresh keys per file
        try:
            self._commit_files(work, written)
            self._commit_markers([p for p in work if not p.todo])
        except BaseException as e:
            for p in work:
                self._finish(p, error=e)
            if not isinstance(e, Exception):
                raise
        finally:
            # their keys, once a file has gathered enough (committed granules' keys count
            # even when a later file of the turn failed)
            now = time.monotonic()
            for f, size in written.items():
                self._fresh[f] = (self._fresh.get(f, (0, now))[0] + size, now)
        for f in written:
            if self._fresh.get(f, (0, 0.0))[0] >= INDEX_BATCH_BYTES:
                with contextlib.suppress(sqlite3.Error):  # the batches are stored; indexed when idle
                    self._index_file(f)

    def _start(self, starting: Sequence[_Pending]) -> None:
        """Decide each new batch against the markers and the batches in flight: a duplicate
        is answered, other content under a used number refused (``BatchConflict``), the same
        batch in flight followed; the rest get their work list and, when new, a pending
        marker (with their digest, before any granule: a later batch under their number
        is compared with it even if this attempt stops half-way)."""
        new: list[_Pending] = []
        for p in starting:
            key = (p.agent, p.batch_seq)
            leader = self._inflight.get(key)
            if leader is not None:  # a resend racing its original
                if _differs(leader.digest, p.digest):
                    self._finish(p, error=BatchConflict(p.batch_seq, "being stored"))
                else:
                    p.leader = leader
                    leader.followers.append(p)
                continue
            try:
                marker = self._marker(p.agent, p.batch_seq)
            except BaseException as e:
                self._finish(p, error=e)
                if not isinstance(e, Exception):
                    raise
                continue
            if marker is not None and _differs(marker.digest, p.digest):
                state = "stored" if marker.done else "partly stored"
                self._finish(p, error=BatchConflict(p.batch_seq, state))
                continue
            if marker is not None and marker.done:
                self._finish(p, InsertResult(accepted=marker.n, duplicate=True))
                continue
            # new, or an earlier attempt stopped half-way: its granules are skipped by their
            # unique (agent, batch_seq, part), the same content ("Atomicity")
            if marker is None:
                new.append(p)
            p.todo = {}
            for g in p.granules:
                p.todo.setdefault((g.day, g.family), []).append(g)
            self._inflight[key] = p
        if not new:
            return
        now = time.time()
        try:
            # Not fsynced (NORMAL): a crash of the process keeps it (the WAL is written);
            # only a power loss before the next FULL commit of meta.sqlite may lose it.
            self._meta.execute("PRAGMA synchronous=NORMAL")
            try:
                with _immediate(self._meta):
                    self._meta.executemany(_PENDING_MARKER, [
                        (p.agent, p.batch_seq, p.unit, p.count, now, p.digest) for p in new])
            finally:
                self._meta.execute("PRAGMA synchronous=FULL")
        except BaseException as e:
            for p in new:
                self._finish(p, error=e)
            if not isinstance(e, Exception):
                raise

    def _commit_files(self, work: Sequence[_Pending], written: dict[FileId, int]) -> None:
        """Commit the files of ``work`` (fewest files left first), one transaction per file
        holding every batch's granules for it, until TURN_SECONDS have passed (at least one
        file: a turn always advances)."""
        deadline = time.monotonic() + TURN_SECONDS
        for p in work:
            while p.todo:
                if written and time.monotonic() >= deadline:
                    return
                f = min(p.todo)
                sharing = [q for q in work if q.todo and f in q.todo]
                conn = self._conn(f)
                with _immediate(conn):
                    size = sum(self._insert_chunk(conn, q.agent, q.unit, q.batch_seq, q.todo[f])
                               for q in sharing if q.todo)
                for q in sharing:
                    if q.todo:
                        del q.todo[f]
                written[f] = written.get(f, 0) + size

    def _commit_markers(self, done: Sequence[_Pending]) -> None:
        """The markers of the batches whose granules are all committed, in one transaction,
        after them (see "Atomicity"); then their callers get their answer."""
        if not done:
            return
        now = time.time()
        stored: list[bool] = []
        with _immediate(self._meta):
            for p in done:
                cur = self._meta.execute(_DONE_MARKER, (p.agent, p.batch_seq, p.unit, p.count, now, p.digest))
                stored.append(cur.rowcount == 1)
        for p, fresh in zip(done, stored, strict=True):
            # not fresh: another process stored it meanwhile; the granules were ignored
            self._finish(p, InsertResult(accepted=p.count, duplicate=not fresh))

    def _finish(self, p: _Pending, result: InsertResult | None = None,
                error: BaseException | None = None) -> None:
        """``p`` is answered: out of the queue and of the batches in flight; its followers end
        with it as duplicates (or, if it failed, start on their own: the same records)."""
        p.result, p.error = result, error
        key = (p.agent, p.batch_seq)
        if self._inflight.get(key) is p:
            del self._inflight[key]
        with self._queue_lock:
            if p in self._queue:
                self._queue.remove(p)
        for q in p.followers:
            q.leader = None
            if result is not None:
                self._finish(q, InsertResult(accepted=result.accepted, duplicate=True))
        p.followers.clear()

    @staticmethod
    def _insert_chunk(conn: sqlite3.Connection, agent: str, unit: str, batch_seq: int,
                      granules: Sequence[Granule]) -> int:
        """One batch's granules of one file, inside the caller's transaction: chunk by chunk
        (a first granule with its key lists, then the rest), each chunk's granules under
        consecutive ids (the chunk's id is the first), its key lists into ``fresh_keys``.
        Returns the bytes of key lists stored (0: all of it was stored before)."""
        starts = [i for i, g in enumerate(granules) if g.keys is not None] + [len(granules)]
        size = 0
        for i, j in itertools.pairwise(starts):
            first = granules[i]
            if conn.execute("SELECT 1 FROM granules WHERE agent = ? AND batch_seq = ? AND part = ?",
                            (agent, batch_seq, first.part)).fetchone() is not None:
                continue  # committed (a chunk is, whole, in one transaction) before a crash lost the marker
            base = int(conn.execute("SELECT coalesce(max(id), 0) + 1 FROM granules").fetchone()[0])
            conn.executemany(_INSERT_GRANULE, [
                (base + k, agent, unit, batch_seq, g.part, g.ts_min, g.ts_max, g.end_max, g.n, g.types,
                 g.search, g.data, g.rindex, base) for k, g in enumerate(granules[i:j])])
            assert first.keys is not None and first.chunk_keys is not None
            conn.execute(_INSERT_FRESH, (base, first.keys, first.chunk_keys))
            size += len(first.keys) + len(first.chunk_keys)
        return size

    @staticmethod
    def _index_fresh(conn: sqlite3.Connection) -> None:
        """Move a file's fresh keys into ``keys``, in one transaction (module doc, "Index")."""
        with _immediate(conn):
            conn.execute(_INDEX_FRESH)
            conn.execute("DELETE FROM fresh_keys")

    def _index_file(self, f: FileId) -> None:
        """``_index_fresh`` for file ``f`` if it has fresh keys (caller holds the lock); they
        count as fresh until the transaction committed."""
        if f in self._fresh:
            self._index_fresh(self._open.get(f) or self._conn(f))
            del self._fresh[f]

    def _index_idle(self) -> None:
        """The indexer thread: files no batch wrote to for ``INDEX_IDLE`` get their fresh keys
        indexed, so an idle store has none and a lookup scans none."""
        while not self._stop.wait(INDEX_IDLE / 2):
            with self._lock:
                if self._closed:
                    return
                now = time.monotonic()
                for f in [f for f, (_, last) in self._fresh.items() if now - last >= INDEX_IDLE]:
                    with contextlib.suppress(sqlite3.Error):  # e.g. disk full: tried next round
                        self._index_file(f)

    def unindexed_bytes(self) -> int:
        """Bytes of fresh keys not yet in the files' ``keys`` (0 once the index caught up)."""
        return sum(size for size, _ in list(self._fresh.values()))

    def _marker(self, agent: str, batch_seq: int) -> _Marker | None:
        row = self._meta.execute(
            "SELECT count, digest, done FROM batches WHERE agent = ? AND batch_seq = ?", (agent, batch_seq)
        ).fetchone()
        return None if row is None else _Marker(int(row[0]), row[1], bool(row[2]))

    # -- reading granules --

    def _read(self, f: FileId, where: str, params: Sequence[Any], test: RecordTest,
              probe: Sequence[Sequence[int]] | None = None) -> Iterator[_Found]:
        """The records of file ``f``'s granules matching ``where`` (a fixed SQL fragment) that
        pass ``test`` (their ``record_columns``), in no particular order. With ``probe``
        (groups of keys), only the records the granule's index lists with a key of every
        group are unpacked and tested."""
        rank = _FAMILY_RANK[f[1]]
        sql = f"{_SELECT_GRANULE} WHERE {where}"
        for gid, agent, unit, data, rindex in self._conn(f).execute(sql, params):
            if probe is None:
                found: Iterable[tuple[int, dict[str, Any]]] = enumerate(unpack(data))
            else:
                which = records_with(rindex, probe)
                if not which:
                    continue  # a key of the chunk, not of this granule, or a collision
                found = zip(which, unpack_some(data, which), strict=True)
            for idx, rec in found:
                cols = record_columns(idx, rec)
                if test(cols):
                    rec[AGENT_KEY] = agent
                    rec[UNIT_KEY] = unit
                    yield _Found((cols[1], rank, gid, idx), f[0], rec)

    def _lookup(self, files: Sequence[FileId], key: tuple[int, str, int], lo: float | None, hi: float | None,
                where: str, params: Sequence[Any], test: RecordTest) -> list[_Found]:
        """Records passing ``test`` of the granules holding ``key`` (kind, value, port) in an
        hour overlapping [``lo``, ``hi``] and matching ``where``, ordered by (day, ts,
        family, granule, index)."""
        out: list[_Found] = []
        for f in files:
            keys = _day_keys(*key, f[0], lo, hi)
            holding, holding_params = _holding(key[0], keys)
            out.extend(self._read(f, f"{holding} AND {where}", (*holding_params, *params), test, [keys]))
        out.sort(key=lambda r: (r.day, r.order))
        return out

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
        after = _decode_cursor(cursor) if cursor is not None else None
        # Granule-level filters (SQL) keep whole granules out; the record test is exact.
        where: list[str] = []
        params: list[Any] = []
        if type is not None:
            where.append("instr(types, ?) > 0")
            params.append(f" {type} ")
        if start is not None:
            where.append("ts_max >= ?")
            params.append(start)
        if end is not None:
            where.append("ts_min < ?")
            params.append(end)
        ip_c = canonical_ip(ip) if ip is not None else None
        # the key filters depend on the day (its hours): added per day below
        lookups = ([(KIND_IP, ip_c, 0)] if ip_c is not None else []) + (
            [(KIND_ACCOUNT, account, 0)] if account is not None else [])
        folded = text.casefold() if text is not None else None
        if folded is not None:
            where.append("instr(search, ?) > 0")
            params.append(folded)

        def test(c: Columns) -> bool:
            return ((type is None or c[0] == type)
                    and (start is None or c[1] >= start)
                    and (end is None or c[1] < end)
                    and (ip_c is None or ip_c in (c[4], c[6], c[8], c[10]))
                    and (account is None or c[11] == account)
                    and (folded is None or (c[12] is not None and folded in c[12])))

        need = limit + 1  # one more than the page tells whether another page exists
        found: list[_Found] = []
        with self._lock:
            self._check_open()
            by_day: dict[str, list[FileId]] = {}
            families = [family_of(type)] if type is not None else FAMILY_NAMES
            for f in self._files(start, end, families):
                if after is None or f[0] >= after[0]:
                    by_day.setdefault(f[0], []).append(f)
            for day in sorted(by_day):
                day_after = after[1] if after is not None and after[0] == day else None
                day_where, day_params = list(where), list(params)
                probe: list[list[int]] = []
                for key in lookups:
                    keys = _day_keys(*key, day, start, end)
                    sql, holding_params = _holding(key[0], keys)
                    day_where.append(sql)
                    day_params.extend(holding_params)
                    probe.append(keys)
                found.extend(self._page_of_day(by_day[day], " AND ".join(day_where) or "1", day_params, test,
                                               probe or None, day_after, need - len(found)))
                if len(found) >= need:
                    break
        page = found[:limit]
        next_cursor = _encode_cursor(page[-1]) if len(found) > limit else None
        return Page(records=[f.record for f in page], cursor=next_cursor)

    def _page_of_day(self, files: Sequence[FileId], where: str, params: Sequence[Any], test: RecordTest,
                     probe: Sequence[Sequence[int]] | None, after: tuple[float, int, int, int] | None,
                     need: int) -> list[_Found]:
        """The first ``need`` matching records of one day (after ``after``), in order.

        Granules are opened in order of their earliest ts: once ``need`` records are in hand
        and the next granule starts after the last of them, no later granule can come first.
        """
        def in_order(f: FileId) -> Iterator[tuple[float, int, FileId, int]]:
            # SQLite sorts and the rows stream: a page stops reading long before a busy day's
            # hundred thousand candidates (fetching and sorting them here took ~0.3 s)
            sql = f"SELECT ts_min, id FROM granules WHERE {where}"
            args = list(params)
            if after is not None:
                sql += " AND ts_max >= ?"
                args.append(after[0])
            rank = _FAMILY_RANK[f[1]]
            for ts_min, gid in self._conn(f).execute(sql + " ORDER BY ts_min, id", args):
                yield ts_min, rank, f, gid

        best: list[_Found] = []
        for ts_min, _, f, gid in heapq.merge(*(in_order(f) for f in files)):
            if len(best) >= need and ts_min > best[need - 1].order[0]:
                break
            got = [r for r in self._read(f, "id = ?", (gid,), test, probe)
                   if after is None or r.order > after]
            if got:
                best = heapq.nsmallest(need, best + got, key=lambda r: r.order)
        return best

    # The lookups read the granules holding their key (one indexed probe per file) and test
    # every record of them exactly.

    def nat_at(self, ip: str, port: int, ts: float, proto: str | None = None) -> list[dict[str, Any]]:
        ip = canonical_ip(ip)
        lo, hi = ts - NAT_DEFAULT_LIFETIME, ts + NAT_CLOCK_SLACK

        def test(c: Columns) -> bool:
            return bool(c[0] == "nat" and c[8] == ip and c[9] == port and lo <= c[1] <= hi)

        with self._lock:
            self._check_open()
            found = self._lookup(self._files(lo, hi, ["nat"]), (KIND_OUTSIDE, ip, port), lo, hi,
                                 "ts_max >= ? AND ts_min <= ?", (lo, hi), test)
        return nat_in_force((f.record for f in found), ts, proto)

    def sessions_at(self, ip: str, port: int, ts: float, *, outside: bool,
                    proto: str | None = None) -> list[dict[str, Any]]:
        ip = canonical_ip(ip)
        lo, hi, reach = ts - MAX_SESSION_SPAN, ts + SESSION_TOLERANCE, ts - SESSION_TOLERANCE
        at = (8, 9) if outside else (4, 5)  # nat_ip/nat_port or src_ip/src_port

        def test(c: Columns) -> bool:
            return bool(c[0] == "session" and c[at[0]] == ip and c[at[1]] == port and lo <= c[1] <= hi
                        and c[2] >= reach)

        key = (KIND_OUTSIDE if outside else KIND_ENDPOINT, ip, port)
        with self._lock:
            self._check_open()
            found = self._lookup(self._files(lo, hi, ["flow"]), key, lo, hi,
                                 "end_max >= ? AND ts_min <= ?", (reach, hi), test)
        return furthest_sessions((f.record for f in found), proto)

    def identity_at(self, ip: str, ts: float) -> dict[str, Any] | None:
        ip = canonical_ip(ip)
        lo = ts - IDENTITY_LOOKBACK

        def test(c: Columns) -> bool:
            return bool(c[0] == "login" and c[10] == ip and lo <= c[1] <= ts)

        key = (KIND_IP, ip, 0)
        with self._lock:
            self._check_open()

            def newest_first() -> Iterator[dict[str, Any]]:
                # One day at a time, newest first, granule by granule: login_in_force stops
                # reading at the answer, usually in the first granule it opens.
                for f in reversed(self._files(lo, ts, ["identity"])):
                    for found in self._newest_first(f, key, lo, ts, test):
                        yield found.record

            return login_in_force(newest_first())

    def _newest_first(self, f: FileId, key: tuple[int, str, int], lo: float, hi: float,
                      test: RecordTest) -> Iterator[_Found]:
        """``_lookup`` for one file, newest record first, reading granules only as needed:
        in order of their latest ``ts``, a granule is opened once no record already read is
        newer than its latest."""
        keys = _day_keys(*key, f[0], lo, hi)
        holding, holding_params = _holding(key[0], keys)
        candidates = self._conn(f).execute(
            f"SELECT ts_max, id FROM granules WHERE {holding} AND ts_min <= ? AND ts_max >= ?"
            " ORDER BY ts_max DESC", (*holding_params, hi, lo)).fetchall()
        heap: list[tuple[float, int, int, _Found]] = []  # negated order: heapq pops the newest
        i = 0
        while i < len(candidates) or heap:
            while i < len(candidates) and (not heap or candidates[i][0] >= -heap[0][0]):
                for found in self._read(f, "id = ?", (candidates[i][1],), test, [keys]):
                    ts, _, gid, idx = found.order
                    heapq.heappush(heap, (-ts, -gid, -idx, found))
                i += 1
            if heap:
                yield heapq.heappop(heap)[3]

    def connection(self, uid: str, *, agent: str | None = None, start: float | None = None,
                   end: float | None = None) -> list[dict[str, Any]]:
        where = ["1"]
        params: list[Any] = []
        if agent is not None:
            where.append("agent = ?")
            params.append(agent)
        if start is not None:
            where.append("ts_max >= ?")
            params.append(start)
        if end is not None:
            where.append("ts_min <= ?")
            params.append(end)

        def test(c: Columns) -> bool:
            return bool(c[3] == uid and (start is None or c[1] >= start) and (end is None or c[1] <= end))

        with self._lock:
            self._check_open()
            found = self._lookup(self._files(start, end), (KIND_UID, uid, 0), start, end, " AND ".join(where),
                                 params, test)
        return [f.record for f in found]

    # -- retention --

    def expire(self, before: float, holds: Sequence[Hold]) -> ExpireResult:
        deleted = held = 0
        dropped_files: dict[str, int] = {}
        with self._lock:
            self._check_open()
            files = [f for f in self._files(None, before) if _day_start(f[0]) < before]
            for f in files:
                d, h, gone = self._expire_file(f, before, holds)
                deleted += d
                held += h
                if gone:
                    dropped_files[f[0]] = dropped_files.get(f[0], 0) + 1
            remaining = {f[0] for f in self._files()}
        dropped = sorted(day for day in dropped_files if day not in remaining)
        return ExpireResult(deleted=deleted, days_dropped=dropped, held=held)

    def _may_hold(self, conn: sqlite3.Connection, holds: Sequence[Hold], chunk: int, unit: str,
                  ts_min: float, ts_max: float) -> bool:
        """Whether a hold may cover a record of the granule (exact per record afterwards)."""
        for h in holds:
            if h.unit is not None and h.unit != unit:
                continue
            if (h.start is not None and ts_max < h.start) or (h.end is not None and ts_min >= h.end):
                continue
            if h.account is not None and conn.execute(
                    "SELECT 1 FROM keys WHERE key IN (" + ", ".join("?" * 24) + ") AND gid = ?",
                    (*keys_between(KIND_ACCOUNT, h.account, 0, 0.0, None, None), chunk)).fetchone() is None:
                continue
            return True
        return False

    def _expire_file(self, f: FileId, before: float, holds: Sequence[Hold]) -> tuple[int, int, bool]:
        """(deleted, held, file dropped) for the records of file ``f`` older than ``before``."""
        conn = self._conn(f)
        self._index_file(f)  # holds and key deletions below read ``keys``
        rows = conn.execute(
            "SELECT id, part, unit, ts_min, ts_max, n, chunk FROM granules WHERE ts_min < ?", (before,)
        ).fetchall()
        maybe = {gid for gid, _, unit, lo, hi, _, chunk in rows
                 if self._may_hold(conn, holds, chunk, unit, lo, hi)}
        if _day_start(f[0]) + _DAY <= before and not maybe:
            # Fast path: nothing of this file is held and all of it is old: drop the file.
            deleted = sum(int(row[5]) for row in rows)
            self._drop(f)
            return deleted, 0, True
        deleted = held = 0
        with _immediate(conn):
            for gid, part, unit, _, ts_max, n, _ in rows:
                if ts_max < before and gid not in maybe:
                    self._delete_granule(conn, gid)
                    deleted += n
                    continue
                (data,) = conn.execute("SELECT data FROM granules WHERE id = ?", (gid,)).fetchone()
                records = unpack(data)
                keep: list[dict[str, Any]] = []
                for idx, rec in enumerate(records):
                    cols = record_columns(idx, rec)
                    if cols[1] >= before:
                        keep.append(rec)
                    elif _held(holds, unit, cols[11], cols[1]):
                        keep.append(rec)
                        held += 1
                deleted += len(records) - len(keep)
                if len(keep) == len(records):
                    continue
                if not keep:
                    self._delete_granule(conn, gid)
                    continue
                g = regranule(f[0], f[1], part, keep)
                self._drop_keys(conn, gid)
                conn.execute(
                    "UPDATE granules SET ts_min = ?, ts_max = ?, end_max = ?, n = ?, types = ?, search = ?,"
                    " data = ?, rindex = ? WHERE id = ?",
                    (g.ts_min, g.ts_max, g.end_max, g.n, g.types, g.search, g.data, g.rindex, gid))
                conn.execute(_INSERT_GRANULE_KEYS, (gid, g.keys))
        return deleted, held, False

    @staticmethod
    def _drop_keys(conn: sqlite3.Connection, gid: int) -> None:
        """Delete granule ``gid``'s keys (those of its index). Its chunk's keys stay: the
        chunk's other granules may hold them, and a stale one only makes a lookup read a
        granule in vain; the file's drop removes them."""
        (rindex,) = conn.execute("SELECT rindex FROM granules WHERE id = ?", (gid,)).fetchone()
        conn.executemany("DELETE FROM keys WHERE key = ? AND gid = ?",
                         [(k, gid) for k in granule_keys(rindex)])

    def _delete_granule(self, conn: sqlite3.Connection, gid: int) -> None:
        self._drop_keys(conn, gid)
        conn.execute("DELETE FROM granules WHERE id = ?", (gid,))

    def _drop(self, f: FileId) -> None:
        self._fresh.pop(f, None)
        conn = self._open.pop(f, None)
        if conn is not None:
            conn.close()
        path = self._path(f)
        # The -wal/-shm files first would be wrong only with a reader open; we closed ours.
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)

    # -- misc --

    def count(self) -> int:
        with self._lock:
            self._check_open()
            return sum(
                int(self._conn(f).execute("SELECT total(n) FROM granules").fetchone()[0])
                for f in self._files()
            )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._stop.set()
            try:
                for f in list(self._fresh):
                    self._index_file(f)
            finally:
                self._closed = True
                while self._open:
                    _, conn = self._open.popitem()
                    conn.close()
                self._meta.close()
        if self._indexer is not threading.current_thread():
            self._indexer.join()
