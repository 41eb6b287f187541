"""The spool's quarantine: batches the collector refused for good, held out of the upload queue.

What: when the collector refuses a batch with an answer that resending the same batch cannot
change (``agent.uploader.client.Refused.permanent``: 400 invalid_batch, 403 wrong_agent, 409,
413, 415, 422, ...), the drain calls ``Spool.quarantine``: in one transaction the batch leaves
the queue (``state.sent_upto`` moves past it, as an acknowledgement would move it) and a row
of the ``quarantine`` table takes its place, with the answer (HTTP status, ``error``,
``detail``) and the time. Its records stay where they are in ``records`` (no copy), so a crash
at any moment leaves the batch either still first in the queue (sent again at the restart,
refused again, quarantined then) or in the quarantine: never lost, never both. The next
batch goes out at once: one bad batch no longer holds every later record behind it.

Requeue (``Spool.requeue``, ``edgeaudit-agent spool requeue --all | BATCH...``), after the
cause is fixed (a collector upgraded or reconfigured, a proxy's body limit raised, an agent's
clock corrected): in one transaction per batch, its records are copied to the tail of the
queue with new ids (their ``added`` time kept: age, lag and retention still count from when
they were spooled), deleted from the old ids, and the ``requeued`` table notes the new id
range. The batch cutter never mixes a requeued range with other records
(``cut_end``), so the range goes out as a batch of its own, and if the collector refuses it
again only it comes back to the quarantine (``requeued_from`` names its earlier number).

Which ``batch_seq`` a requeued batch carries: a **new** one, from the spool's counter when the
batch is cut, like any batch. Its old number cannot be reused: the collector keys batches on
``(agent, batch_seq)``, so an old number the collector has already stored (a 409 says it holds
other content under it) would make the resend a conflict or a dropped "duplicate", and one it
refused is safer not to present twice either. Under the new number the records are new to the
collector and stored once. The one case where that could store them twice: an earlier try of
the batch got no answer (timeout, cut connection, 5xx), so the collector may have committed
it, and a later try was refused (the collector's rules changed between the two). Such a batch
is marked ``maybe_stored``; ``spool quarantine`` shows it, so an operator can check the
collector before requeueing it.

Bounds (DESIGN standard 3): the quarantine holds at most ``quarantine_bytes`` of record bytes
(default a quarter of the spool's quota, ``QUARANTINE_FRACTION``); a batch that does not fit
evicts the oldest quarantined batches (the newest refused batch is always kept, so the bound
is the cap plus one batch). When an append needs room, the spool deletes the oldest *sent*
batches first (the collector has those), then the oldest *quarantined* ones, and only then
refuses new records. Why quarantined records go before new ones: the collector has refused
them and may never take them, while new records are valid and not yet tried; letting refused
data starve the capture is the blocking this module removes. Every quarantined record deleted
for room is lost (the collector never had it): counted in ``evicted`` (``SpoolStats.
quarantine_evicted_records``, added to the ``stats`` record's ``records_dropped``) with an error
log line. Quarantined records never expire by age: the spool holds their only copy.

Which refusals are *not* quarantined (the uploader decides; see ``agent.uploader.client``): no
answer, 408, 429 and 5xx (transient: retried with backoff), and 401, 404, 405, 407 or a 4xx
that is not the collector's own JSON answer (the token, the URL or a proxy: the same for every
batch, so quarantining would empty the whole queue into the quarantine): retried every
``refused_retry_s``. A 403 makes the drain ask the collector who
its token belongs to first: only when that has not changed is the batch quarantined.

Layout: three tables added to spool layout 1 with ``CREATE TABLE IF NOT EXISTS`` (an older
spool gains them when this agent opens it; an older agent ignores them: it neither sends nor
deletes quarantined records, and cuts requeued ranges into ordinary batches).

Limits: ``MAX_DETAIL_CHARS`` of the collector's ``detail`` are kept; requeue copies a batch's
bytes once (at most one batch per transaction).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from typing import Final

log = logging.getLogger("edgeaudit.spool")

#: Default cap of the quarantine, as a fraction of the spool's quota.
QUARANTINE_FRACTION: Final = 0.25
#: Characters of the collector's ``error`` and ``detail`` kept with a quarantined batch.
MAX_ERROR_CHARS: Final = 100
MAX_DETAIL_CHARS: Final = 1000

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS quarantine (
    batch_seq INTEGER PRIMARY KEY,   -- the number it was refused under (never given out again)
    first_id INTEGER NOT NULL,       -- its records, still in records (ids <= state.sent_upto)
    last_id INTEGER NOT NULL,
    count INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    max_added REAL NOT NULL,
    refused REAL NOT NULL,           -- wall clock of the refusal
    status INTEGER NOT NULL,         -- the collector's answer: HTTP status
    error TEXT NOT NULL,             -- ... its error name
    detail TEXT NOT NULL,            -- ... and its explanation
    maybe_stored INTEGER NOT NULL,   -- 1: an earlier try got no answer, the collector may hold it
    requeued_from INTEGER            -- the batch_seq this one was requeued from, if it was
);
CREATE TABLE IF NOT EXISTS requeued (
    first_id INTEGER PRIMARY KEY,    -- records requeued together: cut as a batch of their own
    last_id INTEGER NOT NULL,
    from_seq INTEGER NOT NULL        -- the quarantined batch they were
);
CREATE TABLE IF NOT EXISTS quarantine_state (
    k INTEGER PRIMARY KEY CHECK (k = 0),
    quarantined INTEGER NOT NULL,    -- records ever quarantined
    requeued INTEGER NOT NULL,       -- records ever put back in the queue
    evicted INTEGER NOT NULL         -- quarantined records deleted for room: lost
);
INSERT OR IGNORE INTO quarantine_state VALUES (0, 0, 0, 0)
"""


