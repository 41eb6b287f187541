"""The agent's durable spool: every record lands here before anything else happens to it.

What: ``Spool(path)`` is one SQLite database (WAL mode) holding the records the pipeline
produced, in append order, with the batches the uploader cut from them. ``append(records)``
stores many records in one transaction; ``next_batch()`` hands the uploader the next batch
with its ``batch_seq`` (persisted before it is returned, so before the first send);
``mark_sent(batch_seq)`` records the collector's acknowledgement, ``quarantine(batch_seq, refusal)``
its refusal for good (``agent.spool.quarantine``: the batch leaves the queue for a quarantine an
operator can ``requeue`` from, so it no longer blocks later batches); sent records stay as the
local backup (Order 82 Art. 13: at least 60 days) until ``expire()`` removes those older than
``keep_days`` or the disk quota needs their room. ``stats()`` gives the counters the `stats`
record and the collector's status report.

Why SQLite in WAL mode: one file, transactions across the records and the batch bookkeeping
(so "these records belong to batch 17" and "batch 17 was acknowledged" are never half
written), a reader (the uploader) never blocks the writer (the pipeline), and several
processes may open the same file (the busy timeout serializes writers).

Durability (DESIGN, step 9; standard 7 "acknowledge only after durability"):
- ``sync="FULL"`` (default): every committed ``append`` survives ``kill -9`` *and* power loss
  or a kernel crash: SQLite fsyncs the WAL at each commit. Cost: one fsync per ``append``
  call, which is why ``append`` takes many records at once (one transaction per call).
- ``sync="NORMAL"``: a committed ``append`` survives ``kill -9`` of any process (the WAL is
  in the page cache, which the kernel keeps), but the last commits before a *power loss* may
  be rolled back (the database stays consistent). Use it only where an fsync per call is
  too slow.
- Batch assignment and ``mark_sent`` always run with ``synchronous=FULL`` whatever ``sync``
  says: a ``batch_seq`` must be on disk before the batch is sent (otherwise, after a power
  loss, the same number could be given to other records, which the collector would take for
  a resend and drop), and that fsync also makes every earlier append durable.

Exactly once: records are numbered in append order (``id``); a batch is a contiguous id
range with a ``batch_seq`` from a per-spool counter; batches are sent and acknowledged (or
quarantined) in order, so "done" is the prefix ``id <= sent_upto``. After a crash of the agent,
the unsent batch is handed out again with the same number and the same records (and the same
time it was cut, ``Batch.created``: the envelope's ``created``, so a resend is the same bytes);
the collector stores an ``(agent, batch_seq)`` once and acknowledges a resend as a duplicate.
The counter starts at the wall clock in nanoseconds when the spool file is created, so a new
spool (after a corrupt one was moved aside) never reuses a number an older one sent.

Quota (``quota_bytes``): counted as the stored record bytes (the msgpack blob + ``ROW_OVERHEAD``
per record), not the file size: the file is larger by its indexes and page slack (about
10-20%) and does not shrink (SQLite reuses freed pages; no VACUUM), so leave that margin on
the disk. At ``ALARM_FRACTION`` (80%) ``quota_alarm`` turns on with one warning log line.
When an append does not fit, the oldest *sent* batches are deleted first (counted in
``evicted_records``; those younger than ``keep_days`` also in ``evicted_early_records``, with
a warning: the local backup is then shorter than the law asks, the collector still has them),
then the oldest *quarantined* ones (``quarantine_evicted_records``, an error: see
``agent.spool.quarantine`` for why before new records, and for the quarantine's own cap).
Unsent records are never deleted: if deleting every sent record still leaves no room, the
records of the call that do not fit are refused, counted in ``records_dropped`` (persisted,
with an error log line), and ``append`` returns how many it stored. Tail drop was chosen
over dropping old unsent records because those are the ones the collector has not seen yet
and the refusal is visible to the caller at the moment it happens.

Validation: records are checked with ``wire.validate_record`` on append (a few microseconds
each); an invalid record is refused and counted in ``records_invalid`` (a pipeline bug) so
that no batch the collector would refuse can ever block the queue.

Corruption: a file that is not a spool, or a damaged one, raises ``SpoolCorrupt`` naming the
file and what to do (move it aside; a new spool starts; try ``sqlite3 FILE .recover`` on the
old one). ``check()`` runs SQLite's ``quick_check`` over the whole file (slow on big spools).

Idle cost: ``next_batch`` first looks with a plain read (no write lock) whether a batch is
due, so an idle uploader polling every 50 ms never blocks the writer.

Limits: ``MAX_RECORD_BYTES`` per record (msgpack); one write transaction at a time per file
(SQLite; others wait up to ``BUSY_TIMEOUT_S``). A ``Spool`` object may be shared by threads (a
lock serializes its one connection), but the pipeline and the uploader should each have their
own, so that an fsync in one does not hold up the other. Record ids and batch numbers are
64-bit.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import msgpack

from agent.spool import quarantine as qu
from agent.spool.quarantine import QuarantinedBatch, Refusal
from wire.errors import ValidationError
from wire.limits import MAX_BATCH_RECORDS
from wire.validate import validate_record

log = logging.getLogger("edgeaudit.spool")

#: ``PRAGMA application_id`` of a spool file ("EASP"): tells a spool from any other SQLite file.
APPLICATION_ID: Final = 0x45415350
#: ``PRAGMA user_version``: the layout below.
SCHEMA_VERSION: Final = 1
#: Bytes counted per record on top of its msgpack body (row header, id, ts, type, added).
ROW_OVERHEAD: Final = 32
#: The alarm turns on when the stored bytes reach this fraction of the quota.
ALARM_FRACTION: Final = 0.8
#: The law's minimum local backup (Order 82 Art. 13); ``keep_days`` below this is refused.
MIN_KEEP_DAYS: Final = 60
DEFAULT_QUOTA_BYTES: Final = 2 * 1024**3
#: One record at most this many msgpack bytes (wire limits allow 64 fields of 8192 characters).
MAX_RECORD_BYTES: Final = 4 * 1024 * 1024
#: A batch carries at most this many record bytes: below the envelope's 8 MiB compressed and
#: 32 MiB decompressed limits even for incompressible content.
DEFAULT_BATCH_BYTES: Final = 4 * 1024 * 1024
DEFAULT_BATCH_RECORDS: Final = 5000
#: How long another process's write may make us wait (seconds) before SQLite says "locked".
BUSY_TIMEOUT_S: Final = 30.0
#: ``expire`` deletes this many batches per transaction, so the writer is never held long.
EXPIRE_CHUNK: Final = 64
_DAY: Final = 86400.0
_CORRUPT_CODES: Final = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,   -- append order, never reused (state.next_id)
    added REAL NOT NULL,      -- wall clock when spooled: lag, linger, retention
    ts REAL NOT NULL,         -- the record's own time
    type TEXT NOT NULL,
    body BLOB NOT NULL        -- the record, msgpack (the wire encoding of one record)
);
CREATE TABLE IF NOT EXISTS batches (
    batch_seq INTEGER PRIMARY KEY,
    first_id INTEGER NOT NULL,
    last_id INTEGER NOT NULL,
    count INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    max_added REAL NOT NULL,
    created REAL NOT NULL,
    sent REAL                 -- when the collector acknowledged it, NULL = not yet
);
CREATE TABLE IF NOT EXISTS state (
    k INTEGER PRIMARY KEY CHECK (k = 0),
    next_id INTEGER NOT NULL,
    next_seq INTEGER NOT NULL,
    batched_upto INTEGER NOT NULL,   -- ids <= this are in a batch
    sent_upto INTEGER NOT NULL,      -- ids <= this were acknowledged or quarantined (in order)
    bytes INTEGER NOT NULL,          -- stored record bytes (quota accounting)
    records INTEGER NOT NULL,        -- stored records
    dropped INTEGER NOT NULL,        -- refused for want of room
    invalid INTEGER NOT NULL,        -- refused by validation
    evicted INTEGER NOT NULL,        -- sent records deleted for room
    evicted_early INTEGER NOT NULL,  -- ... of which younger than keep_days
    expired INTEGER NOT NULL         -- sent records deleted after keep_days
);
"""
_STATE_COLS: Final = ("next_id", "next_seq", "batched_upto", "sent_upto", "bytes", "records", "dropped",
                      "invalid", "evicted", "evicted_early", "expired")


