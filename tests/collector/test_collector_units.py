"""Units through a running collector: an agent uploads its unit's registration profile, its
batches mark it online, operators list units with profile and agents' status (audited), and
bad profiles are refused with the field named."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from collector_server import cli, post, serve

from wire.envelope import encode_batch

PROFILE = {
    "name": "Riverside Public Library", "legal_representative": "张伟", "address": "1 River Rd",
    "postal_code": "100000", "phone": "010-12345678", "industry": "library", "isp": "China Telecom",
    "access_method": "fiber", "security_officers": [{"name": "李娜", "certificate_no": "A-2024-17",
                                                     "phone": "13800138000"}],
    "ip_ranges": ["198.51.100.0/24", "2001:db8::/48"], "egress_ips": ["198.51.100.1"],
    "dns_servers": ["198.51.100.53"], "mail_servers": [], "services": ["public Wi-Fi"],
    "security_measures": ["edgeaudit agent", "real-name Wi-Fi login"],
}


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[dict[str, Any]]:
    yield from serve(tmp_path)


def request(c: dict[str, Any], method: str, path: str, body: bytes | None = None, *,
            token: str | None = None, user: tuple[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(c["url"] + path, data=body, method=method,
                                 headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if user:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_profiles_and_status(collector: dict[str, Any]) -> None:
    c = collector
    assert request(c, "PUT", "/api/v1/units/self", json.dumps(PROFILE).encode(), token=c["token"]) == (
        200, {"unit": "unit-42", "updated": True})
    stats = {"type": "stats", "ts": 1_790_000_000.0, "interval": 60.0, "packets": 10, "bytes": 1000,
             "kernel_drops": 3, "flows_active": 1, "records_out": 5, "records_dropped": 0,
             "spool_records": 42, "spool_bytes": 4096, "upload_lag_s": 1.5, "ruleset_version": "2026.11.2",
             "quarantined_records": 7}
    assert post(c["url"], encode_batch("gw1", "unit-42", 1, [stats]), c["token"])[0] == 200
    cli("agents", "revoke", "gw2", "--data", str(c["data"]))
    status, ans = request(c, "GET", "/api/v1/units", user=c["operator"])
    assert status == 200
    units = {u["unit"]: u for u in ans["units"]}
    assert units["unit-42"]["profile"]["legal_representative"] == "张伟"
    assert units["unit-42"]["profile"]["ip_ranges"] == ["198.51.100.0/24", "2001:db8::/48"]
    assert [(a["agent"], a["status"]) for a in units["unit-42"]["agents"]] == [("gw1", "online")]
    health = units["unit-42"]["agents"][0]["health"]  # the agent's newest stats record
    assert (health["ruleset_version"], health["spool_records"], health["kernel_drops"],
            health["quarantined_records"]) == ("2026.11.2", 42, 3, 7)
    assert ans["retention_days"] == 180
    assert units["unit-42"]["last_upload"] is not None
    assert units["unit-7"]["profile"] is None
    assert [(a["agent"], a["status"]) for a in units["unit-7"]["agents"]] == [("gw2", "revoked")]
    assert request(c, "GET", "/api/v1/units", user=c["auditor"])[0] == 403
    log = [json.loads(line) for line in (c["data"] / "audit.log").read_text().splitlines()]
    assert log[-2]["action"] == "units" and log[-2]["actor"] == "olga"
    assert log[-1]["action"] == "forbidden" and log[-1]["actor"] == "ada"  # the refusal too
    # personal numbers: masked for an operator, who may not ask for them; an admin's view is audited
    officer = units["unit-42"]["profile"]["security_officers"][0]
    assert (officer["name"], officer["certificate_no"], officer["phone"]) == (
        "李娜", "*******17", "*********00")
    assert request(c, "GET", "/api/v1/units?personal=1", user=c["operator"])[0] == 403
    status, ans = request(c, "GET", "/api/v1/units?personal=1", user=c["admin"])
    officer = {u["unit"]: u for u in ans["units"]}["unit-42"]["profile"]["security_officers"][0]
    assert (status, officer["certificate_no"], officer["phone"]) == (200, "A-2024-17", "13800138000")
    log = [json.loads(line) for line in (c["data"] / "audit.log").read_text().splitlines()]
    assert (log[-1]["action"], log[-1]["actor"], log[-1]["detail"]["personal"]) == (
        "units_personal", "root", True)


def test_records_per_hour_count_new_batches_only(collector: dict[str, Any]) -> None:
    c = collector
    recs = [{"type": "weird", "ts": 1.7e9 + i, "name": "x", "detail": None} for i in range(3)]
    body = encode_batch("gw1", "unit-42", 7, recs)
    assert post(c["url"], body, c["token"])[0] == 200
    assert post(c["url"], body, c["token"])[1]["duplicate"] is True  # a resend counts nothing
    status, ans = request(c, "GET", "/api/v1/stats/hourly?hours=3", user=c["operator"])
    assert status == 200 and len(ans["hours"]) == 3
    assert ans["hours"][-1]["records"] == 3 and ans["hours"][-1]["units"] == {"unit-42": 3}
    assert [h["hour"] % 3600 for h in ans["hours"]] == [0, 0, 0]
    assert request(c, "GET", "/api/v1/stats/hourly?hours=0", user=c["operator"])[0] == 400
    assert request(c, "GET", "/api/v1/stats/hourly")[0] == 401


def test_bad_profiles_are_refused(collector: dict[str, Any]) -> None:
    c = collector
    bad = [({**PROFILE, "postal_code": "12ab"}, "postal_code"), ({**PROFILE, "ip_ranges": ["10.0.0.0/33"]},
                                                                "ip_ranges[0]"),
           ({k: v for k, v in PROFILE.items() if k != "isp"}, "missing"), ({**PROFILE, "x": 1}, "unknown"),
           ({**PROFILE, "name": ""}, "name")]
    for doc, where in bad:
        status, ans = request(c, "PUT", "/api/v1/units/self", json.dumps(doc).encode(), token=c["token"])
        assert (status, ans["error"]) == (400, "invalid_profile") and where in ans["detail"], ans
    assert request(c, "PUT", "/api/v1/units/self", b"{not json", token=c["token"])[0] == 400
    assert request(c, "PUT", "/api/v1/units/self", json.dumps(PROFILE).encode())[0] == 401
    status, ans = request(c, "GET", "/api/v1/units", user=c["operator"])
    assert all(u["profile"] is None for u in ans["units"])
