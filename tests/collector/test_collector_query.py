"""Traceback and record search against a running collector: a capture uploaded by the agent,
NAT mappings and a login posted like a gateway would, then one call answers "who was behind
this public address and port at this time" with the inside address, the account and the
connection's records. Every query is in the audit log before its answer; without the audit
log there is no answer. Only operators and admins may query."""

from __future__ import annotations

import base64
import csv
import io
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from collector_server import ENV, REPO, cli, post, serve

from wire.envelope import encode_batch

OUTSIDE_IP, OUTSIDE_PORT = "203.0.113.9", 40123
GUEST_PORT, GUEST = 40200, "guest-000123"  # a captive portal's guest (issue 19)
GUEST_ID, GUEST_PHONE = "11010119900307123X", "13912348000"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("query")
    gen = serve(tmp)
    c = next(gen)
    pcap = tmp / "edge.pcap"
    subprocess.run([sys.executable, "-m", "agent.cli", "synth", str(pcap), "--packets", "4000"], env=ENV,
                   cwd=REPO, check=True, capture_output=True, timeout=120)
    out = tmp / "out.jsonl"
    subprocess.run([sys.executable, "-m", "agent.cli", "replay", str(pcap), "--jsonl", str(out),
                    "--collector", c["url"], "--token", c["token"]], env=ENV, cwd=REPO, check=True,
                   capture_output=True, timeout=300)
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    http_uids = {r["uid"] for r in recs if r["type"] == "http"}
    session = next(r for r in recs if r["type"] == "session" and r["uid"] in http_uids and r["duration"])
    nat = {"type": "nat", "ts": session["ts"] - 0.5, "event": "create", "proto": "tcp",
           "inside_ip": session["src_ip"], "inside_port": session["src_port"], "outside_ip": OUTSIDE_IP,
           "outside_port": OUTSIDE_PORT, "remote_ip": session["dst_ip"], "remote_port": session["dst_port"]}
    login = {"type": "login", "ts": session["ts"] - 600, "event": "login", "account": "alice",
             "ip": session["src_ip"], "mac": "02:00:5e:00:53:01", "calling_station": "13800138000",
             "source": "radius", "session_id": "acct-1", "duration": None}
    reg = {"type": "registration", "ts": session["ts"] - 700, "account": "guest-7", "name": "张三丰",
           "id_type": "resident_id", "id_number": "110101199003074258", "phone": "13800138000",
           "mac": "02:00:5e:00:53:07", "ip": session["src_ip"]}
    assert post(c["url"], encode_batch("gw1", "unit-42", 7, [nat, login, reg]), c["token"])[0] == 200
    # a guest registered at the front desk, logged in through the portal, behind another public port
    guest = next(r for r in recs if r["type"] == "session" and r["proto"] == "tcp" and r["duration"]
                 and r["src_ip"] != session["src_ip"])
    guest_reg = {"type": "registration", "ts": guest["ts"] - 400, "account": GUEST, "name": "王小明",
                 "id_type": "resident", "id_number": GUEST_ID, "phone": GUEST_PHONE,
                 "mac": "02:00:5e:00:53:09", "ip": guest["src_ip"], "method": "desk", "room": "305",
                 "valid_until": guest["ts"] + 86400, "desk_user": "desk1"}
    guest_login = {"type": "login", "ts": guest["ts"] - 300, "event": "login", "account": GUEST,
                   "ip": guest["src_ip"], "mac": "02:00:5e:00:53:09", "calling_station": "02:00:5e:00:53:09",
                   "source": "portal", "session_id": "portal-1", "duration": None}
    guest_nat = {**nat, "ts": guest["ts"] - 0.5, "inside_ip": guest["src_ip"],
                 "inside_port": guest["src_port"], "outside_port": GUEST_PORT, "remote_ip": guest["dst_ip"],
                 "remote_port": guest["dst_port"]}
    assert post(c["url"], encode_batch("gw1", "unit-42", 8, [guest_reg, guest_login, guest_nat]),
                c["token"])[0] == 200
    # another unit's portal numbers its guests too: its guest-000123 is somebody else
    elsewhere = {**guest_reg, "ts": guest["ts"] - 350, "name": "别处的", "id_number": "110101199001011237",
                 "ip": "192.0.2.77"}
    assert post(c["url"], encode_batch("gw2", "unit-7", 1, [elsewhere]), c["other"])[0] == 200
    c["guest"] = guest
    c["session"] = session
    c["recs"] = recs
    try:
        yield c
    finally:
        next(gen, None)


