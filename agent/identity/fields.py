"""Reading the fields the identity table needs out of other decoders' records, defensively.

What: ``text``, ``number``, ``address`` and ``record_ts`` return a field's value when it has
the type SCHEMA.md gives it, else ``None``; ``normalize_mac`` turns the spellings of a MAC
address found in RADIUS Calling-Station-Id attributes and in admins' roster files into the
canonical ``aa:bb:cc:dd:ee:ff``.

Why: the table is fed every record of the pipeline. Its answers stamp ``account`` on the
records the collector keeps, so a malformed field must make the table ignore that record
(counted by the caller), never raise and never bind an address it cannot check.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

from wire.addresses import is_canonical_ip
from wire.limits import MAX_TS, MIN_TS

#: Addresses that name no host: a DHCP ``ciaddr``/``yiaddr`` of zero means "none".
UNSPECIFIED: Final = frozenset({"0.0.0.0", "::"})

# 12 hex digits, optionally grouped in pairs by ':' or '-' (RADIUS Calling-Station-Id,
# RFC 3580 §3.21 "00-10-A4-23-19-C0"), or in quads by '.' (Cisco "0010.a423.19c0").
_MAC_PAIRS: Final = re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}")
_MAC_QUADS: Final = re.compile(r"[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}")
_MAC_BARE: Final = re.compile(r"[0-9a-f]{12}")


def text(rec: Mapping[str, Any], key: str) -> str | None:
    """The field as a non-empty string, else None."""
    value = rec.get(key)
    return value if isinstance(value, str) and value else None


def number(rec: Mapping[str, Any], key: str) -> float | None:
    """The field as a finite float (bool is not a number), else None."""
    value = rec.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def record_ts(rec: Mapping[str, Any]) -> float | None:
    """The record's ``ts`` when it is a timestamp the wire format accepts, else None."""
    ts = number(rec, "ts")
    return ts if ts is not None and MIN_TS <= ts <= MAX_TS else None


def address(rec: Mapping[str, Any], key: str) -> str | None:
    """The field as a canonical IP address naming a host (not 0.0.0.0 or ::), else None."""
    value = text(rec, key)
    if value is None or value in UNSPECIFIED or not is_canonical_ip(value):
        return None
    return value


def normalize_mac(value: str | None) -> str | None:
    """``aa:bb:cc:dd:ee:ff`` for a MAC written with ':' or '-' pairs, '.' quads or bare hex."""
    if not value:
        return None
    v = value.strip().lower()
    if _MAC_PAIRS.fullmatch(v):
        return v.replace("-", ":")
    if _MAC_QUADS.fullmatch(v) or _MAC_BARE.fullmatch(v):
        digits = v.replace(".", "")
        return ":".join(digits[i : i + 2] for i in range(0, 12, 2))
    return None
