"""Granules: how the SQLite backend packs records (a pure module, also run in ingest workers).

What: ``prepare(records)`` turns one batch's records into ``Granule`` s: runs of up to
``GRANULE_RECORDS`` records of one UTC day and one record-type family (``FAMILIES``), each
stored as one zstd-compressed msgpack array (``data``) plus what finds it without opening it:
its time span, its record types, its lowercased search text, and the set of lookup ``keys``
of its records (the first granule of each (day, family) also the ``chunk_keys``, below).
``unpack(data)`` gives the records back.

Why (issue 5: ≥ 100k records/s into SQLite on 2 cores): a row per record with B-tree
indexes on text addresses costs SQLite ~30 µs per record (five indexes, each a random
insert) and ~670 bytes on disk; SQLite alone could not reach the target that way
(bench/bench_collector.py measured 29–35k/s for the bare inserts). A granule is one row per
~256 records, and its lookup keys are 64-bit integers in one ``WITHOUT ROWID`` table:
~1.5 integer keys per record, ~100 bytes per record on disk in all. This is the layout
ClickHouse uses (granules, compressed column blocks, skip indexes), at a smaller scale;
queries read a few granules and filter the decoded records exactly. The key inserts are
most of SQLite's cost (a granule row is ~0.5 µs per record, a key ~1.4 µs when ~50k share a
commit, ``collector.storage.sqlite`` "Index"), so keys are kept to what the lookups need.
The built collector compiles this module with mypyc (setup.py): it runs in the ingest
workers, once per record.

Keys (``key_of``): ``kind << 48 | crc32(value) << 16 | port``. A crc32 collision only makes
a query decode a granule that turns out not to hold the value (every query checks the
decoded records' fields), never a wrong answer. Granule keys, for the traceback's exact
lookups (one or a few granules each):
- ``OUTSIDE`` (ip, port): a ``nat`` record's outside address, a session's stamped
  ``nat_ip``/``nat_port`` (traceback from the public side);
- ``ENDPOINT`` (ip, port): a ``session`` record's originator (traceback from the inside);
- ``UID``: the flow id (a connection's records).
Chunk keys (``CHUNK_KINDS``), for the record search and identity lookups: a *chunk* is what
one batch put in one file (its granules share a ``chunk`` id), and its keys are
de-duplicated over the whole chunk, which halves the key count (an inside host, a popular
server, the outside address appear once per chunk instead of once per granule); a search
reads the chunk's granules and tests their records:
- ``IP``: every address a record names (src, dst, nat/outside, the user address);
- ``ACCOUNT``: the account (the ``account`` filter and legal holds).

Columns come from ``collector.storage.rows.record_columns``, so the SQLite and ClickHouse
backends see the same addresses, account and search text in a record.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from itertools import repeat
from operator import and_, or_, rshift
from typing import Any, Final, NamedTuple

import msgpack
import orjson
import zstandard

from collector.storage.keys import CHUNK_KINDS, INDEX_BITS, KIND_SHIFT, record_keys
from collector.storage.rows import record_columns
from collector.storage.scanners import SCANNERS, Scanner
from wire.meta import FAMILIES as WIRE_FAMILIES
from wire.records import RECORDS

#: Records per granule: the per-row costs (granule row, its key set, its compression) shrink
#: as granules grow, while a lookup pays a granule's decompression and the skipping of the
#: records before the one it wants (~100 µs at 256).
GRANULE_RECORDS: Final = 256
#: ... per family where it differs. NAT records are looked up by an outside address and port
#: that the gateway reuses all day, every use in another granule: a traceback reads every
#: event of that port in the 5-day window (``NAT_DEFAULT_LIFETIME``), hundreds of granules on
#: a busy gateway, so theirs are small (~15 µs each).
FAMILY_GRANULE_RECORDS: Final = {"nat": 32}
#: zstd level of granule data: level 1 packs records ~5x at a fraction of level 3's CPU.
LEVEL: Final = 1

#: Record type -> family (``wire.records.RECORDS``); each (day, family) is its own SQLite file
#: (DESIGN.md: "one database file per day and record type family"). A type this schema does
#: not know (a later agent's, should validation ever let one through) is kept as an event.
FAMILIES: Final = {name: meta.family for name, meta in RECORDS.items()}
FAMILY_NAMES: Final = WIRE_FAMILIES
DEFAULT_FAMILY: Final = "event"

_DAY: Final = 86_400
_isfinite: Final = math.isfinite
_INDEX_MASK: Final = (1 << INDEX_BITS) - 1
_KEY_MASK: Final = ~_INDEX_MASK
#: Granules per chunk at most: a granule's offset in its chunk fits the low 8 bits of a key.
CHUNK_GRANULES: Final = 256


def family_of(rtype: str) -> str:
    return FAMILIES.get(rtype, DEFAULT_FAMILY)


def day_of(ts: float) -> str:
    """The UTC day (``YYYY-MM-DD``) holding ``ts``."""
    return datetime.fromtimestamp(math.floor(ts / _DAY) * _DAY, UTC).strftime("%Y-%m-%d")


class Granule(NamedTuple):
    """One granule ready to store. A NamedTuple, not a dataclass: ingest workers pickle it
    back, and mypyc compiles a dataclass into a native class that does not pickle."""

    day: str
    family: str
    part: int  # the granule's number in its batch: with (agent, batch_seq), its identity
    ts_min: float
    ts_max: float  # the latest ts
    end_max: float  # the latest end (ts + duration for sessions)
    n: int
    types: str  # " http dns " (space-delimited so instr(types, ' dns ') is exact)
    search: str | None  # the records' search texts, newline-joined (None: none has any)
    data: bytes  # zstd(msgpack array of the records)
    rindex: bytes  # uint64 index entries (key << INDEX_BITS | record index), sorted
    # The first granule of a chunk: JSON arrays (json_each inserts them in C) of the granule
    # keys of the chunk's granules, each as key << 8 | the granule's offset in the chunk, and
    # of the chunk's keys. The others: None.
    keys: bytes | None
    chunk_keys: bytes | None


class _Run:
    """A granule being filled: its records' indexes and stamps and what it will carry."""

    __slots__ = ("chunk_entries", "end_max", "entries", "idxs", "size", "stamps", "texts", "types")

    def __init__(self, size: int) -> None:
        self.size = size  # records it takes
        self.idxs: list[int] = []
        self.stamps: list[float] = []
        self.entries: list[int] = []  # index entries of granule kinds
        self.chunk_entries: list[int] = []  # ... of chunk kinds
        self.types: set[str] = set()
        self.texts: list[str] = []
        self.end_max = -math.inf