@dataclass(frozen=True)
class Refusal:
    """The collector's answer that put a batch in quarantine."""

    status: int
    error: str
    detail: str
    maybe_stored: bool = False


@dataclass(frozen=True)
class QuarantinedBatch:
    """One quarantined batch, as ``edgeaudit-agent spool quarantine`` lists it."""

    batch_seq: int
    records: int
    bytes: int
    first_ts: float | None  # the records' own time span
    last_ts: float | None
    refused: float
    status: int
    error: str
    detail: str
    maybe_stored: bool
    requeued_from: int | None


@dataclass(frozen=True)
class QuarantineTotals:
    batches: int
    records: int
    bytes: int
    quarantined: int  # records ever quarantined
    requeued: int  # records ever requeued
    evicted: int  # quarantined records deleted for room


def create(conn: sqlite3.Connection) -> None:
    """The quarantine's tables and counters (inside the spool's opening transaction)."""
    for stmt in SCHEMA.split(";"):  # (no ";" inside the comments)
        if stmt.strip():
            conn.execute(stmt)


def move_in(conn: sqlite3.Connection, st: dict[str, int], batch_seq: int, refusal: Refusal, now: float,
            cap: int) -> bool:
    """Take the queue's first batch ``batch_seq`` out of the queue into the quarantine, making room
    under ``cap`` first; False when it is already there. ``ValueError`` names what is wrong."""
    row = conn.execute("SELECT first_id, last_id, count, bytes, max_added, sent FROM batches"
                       " WHERE batch_seq = ?", (batch_seq,)).fetchone()
    if row is None:
        if conn.execute("SELECT 1 FROM quarantine WHERE batch_seq = ?", (batch_seq,)).fetchone():
            return False
        raise ValueError(f"no batch {batch_seq}")
    first, last, count, nbytes, max_added, sent = row
    if sent is not None:
        raise ValueError(f"batch {batch_seq} was acknowledged: it cannot be quarantined")
    if first != st["sent_upto"] + 1:
        raise ValueError(f"batch {batch_seq} is not the next one in the queue")
    held = int(conn.execute("SELECT coalesce(sum(bytes), 0) FROM quarantine").fetchone()[0])
    if held + nbytes > cap:
        evict_oldest(conn, st, held + nbytes - cap, why=f"its cap of {cap} bytes")
    origin = conn.execute("SELECT from_seq FROM requeued WHERE first_id <= ? AND last_id >= ?",
                          (first, first)).fetchone()
    conn.execute("DELETE FROM batches WHERE batch_seq = ?", (batch_seq,))
    conn.execute("INSERT INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (batch_seq, first, last, count, nbytes, max_added, now, refusal.status,
                  refusal.error[:MAX_ERROR_CHARS], refusal.detail[:MAX_DETAIL_CHARS],
                  int(refusal.maybe_stored), None if origin is None else origin[0]))
    conn.execute("UPDATE quarantine_state SET quarantined = quarantined + ? WHERE k = 0", (count,))
    st["sent_upto"] = last
    forget_requeued(conn, last)
    return True


