"""Builders of SCHEMA.md records for the storage tests; each result is checked by ``wire``.

Every builder runs ``wire.validate.validate_record`` on what it returns, so a fixture that
drifts from the schema fails here rather than testing the storage on invented shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from collector.storage import Storage
from wire.validate import validate_record

#: Opens the backend's store at the test's location; call again to reopen it (conftest fixture).
OpenStore = Callable[[], Storage]

#: 2024-03-01T00:00:00Z: a midnight, so tests can straddle two day files.
MIDNIGHT = 1709251200.0
DAY = 86_400.0
CID = "1:" + "A" * 27 + "="


def _flow(uid: str, src: str, sport: int, dst: str, dport: int, proto: str = "tcp") -> dict[str, Any]:
    return {
        "uid": uid, "proto": proto, "src_ip": src, "src_port": sport,
        "dst_ip": dst, "dst_port": dport, "vlan": None, "inner_vlan": None,
    }


def session(
    ts: float, uid: str, src: str = "10.0.0.5", sport: int = 50000, dst: str = "203.0.113.9",
    dport: int = 80, *, duration: float = 10.0, nat_ip: str | None = None,
    nat_port: int | None = None, account: str | None = None, interim: bool = False,
) -> dict[str, Any]:
    rec = {
        "type": "session", "ts": ts, **_flow(uid, src, sport, dst, dport),
        "src_mac": "02:00:00:00:00:05", "dst_mac": None, "service": "http", "duration": duration,
        "orig_bytes": 100, "resp_bytes": 2000, "orig_pkts": 5, "resp_pkts": 6,
        "orig_ip_bytes": 360, "resp_ip_bytes": 2320, "missed_bytes": 0, "community_id": CID,
        "conn_state": "SF", "history": "ShADadFf", "nat_ip": nat_ip, "nat_port": nat_port,
        "account": account, "blocked": False, "interim": interim,
    }
    return validate_record(rec)


def http(
    ts: float, uid: str, host: str | None = "example.com", uri: str | None = "/", *,
    src: str = "10.0.0.5", account: str | None = None,
) -> dict[str, Any]:
    rec = {
        "type": "http", "ts": ts, **_flow(uid, src, 50000, "203.0.113.9", 80), "trans_depth": 1,
        "method": "GET", "host": host, "uri": uri, "referrer": None, "version": "1.1",
        "user_agent": "curl/8", "status_code": 200, "status_msg": "OK", "request_body_len": 0,
        "response_body_len": 10, "req_content_type": None, "resp_content_type": "text/html",
        "username": None, "account": account,
    }
    return validate_record(rec)


def dns(ts: float, uid: str, query: str) -> dict[str, Any]:
    rec = {
        "type": "dns", "ts": ts, **_flow(uid, "10.0.0.5", 53000, "192.0.2.53", 53, "udp"),
        "trans_id": 7, "query": query, "qclass": 1, "qtype": 1, "qtype_name": "A", "rcode": 0,
        "rcode_name": "NOERROR", "AA": False, "TC": False, "RD": True, "RA": True,
        "answers": ["203.0.113.9"], "ttls": [60.0], "rejected": False,
    }
    return validate_record(rec)


def tls(ts: float, uid: str, server_name: str) -> dict[str, Any]:
    rec = {
        "type": "tls", "ts": ts, **_flow(uid, "10.0.0.5", 50001, "203.0.113.10", 443),
        "server_name": server_name, "version": "TLSv13", "next_protocol": "h2", "established": True,
    }
    return validate_record(rec)


def alert(ts: float, uid: str | None, keyword: str, *, account: str | None = None) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "type": "alert", "ts": ts, "rule_id": "r1", "ruleset_version": "1", "category": "test",
        "severity": 3, "action": "alert", "blocked": False, "field": "http.uri",
        "keyword": keyword, "encoding": "utf-8", "snippet": "..." + keyword + "...", "account": account,
    }
    if uid is not None:
        rec.update(_flow(uid, "10.0.0.5", 50000, "203.0.113.9", 80))
    return validate_record(rec)


def login(
    ts: float, event: str, ip: str, account: str | None, *, source: str = "radius",
    session_id: str | None = None,
) -> dict[str, Any]:
    rec = {
        "type": "login", "ts": ts, "event": event, "account": account, "ip": ip,
        "mac": "02:00:00:00:00:05", "calling_station": "13800000000", "source": source,
        "session_id": session_id, "duration": None,
    }
    return validate_record(rec)


def nat(
    ts: float, event: str, inside: tuple[str, int], outside: tuple[str, int],
    remote: tuple[str, int] = ("198.51.100.1", 443),
) -> dict[str, Any]:
    rec = {
        "type": "nat", "ts": ts, "event": event, "proto": "tcp",
        "inside_ip": inside[0], "inside_port": inside[1],
        "outside_ip": outside[0], "outside_port": outside[1],
        "remote_ip": remote[0], "remote_port": remote[1],
    }
    return validate_record(rec)


def strip(rec: dict[str, Any]) -> dict[str, Any]:
    """A returned record without the storage's provenance keys."""
    return {k: v for k, v in rec.items() if not k.startswith("_")}
