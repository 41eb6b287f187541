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
most of SQLite's cost (a granule row is ~0.5 µs per record, a key ~1.5 µs with its WAL
page), so keys are kept to what the lookups need.

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
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]
import orjson
import zstandard

from collector.storage.rows import Columns, record_columns

#: Records per granule: a lookup decodes whole granules (~1 ms for 256 records), while the
#: per-row costs (granule row, its key set) shrink as granules grow.
GRANULE_RECORDS: Final = 256
#: zstd level of granule data: level 1 packs records ~5x at a fraction of level 3's CPU.
LEVEL: Final = 1

#: Record type -> family; each (day, family) is its own SQLite file (DESIGN.md: "one database
#: file per day and record type family"). A type not listed (a later schema's) is an event.
FAMILIES: Final = {
    "session": "flow",
    "nat": "nat",
    "http": "app", "dns": "app", "tls": "app", "smtp": "app", "mailbox": "app", "ftp": "app",
    "dhcp": "identity", "radius": "identity", "pppoe": "identity", "login": "identity",
    "registration": "identity",
    "alert": "event", "weird": "event", "audit": "event", "stats": "event",
}
FAMILY_NAMES: Final = ("flow", "nat", "app", "identity", "event")
DEFAULT_FAMILY: Final = "event"

KIND_OUTSIDE: Final = 1
KIND_ENDPOINT: Final = 2
KIND_IP: Final = 3
KIND_UID: Final = 4
KIND_ACCOUNT: Final = 5

#: Kinds whose keys name a chunk (all granules one batch put in one file), not a granule.
CHUNK_KINDS: Final = frozenset({KIND_IP, KIND_ACCOUNT})

_DAY: Final = 86_400
_crc32: Final = zlib.crc32
_OUTSIDE: Final = KIND_OUTSIDE << 48
_ENDPOINT: Final = KIND_ENDPOINT << 48
_IP: Final = KIND_IP << 48
_UID: Final = KIND_UID << 48
_ACCOUNT: Final = KIND_ACCOUNT << 48


def family_of(rtype: str) -> str:
    return FAMILIES.get(rtype, DEFAULT_FAMILY)


def key_of(kind: int, value: str, port: int = 0) -> int:
    """The lookup key of ``value`` (and ``port``) of one kind (see the module doc)."""
    return (kind << 48) | (_crc32(value.encode("utf-8", "surrogatepass")) << 16) | (port & 0xFFFF)


def day_of(ts: float) -> str:
    """The UTC day (``YYYY-MM-DD``) holding ``ts``."""
    return datetime.fromtimestamp(math.floor(ts / _DAY) * _DAY, UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True, slots=True)
class Granule:
    """One granule ready to store (picklable: built in ingest worker processes)."""

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
    keys: bytes  # JSON array of the distinct granule keys (json_each inserts it in C)
    chunk_keys: bytes | None  # the first granule of a chunk: the chunk's keys; others None


def record_keys(rtype: str, cols: Columns, out: set[int], chunk_out: set[int]) -> None:
    """Add one record's (``record_columns``) granule keys to ``out``, its chunk keys
    (``IP``, ``ACCOUNT``) to ``chunk_out``."""
    _, _, _, uid, src_ip, src_port, dst_ip, _, nat_ip, nat_port, addr, account, _ = cols
    if src_ip is not None:
        h = _crc32(src_ip.encode()) << 16
        chunk_out.add(_IP | h)
        if rtype == "session" and src_port is not None:
            out.add(_ENDPOINT | h | (src_port & 0xFFFF))
    if dst_ip is not None:
        chunk_out.add(_IP | (_crc32(dst_ip.encode()) << 16))
    if nat_ip is not None:
        h = _crc32(nat_ip.encode()) << 16
        chunk_out.add(_IP | h)
        if nat_port is not None:
            out.add(_OUTSIDE | h | (nat_port & 0xFFFF))
    if addr is not None:
        chunk_out.add(_IP | (_crc32(addr.encode()) << 16))
    if uid is not None:
        out.add(_UID | (_crc32(uid.encode()) << 16))
    if account is not None:
        chunk_out.add(_ACCOUNT | (_crc32(account.encode()) << 16))


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
    groups: dict[tuple[int, str], list[tuple[int, Columns]]] = {}
    for idx, rec in enumerate(records):
        cols = record_columns(idx, rec)
        key = (math.floor(cols[1] / _DAY), FAMILIES.get(cols[0], DEFAULT_FAMILY))
        group = groups.get(key)
        if group is None:
            group = groups[key] = []
        group.append((idx, cols))
    out: list[Granule] = []
    part = 0
    cctx = zstandard.ZstdCompressor(level=LEVEL)
    for (day_no, family), members in sorted(groups.items()):
        day = day_of(day_no * _DAY)
        chunk: set[int] = set()
        first = len(out)
        for i in range(0, len(members), GRANULE_RECORDS):
            run = members[i : i + GRANULE_RECORDS]
            if payload is not None and offsets is not None:
                packed = _array_head(len(run)) + b"".join(
                    payload[offsets[j] : offsets[j + 1]] for j, _ in run)
            else:
                packed = msgpack.packb([_plain(records[j]) for j, _ in run], use_bin_type=True)
            out.append(_granule(day, family, part, [c for _, c in members[i : i + GRANULE_RECORDS]],
                                cctx.compress(packed), chunk))
            part += 1
        out[first] = replace(out[first], chunk_keys=orjson.dumps(sorted(chunk)))
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


def _granule(day: str, family: str, part: int, chunk: Sequence[Columns], data: bytes,
             chunk_keys: set[int]) -> Granule:
    """The granule of ``chunk`` (its records' columns); adds its chunk keys to ``chunk_keys``."""
    keys: set[int] = set()
    types: set[str] = set()
    texts: list[str] = []
    ts_min = ts_max = end_max = chunk[0][1]
    for cols in chunk:
        rtype, ts, end_ts = cols[0], cols[1], cols[2]
        types.add(rtype)
        if ts < ts_min:
            ts_min = ts
        if ts > ts_max:
            ts_max = ts
        if end_ts > end_max:
            end_max = end_ts
        if cols[12] is not None:
            texts.append(cols[12])
        record_keys(rtype, cols, keys, chunk_keys)
    return Granule(
        day=day,
        family=family,
        part=part,
        ts_min=ts_min,
        ts_max=ts_max,
        end_max=end_max,
        n=len(chunk),
        types=" " + " ".join(sorted(types)) + " ",
        search="\n\n".join(texts) if texts else None,
        data=data,
        keys=orjson.dumps(sorted(keys)),
        chunk_keys=None,
    )


def unpack(data: bytes) -> list[dict[str, Any]]:
    """The records of a granule's ``data``."""
    records: list[dict[str, Any]] = msgpack.unpackb(
        zstandard.ZstdDecompressor().decompress(data), raw=False, strict_map_key=False
    )
    return records


def regranule(day: str, family: str, part: int, records: Sequence[dict[str, Any]]) -> Granule:
    """A granule of ``records`` (already stored ones, e.g. what retention keeps of one); its
    chunk keys are not recomputed (the chunk's keys still cover what it keeps)."""
    data = zstandard.ZstdCompressor(level=LEVEL).compress(msgpack.packb(list(records), use_bin_type=True))
    return _granule(day, family, part, [record_columns(i, rec) for i, rec in enumerate(records)], data, set())
