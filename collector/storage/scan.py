"""Generated per-type record scanners: the ingest fast path of ``record_columns`` + ``record_keys``.

What: for each schema type, ``scanner_source(rtype)`` writes a function
``scan_<type>(rec, ts, idx, entries, chunk_entries) -> (end_ts, search)`` that reads exactly
the fields that type has among those ``collector.storage.rows.record_columns`` looks at,
appends the index entry (``key << INDEX_BITS | idx``) of each key
``collector.storage.keys.record_keys`` gives to ``entries`` (granule kinds) or
``chunk_entries`` (``CHUNK_KINDS``), and returns its end time and search text.
``module_source()`` writes them all, with ``SCANNERS`` (type -> scanner), as
``collector/storage/scanners.py`` (checked in; ``python -m collector.storage.scan`` rewrites
it, ``--check`` tells whether it is current, a test fails when it is not): the technique
``wire.fastpath`` uses, and for the same reason, a file the built collector compiles to
machine code with mypyc (setup.py). A type without a scanner (not in this schema) goes the
generic way.

Why: packing a batch read every record three times through generic code (the columns
tuple, then the keys from it, then the granule's span and text from it): ~4.5 µs of the
~14 µs a record cost an ingest worker. Knowing the type, the scanner does one read per
field and no tuple, loop or dispatch: ~1.5 µs (bench/bench_collector.py), less compiled.

Correctness: a scanner must give exactly what the generic path gives, for any record, valid
or not (the store does not rely on validation); the tests compare both on every example
record, on generated ones and on ones with wrong-typed fields. Field names are emitted with
``repr`` and come from our own schema, so no name can inject code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

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
from wire.fastpath import write_generated
from wire.spec import SPECS

#: Where a value's crc32 sits in an index entry.
CRC_SHIFT: Final = 16 + INDEX_BITS

#: The kind bits of each key kind, where they sit in an index entry (emitted as literals).
_KIND_ENTRY: Final = {
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
    k = _KIND_ENTRY
    # b: the entry's hour and record index; a key's bits sit INDEX_BITS higher in an entry.
    # Direct method calls, not bound-method locals: mypyc makes them C calls.
    body = ["    end = ts",
            f"    b = ((int(ts % 86400.0) // 3600) << {HOUR_SHIFT + INDEX_BITS}) | idx"]
    if rtype == "session":
        body += [
            "    d = rec.get('duration')",
            "    if (type(d) is float or type(d) is int) and isfinite(d) and d > 0:",
            "        end += float(d)",
        ]

    def has(name: str) -> bool:
        return name in fields

    if has(src_ip):
        body += [f"    v = rec.get({src_ip!r})", "    if type(v) is str:",
                 f"        h = crc32(v.encode()) << {CRC_SHIFT}",
                 f"        chunk_entries.append({k['IP']:#x} | b | h)"]
        if rtype == "session" and has(src_port):
            body += [f"        p = rec.get({src_port!r})", "        if type(p) is int:",
                     f"            entries.append({k['ENDPOINT']:#x} | b | h"
                     f" | ((p & 0xFFFF) << {INDEX_BITS}))"]
    if has(dst_ip):
        body += [f"    v = rec.get({dst_ip!r})", "    if type(v) is str:",
                 f"        chunk_entries.append({k['IP']:#x} | b | (crc32(v.encode()) << {CRC_SHIFT}))"]
    if has(nat_ip):
        body += [f"    v = rec.get({nat_ip!r})", "    if type(v) is str:",
                 f"        h = crc32(v.encode()) << {CRC_SHIFT}",
                 f"        chunk_entries.append({k['IP']:#x} | b | h)"]
        if has(nat_port):
            body += [f"        p = rec.get({nat_port!r})", "        if type(p) is int:",
                     f"            entries.append({k['OUTSIDE']:#x} | b | h"
                     f" | ((p & 0xFFFF) << {INDEX_BITS}))"]
    # the first str of the type's address fields, then of its account fields
    for kind, names in (("IP", [f for f in ADDR_FIELDS.get(rtype, ()) if has(f)]),
                        ("ACCOUNT", [f for f in ACCOUNT_FIELDS if has(f)])):
        indent = "    "
        for name in names:
            body += [f"{indent}v = rec.get({name!r})", f"{indent}if type(v) is str:",
                     f"{indent}    chunk_entries.append({k[kind]} | b | (crc32(v.encode()) << {CRC_SHIFT}))",
                     f"{indent}else:"]
            indent += "    "
        if names:
            body.append(f"{indent}pass")
    if has("uid"):
        body += ["    v = rec.get('uid')", "    if type(v) is str:",
                 f"        entries.append({k['UID']:#x} | b | (crc32(v.encode()) << {CRC_SHIFT}))"]
    texts = [f for f in SEARCH_FIELDS if has(f)]
    if texts:
        body.append("    t: list[str] = []")
        for name in texts:
            body += [f"    v = rec.get({name!r})", "    if type(v) is str and v:",
                     "        t.append(v.casefold())"]
        body.append("    return end, '\\n'.join(t) if t else None")
    else:
        body.append("    return end, None")
    signature = (f"def scan_{rtype}(rec: dict[str, Any], ts: float, idx: int, entries: list[int],"
                 " chunk_entries: list[int]) -> tuple[float, str | None]:")
    return signature + "\n" + "\n".join(body) + "\n"


GENERATED: Final = Path(__file__).with_name("scanners.py")


def module_source() -> str:
    """The source of ``collector/storage/scanners.py``: every type's scanner, typed for mypyc."""
    body = "\n".join([
        '"""GENERATED by ``python -m collector.storage.scan`` from ``wire.spec`` and'
        ' ``collector.storage.rows``: do not edit (see ``collector.storage.scan``)."""',
        "",
        "from __future__ import annotations",
        "",
        "from collections.abc import Callable",
        "from math import isfinite",
        "from typing import Any, Final",
        "from zlib import crc32",
        "",
        "Scanner = Callable[[dict[str, Any], float, int, list[int], list[int]], tuple[float, str | None]]",
    ]) + "\n"
    for name in SPECS:
        body += "\n\n" + scanner_source(name)
    table = ", ".join(f"{name!r}: scan_{name}" for name in SPECS)
    body += f"\n\nSCANNERS: Final[dict[str, Scanner]] = {{{table}}}\n"
    return body


def main(argv: list[str] | None = None) -> int:
    """Write the scanners' module (``--check``: only say whether it is current)."""
    return write_generated(GENERATED, module_source(), "python -m collector.storage.scan", argv)


if __name__ == "__main__":
    sys.exit(main())