def evict_oldest(conn: sqlite3.Connection, st: dict[str, int], need: int, why: str) -> int:
    """Delete the oldest quarantined batches until ``need`` bytes are free (or none is left);
    the bytes freed. Those records are lost: counted and logged."""
    freed = records = 0
    while freed < need:
        row = conn.execute("SELECT batch_seq, first_id, last_id, count, bytes FROM quarantine"
                           " ORDER BY batch_seq LIMIT 1").fetchone()
        if row is None:
            break
        seq, first, last, count, nbytes = row
        conn.execute("DELETE FROM records WHERE id BETWEEN ? AND ?", (first, last))
        conn.execute("DELETE FROM quarantine WHERE batch_seq = ?", (seq,))
        st["bytes"] -= nbytes
        st["records"] -= count
        freed += nbytes
        records += count
    if records:
        conn.execute("UPDATE quarantine_state SET evicted = evicted + ? WHERE k = 0", (records,))
        log.error("spool: deleted %d quarantined records (refused by the collector, never stored there) "
                  "for %s; requeue or fix what the collector refuses sooner", records, why)
    return freed


def take_out(conn: sqlite3.Connection, st: dict[str, int], batch_seq: int) -> QuarantinedBatch | None:
    """Put quarantined batch ``batch_seq`` back at the tail of the queue (module doc, "Requeue");
    what it was, or None when it is not (or no longer) in the quarantine."""
    found = listing(conn, batch_seq)
    if not found:
        return None
    q = found[0]
    first, last = conn.execute("SELECT first_id, last_id FROM quarantine WHERE batch_seq = ?",
                               (batch_seq,)).fetchone()
    rows = conn.execute("SELECT added, ts, type, body FROM records WHERE id BETWEEN ? AND ? ORDER BY id",
                        (first, last)).fetchall()
    if len(rows) != last - first + 1:
        raise ValueError(f"quarantined batch {batch_seq} lost records")
    start = st["next_id"]
    conn.executemany("INSERT INTO records (id, added, ts, type, body) VALUES (?, ?, ?, ?, ?)",
                     [(start + i, *r) for i, r in enumerate(rows)])
    conn.execute("DELETE FROM records WHERE id BETWEEN ? AND ?", (first, last))
    conn.execute("DELETE FROM quarantine WHERE batch_seq = ?", (batch_seq,))
    conn.execute("INSERT INTO requeued VALUES (?, ?, ?)", (start, start + len(rows) - 1, batch_seq))
    conn.execute("UPDATE quarantine_state SET requeued = requeued + ? WHERE k = 0", (len(rows),))
    st["next_id"] = start + len(rows)
    return q


def cut_end(conn: sqlite3.Connection, start: int) -> int | None:
    """The last id a batch starting at ``start`` may take so that a requeued range is a batch of
    its own (None: no limit)."""
    row = conn.execute("SELECT first_id, last_id FROM requeued WHERE last_id >= ? ORDER BY first_id LIMIT 1",
                       (start,)).fetchone()
    if row is None:
        return None
    first, last = int(row[0]), int(row[1])
    return first - 1 if first > start else last


def forget_requeued(conn: sqlite3.Connection, done_upto: int) -> None:
    """Requeued ranges wholly sent or quarantined again need no boundary any more."""
    conn.execute("DELETE FROM requeued WHERE last_id <= ?", (done_upto,))


def listing(conn: sqlite3.Connection, batch_seq: int | None = None) -> list[QuarantinedBatch]:
    """Every quarantined batch (or just ``batch_seq``), oldest first."""
    where, args = ("WHERE q.batch_seq = ?", (batch_seq,)) if batch_seq is not None else ("", ())
    rows = conn.execute(
        "SELECT q.batch_seq, q.count, q.bytes, (SELECT min(ts) FROM records WHERE id BETWEEN q.first_id AND"
        " q.last_id), (SELECT max(ts) FROM records WHERE id BETWEEN q.first_id AND q.last_id), q.refused,"
        " q.status, q.error, q.detail, q.maybe_stored, q.requeued_from"
        f" FROM quarantine q {where} ORDER BY q.batch_seq", args).fetchall()
    return [QuarantinedBatch(int(r[0]), int(r[1]), int(r[2]), r[3], r[4], float(r[5]), int(r[6]), str(r[7]),
                             str(r[8]), bool(r[9]), r[10]) for r in rows]


def totals(conn: sqlite3.Connection) -> QuarantineTotals:
    held = conn.execute("SELECT count(*), coalesce(sum(count), 0), coalesce(sum(bytes), 0) FROM quarantine"
                        ).fetchone()
    counts = conn.execute("SELECT quarantined, requeued, evicted FROM quarantine_state WHERE k = 0"
                          ).fetchone()
    if counts is None:
        raise ValueError("its quarantine counters are missing")
    return QuarantineTotals(*(int(v) for v in held), *(int(v) for v in counts))
