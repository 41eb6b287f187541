"""Builders of the records the identity table is fed (complete, wire-valid) and a checked table.

Every builder returns a record with all SCHEMA.md fields, validated with
``wire.validate.validate_record``, so the tests feed what the decoders really emit.
``Checked`` wraps an ``IdentityTable`` and validates every record it emits.
"""

from __future__ import annotations

from typing import Any

from agent.identity import IdentityTable
from wire.validate import validate_record

T0 = 1_700_000_000.0
Rec = dict[str, Any]


def _flow(
    src_ip: str, dst_ip: str, proto: str = "tcp", sport: int = 40000, dport: int = 80, uid: str = "Cflow1"
) -> Rec:
    return {
        "uid": uid,
        "proto": proto,
        "src_ip": src_ip,
        "src_port": sport,
        "dst_ip": dst_ip,
        "dst_port": dport,
        "vlan": None,
        "inner_vlan": None,
    }


def radius(
    ts: float,
    status: str | None,
    *,
    username: str | None = "alice",
    framed: str | None = "10.0.0.5",
    csid: str | None = "00-11-22-33-44-55",
    sid: str | None = "S1",
    nas: str | None = "192.0.2.1",
    session_time: int | None = None,
    code: str = "Accounting-Request",
) -> Rec:
    rec: Rec = {
        "type": "radius",
        "ts": ts,
        **_flow(nas or "192.0.2.1", "192.0.2.100", "udp", 50000, 1813),
        "code": code,
        "status_type": status,
        "username": username,
        "framed_addr": framed,
        "calling_station_id": csid,
        "called_station_id": None,
        "nas_ip": nas,
        "acct_session_id": sid,
        "session_time": session_time,
        "input_octets": None,
        "output_octets": None,
        "result": "success",
    }
    return validate_record(rec)


def dhcp(
    ts: float,
    msg_types: list[str],
    *,
    mac: str | None = "aa:bb:cc:00:00:01",
    assigned: str | None = "10.0.1.10",
    client: str | None = None,
    requested: str | None = None,
    lease: float | None = 3600.0,
    host_name: str | None = "laptop",
) -> Rec:
    rec: Rec = {
        "type": "dhcp",
        "ts": ts,
        "uids": ["Cdhcp1"],
        "client_addr": client,
        "server_addr": "10.0.1.1",
        "mac": mac,
        "host_name": host_name,
        "domain": None,
        "requested_addr": requested,
        "assigned_addr": assigned,
        "lease_time": lease,
        "msg_types": msg_types,
    }
    return validate_record(rec)


def pppoe(
    ts: float,
    code: str,
    *,
    src: str,
    dst: str,
    session_id: int = 0x1234,
    username: str | None = None,
) -> Rec:
    rec: Rec = {
        "type": "pppoe",
        "ts": ts,
        "src_mac": src,
        "dst_mac": dst,
        "code": code,
        "session_id": session_id,
        "service_name": None,
        "ac_name": "bras1",
        "username": username,
    }
    return validate_record(rec)


def http(
    ts: float, src_ip: str, *, username: str | None = None, status: int | None = 200, uid: str = "Chttp1"
) -> Rec:
    rec: Rec = {
        "type": "http",
        "ts": ts,
        **_flow(src_ip, "198.51.100.80", uid=uid),
        "trans_depth": 1,
        "method": "GET",
        "host": "intranet.example",
        "uri": "/",
        "referrer": None,
        "version": "1.1",
        "user_agent": "curl/8",
        "status_code": status,
        "status_msg": "OK",
        "request_body_len": 0,
        "response_body_len": 0,
        "req_content_type": None,
        "resp_content_type": None,
        "username": username,
        "account": None,
    }
    return validate_record(rec)


def ftp(ts: float, src_ip: str, *, user: str, command: str = "PASS", reply_code: int = 230) -> Rec:
    rec: Rec = {
        "type": "ftp",
        "ts": ts,
        **_flow(src_ip, "198.51.100.21", dport=21, uid="Cftp1"),
        "user": user,
        "command": command,
        "arg": "<hidden>" if command == "PASS" else user,
        "reply_code": reply_code,
        "reply_msg": "Login successful." if reply_code == 230 else "Login incorrect.",
        "file_size": None,
    }
    return validate_record(rec)