def prepare(records: Sequence[Mapping[str, Any]], payload: bytes | None = None,
            offsets: Sequence[int] | None = None) -> list[Granule]:
    """The granules of one batch's records, in batch order within each (day, family).

    With ``payload`` and ``offsets`` (``wire.envelope.decode_batch_spans``: record ``i`` is
    ``payload[offsets[i]:offsets[i + 1]]``) a granule keeps the records' msgpack bytes as
    they came instead of packing the dicts again. Raises ``ValueError`` for a record without
    a str ``type`` and a finite ``ts`` (the whole batch is refused). Deterministic: the same
    records give the same granules, so a batch resent after a crash maps onto the granules
    it already stored.
    """
    # One pass over the records (the ingest hot path): each goes to the open run of its
    # (day, family), and its index entries straight into that run's list.
    groups: dict[tuple[int, str], list[_Run]] = {}
    # per record type: the day of its last record, that (day, family)'s runs, its scanner
    last: dict[str, tuple[int, list[_Run], Scanner | None]] = {}
    floor = math.floor
    for idx, given in enumerate(records):
        # records are dicts (msgpack makes them); the scanners index dicts directly
        rec: dict[str, Any] = given if type(given) is dict else dict(given)
        rtype: Any = rec.get("type")
        ts: Any = rec.get("ts")
        if type(rtype) is not str or not (type(ts) is float or type(ts) is int) or not _isfinite(ts):
            raise ValueError(f"records[{idx}]: a record needs a str 'type' and a finite numeric 'ts'")
        ts = float(ts)
        day_no = floor(ts / _DAY)
        seen = last.get(rtype)
        if seen is None or seen[0] != day_no:
            where = (day_no, FAMILIES.get(rtype, DEFAULT_FAMILY))
            runs_of = groups.get(where)
            if runs_of is None:
                runs_of = groups[where] = [_Run(FAMILY_GRANULE_RECORDS.get(where[1], GRANULE_RECORDS))]
            seen = last[rtype] = (day_no, runs_of, SCANNERS.get(rtype))
        _, runs, scan = seen
        run = runs[-1]
        if len(run.idxs) == run.size:
            run = _Run(run.size)
            runs.append(run)
        pos = len(run.idxs)
        run.idxs.append(idx)
        run.stamps.append(ts)
        run.types.add(rtype)
        if scan is not None:
            end, text = scan(rec, ts, pos, run.entries, run.chunk_entries)
        else:  # a type this schema does not know: the generic way
            cols = record_columns(idx, rec)
            for k in record_keys(rtype, cols):
                (run.chunk_entries if k >> KIND_SHIFT in CHUNK_KINDS else run.entries).append(
                    (k << INDEX_BITS) | pos)
            end, text = cols[2], cols[12]
        if end > run.end_max:
            run.end_max = end
        if text is not None:
            run.texts.append(text)
    out: list[Granule] = []
    cctx = zstandard.ZstdCompressor(level=LEVEL)
    for (day_no, family), runs in sorted(groups.items()):
        day = day_of(day_no * _DAY)
        for at in range(0, len(runs), CHUNK_GRANULES):
            out += _chunk(day, family, len(out), runs[at : at + CHUNK_GRANULES], records, payload, offsets,
                          cctx)
    return out


