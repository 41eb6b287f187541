"""The compliance report's mail measure (issue 20) at a running collector: units whose profile
lists mail servers, or whose agents sent SMTP transactions, are shown whether their mail passes
where the agent's mail policy sees it (smtp records per day, the latest) and the policy's latest
alert; declared mail servers without any SMTP transaction in 60 days fail the measure."""

from __future__ import annotations

import json
import time
from typing import Any

from collector_server import post
from test_collector_rulesets import collector as collector  # noqa: F401  (the fixture)
from test_collector_units import PROFILE, request

from wire.envelope import encode_batch
from wire.validate import validate_record

DAY = 86400
FLOW = {"proto": "tcp", "src_ip": "198.51.100.7", "src_port": 40000, "dst_ip": "198.51.100.25",
        "dst_port": 25, "vlan": None, "inner_vlan": None}


def _smtp(ts: float, uid: str) -> dict[str, Any]:
    return validate_record({
        "type": "smtp", "ts": ts, "uid": uid, **FLOW, "trans_depth": 1, "helo": "pc7.library.example.cn",
        "mailfrom": "alice@library.example.cn", "rcptto": ["bob@example.org"],
        "from": "alice@library.example.cn", "to": ["bob@example.org"], "cc": [], "subject": "hello",
        "user": "alice", "tls": False})


def _mail_alert(ts: float, uid: str) -> dict[str, Any]:
    return validate_record({
        "type": "alert", "ts": ts, "uid": uid, **FLOW, "rule_id": "mail:rate:account:messages:minute",
        "ruleset_version": "builtin", "category": "mail", "severity": 3, "action": "block", "blocked": True,
        "field": "smtp.user", "keyword": "alice", "encoding": None, "snippet": "alice: 101 messages in 60 s",
        "account": "alice", "reason": "rate:account:messages:minute", "sender": "alice", "count": 101,
        "limit": 100, "window_s": 60})


def _measures(c: dict[str, Any], unit: str) -> dict[str, dict[str, Any]]:
    status, ans = request(c, "GET", f"/api/v1/units/{unit}/compliance", user=c["operator"])
    assert status == 200
    return {m["measure"]: m for m in ans["measures"]}


def test_mail_measure_where_mail_servers_are_declared_or_mail_is_seen(
        collector: dict[str, Any]) -> None:  # noqa: F811
    c = collector
    now = time.time()
    with_mail = {**PROFILE, "mail_servers": ["198.51.100.25"]}
    assert request(c, "PUT", "/api/v1/units/self", json.dumps(with_mail).encode(), token=c["token"])[0] == 200
    assert request(c, "PUT", "/api/v1/units/self", json.dumps(PROFILE).encode(), token=c["other"])[0] == 200
    m = _measures(c, "unit-42")["mail"]  # declared, nothing seen yet: fails, saying why
    assert not m["ok"] and m["problems"] == [
        "备案载明邮件服务器，60 天内无邮件记录 / the profile lists mail servers, but no SMTP transaction "
        "came in 60 days"]
    assert "mail" not in _measures(c, "unit-7")  # no mail server, no mail: does not apply
    batches = [[_smtp(now - 2 * DAY, "M1")], [_smtp(now - 90, "M2"), _mail_alert(now - 60, "M2")]]
    for i, recs in enumerate(batches):
        assert post(c["url"], encode_batch("gw1", "unit-42", i + 1, recs), c["token"])[0] == 200
    m = _measures(c, "unit-42")["mail"]
    ev = m["evidence"]
    assert m["ok"] and m["problems"] == [] and m["notes"] == []
    assert (ev["records"], ev["days_with_records"], ev["latest"]) == (2, 2, now - 90)
    assert ev["latest_policy_alert"] == now - 60 and ev["mail_servers"] == ["198.51.100.25"]
    # unit-7 lists no mail server but its agent saw mail: shown, with a note
    assert post(c["url"], encode_batch("gw2", "unit-7", 1, [_smtp(now - 30, "M3")]), c["other"])[0] == 200
    m = _measures(c, "unit-7")["mail"]
    assert m["ok"] and m["evidence"]["latest_policy_alert"] is None and m["notes"] == [
        "备案信息未载明邮件服务器，但探针上报了邮件记录 / the unit's agents record mail transactions, but "
        "its profile lists no mail server"]