class SpoolError(Exception):
    """The spool cannot be used; the message says why and what to do."""


class SpoolCorrupt(SpoolError):
    """The spool file is damaged or is not a spool."""


@dataclass(frozen=True)
class Batch:
    """A batch to send: its number, its id range and the records as msgpack blobs (in order)."""

    batch_seq: int
    first_id: int
    last_id: int
    bodies: list[bytes]
    resent: bool  # handed out before (the agent crashed or the send failed): a resend
    created: float  # when it was cut: the envelope's ``created``, the same in every resend


@dataclass(frozen=True)
class SpoolStats:
    """The spool's health, for the `stats` record, `/metrics` and the collector's status."""

    spool_records: int
    spool_bytes: int  # quota accounting (see module doc)
    file_bytes: int  # database + WAL on disk
    unsent_records: int
    unbatched_records: int
    quota_bytes: int
    quota_alarm: bool
    records_dropped: int
    records_invalid: int
    evicted_records: int
    evicted_early_records: int
    expired_records: int
    upload_lag_s: float | None  # age of the oldest unsent record; None when all are sent
    oldest_added: float | None  # when the oldest record still kept was spooled
    next_batch_seq: int
    # the quarantine (agent.spool.quarantine): batches the collector refused for good
    quarantined_batches: int  # held now
    quarantined_records: int
    quarantined_bytes: int  # (part of spool_bytes)
    quarantine_bytes: int  # its cap
    quarantined_total: int  # records ever quarantined
    requeued_total: int  # records ever put back in the queue
    quarantine_evicted_records: int  # quarantined records deleted for room: lost

    @property
    def records_lost(self) -> int:
        """Records this spool refused or deleted before the collector had them."""
        return self.records_dropped + self.records_invalid + self.quarantine_evicted_records

    def stats_record_fields(self) -> dict[str, Any]:
        """The fields of SCHEMA.md's `stats` record this spool fills (``records_dropped``: the
        pipeline adds its own drops to ``records_lost``)."""
        return {"spool_records": self.spool_records, "spool_bytes": self.spool_bytes,
                "upload_lag_s": self.upload_lag_s, "quarantined_records": self.quarantined_records}


