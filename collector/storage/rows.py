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
from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson

from collector.storage.base import AGENT_KEY
from wire.meta import FLOW_ENDPOINTS
from wire.records import RECORDS

# The searchable text fields, address fields and account fields of every type, in the order
# ``wire.records.RECORDS`` declares them per type (the stored search text joins them in this
# order; the first non-null address or account wins).
SEARCH_FIELDS: Final = tuple(dict.fromkeys(f for m in RECORDS.values() for f in m.search))
ADDR_FIELDS: Final = {name: m.addresses for name, m in RECORDS.items() if m.addresses}
ACCOUNT_FIELDS: Final = tuple(dict.fromkeys(f for m in RECORDS.values() for f in m.accounts))

Row = tuple[Any, ...]


# --- column extraction: never trust a payload's types, even after wire validation ----------


def num(rec: Mapping[str, Any], key: str) -> float | None:
    v = rec.get(key)
    if type(v) is int or type(v) is float:
        f = float(v)
        return f if math.isfinite(f) else None
    return None


# One address vocabulary for every type (RecordMeta.endpoints): a nat record's inside = src,
# remote = dst, outside = nat.
_FLOW_KEYS: Final = FLOW_ENDPOINTS
_isfinite: Final = math.isfinite


Columns = tuple[Any, ...]
"""``record_columns``: (type, ts, end_ts, uid, src_ip, src_port, dst_ip, dst_port, nat_ip,
nat_port, addr, account, search)."""


# Per schema type, its address, account and search fields (``wire.records.RECORDS``): a record
# of a known type has no other fields (wire refuses unknown ones), so the others are not looked
# up. A type this schema does not know is looked up for all of them.
_ANY_TYPE_FIELDS: Final = ((), ACCOUNT_FIELDS, SEARCH_FIELDS)
_TYPE_FIELDS: Final = {name: (m.addresses, m.accounts, m.search) for name, m in RECORDS.items()}
_ENDPOINTS: Final = {name: m.endpoints for name, m in RECORDS.items() if m.endpoints != _FLOW_KEYS}


def flow_fields(rtype: str) -> tuple[str, str, str, str, str, str]:
    """The fields a record of ``rtype`` keeps its src, src port, dst, dst port, nat and nat
    port in (a ``nat`` record's inside, remote and outside address)."""
    return _ENDPOINTS.get(rtype, _FLOW_KEYS)


def record_columns(idx: int, rec: Mapping[str, Any]) -> Columns:
    """The lookup columns of one record (raises ValueError when it has no type or ts).

    On the ingest hot path (every record of every batch), so written out flat: one ``get``
    per field and inline exact-type tests, exact types only (a str column takes a str, an
    int column an int and never a ``bool``; ``num``'s rule for numbers: int or float,
    finite), else None. ``idx`` only names the record in the error.
    """
    get = rec.get
    rtype: Any = get("type")
    ts: Any = get("ts")
    tt = type(ts)
    if type(rtype) is not str or not (tt is float or tt is int) or not _isfinite(ts):
        raise ValueError(f"records[{idx}]: a record needs a str 'type' and a finite numeric 'ts'")
    ts = float(ts)
    k_sip, k_sport, k_dip, k_dport, k_nip, k_nport = _ENDPOINTS.get(rtype, _FLOW_KEYS)
    src_ip, src_port, dst_ip, dst_port = get(k_sip), get(k_sport), get(k_dip), get(k_dport)
    nat_ip, nat_port, uid = get(k_nip), get(k_nport), get("uid")
    end_ts = ts
    if rtype == "session":
        d: Any = get("duration")
        td = type(d)
        if (td is float or td is int) and _isfinite(d):
            end_ts = ts + max(float(d), 0.0)
    addr_fields, account_fields, search_fields = _TYPE_FIELDS.get(rtype, _ANY_TYPE_FIELDS)
    addr = None
    for k in addr_fields:
        if type(v := get(k)) is str:
            addr = v
            break
    account = None
    for k in account_fields:
        if type(v := get(k)) is str:
            account = v
            break
    texts = [v.casefold() for k in search_fields if type(v := get(k)) is str and v]
    return (
        rtype,
        ts,
        end_ts,
        uid if type(uid) is str else None,
        src_ip if type(src_ip) is str else None,
        src_port if type(src_port) is int else None,
        dst_ip if type(dst_ip) is str else None,
        dst_port if type(dst_port) is int else None,
        nat_ip if type(nat_ip) is str else None,
        nat_port if type(nat_port) is int else None,
        addr,
        account,
        # newline-joined so a search for "a\nb" is the only way to match across two fields
        "\n".join(texts) if texts else None,
    )


