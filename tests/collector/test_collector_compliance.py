"""Per-unit compliance reports and the out-of-compliance list, against a running collector: the
evidence follows what each unit's agents really sent (records per kind and day, the latest of
each, gaps), their uploads and the ruleset bundle each fetched."""

from __future__ import annotations

import base64
import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from collector_server import post
from test_collector_rulesets import bundle, call
from test_collector_rulesets import collector as collector  # noqa: F401  (the fixture)
from test_collector_units import PROFILE, request

from wire.envelope import encode_batch

DAY = 86400


def _records(now: float) -> list[dict[str, Any]]:
    login = {"type": "login", "event": "login", "account": "alice", "ip": "198.51.100.7", "mac": None,
             "source": "portal", "calling_station": None, "session_id": None, "duration": None}
    nat = {"type": "nat", "event": "create", "proto": "tcp", "inside_ip": "198.51.100.7",
           "inside_port": 40000, "outside_ip": "203.0.113.9", "outside_port": 30000,
           "remote_ip": "192.0.2.80", "remote_port": 80}
    audit = {"type": "audit", "action": "start", "actor": "edgeaudit-agent", "target": "agent",
             "detail": None, "result": "ok"}
    return [{**login, "ts": now - 3 * DAY}, {**login, "ts": now - 60}, {**nat, "ts": now - 30},
            {**audit, "ts": now - 10}]


def _measures(ans: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["measure"]: m for m in ans["measures"]}


def test_a_compliant_unit_and_a_silent_one(collector: dict[str, Any], tmp_path: Path) -> None:  # noqa: F811
    c = collector
    now = time.time()
    assert request(c, "PUT", "/api/v1/units/self", json.dumps(PROFILE).encode(), token=c["token"])[0] == 200
    recs = sorted(_records(now), key=lambda r: r["ts"])
    for i, r in enumerate(recs):  # one batch each: a batch's records count on its latest day
        assert post(c["url"], encode_batch("gw1", "unit-42", i + 1, [r]), c["token"])[0] == 200
    status, ans = request(c, "GET", "/api/v1/units/unit-42/compliance", user=c["operator"])
    assert status == 200
    m = _measures(ans)
    assert list(m) == ["login_records", "nat_mapping", "registration", "keyword_filtering", "retention",
                       "upload", "maintenance_log"]
    assert m["login_records"]["ok"] and m["login_records"]["evidence"]["latest"] == recs[1]["ts"]
    assert m["login_records"]["evidence"]["records"] == 2
    assert len(m["login_records"]["evidence"]["gaps"]) == 2  # the two days between the logins
    assert m["nat_mapping"]["ok"] and m["registration"]["ok"] and m["retention"]["ok"]
    assert m["maintenance_log"]["ok"] and m["upload"]["ok"]
    assert not m["keyword_filtering"]["ok"]  # no ruleset published yet
    # a ruleset published: gw1 is compliant once it fetched it
    assert call(c, "PUT", bundle(c, tmp_path, 2), user=c["admin"])[0] == 200
    m = _measures(request(c, "GET", "/api/v1/units/unit-42/compliance", user=c["operator"])[1])
    assert not m["keyword_filtering"]["ok"] and "older ruleset" in m["keyword_filtering"]["problems"][0]
    assert call(c, "GET", token=c["token"])[0] == 200
    ans = request(c, "GET", "/api/v1/units/unit-42/compliance", user=c["operator"])[1]
    assert ans["ok"], [x for x in ans["measures"] if not x["ok"]]
    # unit-7: its agent never uploaded, no profile, no records
    m = _measures(request(c, "GET", "/api/v1/units/unit-7/compliance", user=c["operator"])[1])
    assert not m["upload"]["ok"] and not m["registration"]["ok"] and not m["login_records"]["ok"]
    status, listing = request(c, "GET", "/api/v1/compliance", user=c["operator"])
    assert status == 200 and [u["unit"] for u in listing["units"]] == ["unit-7"]
    assert "silent" in listing["units"][0]["problems"][0]
    assert request(c, "GET", "/api/v1/compliance", user=c["auditor"])[0] == 403
    log = [json.loads(line) for line in (c["data"] / "audit.log").read_text().splitlines()]
    assert [e["action"] for e in log[-3:]] == ["compliance", "compliance_list", "forbidden"]


