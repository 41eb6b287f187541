"""Query endpoints: traceback in one call, record search with paging and CSV export.

What (DESIGN.md "Traceback", issue 5 "Queries"):
- `GET /api/v1/query/traceback?ip=&port=&ts=[&proto=tcp|udp|...]`: who was behind public
  address `ip`, port `port`, at time `ts` (Unix seconds)? (`proto` when the server log
  says: a gateway may map TCP and UDP connections to one public port.) The `nat` mapping
  covering it gives the inside address and port (`Storage.nat_at`); failing that, a
  session the agent stamped with that `nat_ip`/`nat_port` does
  (`sessions_at(outside=True)`); a session from the address itself is the un-NATed case.
  The inside address's identity at `ts` (`identity_at`: the `login` record in force;
  failing that, the account the agent stamped on the session from the admin's roster,
  `"source": "session"`) gives the account, MAC and calling number, and the session's uid
  gives every record of the connection (`connection`: session, http, dns, tls, alert... of
  the same agent within the session's time span, since uids are unique per agent and run
  only). When the identity names an account, `registration` is the registration behind it
  (`registration_behind`: the portal's guest, issue 19), else null. One JSON answer:
  `{"query", "nat", "inside", "identity", "registration", "sessions", "records"}`.
- `GET /api/v1/query/records?type=&from=&to=&ip=&account=&q=&limit=&cursor=`: search,
  oldest first, `{"records": [...], "cursor": ...}`; `format=csv` exports the page as CSV.
- `GET /api/v1/query/connection?uid=[&agent=&from=&to=]`: every record of one connection
  (sharing its `uid`; one agent's when `agent` is given), `{"records": [...]}`.

Personal numbers (a registration's ID and phone: `RecordMeta.personal`) are masked in every
answer, the traceback's registration and the CSV export included, unless an admin asks with
``personal=1`` (an operator asking is refused, 403); such a view is audited as
``<query>_personal`` before it is sent (`collector.query.schema`).

Access: an operator or admin, with `Authorization: Basic` (name and password) or
`Bearer` (an API token); anyone else gets 401/403, checked after the parameters (a bad one
is a 400 whoever asks). Every query is appended to the audit log (actor, what was asked,
how many results) BEFORE its results are sent; when the audit write fails the query fails
(503) and nothing is returned. The handlers are `QUERY_ROUTES` (added by `collector.app`);
the storage comes from the application (`collector.app_keys.STORAGE`).

Limits: a page is at most `MAX_PAGE` records (storage); the parameters are checked
(`collector.query.params`: addresses canonical, ports and limits whole numbers in range,
times finite; a cursor the store did not issue) and a bad one is a 400 naming it. A 403 is
audited (`collector.access.forbidden`). CSV cells that a spreadsheet would read as a
formula are written as text (`FORMULA_STARTS`).
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
from collections.abc import Callable
from functools import partial
from typing import Any, Final

from aiohttp import web

from collector.access import JsonError, audit_first, authorized, forbidden, json_answer
from collector.app_keys import STORAGE
from collector.query.params import BadQuery, int_param, ip_param, number_param
from collector.query.schema import CSV_FIELDS, PERSONAL_ROLES, has_personal, mask_personal
from collector.storage.base import AGENT_KEY, MAX_PAGE, SESSION_TOLERANCE, Storage

QUERY_ROLES: Final = frozenset({"operator", "admin"})
#: Transport protocols a traceback may name (SCHEMA.md session `proto`).
PROTOS: Final = ("tcp", "udp", "icmp", "icmp6")
#: Records in a page when ``limit`` is not given.
DEFAULT_PAGE: Final = 100
#: The latest time a query may name (2100-01-01).
MAX_TS: Final = 4102444800
#: A CSV cell starting with one of these is a formula (or becomes one) in a spreadsheet
#: (OWASP "CSV Injection": = + - @, tab and carriage return); it is written quoted as text.
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def registration_behind(storage: Storage, account: str, agent: str | None,
                        ts: float) -> dict[str, Any] | None:
    """The ``registration`` naming ``account`` at ``ts``: of that account's registrations by
    ``agent`` (a portal numbers its guests itself: another gateway's ``guest-000123`` is someone
    else) made at or before ``ts``, the newest one in force then (``valid_until`` null or not
    before ``ts``), else the newest one (an expired registration still names who it was).
    None when nobody registered the account (a RADIUS or roster account). Looks back as far as
    the store keeps records: a desk registration may admit a guest for weeks."""
    newest: dict[str, Any] | None = None
    in_force: dict[str, Any] | None = None
    cursor: str | None = None
    while True:  # oldest first: the last match wins (a guest registers once or a few times)
        page = storage.records(type="registration", account=account, end=math.nextafter(ts, math.inf),
                               cursor=cursor)
        for r in page.records:
            if agent is not None and r.get(AGENT_KEY) != agent:
                continue
            newest = r
            until = r.get("valid_until")
            if until is None or until >= ts:
                in_force = r
        if page.cursor is None:
            return in_force or newest
        cursor = page.cursor


def traceback(storage: Storage, ip: str, port: int, ts: float, proto: str | None = None) -> dict[str, Any]:
    """The traceback answer (see the module doc); pure storage calls, no IO of its own."""
    nat = storage.nat_at(ip, port, ts, proto)
    inside: dict[str, Any] | None = None
    sessions: list[dict[str, Any]] = []
    if nat:
        m = nat[0]
        inside = {"ip": m.get("inside_ip"), "port": m.get("inside_port"), "via": "nat"}
        if inside["port"] is not None:
            sessions = storage.sessions_at(str(inside["ip"]), int(inside["port"]), ts, outside=False,
                                           proto=m.get("proto"))
    else:
        sessions = storage.sessions_at(ip, port, ts, outside=True, proto=proto)
        if sessions:
            s = sessions[0]
            inside = {"ip": s.get("src_ip"), "port": s.get("src_port"), "via": "session nat_ip"}
        else:
            sessions = storage.sessions_at(ip, port, ts, outside=False, proto=proto)
            if sessions:
                inside = {"ip": ip, "port": port, "via": "no nat"}
    identity = storage.identity_at(str(inside["ip"]), ts) if inside is not None else None
    if identity is None and sessions and sessions[0].get("account"):
        # No login record covers the address (a fixed address, or a network with no login
        # source): the account the agent stamped on the session from its roster answers.
        s = sessions[0]
        identity = {"account": s["account"], "ip": s.get("src_ip"), "mac": s.get("src_mac"),
                    "calling_station": None, "source": "session", "ts": s.get("ts")}
    registration = None
    if identity is not None and identity.get("account"):
        agent = identity.get(AGENT_KEY) or (sessions[0].get(AGENT_KEY) if sessions else None)
        registration = registration_behind(storage, str(identity["account"]), agent, ts)
    records: list[dict[str, Any]] = []
    if sessions and sessions[0].get("uid"):
        s = sessions[0]
        start = float(s["ts"])
        end = start + float(s.get("duration") or 0.0)
        records = storage.connection(str(s["uid"]), agent=s.get(AGENT_KEY), start=start - SESSION_TOLERANCE,
                                     end=end + SESSION_TOLERANCE)
    return {"query": {"ip": ip, "port": port, "ts": ts, "proto": proto}, "nat": nat[:1], "inside": inside,
            "identity": identity, "registration": registration, "sessions": sessions[:1], "records": records}


def _csv(records: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\r\n")
    w.writeheader()
    for r in records:
        w.writerow({k: (f"'{v}" if isinstance(v, str) and v.startswith(FORMULA_STARTS) else v)
                    for k, v in r.items()})
    return out.getvalue()


async def _audited_query(request: web.Request, action: str, params: dict[str, Any],
                        work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Check the caller, run ``work()`` (storage calls) in a thread, mask personal fields unless
    an admin asked for them (``personal=1``), audit the query with how many records it found
    (a view of personal fields as such), then give its result to answer."""
    user = await authorized(request, QUERY_ROLES, "query records")
    personal = request.query.get("personal") == "1"
    if personal and user.role not in PERSONAL_ROLES:
        raise await forbidden(request, user, f"role {user.role} may not see personal fields")
    result = await asyncio.get_running_loop().run_in_executor(None, work)
    # every record of the answer: its record lists, and a record standing alone (the
    # traceback's identity and registration), wrapped so masking reaches it in place
    lists = [v if isinstance(v, list) else [v] for v in result.values()
             if isinstance(v, list) or (isinstance(v, dict) and "type" in v)]
    shown = personal and any(has_personal(v) for v in lists)
    if not personal:
        for v in lists:
            mask_personal(v)
    await audit_first(request, user.name, f"{action}_personal" if shown else action, request.path_qs,
                      {"params": params, "results": len(result.get("records", [])), "personal": personal},
                      what="query")
    return result