def type_summary(records: Sequence[Mapping[str, Any]]) -> dict[str, tuple[int, float]]:
    """Per record type: how many, and the latest ``ts`` (the units registry's evidence of
    what each unit sends: the compliance report's last record of each kind, its gaps)."""
    out: dict[str, tuple[int, float]] = {}
    for rec in records:
        rtype = rec.get("type")
        ts = rec.get("ts")
        if type(rtype) is not str or not (type(ts) is float or type(ts) is int):
            continue
        seen = out.get(rtype)
        out[rtype] = (1, float(ts)) if seen is None else (seen[0] + 1, max(seen[1], float(ts)))
    return out


def _chunk(day: str, family: str, part: int, runs: Sequence[_Run], records: Sequence[Mapping[str, Any]],
           payload: bytes | None, offsets: Sequence[int] | None,
           cctx: zstandard.ZstdCompressor) -> list[Granule]:
    """The granules of one chunk (``runs``, numbered from ``part``); the first carries the
    chunk's key lists."""
    out: list[Granule] = []
    chunk: set[int] = set()
    granule_keys: set[int] = set()
    for offset, run in enumerate(runs):
        if payload is not None and offsets is not None:
            packed = _array_head(len(run.idxs)) + b"".join(
                payload[offsets[j] : offsets[j + 1]] for j in run.idxs)
        else:
            packed = msgpack.packb([_plain(records[j]) for j in run.idxs], use_bin_type=True)
        # map(...): the loops over the entries in C, not a comprehension's bytecode. A
        # granule key goes out as key << 8 | the granule's offset in the chunk: its entry
        # with the record's index replaced by the offset.
        chunk.update(map(rshift, run.chunk_entries, repeat(INDEX_BITS)))
        granule_keys.update(map(or_, map(and_, run.entries, repeat(_KEY_MASK)), repeat(offset)))
        out.append(Granule(
            day=day,
            family=family,
            part=part + offset,
            ts_min=min(run.stamps),
            ts_max=max(run.stamps),
            end_max=run.end_max,
            n=len(run.idxs),
            types=" " + " ".join(sorted(run.types)) + " ",
            search="\n\n".join(run.texts) if run.texts else None,
            data=cctx.compress(packed),
            rindex=array("Q", sorted(run.entries + run.chunk_entries)).tobytes(),
            keys=None,
            chunk_keys=None,
        ))
    out[0] = out[0]._replace(keys=orjson.dumps(sorted(granule_keys)), chunk_keys=orjson.dumps(sorted(chunk)))
    return out


def _plain(rec: Mapping[str, Any]) -> dict[str, Any]:
    return rec if type(rec) is dict else dict(rec)


def _array_head(n: int) -> bytes:
    """The msgpack header of an array of ``n`` items."""
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def records_with(rindex: bytes, groups: Sequence[Sequence[int]]) -> list[int]:
    """Indexes of the records (in order) that have, for every group of keys, one of its keys."""
    entries = array("Q")
    entries.frombytes(rindex)
    found: set[int] | None = None
    for keys in groups:
        mine: set[int] = set()
        for key in keys:
            i = bisect_left(entries, key << INDEX_BITS)
            end = (key + 1) << INDEX_BITS
            while i < len(entries) and entries[i] < end:
                mine.add(entries[i] & _INDEX_MASK)
                i += 1
        found = mine if found is None else found & mine
    return sorted(found or ())


def granule_keys(rindex: bytes) -> set[int]:
    """The granule-kind keys of a granule's index (what the ``keys`` table holds for it)."""
    entries = array("Q")
    entries.frombytes(rindex)
    return {k for e in entries if (k := e >> INDEX_BITS) >> KIND_SHIFT not in CHUNK_KINDS}


def unpack_some(data: bytes, which: Sequence[int]) -> list[dict[str, Any]]:
    """Records ``which`` (ascending indexes) of a granule's ``data``, unpacking only those:
    msgpack skips the others without building them."""
    up = msgpack.Unpacker(None, raw=False, strict_map_key=False, max_buffer_size=0)
    up.feed(zstandard.ZstdDecompressor().decompress(data))
    up.read_array_header()
    out: list[dict[str, Any]] = []
    at = 0
    for i in which:
        for _ in range(i - at):
            up.skip()
        out.append(up.unpack())
        at = i + 1
    return out


def unpack(data: bytes) -> list[dict[str, Any]]:
    """The records of a granule's ``data``."""
    records: list[dict[str, Any]] = msgpack.unpackb(
        zstandard.ZstdDecompressor().decompress(data), raw=False, strict_map_key=False
    )
    return records


def regranule(day: str, family: str, part: int, records: Sequence[dict[str, Any]]) -> Granule:
    """A granule of ``records`` (already stored ones of one day and family, e.g. what
    retention keeps of one); its chunk keys are not recomputed (the chunk's keys still
    cover what it keeps)."""
    (g,) = prepare(records)
    return g._replace(day=day, family=family, part=part, chunk_keys=None)  # keys: offset 0
