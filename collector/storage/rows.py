"""What both storage backends extract from a record, and when a logout ends a login.

One module so the SQLite and ClickHouse backends index and answer exactly alike: the
columns a record gives (`record_row`: addresses in one vocabulary — a `nat` record's inside
address is its src, remote its dst, outside its nat —, the user address and account of
each record type, the text searched, the record as JSON) and the login/logout pairing
identity lookups use (`ends`).

Column values are taken only when their type is exactly right: records were validated by
`wire`, but the store does not rely on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from collector.storage.base import AGENT_KEY

SEARCH_FIELDS: Final = ("host", "uri", "query", "server_name", "subject", "keyword")
# Where a record type keeps the address its user has (the `ip` filter and identity lookups).
ADDR_FIELDS: Final = {
    "login": ("ip",),
    "radius": ("framed_addr",),
    "dhcp": ("assigned_addr", "client_addr"),
    "registration": ("ip",),
}
# Where the account name is, in order of preference (`account` is the identity table's stamp).
ACCOUNT_FIELDS: Final = ("account", "username", "user")

Row = tuple[Any, ...]


# --- column extraction: never trust a payload's types, even after wire validation ----------


def _str(rec: Mapping[str, Any], key: str) -> str | None:
    v = rec.get(key)
    return v if type(v) is str else None


def _int(rec: Mapping[str, Any], key: str) -> int | None:
    v = rec.get(key)
    return v if type(v) is int else None


def num(rec: Mapping[str, Any], key: str) -> float | None:
    v = rec.get(key)
    if type(v) is int or type(v) is float:
        f = float(v)
        return f if math.isfinite(f) else None
    return None


def _first_str(rec: Mapping[str, Any], keys: Sequence[str]) -> str | None:
    for k in keys:
        v = _str(rec, k)
        if v is not None:
            return v
    return None


def record_row(agent: str, unit: str, batch_seq: int, idx: int, rec: Mapping[str, Any]) -> Row:
    """The insert parameters for one record (raises ValueError when it has no type or ts)."""
    rtype = _str(rec, "type")
    ts = num(rec, "ts")
    if rtype is None or ts is None:
        raise ValueError(f"records[{idx}]: a record needs a str 'type' and a finite numeric 'ts'")
    if rtype == "nat":
        # One address vocabulary for every type: inside = src, remote = dst, outside = nat.
        src_ip, src_port = _str(rec, "inside_ip"), _int(rec, "inside_port")
        dst_ip, dst_port = _str(rec, "remote_ip"), _int(rec, "remote_port")
        nat_ip, nat_port = _str(rec, "outside_ip"), _int(rec, "outside_port")
    else:
        src_ip, src_port = _str(rec, "src_ip"), _int(rec, "src_port")
        dst_ip, dst_port = _str(rec, "dst_ip"), _int(rec, "dst_port")
        nat_ip, nat_port = _str(rec, "nat_ip"), _int(rec, "nat_port")
    duration = num(rec, "duration") if rtype == "session" else None
    end_ts = ts + max(duration, 0.0) if duration is not None else ts
    texts = [s.casefold() for s in (_str(rec, k) for k in SEARCH_FIELDS) if s]
    return (
        agent,
        unit,
        batch_seq,
        idx,
        rtype,
        ts,
        end_ts,
        _str(rec, "uid"),
        src_ip,
        src_port,
        dst_ip,
        dst_port,
        nat_ip,
        nat_port,
        _first_str(rec, ADDR_FIELDS.get(rtype, ())),
        _first_str(rec, ACCOUNT_FIELDS),
        # newline-joined so a search for "a\nb" is the only way to match across two fields
        "\n".join(texts) if texts else None,
        orjson.dumps(dict(rec)).decode(),
    )


def ends(logout: Mapping[str, Any], login: Mapping[str, Any]) -> bool:
    """True if ``logout`` closes ``login``: same agent and source, then same session id when
    both carry one, else the same account; and not earlier than the login."""
    if logout.get(AGENT_KEY) != login.get(AGENT_KEY) or logout.get("source") != login.get("source"):
        return False
    if float(logout["ts"]) < float(login["ts"]):
        return False
    sid_out, sid_in = logout.get("session_id"), login.get("session_id")
    if sid_out is not None and sid_in is not None:
        return bool(sid_out == sid_in)
    return bool(logout.get("account") == login.get("account"))