class Spool:
    """A durable record queue + local backup in one SQLite file (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], *, quota_bytes: int = DEFAULT_QUOTA_BYTES,
                 keep_days: float = MIN_KEEP_DAYS, sync: Literal["FULL", "NORMAL"] = "FULL",
                 validate: bool = True, clock: Callable[[], float] = time.time,
                 quarantine_bytes: int | None = None) -> None:
        if keep_days < MIN_KEEP_DAYS:
            raise ValueError(f"keep_days must be at least {MIN_KEEP_DAYS} (Order 82 Art. 13): {keep_days}")
        if quota_bytes <= 0:
            raise ValueError("quota_bytes must be positive")
        self.path = Path(path)
        self.quota_bytes = quota_bytes
        self.quarantine_bytes = (int(quota_bytes * qu.QUARANTINE_FRACTION) if quarantine_bytes is None
                                 else quarantine_bytes)
        self.keep_s = keep_days * _DAY
        self.validate = validate
        self.clock = clock
        self._sync = "FULL" if sync == "FULL" else "NORMAL"
        self._alarm = False
        self._conn = self._open()
        self._lock = threading.RLock()  # one connection: one statement at a time across threads
        self._check_alarm(self._state()["bytes"])  # logs if the spool opens already over the mark

    # -- opening, errors --

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as e:
            raise SpoolError(f"spool {self.path}: cannot open: {e}") from None
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if app_id != APPLICATION_ID and tables:
                raise SpoolCorrupt(f"spool {self.path}: this SQLite file is not an edgeaudit spool "
                                   f"(application_id {app_id:#x}); move it aside or use another path")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._sync}")
            conn.execute("BEGIN IMMEDIATE")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise SpoolError(f"spool {self.path}: layout version {version}, this agent knows "
                                 f"{SCHEMA_VERSION}; use the agent that wrote it or move it aside")
            for stmt in _SCHEMA.split(";"):  # (no ";" inside the comments)
                if stmt.strip():
                    conn.execute(stmt)
            qu.create(conn)
            if conn.execute("SELECT count(*) FROM state").fetchone()[0] == 0:
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("INSERT INTO state VALUES (0, 1, ?, 0, 0, 0, 0, 0, 0, 0, 0, 0)",
                             (time.time_ns(),))
            conn.execute("COMMIT")
        except SpoolError:
            conn.close()
            raise
        except sqlite3.Error as e:
            conn.close()
            raise self._translate(e, "open") from None
        return conn

    def _translate(self, e: sqlite3.Error, doing: str) -> SpoolError:
        name = getattr(e, "sqlite_errorname", "")
        if name in _CORRUPT_CODES or "malformed" in str(e) or "not a database" in str(e):
            return SpoolCorrupt(
                f"spool {self.path} is damaged ({doing}: {e}). The agent cannot use it: move the file "
                f"(and its -wal/-shm) aside so a new spool starts, and try `sqlite3 {self.path} .recover` "
                "on the old one to rescue its unsent records")
        return SpoolError(f"spool {self.path}: {doing}: {e}")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _state(self) -> dict[str, int]:
        row = self._conn.execute(f"SELECT {', '.join(_STATE_COLS)} FROM state WHERE k = 0").fetchone()
        if row is None:
            raise SpoolCorrupt(f"spool {self.path}: its state row is missing; move the file aside")
        return dict(zip(_STATE_COLS, (int(v) for v in row), strict=True))

    def _put_state(self, st: Mapping[str, int]) -> None:
        self._conn.execute(f"UPDATE state SET {', '.join(c + ' = ?' for c in _STATE_COLS)} WHERE k = 0",
                           [st[c] for c in _STATE_COLS])

    def _write(self, doing: str, fn: Callable[[], Any], full: bool = False) -> Any:
        """Run ``fn`` in one write transaction (``full``: with synchronous=FULL for this commit)."""
        conn = self._conn
        with self._lock:
            return self._write_locked(conn, doing, fn, full)

    def _write_locked(self, conn: sqlite3.Connection, doing: str, fn: Callable[[], Any], full: bool) -> Any:
        try:
            if full and self._sync != "FULL":
                conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn()
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result
        except sqlite3.Error as e:
            raise self._translate(e, doing) from None
        finally:
            if full and self._sync != "FULL":
                with contextlib.suppress(sqlite3.Error):
                    conn.execute(f"PRAGMA synchronous={self._sync}")

    # -- the writer's side --

    def append(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Store ``records`` in one transaction; return how many were stored.

        When this returns, the stored records are durable (see "Durability"). Records not
        stored were invalid (``records_invalid``) or found no room (``records_dropped``).
        """
        now = self.clock()
        pack = msgpack.Packer(use_bin_type=True).pack  # a Packer is not thread-safe: one per call
        rows: list[tuple[float, float, str, bytes]] = []
        invalid = 0
        for rec in records:
            try:
                if self.validate:
                    validate_record(rec)
                body = pack(rec)
                ts, rtype = float(rec["ts"]), str(rec["type"])
            except (ValidationError, TypeError, ValueError, OverflowError, KeyError) as e:
                invalid += 1
                if invalid == 1:
                    log.error("spool: refused an invalid record (%s)", str(e)[:200])
                continue
            if len(body) > MAX_RECORD_BYTES:
                invalid += 1
                log.error("spool: refused a record of %d bytes (limit %d)", len(body), MAX_RECORD_BYTES)
                continue
            rows.append((now, ts, rtype, body))
        if not rows and not invalid:
            return 0
        return int(self._write("append", lambda: self._append_txn(now, rows, invalid)))

    def _append_txn(self, now: float, rows: list[tuple[float, float, str, bytes]], invalid: int) -> int:
        st = self._state()
        st["invalid"] += invalid
        sizes = [len(r[3]) + ROW_OVERHEAD for r in rows]
        need = st["bytes"] + sum(sizes) - self.quota_bytes
        if need > 0:
            self._evict(st, need, now)
        room = self.quota_bytes - st["bytes"]
        keep = len(rows)
        total = sum(sizes)
        while keep and total > room:  # tail drop: unsent records are never evicted
            keep -= 1
            total -= sizes[keep]
        if keep < len(rows):
            dropped = len(rows) - keep
            st["dropped"] += dropped
            log.error("spool: quota of %d bytes is full of unsent records: refused %d records "
                      "(%d refused so far); the collector is not taking them fast enough",
                      self.quota_bytes, dropped, st["dropped"])
        first = st["next_id"]
        self._conn.executemany("INSERT INTO records (id, added, ts, type, body) VALUES (?, ?, ?, ?, ?)",
                               [(first + i, *rows[i]) for i in range(keep)])
        st["next_id"] = first + keep
        st["bytes"] += total
        st["records"] += keep
        self._put_state(st)
        self._check_alarm(st["bytes"])
        return keep

    def _evict(self, st: dict[str, int], need: int, now: float) -> None:
        """Delete the oldest sent batches until ``need`` bytes are free (or none is left)."""
        early = 0
        while need > 0:
            row = self._conn.execute("SELECT batch_seq, first_id, last_id, count, bytes, max_added"
                                     " FROM batches WHERE sent IS NOT NULL ORDER BY batch_seq LIMIT 1"
                                     ).fetchone()
            if row is None:
                break
            seq, first, last, count, nbytes, max_added = row
            self._delete_batch(seq, first, last)
            st["bytes"] -= nbytes
            st["records"] -= count
            st["evicted"] += count
            if max_added > now - self.keep_s:
                st["evicted_early"] += count
                early += count
            need -= nbytes
        if need > 0:  # then refused batches, before new records are refused (quarantine doc)
            qu.evict_oldest(self._conn, st, need, why=f"the spool's quota of {self.quota_bytes} bytes")
        if early:
            log.warning("spool: quota of %d bytes reached: deleted %d sent records younger than %g days "
                        "(local backup shorter than the law asks; the collector has them)",
                        self.quota_bytes, early, self.keep_s / _DAY)

    def _delete_batch(self, seq: int, first: int, last: int) -> None:
        self._conn.execute("DELETE FROM records WHERE id BETWEEN ? AND ?", (first, last))
        self._conn.execute("DELETE FROM batches WHERE batch_seq = ?", (seq,))

    def _check_alarm(self, nbytes: int) -> None:
        alarm = nbytes >= ALARM_FRACTION * self.quota_bytes
        if alarm and not self._alarm:
            log.warning("spool: %d of %d quota bytes used (alarm at %d%%)", nbytes, self.quota_bytes,
                        int(ALARM_FRACTION * 100))
        elif self._alarm and not alarm:
            log.info("spool: back under %d%% of the quota (%d of %d bytes)", int(ALARM_FRACTION * 100),
                     nbytes, self.quota_bytes)
        self._alarm = alarm

    def newest(self) -> dict[str, Any] | None:
        """The last record appended (decoded), or None: lets a restarted writer resume."""
        try:
            with self._lock:
                row = self._conn.execute("SELECT body FROM records ORDER BY id DESC LIMIT 1").fetchone()
        except sqlite3.Error as e:
            raise self._translate(e, "read") from None
        return None if row is None else dict(msgpack.unpackb(row[0], raw=False))

    # -- the uploader's side --

    def next_batch(self, max_records: int = DEFAULT_BATCH_RECORDS, max_bytes: int = DEFAULT_BATCH_BYTES,
                   linger_s: float = 0.0) -> Batch | None:
        """The batch to send now, or None.

        An assigned but unacknowledged batch comes first (same number, same records). Else a
        new batch is cut from the unbatched records, at most ``max_records`` and ``max_bytes``
        (but at least one record), and only if it is full or its oldest record has waited
        ``linger_s``; its number is committed (fsynced) before this returns.
        """
        max_records = max(1, min(max_records, MAX_BATCH_RECORDS))
        if not self._batch_due(max_records, linger_s):  # a read: no write lock while idle
            return None
        batch: Batch | None = self._write(
            "next_batch", lambda: self._next_batch_txn(max_records, max_bytes, linger_s), full=True)
        return batch

    def _batch_due(self, max_records: int, linger_s: float) -> bool:
        with self._lock:
            try:
                st = self._state()
                if st["batched_upto"] > st["sent_upto"]:
                    return True
                waiting = st["next_id"] - 1 - st["batched_upto"]
                if waiting <= 0:
                    return False
                if waiting >= max_records or linger_s <= 0:
                    return True
                oldest = self._conn.execute("SELECT added FROM records WHERE id = ?",
                                            (st["batched_upto"] + 1,)).fetchone()
            except sqlite3.Error as e:
                raise self._translate(e, "next_batch") from None
        # a clock stepped back (age < 0) must not hold records back: due at once
        return oldest is None or not 0 <= self.clock() - float(oldest[0]) < linger_s

    def _next_batch_txn(self, max_records: int, max_bytes: int, linger_s: float) -> Batch | None:
        st = self._state()
        if st["batched_upto"] > st["sent_upto"]:
            row = self._conn.execute("SELECT batch_seq, first_id, last_id, created FROM batches"
                                     " WHERE first_id = ?", (st["sent_upto"] + 1,)).fetchone()
            if row is None:
                raise SpoolCorrupt(f"spool {self.path}: unsent batch after id {st['sent_upto']} missing")
            seq, first, last, created = row
            again = [r[0] for r in self._conn.execute(
                "SELECT body FROM records WHERE id BETWEEN ? AND ? ORDER BY id", (first, last))]
            if len(again) != last - first + 1:
                raise SpoolCorrupt(f"spool {self.path}: batch {seq} lost records")
            return Batch(seq, first, last, again, resent=True, created=float(created))
        waiting = st["next_id"] - 1 - st["batched_upto"]
        if waiting <= 0:
            return None
        start = st["batched_upto"] + 1
        if waiting < max_records and linger_s > 0:
            oldest = self._conn.execute("SELECT added FROM records WHERE id = ?", (start,)).fetchone()
            if oldest is not None and 0 <= self.clock() - float(oldest[0]) < linger_s:
                return None
        bodies: list[bytes] = []
        nbytes = 0
        max_added = 0.0
        end = qu.cut_end(self._conn, start)  # a requeued range goes as a batch of its own
        for added, body in self._conn.execute(
                "SELECT added, body FROM records WHERE id BETWEEN ? AND ? ORDER BY id LIMIT ?",
                (start, st["next_id"] - 1 if end is None else end, max_records)):
            size = len(body) + ROW_OVERHEAD
            if bodies and nbytes + size > max_bytes:
                break
            bodies.append(body)
            nbytes += size
            max_added = max(max_added, float(added))
        if not bodies:  # ids are contiguous: only a damaged file gets here
            raise SpoolCorrupt(f"spool {self.path}: records from id {start} are missing")
        seq = st["next_seq"]
        last = start + len(bodies) - 1
        created = self.clock()
        self._conn.execute("INSERT INTO batches (batch_seq, first_id, last_id, count, bytes, max_added,"
                           " created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (seq, start, last, len(bodies), nbytes, max_added, created))
        st["next_seq"] = seq + 1
        st["batched_upto"] = last
        self._put_state(st)
        return Batch(seq, start, last, bodies, resent=False, created=created)

    def mark_sent(self, batch_seq: int) -> None:
        """Record that the collector acknowledged ``batch_seq`` (idempotent)."""
        self._write("mark_sent", lambda: self._mark_sent_txn(batch_seq), full=True)

    def _mark_sent_txn(self, batch_seq: int) -> None:
        st = self._state()
        row = self._conn.execute("SELECT first_id, last_id, sent FROM batches WHERE batch_seq = ?",
                                 (batch_seq,)).fetchone()
        if row is None:
            if batch_seq < st["next_seq"]:
                return  # already sent and since expired or evicted
            raise SpoolError(f"spool {self.path}: no batch {batch_seq}")
        first, last, sent = row
        if sent is not None:
            return
        if first != st["sent_upto"] + 1:
            raise SpoolError(f"spool {self.path}: batch {batch_seq} acknowledged out of order")
        self._conn.execute("UPDATE batches SET sent = ? WHERE batch_seq = ?", (self.clock(), batch_seq))
        st["sent_upto"] = last
        qu.forget_requeued(self._conn, last)
        self._put_state(st)

    # -- the quarantine (agent.spool.quarantine) --

    def quarantine(self, batch_seq: int, refusal: Refusal) -> None:
        """Move ``batch_seq`` (the next batch of the queue) to the quarantine with the collector's
        refusal, in one transaction (idempotent); the next ``next_batch`` is the batch after it."""
        self._write("quarantine", lambda: self._quarantine_txn(batch_seq, refusal), full=True)

    def _quarantine_txn(self, batch_seq: int, refusal: Refusal) -> None:
        st = self._state()
        try:
            moved = qu.move_in(self._conn, st, batch_seq, refusal, self.clock(), self.quarantine_bytes)
        except ValueError as e:
            raise SpoolError(f"spool {self.path}: cannot quarantine: {e}") from None
        if moved:
            self._put_state(st)

    def quarantined(self) -> list[QuarantinedBatch]:
        """The quarantined batches, oldest first."""
        try:
            with self._lock:
                return qu.listing(self._conn)
        except sqlite3.Error as e:
            raise self._translate(e, "read") from None

    def requeue(self, batch_seqs: Iterable[int] | None = None) -> list[QuarantinedBatch]:
        """Put quarantined batches (every one with None) back at the tail of the queue, one
        transaction each; they go out under new numbers (quarantine doc). What was requeued;
        ``SpoolError`` naming the numbers that are not quarantined, before anything changes."""
        held = {b.batch_seq for b in self.quarantined()}
        wanted = sorted(held) if batch_seqs is None else list(dict.fromkeys(batch_seqs))
        unknown = [n for n in wanted if n not in held]
        if unknown:
            raise SpoolError(f"spool {self.path}: not in the quarantine: {' '.join(map(str, unknown))}")
        done: list[QuarantinedBatch] = []
        for seq in wanted:
            q: QuarantinedBatch | None = self._write("requeue", functools.partial(self._requeue_txn, seq))
            if q is not None:  # (None: another process requeued it meanwhile)
                done.append(q)
        return done

    def _requeue_txn(self, batch_seq: int) -> QuarantinedBatch | None:
        st = self._state()
        try:
            q = qu.take_out(self._conn, st, batch_seq)
        except ValueError as e:
            raise SpoolCorrupt(f"spool {self.path}: {e}") from None
        if q is not None:
            self._put_state(st)
        return q

    def expire(self) -> int:
        """Delete sent records spooled more than ``keep_days`` ago; return how many."""
        cutoff = self.clock() - self.keep_s
        total = 0
        while True:
            n = int(self._write("expire", lambda: self._expire_txn(cutoff)))
            total += n
            if n == 0:
                return total

    def _expire_txn(self, cutoff: float) -> int:
        st = self._state()
        rows = self._conn.execute("SELECT batch_seq, first_id, last_id, count, bytes FROM batches"
                                  " WHERE sent IS NOT NULL AND max_added < ? ORDER BY batch_seq LIMIT ?",
                                  (cutoff, EXPIRE_CHUNK)).fetchall()
        n = 0
        for seq, first, last, count, nbytes in rows:
            self._delete_batch(seq, first, last)
            st["bytes"] -= nbytes
            st["records"] -= count
            st["expired"] += count
            n += count
        if rows:
            self._put_state(st)
            self._check_alarm(st["bytes"])
        return n

    # -- reporting --

    def stats(self) -> SpoolStats:
        try:  # (a ValueError: the quarantine's counter row is missing)
            with self._lock:  # one read transaction: a consistent picture
                self._conn.execute("BEGIN")
                try:
                    st = self._state()
                    oldest_unsent = self._conn.execute("SELECT added FROM records WHERE id = ?",
                                                       (st["sent_upto"] + 1,)).fetchone()
                    oldest = self._conn.execute("SELECT added FROM records ORDER BY id LIMIT 1").fetchone()
                    q = qu.totals(self._conn)
                finally:
                    self._conn.execute("COMMIT")
        except sqlite3.Error as e:
            raise self._translate(e, "stats") from None
        except ValueError as e:
            raise SpoolCorrupt(f"spool {self.path}: {e}; move the file aside") from None
        now = self.clock()
        file_bytes = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                file_bytes += os.path.getsize(str(self.path) + suffix)
        self._alarm = st["bytes"] >= ALARM_FRACTION * self.quota_bytes
        return SpoolStats(
            spool_records=st["records"], spool_bytes=st["bytes"], file_bytes=file_bytes,
            unsent_records=st["next_id"] - 1 - st["sent_upto"],
            unbatched_records=st["next_id"] - 1 - st["batched_upto"],
            quota_bytes=self.quota_bytes, quota_alarm=self._alarm,
            records_dropped=st["dropped"], records_invalid=st["invalid"], evicted_records=st["evicted"],
            evicted_early_records=st["evicted_early"], expired_records=st["expired"],
            upload_lag_s=None if oldest_unsent is None else max(0.0, now - float(oldest_unsent[0])),
            oldest_added=None if oldest is None else float(oldest[0]), next_batch_seq=st["next_seq"],
            quarantined_batches=q.batches, quarantined_records=q.records, quarantined_bytes=q.bytes,
            quarantine_bytes=self.quarantine_bytes, quarantined_total=q.quarantined,
            requeued_total=q.requeued, quarantine_evicted_records=q.evicted)

    def check(self) -> None:
        """Read the whole file with SQLite's ``quick_check``; ``SpoolCorrupt`` if damaged."""
        try:
            with self._lock:
                rows = [r[0] for r in self._conn.execute("PRAGMA quick_check(5)")]
        except sqlite3.Error as e:
            raise self._translate(e, "check") from None
        if rows != ["ok"]:
            found = " ".join("; ".join(rows).split())[:800]
            raise SpoolCorrupt(f"spool {self.path} is damaged: {found}. Move the file (and its -wal/-shm) "
                               f"aside and try `sqlite3 {self.path} .recover` on it")