def record_row(agent: str, unit: str, batch_seq: int, idx: int, rec: Mapping[str, Any]) -> Row:
    """The ClickHouse row of one record: provenance, ``record_columns`` and the record as JSON."""
    return (agent, unit, batch_seq, idx, *record_columns(idx, rec),
            orjson.dumps(rec if type(rec) is dict else dict(rec)).decode())


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


def nat_in_force(events: Iterable[Mapping[str, Any]], ts: float, proto: str | None) -> list[dict[str, Any]]:
    """The ``nat`` create records of one outside (ip, port) in force at ``ts``, newest first.

    ``events`` are that address's nat records in time order, up to ``ts + NAT_CLOCK_SLACK``.
    Replayed up to ``ts``: conntrack keeps the (outside, remote) reply tuple unique, so a
    mapping ends at its destroy or at the next create on that tuple. When none is in force, a
    create recorded within ``NAT_CLOCK_SLACK`` after ``ts`` answers: the kernel reports a
    new connection after its first packet, and the agent stamps the event when it reads it,
    so a short connection's packets (and the server log naming them) can precede the create.
    ``proto`` (when given) keeps only that protocol's mappings: TCP and UDP may use one port.
    """
    active: dict[tuple[Any, ...], dict[str, Any]] = {}
    early: list[dict[str, Any]] = []
    for rec in events:
        if proto is not None and rec.get("proto") != proto:
            continue
        key = (rec[AGENT_KEY], rec.get("proto"), rec.get("remote_ip"), rec.get("remote_port"))
        event, rts = rec.get("event"), float(rec["ts"])
        if rts > ts:
            if event == "create":
                early.append(dict(rec))
            continue
        if event == "create":
            active[key] = dict(rec)
        elif event == "destroy" and rts < ts:
            cur = active.get(key)
            if cur is not None and (cur.get("inside_ip"), cur.get("inside_port")) == (
                    rec.get("inside_ip"), rec.get("inside_port")):
                del active[key]
    if active:
        return sorted(active.values(), key=lambda r: float(r["ts"]), reverse=True)
    return early[:1]


def furthest_sessions(recs: Iterable[dict[str, Any]], proto: str | None) -> list[dict[str, Any]]:
    """One ``session`` record per connection (agent, uid), of ``proto`` when given, newest
    first: interim snapshots share the uid with the final record, and the one reaching
    furthest (ts + duration) stands for the connection."""
    best: dict[tuple[Any, ...], tuple[float, dict[str, Any]]] = {}
    for rec in recs:
        if proto is not None and rec.get("proto") != proto:
            continue
        key = (rec[AGENT_KEY], rec.get("uid"))
        reach = float(rec["ts"]) + (num(rec, "duration") or 0.0)
        if key not in best or reach >= best[key][0]:
            best[key] = (reach, rec)
    return sorted((r for _, r in best.values()), key=lambda r: float(r["ts"]), reverse=True)


def login_in_force(newest_first: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The first ``login`` no later ``logout`` ends (``ends``), from an address's login records
    newest first: every logout that could end a login comes before the login itself. Stops
    reading at the answer."""
    logouts: list[dict[str, Any]] = []
    for rec in newest_first:
        if rec.get("event") == "logout":
            logouts.append(rec)
        elif rec.get("event") == "login" and not any(ends(out, rec) for out in logouts):
            return rec
    return None