def mailbox(
    ts: float, src_ip: str, *, user: str | None, protocol: str = "imap", ok: bool | None = True
) -> Rec:
    rec: Rec = {
        "type": "mailbox",
        "ts": ts,
        **_flow(src_ip, "198.51.100.143", dport=143 if protocol == "imap" else 110, uid="Cmail1"),
        "protocol": protocol,
        "user": user,
        "login_ok": ok,
        "commands": ["LOGIN", "SELECT", "LOGOUT"],
        "tls": False,
    }
    return validate_record(rec)


def smtp(ts: float, src_ip: str, *, user: str | None) -> Rec:
    rec: Rec = {
        "type": "smtp",
        "ts": ts,
        **_flow(src_ip, "198.51.100.25", dport=587, uid="Csmtp1"),
        "trans_depth": 1,
        "helo": "pc",
        "mailfrom": "a@example.com",
        "rcptto": ["b@example.com"],
        "from": "a@example.com",
        "to": ["b@example.com"],
        "cc": [],
        "subject": "hi",
        "user": user,
        "tls": False,
    }
    return validate_record(rec)


def session(ts: float, src_ip: str, *, src_mac: str | None = None, account: str | None = None) -> Rec:
    rec: Rec = {
        "type": "session",
        "ts": ts,
        **_flow(src_ip, "203.0.113.9", sport=41000, dport=443),
        "src_mac": src_mac,
        "dst_mac": None,
        "service": "tls",
        "duration": 1.5,
        "orig_bytes": 10,
        "resp_bytes": 20,
        "orig_pkts": 1,
        "resp_pkts": 1,
        "orig_ip_bytes": 50,
        "resp_ip_bytes": 60,
        "missed_bytes": 0,
        "community_id": "1:" + "A" * 27 + "=",
        "conn_state": "SF",
        "history": "ShADadFf",
        "nat_ip": None,
        "nat_port": None,
        "account": account,
        "blocked": False,
        "interim": False,
    }
    return validate_record(rec)


def alert(ts: float, src_ip: str | None) -> Rec:
    rec: Rec = {
        "type": "alert",
        "ts": ts,
        "rule_id": "r1",
        "ruleset_version": "1",
        "category": "test",
        "severity": 3,
        "action": "alert",
        "blocked": False,
        "field": "http.uri",
        "keyword": "kw",
        "encoding": "utf-8",
        "snippet": "...kw...",
        "account": None,
    }
    if src_ip is not None:
        rec.update(_flow(src_ip, "198.51.100.80"))
    return validate_record(rec)


def login(
    ts: float,
    event: str,
    *,
    account: str | None,
    ip: str | None,
    mac: str | None,
    source: str,
    calling_station: str | None = None,
    session_id: str | None = None,
    duration: float | None = None,
) -> Rec:
    """The expected login record (calling_station defaults to the MAC, as SCHEMA.md says)."""
    return {
        "type": "login",
        "ts": ts,
        "event": event,
        "account": account,
        "ip": ip,
        "mac": mac,
        "calling_station": calling_station if calling_station is not None else mac,
        "source": source,
        "session_id": session_id,
        "duration": duration,
    }


class Checked:
    """An IdentityTable whose every emitted record is checked with the wire validator."""

    def __init__(self, table: IdentityTable | None = None, **kwargs: Any) -> None:
        self.table = table if table is not None else IdentityTable(**kwargs)

    def feed(self, *recs: Rec) -> list[Rec]:
        out: list[Rec] = []
        for rec in recs:
            out += self.table.observe(rec)
        for r in out:
            validate_record(r)
        return out

    def expire(self, ts: float) -> list[Rec]:
        out = self.table.expire(ts)
        for r in out:
            validate_record(r)
        return out
