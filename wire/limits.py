"""Named size and range limits of the wire format, each with the reason it exists.

What: every bound the validator and the batch decoder enforce. Producers (the agent's
decoders) must clip their output to these limits; the collector rejects anything beyond them.

Why: the collector parses untrusted input from many agents. Every limit bounds the memory
or CPU one record or one batch can cost, or keeps a value storable (int64 columns).

Limits of the limits: string lengths are counted in characters (``len(str)``), so a
string can take up to 4 bytes per character once encoded as UTF-8.
"""

from __future__ import annotations

from typing import Final

# --- one record -----------------------------------------------------------------------------
#: Longest string field, in characters. URIs, subjects and user agents are clipped to this by
#: the agent; 8 KiB is the request-line limit of common HTTP servers.
MAX_STRING_LEN: Final = 8192
#: Most items in one list field (dns answers, smtp rcptto, mailbox commands, dhcp uids, ...).
MAX_LIST_LEN: Final = 1024
#: Longest string inside a list field, in characters: items are names, addresses, verbs and
#: uids, all short; a lower bound than MAX_STRING_LEN keeps one list below 1 M characters.
MAX_LIST_ITEM_LEN: Final = 1024
#: Most keys in one record. The widest record type (session) has about 30; unknown keys are
#: rejected anyway, this is a cheap first guard against huge maps.
MAX_FIELDS: Final = 64
#: `alert.snippet` is at most 200 characters of decoded context (SCHEMA.md).
MAX_SNIPPET_LEN: Final = 200
#: Longest text form of an IP address (IPv4-mapped IPv6 in mixed notation is 45 characters).
MAX_ADDR_LEN: Final = 45

# --- numbers --------------------------------------------------------------------------------
#: Integers must fit a signed 64-bit column (SQLite INTEGER, ClickHouse Int64).
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
#: Timestamps (record ``ts``, batch ``created``) in seconds since the Unix epoch. Records take
#: their time from packets, and replayed captures can be old or crafted with a zero clock, so
#: the epoch itself is allowed; the upper bound (2100-01-01T00:00:00Z) catches milliseconds or
#: nanoseconds sent by mistake.
MIN_TS: Final = 0.0
MAX_TS: Final = 4102444800.0

# --- one batch ------------------------------------------------------------------------------
#: Largest compressed batch body accepted, in bytes.
MAX_BATCH_COMPRESSED: Final = 8 * 1024 * 1024
#: Largest decompressed msgpack payload, in bytes. Guards against zstd bombs; a batch of a few
#: thousand records is a few MiB. Decoded Python objects can take up to ~8x this (a payload of
#: one-byte msgpack nils becomes 8-byte list slots), so the decoder's peak memory is bounded
#: by roughly 9x this value.
MAX_BATCH_DECOMPRESSED: Final = 32 * 1024 * 1024
#: Most records in one batch.
MAX_BATCH_RECORDS: Final = 50_000
#: Largest zstd window the decoder will allocate. Compression levels 1-19 without long-distance
#: matching stay within 8 MiB; a frame asking for more is refused before any allocation.
MAX_ZSTD_WINDOW: Final = 8 * 1024 * 1024
#: Longest ``agent_id`` / ``unit_id``, in characters.
MAX_ID_LEN: Final = 256
