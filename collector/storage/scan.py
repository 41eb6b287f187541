"""Generated per-type record scanners: the ingest fast path of ``record_columns`` + ``record_keys``.

What: for each schema type, ``scanner_source(rtype)`` writes a function
``scan_<type>(rec, ts, idx, entries, chunk_entries) -> (end_ts, search)`` that reads exactly
the fields that type has among those ``collector.storage.rows.record_columns`` looks at,
appends the index entry (``key << INDEX_BITS | idx``) of each key
``collector.storage.keys.record_keys`` gives to ``entries`` (granule kinds) or
``chunk_entries`` (``CHUNK_KINDS``), and returns its end time and search text;
``SCANNERS`` holds them compiled (the technique ``wire.fastpath`` uses). A type without a
scanner (not in this schema) goes the generic way.

Why: packing a batch read every record three times through generic code (the columns
tuple, then the keys from it, then the granule's span and text from it): ~4.5 µs of the
~14 µs a record cost an ingest worker. Knowing the type, the scanner does one read per
field and no tuple, loop or dispatch: ~1.5 µs (bench/bench_collector.py).

Correctness: a scanner must give exactly what the generic path gives, for any record, valid
or not (the store does not rely on validation); the tests compare both on every example
record, on generated ones and on ones with wrong-typed fields. Field names are emitted with
``repr`` and come from our own schema, so no name can inject code.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping
from typing import Any, Final

from collector.storage.keys import (
    ACCOUNT_BITS,
    ENDPOINT_BITS,
    HOUR_SHIFT,
    INDEX_BITS,
    IP_BITS,
    OUTSIDE_BITS,
    UID_BITS,
)
from collector.storage.rows import ACCOUNT_FIELDS, ADDR_FIELDS, SEARCH_FIELDS, flow_fields
from wire.spec import SPECS

#: Where a value's crc32 sits in an index entry.
CRC_SHIFT: Final = 16 + INDEX_BITS

Scanner = Callable[[Mapping[str, Any], float, int, list[int], list[int]], tuple[float, "str | None"]]

_NAMESPACE: Final[dict[str, Any]] = {
    "crc32": zlib.crc32,
    "isfinite": math.isfinite,
    "IP": IP_BITS << INDEX_BITS,
    "ENDPOINT": ENDPOINT_BITS << INDEX_BITS,
    "OUTSIDE": OUTSIDE_BITS << INDEX_BITS,
    "UID": UID_BITS << INDEX_BITS,
    "ACCOUNT": ACCOUNT_BITS << INDEX_BITS,

}


def scanner_source(rtype: str) -> str:
    """The source of ``scan_<rtype>`` (see the module doc); ``ts`` is the record's, checked
    by the caller (a finite float)."""
    fields = SPECS[rtype].fields
    src_ip, src_port, dst_ip, _, nat_ip, nat_port = flow_fields(rtype)
    # b: the entry's hour and record index; a key's bits sit INDEX_BITS higher in an entry
    body = ["    get = rec.get", "    end = ts",
            f"    b = ((int(ts % 86400.0) // 3600) << {HOUR_SHIFT + INDEX_BITS}) | idx",
            "    add = entries.append", "    cadd = chunk_entries.append"]
    if rtype == "session":
        body += [
            "    d = get('duration')",
            "    if (type(d) is float or type(d) is int) and isfinite(d) and d > 0:",
            "        end += float(d)",
        ]

    def has(name: str) -> bool:
        return name in fields

    if has(src_ip):
        body += [f"    v = get({src_ip!r})", "    if type(v) is str:",
                 f"        h = crc32(v.encode()) << {CRC_SHIFT}",
                 "        cadd(IP | b | h)"]
        if rtype == "session" and has(src_port):
            body += [f"        p = get({src_port!r})", "        if type(p) is int:",
                     f"            add(ENDPOINT | b | h | ((p & 0xFFFF) << {INDEX_BITS}))"]
    if has(dst_ip):
        body += [f"    v = get({dst_ip!r})", "    if type(v) is str:",
                 f"        cadd(IP | b | (crc32(v.encode()) << {CRC_SHIFT}))"]
    if has(nat_ip):
        body += [f"    v = get({nat_ip!r})", "    if type(v) is str:",
                 f"        h = crc32(v.encode()) << {CRC_SHIFT}",
                 "        cadd(IP | b | h)"]
        if has(nat_port):
            body += [f"        p = get({nat_port!r})", "        if type(p) is int:",
                     f"            add(OUTSIDE | b | h | ((p & 0xFFFF) << {INDEX_BITS}))"]
    # the first str of the type's address fields, then of its account fields
    for bits, names in (("IP", [f for f in ADDR_FIELDS.get(rtype, ()) if has(f)]),
                        ("ACCOUNT", [f for f in ACCOUNT_FIELDS if has(f)])):
        indent = "    "
        for name in names:
            body += [f"{indent}v = get({name!r})", f"{indent}if type(v) is str:",
                     f"{indent}    cadd({bits} | b | (crc32(v.encode()) << {CRC_SHIFT}))", f"{indent}else:"]
            indent += "    "
        if names:
            body.append(f"{indent}pass")
    if has("uid"):
        body += ["    v = get('uid')", "    if type(v) is str:",
                 f"        add(UID | b | (crc32(v.encode()) << {CRC_SHIFT}))"]
    texts = [f for f in SEARCH_FIELDS if has(f)]
    if texts:
        body.append("    t = []")
        for name in texts:
            body += [f"    v = get({name!r})", "    if type(v) is str and v:",
                     "        t.append(v.casefold())"]
        body.append("    return end, '\\n'.join(t) if t else None")
    else:
        body.append("    return end, None")
    return f"def scan_{rtype}(rec, ts, idx, entries, chunk_entries):\n" + "\n".join(body) + "\n"


def compile_scanner(rtype: str) -> Scanner:
    namespace = dict(_NAMESPACE)
    exec(compile(scanner_source(rtype), f"<collector.storage.scan {rtype}>", "exec"), namespace)  # noqa: S102
    fn: Scanner = namespace[f"scan_{rtype}"]
    return fn


SCANNERS: Final[dict[str, Scanner]] = {name: compile_scanner(name) for name in SPECS}