def _get_raw(c: dict[str, Any], path: str, user: tuple[str, str]) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(c["url"] + path, headers={
        "Authorization": "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_the_report_prints_as_html_and_exports_as_pdf(collector: dict[str, Any]) -> None:  # noqa: F811
    c = collector
    profile = {**PROFILE, "name": "河畔<b>图书馆</b>"}  # markup in a profile stays text
    assert request(c, "PUT", "/api/v1/units/self", json.dumps(profile).encode(), token=c["token"])[0] == 200
    status, headers, body = _get_raw(c, "/api/v1/units/unit-42/compliance?format=html", c["operator"])
    page = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script" not in headers["Content-Security-Policy"] and "<script" not in page
    assert "合规报告" in page and "Registration information" in page and "河畔&lt;b&gt;图书馆" in page
    assert "<b>图书馆" not in page
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    status, headers, body = _get_raw(c, "/api/v1/units/unit-42/compliance?format=pdf", c["operator"])
    assert status == 200 and headers["Content-Type"] == "application/pdf", body[:300]
    assert body.startswith(b"%PDF-") and len(body) > 5000
    assert 'filename="compliance-unit-42.pdf"' in headers["Content-Disposition"]
    assert _get_raw(c, "/api/v1/units/unit-42/compliance?format=doc", c["operator"])[0] == 400
    assert _get_raw(c, "/api/v1/units/unit-42/compliance?format=pdf", c["auditor"])[0] == 403


def _registration(ts: float, account: str) -> dict[str, Any]:
    return {"type": "registration", "ts": ts, "account": account, "name": "王小明", "id_type": None,
            "id_number": None, "phone": "13912348000", "mac": None, "ip": "198.51.100.9", "method": "sms",
            "room": None, "valid_until": ts + DAY, "desk_user": None}


def test_the_registration_measure_counts_the_units_user_registrations(collector: dict[str, Any]  # noqa: F811
                                                                       ) -> None:
    c = collector
    now = time.time()
    for token in (c["token"], c["other"]):  # both units uploaded their profile
        assert request(c, "PUT", "/api/v1/units/self", json.dumps(PROFILE).encode(), token=token)[0] == 200
    regs = [_registration(now - 2 * DAY, "guest-000001"), _registration(now - 120, "guest-000002"),
            _registration(now - 100 * DAY, "guest-000000")]  # before the window: not counted
    for i, r in enumerate(regs):
        assert post(c["url"], encode_batch("gw1", "unit-42", i + 1, [r]), c["token"])[0] == 200
    report = request(c, "GET", "/api/v1/units/unit-42/compliance", user=c["operator"])[1]
    m = _measures(report)["registration"]
    ev = m["evidence"]
    assert m["ok"] and m["problems"] == [] and m["notes"] == []
    assert (ev["profile"], ev["records"], ev["days_with_records"], ev["latest"]) == (
        True, 2, 2, regs[1]["ts"])
    assert "gaps" not in ev  # a day without a new guest is not a gap in coverage
    # unit-7 registered nobody: shown so, beside its profile, without failing the measure for it
    m = _measures(request(c, "GET", "/api/v1/units/unit-7/compliance", user=c["operator"])[1])["registration"]
    assert m["ok"] and (m["evidence"]["records"], m["evidence"]["latest"]) == (0, None)
    assert m["notes"] == ["60 天内无用户注册记录 / no user registration in 60 days"]
    status, _, body = _get_raw(c, "/api/v1/units/unit-7/compliance?format=html", c["operator"])
    page = body.decode()
    assert status == 200 and "no user registration in 60 days" in page and "user registrations" in page
    status, _, body = _get_raw(c, "/api/v1/units/unit-42/compliance?format=html", c["operator"])
    assert status == 200 and "no user registration" not in body.decode()
    assert "13912348000" not in body.decode()  # counts only: no registration data in the report
