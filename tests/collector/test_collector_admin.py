"""The auditor's audit log page and the admin's user management, over HTTP against a real
collector: each role refused what it may not do, each action audited, no password in the log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from collector_server import serve
from test_collector_units import request


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[dict[str, Any]]:
    yield from serve(tmp_path)


def _log(c: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (c["data"] / "audit.log").read_text().splitlines()]


def test_the_auditor_reads_the_verified_audit_log(collector: dict[str, Any]) -> None:
    c = collector
    assert request(c, "GET", "/api/v1/query/records?type=dns", user=c["operator"])[0] == 200
    assert request(c, "GET", "/api/v1/query/records?type=http", user=c["operator"])[0] == 200
    status, ans = request(c, "GET", "/api/v1/audit?limit=5", user=c["auditor"])
    assert status == 200
    assert ans["verify"]["ok"] and ans["verify"]["problem"] is None and ans["verify"]["anchor"]
    seqs = [e["seq"] for e in ans["entries"]]
    assert seqs == sorted(seqs, reverse=True) and ans["entries"][0]["action"] == "records"
    status, older = request(c, "GET", f"/api/v1/audit?limit=1&before={seqs[0]}", user=c["auditor"])
    assert [e["seq"] for e in older["entries"]] == [seqs[0] - 1]
    assert "type=dns" in older["entries"][0]["target"]
    assert _log(c)[-1]["action"] == "audit_view" and _log(c)[-1]["actor"] == "ada"
    for who in ("operator", "admin"):
        assert request(c, "GET", "/api/v1/audit", user=c[who])[0] == 403
    assert request(c, "GET", "/api/v1/audit?limit=0", user=c["auditor"])[0] == 400
    # a modified entry is reported by the page's verification
    path = c["data"] / "audit.log"
    lines = path.read_text().splitlines()
    lines[0] = lines[0].replace('"actor":"', '"actor":"x', 1)
    path.write_text("\n".join(lines) + "\n")
    status, ans = request(c, "GET", "/api/v1/audit?limit=1", user=c["auditor"])
    assert not ans["verify"]["ok"] and ans["verify"]["line"] == 1


def test_the_admin_manages_users_and_others_may_not(collector: dict[str, Any]) -> None:
    c = collector
    status, ans = request(c, "GET", "/api/v1/users", user=c["admin"])
    assert status == 200 and {u["name"] for u in ans["users"]} == {"olga", "ada", "root"}
    status, made = request(c, "POST", "/api/v1/users",
                           json.dumps({"name": "wang", "role": "operator"}).encode(), user=c["admin"])
    assert status == 200 and made["name"] == "wang" and len(made["password"]) >= 20
    assert made["password"] not in (c["data"] / "audit.log").read_text()  # shown once, never logged
    assert request(c, "GET", "/api/v1/query/records", user=("wang", made["password"]))[0] == 200
    assert request(c, "POST", "/api/v1/users", json.dumps({"name": "wang", "role": "operator"}).encode(),
                   user=c["admin"])[0] == 400  # exists
    assert request(c, "POST", "/api/v1/users", json.dumps({"name": "li", "role": "god"}).encode(),
                   user=c["admin"])[0] == 400
    assert request(c, "POST", "/api/v1/users/wang/disable", b"", user=c["admin"]) == (
        200, {"name": "wang", "disabled": True})
    assert request(c, "GET", "/api/v1/query/records", user=("wang", made["password"]))[0] == 401
    assert request(c, "POST", "/api/v1/users/root/disable", b"", user=c["admin"])[0] == 400  # themself
    assert request(c, "POST", "/api/v1/users/nobody/disable", b"", user=c["admin"])[0] == 400
    for who in ("operator", "auditor"):
        assert request(c, "GET", "/api/v1/users", user=c[who])[0] == 403
        assert request(c, "POST", "/api/v1/users", json.dumps({"name": "x", "role": "admin"}).encode(),
                       user=c[who])[0] == 403
        assert request(c, "POST", "/api/v1/users/olga/disable", b"", user=c[who])[0] == 403
    actions = [e["action"] for e in _log(c) if e["actor"] == "root"]
    assert actions.count("user_add") == 3 and actions.count("user_disable") == 3
