"""Lookup keys of the SQLite store: 64-bit integers naming a value of one kind.

A key is ``kind << 53 | hour << 48 | crc32(value) << 16 | port`` (``key_of``), ``hour``
being the hour of the UTC day (0-23) of the record's ``ts``. The hour keeps inserts local:
records arrive roughly in time order, so a day file's inserts land in the current hour's
part of the key index, which stays in the page cache however big the day grows (with the
hash first, every insert hit a random page of the whole day's index, and a 10-million-record
day slowed ingest from ~100k to ~16k records/s once the index outgrew the cache). A
lookup over a time window probes each hour of it (``keys_between``): at most 24 index probes
per file. Granule keys (``OUTSIDE``,
``ENDPOINT``, ``UID``) point at the granule holding the record, chunk keys (``CHUNK_KINDS``:
``IP``, ``ACCOUNT``) at its chunk; ``collector.storage.granules`` says why. A crc32 collision
makes a lookup read a granule in vain, never answer wrong: every lookup tests the records.

``record_keys`` is the reference: which keys a record has, from its ``record_columns``.
``collector.storage.scan`` generates the same per record type for the ingest hot path.

Inside a granule, ``rindex`` lists each record's keys as *entries* ``key << 8 | index``
(``INDEX_BITS``: a granule holds at most 256 records), sorted, so a lookup finds the records
of a key by binary search and unpacks only those.
"""

from __future__ import annotations

import zlib
from typing import Final

from collector.storage.rows import Columns

# Granule kinds are numbered below the chunk kinds: a granule key (< 4 << KIND_SHIFT = 2**55)
# still fits a signed 64-bit integer shifted by 8 bits, as a chunk's key list ships them
# (``granules.Granule.keys``).
KIND_OUTSIDE: Final = 1
KIND_ENDPOINT: Final = 2
KIND_UID: Final = 3
KIND_IP: Final = 4
KIND_ACCOUNT: Final = 5

#: Kinds whose keys name a chunk (all granules one batch put in one file), not a granule.
CHUNK_KINDS: Final = frozenset({KIND_IP, KIND_ACCOUNT})

KIND_SHIFT: Final = 53
HOUR_SHIFT: Final = 48
OUTSIDE_BITS: Final = KIND_OUTSIDE << KIND_SHIFT
ENDPOINT_BITS: Final = KIND_ENDPOINT << KIND_SHIFT
IP_BITS: Final = KIND_IP << KIND_SHIFT
UID_BITS: Final = KIND_UID << KIND_SHIFT
ACCOUNT_BITS: Final = KIND_ACCOUNT << KIND_SHIFT
_crc32: Final = zlib.crc32
_DAY: Final = 86_400.0
#: Low bits of an index entry holding the record's index in its granule.
INDEX_BITS: Final = 8


def hour_bits(ts: float) -> int:
    """The hour part of the keys of a record stamped ``ts``."""
    return (int(ts % _DAY) // 3600) << HOUR_SHIFT


def kind_of(key: int) -> int:
    return key >> KIND_SHIFT


def key_of(kind: int, value: str, port: int = 0, hour: int = 0) -> int:
    """The lookup key of ``value`` (and ``port``) of one kind in one hour (module doc)."""
    return ((kind << KIND_SHIFT) | (hour << HOUR_SHIFT)
            | (_crc32(value.encode("utf-8", "surrogatepass")) << 16) | (port & 0xFFFF))


def keys_between(kind: int, value: str, port: int, day_start: float, lo: float | None,
                 hi: float | None) -> list[int]:
    """The keys of ``value`` for every hour of the day starting at ``day_start`` that
    overlaps [``lo``, ``hi``] (None: open)."""
    first = 0 if lo is None else max(0, min(23, int((lo - day_start) // 3600)))
    last = 23 if hi is None else max(0, min(23, int((hi - day_start) // 3600)))
    return [key_of(kind, value, port, h) for h in range(first, last + 1)]


def record_keys(rtype: str, cols: Columns) -> set[int]:
    """Every key of one record (its ``record_columns``), granule and chunk kinds alike."""
    _, ts, _, uid, src_ip, src_port, dst_ip, _, nat_ip, nat_port, addr, account, _ = cols
    hb = hour_bits(ts)
    out: set[int] = set()
    if src_ip is not None:
        h = _crc32(src_ip.encode()) << 16
        out.add(IP_BITS | hb | h)
        if rtype == "session" and src_port is not None:
            out.add(ENDPOINT_BITS | hb | h | (src_port & 0xFFFF))
    if dst_ip is not None:
        out.add(IP_BITS | hb | (_crc32(dst_ip.encode()) << 16))
    if nat_ip is not None:
        h = _crc32(nat_ip.encode()) << 16
        out.add(IP_BITS | hb | h)
        if nat_port is not None:
            out.add(OUTSIDE_BITS | hb | h | (nat_port & 0xFFFF))
    if addr is not None:
        out.add(IP_BITS | hb | (_crc32(addr.encode()) << 16))
    if uid is not None:
        out.add(UID_BITS | hb | (_crc32(uid.encode()) << 16))
    if account is not None:
        out.add(ACCOUNT_BITS | hb | (_crc32(account.encode()) << 16))
    return out
