"""Lookup keys of the SQLite store: 64-bit integers naming a value of one kind.

A key is ``kind << 48 | crc32(value) << 16 | port`` (``key_of``). Granule keys (``OUTSIDE``,
``ENDPOINT``, ``UID``) point at the granule holding the record, chunk keys (``CHUNK_KINDS``:
``IP``, ``ACCOUNT``) at its chunk; ``collector.storage.granules`` says why. A crc32 collision
makes a lookup read a granule in vain, never answer wrong: every lookup tests the records.

``record_keys`` is the reference: which keys a record has, from its ``record_columns``.
``collector.storage.scan`` generates the same per record type for the ingest hot path.
"""

from __future__ import annotations

import zlib
from typing import Final

from collector.storage.rows import Columns

KIND_OUTSIDE: Final = 1
KIND_ENDPOINT: Final = 2
KIND_IP: Final = 3
KIND_UID: Final = 4
KIND_ACCOUNT: Final = 5

#: Kinds whose keys name a chunk (all granules one batch put in one file), not a granule.
CHUNK_KINDS: Final = frozenset({KIND_IP, KIND_ACCOUNT})

OUTSIDE_BITS: Final = KIND_OUTSIDE << 48
ENDPOINT_BITS: Final = KIND_ENDPOINT << 48
IP_BITS: Final = KIND_IP << 48
UID_BITS: Final = KIND_UID << 48
ACCOUNT_BITS: Final = KIND_ACCOUNT << 48
_crc32: Final = zlib.crc32


def key_of(kind: int, value: str, port: int = 0) -> int:
    """The lookup key of ``value`` (and ``port``) of one kind (see the module doc)."""
    return (kind << 48) | (_crc32(value.encode("utf-8", "surrogatepass")) << 16) | (port & 0xFFFF)


def record_keys(rtype: str, cols: Columns, out: set[int], chunk_out: set[int]) -> None:
    """Add one record's (``record_columns``) granule keys to ``out``, its chunk keys
    (``IP``, ``ACCOUNT``) to ``chunk_out``."""
    _, _, _, uid, src_ip, src_port, dst_ip, _, nat_ip, nat_port, addr, account, _ = cols
    if src_ip is not None:
        h = _crc32(src_ip.encode()) << 16
        chunk_out.add(IP_BITS | h)
        if rtype == "session" and src_port is not None:
            out.add(ENDPOINT_BITS | h | (src_port & 0xFFFF))
    if dst_ip is not None:
        chunk_out.add(IP_BITS | (_crc32(dst_ip.encode()) << 16))
    if nat_ip is not None:
        h = _crc32(nat_ip.encode()) << 16
        chunk_out.add(IP_BITS | h)
        if nat_port is not None:
            out.add(OUTSIDE_BITS | h | (nat_port & 0xFFFF))
    if addr is not None:
        chunk_out.add(IP_BITS | (_crc32(addr.encode()) << 16))
    if uid is not None:
        out.add(UID_BITS | (_crc32(uid.encode()) << 16))
    if account is not None:
        chunk_out.add(ACCOUNT_BITS | (_crc32(account.encode()) << 16))