async def traceback_handler(request: web.Request) -> web.Response:
    q = request.query
    try:
        ip = ip_param(q.get("ip"), "ip")
        port = int_param(q.get("port"), "port", lo=0, hi=65535)
        ts = number_param(q.get("ts"), "ts", lo=0, hi=MAX_TS)
        if ip is None or port is None or ts is None:
            raise BadQuery("ip, port and ts are all required")
        proto = q.get("proto") or None
        if proto is not None and proto not in PROTOS:
            raise BadQuery(f"proto: one of {', '.join(PROTOS)}")
    except BadQuery as e:
        raise JsonError(400, "bad_query", str(e)) from None
    params = {"ip": ip, "port": port, "ts": ts, "proto": proto}
    return json_answer(await _audited_query(request, "traceback", params, partial(
        traceback, request.app[STORAGE], ip, port, ts, proto)))


def _records_page(storage: Storage, params: dict[str, Any]) -> dict[str, Any]:
    """One page of ``storage.records`` for the query's checked ``params``: the same dict the
    audit entry records, so what was audited is what was asked."""
    page = storage.records(type=params["type"], start=params["from"], end=params["to"], ip=params["ip"],
                           account=params["account"], text=params["q"], limit=params["limit"],
                           cursor=params["cursor"])
    return {"records": page.records, "cursor": page.cursor}