def get(c: dict[str, Any], path: str, params: dict[str, Any], who: tuple[str, str] | None
        ) -> tuple[int, Any, str]:
    req = urllib.request.Request(c["url"] + path + "?" + urlencode(params))
    if who is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{who[0]}:{who[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            body = resp.read().decode()
            ctype = resp.headers.get("Content-Type", "")
            return resp.status, (json.loads(body) if "json" in ctype else body), ctype
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), ""


def test_traceback_finds_the_inside_address_the_account_and_the_connection(loaded: dict[str, Any]) -> None:
    s = loaded["session"]
    ts = s["ts"] + s["duration"] / 2
    status, ans, _ = get(loaded, "/api/v1/query/traceback",
                         {"ip": OUTSIDE_IP, "port": OUTSIDE_PORT, "ts": ts}, loaded["operator"])
    assert status == 200, ans
    assert ans["inside"] == {"ip": s["src_ip"], "port": s["src_port"], "via": "nat"}
    assert ans["identity"]["account"] == "alice" and ans["identity"]["calling_station"] == "13800138000"
    assert ans["registration"] is None  # a RADIUS account: nobody registered it at a portal
    assert ans["sessions"][0]["uid"] == s["uid"]
    want = sorted(r["type"] for r in loaded["recs"] if r.get("uid") == s["uid"])
    assert sorted(r["type"] for r in ans["records"]) == want and "http" in want
    assert all(r["_agent"] == "gw1" and r["_unit"] == "unit-42" for r in ans["records"])
    # a port nobody used at that time: nothing behind it
    status, ans, _ = get(loaded, "/api/v1/query/traceback",
                         {"ip": OUTSIDE_IP, "port": OUTSIDE_PORT + 1, "ts": ts}, loaded["operator"])
    assert status == 200 and ans["inside"] is None and ans["records"] == []


def test_record_search_pages_and_exports_csv(loaded: dict[str, Any]) -> None:
    s = loaded["session"]
    status, ans, _ = get(loaded, "/api/v1/query/records", {"type": "http", "limit": 5}, loaded["operator"])
    assert status == 200 and len(ans["records"]) == 5 and ans["cursor"]
    status, ans2, _ = get(loaded, "/api/v1/query/records",
                          {"type": "http", "limit": 5, "cursor": ans["cursor"]}, loaded["operator"])
    assert status == 200 and len(ans2["records"]) == 5
    # the second page follows the first: later in time, nothing repeated
    first, second = ans["records"], ans2["records"]
    assert first[-1]["ts"] <= second[0]["ts"] and not [r for r in second if r in first]
    status, ans, _ = get(loaded, "/api/v1/query/records", {"account": "alice"}, loaded["operator"])
    assert status == 200 and [r["type"] for r in ans["records"]] == ["login"]
    status, text, ctype = get(loaded, "/api/v1/query/records", {"ip": s["src_ip"], "type": "session",
                                                                "format": "csv"}, loaded["operator"])
    assert status == 200 and ctype.startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and all(r["src_ip"] == s["src_ip"] for r in rows)
    # the columns: the flow id, the account, every type's searchable text (RECORDS), where from
    header = text.splitlines()[0].split(",")
    assert header[:8] == ["type", "ts", "uid", "src_ip", "src_port", "dst_ip", "dst_port", "account"]
    assert {"host", "uri", "query", "server_name", "subject", "keyword"} <= set(header)
    assert header[-2:] == ["_agent", "_unit"]


def test_the_schema_is_served_from_the_record_declarations(loaded: dict[str, Any]) -> None:
    from wire.records import RECORDS

    assert get(loaded, "/api/v1/schema", {}, None)[0] == 401
    status, ans, _ = get(loaded, "/api/v1/schema", {}, loaded["auditor"])
    assert status == 200
    assert set(ans["records"]) == set(RECORDS) == set(ans["types"])
    assert ans["records"]["http"]["detail"][:2] == ["method", "host"]
    assert ans["records"]["registration"]["personal"] == ["id_number", "phone"]  # the name is shown
    assert ans["types"]["session"]["src_ip"]["format"] == "ip"


def test_personal_fields_are_masked_unless_an_admin_asks(loaded: dict[str, Any]) -> None:
    data = loaded["data"]
    params = {"type": "registration", "account": "guest-7"}
    status, ans, _ = get(loaded, "/api/v1/query/records", params, loaded["operator"])
    assert status == 200
    [r] = ans["records"]
    # the numbers masked as the units' security officers' are; the name shown (issue 19)
    assert r["id_number"] == "*" * 16 + "58" and r["name"] == "张三丰" and r["phone"] == "*********00"
    assert r["account"] == "guest-7" and r["ip"] == loaded["session"]["src_ip"]  # not personal fields
    # the operator may not ask for them; an admin may, and the view is audited as such
    status, ans, _ = get(loaded, "/api/v1/query/records", {**params, "personal": "1"}, loaded["operator"])
    assert (status, ans["error"]) == (403, "forbidden")
    status, ans, _ = get(loaded, "/api/v1/query/records", {**params, "personal": "1"}, loaded["admin"])
    assert status == 200 and ans["records"][0]["id_number"] == "110101199003074258"
    entry = json.loads((data / "audit.log").read_text().splitlines()[-1])
    assert (entry["actor"], entry["action"]) == ("root", "records_personal")
    # the CSV export masks them too
    status, text, _ = get(loaded, "/api/v1/query/records", {**params, "format": "csv"}, loaded["operator"])
    assert status == 200 and "110101199003074258" not in text and "13800138000" not in text


def test_traceback_names_the_guest_behind_the_port_with_the_numbers_masked(loaded: dict[str, Any]) -> None:
    g = loaded["guest"]
    params = {"ip": OUTSIDE_IP, "port": GUEST_PORT, "ts": g["ts"] + g["duration"] / 2}
    status, ans, _ = get(loaded, "/api/v1/query/traceback", params, loaded["operator"])
    assert status == 200, ans
    assert (ans["identity"]["account"], ans["identity"]["source"]) == (GUEST, "portal")
    reg = ans["registration"]
    assert (reg["name"], reg["method"], reg["room"], reg["id_type"], reg["desk_user"], reg["_unit"]) == (
        "王小明", "desk", "305", "resident", "desk1", "unit-42")  # this unit's guest, not unit-7's
    assert (reg["id_number"], reg["phone"]) == ("*" * 16 + "3X", "*********00")
    text = json.dumps(ans, ensure_ascii=False)
    assert GUEST_ID not in text and GUEST_PHONE not in text
    # an operator may not ask for the numbers; an admin may, and the view is audited first
    status, ans, _ = get(loaded, "/api/v1/query/traceback", {**params, "personal": "1"}, loaded["operator"])
    assert (status, ans["error"]) == (403, "forbidden")
    status, ans, _ = get(loaded, "/api/v1/query/traceback", {**params, "personal": "1"}, loaded["admin"])
    assert status == 200 and (ans["registration"]["id_number"], ans["registration"]["phone"]) == (
        GUEST_ID, GUEST_PHONE)
    entry = json.loads((loaded["data"] / "audit.log").read_text().splitlines()[-1])
    assert (entry["actor"], entry["action"], entry["detail"]["personal"]) == (
        "root", "traceback_personal", True)


def test_an_operator_finds_a_guests_registration_and_portal_logins(loaded: dict[str, Any]) -> None:
    status, ans, _ = get(loaded, "/api/v1/query/records", {"account": GUEST}, loaded["operator"])
    assert status == 200
    mine = [r for r in ans["records"] if r["_unit"] == "unit-42"]
    assert [r["type"] for r in mine] == ["registration", "login"]
    assert mine[0]["name"] == "王小明" and mine[0]["id_number"] == "*" * 16 + "3X"
    assert {r["name"] for r in ans["records"] if r["type"] == "registration"} == {"王小明", "别处的"}
    status, ans, _ = get(loaded, "/api/v1/query/records", {"type": "login", "account": GUEST},
                         loaded["operator"])
    assert status == 200 and [(r["source"], r["event"]) for r in ans["records"]] == [("portal", "login")]
    status, ans, _ = get(loaded, "/api/v1/query/records",
                         {"type": "registration", "ip": loaded["guest"]["src_ip"]}, loaded["operator"])
    assert status == 200 and [r["name"] for r in ans["records"]] == ["王小明"]
    # no output path gives an operator the numbers: not the JSON, not the CSV export
    for fmt in ("json", "csv"):
        status, body, _ = get(loaded, "/api/v1/query/records", {"account": GUEST, "format": fmt},
                              loaded["operator"])
        text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
        assert status == 200 and GUEST_ID not in text and GUEST_PHONE not in text
        assert "110101199001011237" not in text


def test_access_is_checked_and_every_query_is_audited(loaded: dict[str, Any]) -> None:
    params = {"ip": OUTSIDE_IP, "port": OUTSIDE_PORT, "ts": loaded["session"]["ts"]}
    assert get(loaded, "/api/v1/query/traceback", params, None)[0] == 401
    assert get(loaded, "/api/v1/query/traceback", params, ("olga", "wrong-password"))[0] == 401
    assert get(loaded, "/api/v1/query/traceback", params, loaded["auditor"])[0] == 403
    status, ans, _ = get(loaded, "/api/v1/query/traceback", {"ip": "not-an-ip", "port": 1, "ts": 1},
                         loaded["operator"])
    assert (status, ans["error"]) == (400, "bad_query") and "ip" in ans["detail"]
    before = len((loaded["data"] / "audit.log").read_text().splitlines())
    assert get(loaded, "/api/v1/query/traceback", params, loaded["operator"])[0] == 200
    lines = (loaded["data"] / "audit.log").read_text().splitlines()
    assert len(lines) == before + 1
    entry = json.loads(lines[-1])
    assert (entry["actor"], entry["action"], entry["result"]) == ("olga", "traceback", "ok")
    assert entry["detail"]["params"]["ip"] == OUTSIDE_IP
    assert "intact" in cli("audit", "verify", "--data", str(loaded["data"]))


def test_no_audit_no_answer(tmp_path: Path) -> None:
    gen = serve(tmp_path)
    c = next(gen)
    try:
        (c["data"] / "audit.log").unlink()  # the log the server holds open is gone
        status, ans, _ = get(c, "/api/v1/query/records", {"type": "http"}, c["operator"])
        assert (status, ans["error"]) == (503, "audit_unavailable")
        assert "records" not in ans
    finally:
        next(gen, None)