async def records_handler(request: web.Request) -> web.Response:
    q = request.query
    try:
        params: dict[str, Any] = {
            "type": q.get("type") or None,
            "from": number_param(q.get("from"), "from", lo=0, hi=MAX_TS),
            "to": number_param(q.get("to"), "to", lo=0, hi=MAX_TS),
            "ip": ip_param(q.get("ip"), "ip"),
            "account": q.get("account") or None,
            "q": q.get("q") or None,
            "limit": int_param(q.get("limit"), "limit", lo=1, hi=MAX_PAGE) or DEFAULT_PAGE,
            "cursor": q.get("cursor") or None,
        }
    except BadQuery as e:
        raise JsonError(400, "bad_query", str(e)) from None
    fmt = q.get("format", "json")
    if fmt not in ("json", "csv"):
        raise JsonError(400, "bad_query", "format: json or csv")
    try:
        result = await _audited_query(request, "export" if fmt == "csv" else "records", params,
                                      partial(_records_page, request.app[STORAGE], params))
    except ValueError as e:  # a cursor the store cannot read
        raise JsonError(400, "bad_query", str(e)) from None
    if fmt == "csv":
        return web.Response(text=_csv(result["records"]), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": 'attachment; filename="records.csv"'})
    return json_answer(result)


def _connection(storage: Storage, uid: str, agent: str | None, start: float | None,
                end: float | None) -> dict[str, Any]:
    return {"records": storage.connection(uid, agent=agent, start=start, end=end)}


async def connection_handler(request: web.Request) -> web.Response:
    q = request.query
    try:
        uid = q.get("uid") or ""
        if not 0 < len(uid) <= 256:
            raise BadQuery("uid: 1..256 characters required")
        agent = q.get("agent") or None
        start = number_param(q.get("from"), "from", lo=0, hi=MAX_TS)
        end = number_param(q.get("to"), "to", lo=0, hi=MAX_TS)
    except BadQuery as e:
        raise JsonError(400, "bad_query", str(e)) from None
    params = {"uid": uid, "agent": agent, "from": start, "to": end}
    return json_answer(await _audited_query(request, "connection", params, partial(
        _connection, request.app[STORAGE], uid, agent, start, end)))


QUERY_ROUTES: Final = (
    web.get("/api/v1/query/traceback", traceback_handler),
    web.get("/api/v1/query/connection", connection_handler),
    web.get("/api/v1/query/records", records_handler),
)
