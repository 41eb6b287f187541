"""End to end (issue 5 must-show): captures replayed into a running collector, then traceback.

A generated gateway capture and corpus captures (PPPoE and DHCP logins) are replayed by
`edgeaudit-agent replay --collector`, as an agent uploads them. The gateway's NAT is
played by a port allocator the test runs over the capture's own connections: each
connection gets the lowest free public port of one public address, and a port is reused
as soon as its previous connection ended, so one public (address, port) stands for
different inside hosts at different times, as on a real masquerading gateway. The `nat`
create/destroy records are uploaded like the gateway's conntrack module sends them.

Then, for every mapping, a traceback of (public address, port, a time inside the
connection) must name the connection's inside address and port, the account of the
user behind it (from the admin's roster, from the PPPoE login, from DHCP + roster), and
the records of exactly that connection: uids repeat between captures replayed by the
same agent, so records of another capture must not leak in. A session the agent stamped
with `nat_ip`/`nat_port` is found without any `nat` record.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from collector_server import ENV, REPO, serve

from agent.uploader.client import Uploader
from collector.storage import NAT_CLOCK_SLACK

CORPUS = REPO.parent / "shared" / "corpus" / "zeek" / "Traces"
PUBLIC_IP = "203.0.113.10"  # the gateway's masquerade address (TEST-NET-3)
STAMPED_IP = "198.51.100.20"
FIRST_PORT = 30000
SAMPLE = 60  # connections given a NAT mapping
PORTS = 12  # public ports they share


def _agent(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "agent.cli", *args], env=ENV, cwd=REPO, check=True,
                   capture_output=True, timeout=300)


def _replay(pcap: Path, out: Path, c: dict[str, Any], *extra: str) -> list[dict[str, Any]]:
    _agent("replay", str(pcap), "--jsonl", str(out), "--no-progress", "--collector", c["url"], "--token",
           c["token"], *extra)
    return [json.loads(line) for line in out.read_text().splitlines()]


def _allocate(sessions: list[dict[str, Any]], limit: int) -> list[tuple[dict[str, Any], int, float, float]]:
    """(session, public port, create ts, destroy ts) for up to `limit` sessions: each gets the
    lowest port of a small pool that is free at its start (freed at its destroy); a session
    finding the pool full is left out, like a connection through another gateway."""
    busy: dict[int, float] = {}  # port -> destroy ts of its current mapping
    out = []
    for s in sorted(sessions, key=lambda r: r["ts"]):
        create, destroy = s["ts"] - 0.001, s["ts"] + s["duration"] + 0.001
        free = (p for p in range(FIRST_PORT, FIRST_PORT + PORTS) if busy.get(p, float("-inf")) < create)
        port = next(free, None)
        if port is None:
            continue
        busy[port] = destroy
        out.append((s, port, create, destroy))
        if len(out) == limit:
            break
    return out


def _nat(event: str, ts: float, s: dict[str, Any], public_ip: str, port: int) -> dict[str, Any]:
    return {"type": "nat", "ts": ts, "event": event, "proto": s["proto"], "inside_ip": s["src_ip"],
            "inside_port": s["src_port"], "outside_ip": public_ip, "outside_port": port,
            "remote_ip": s["dst_ip"], "remote_port": s["dst_port"]}


def _traceback(c: dict[str, Any], ip: str, port: int, ts: float) -> dict[str, Any]:
    name, password = c["operator"]
    auth = base64.b64encode(f"{name}:{password}".encode()).decode()
    query = urlencode({"ip": ip, "port": port, "ts": ts})
    req = urllib.request.Request(f"{c['url']}/api/v1/query/traceback?{query}",
                                 headers={"Authorization": f"Basic {auth}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        answer: dict[str, Any] = json.loads(resp.read())
        return answer


def capture_and_roster(pcap: Path, packets: int, seed: int, extra: Sequence[str] = ()
                       ) -> tuple[dict[str, str], Path]:
    """A generated capture at ``pcap`` and the admin's roster beside it, an account per inside
    client (learned from a first, offline replay): (inside address -> account, roster path)."""
    _agent("synth", str(pcap), "--packets", str(packets), "--seed", str(seed))
    first = pcap.with_suffix(".first.jsonl")
    _agent("replay", str(pcap), "--jsonl", str(first), "--no-progress")
    clients = sorted({json.loads(line)["src_ip"] for line in first.read_text().splitlines()
                      if '"type":"session"' in line and '"src_ip":"192.168.' in line})
    accounts = {ip: f"user{n:03d}" for n, ip in enumerate(clients)}
    roster = pcap.with_name("roster.csv")
    rows = ["account,name,mac,ip", *(f"{acct},,,{ip}" for ip, acct in accounts.items()), *extra]
    roster.write_text("\n".join(rows) + "\n")
    return accounts, roster


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("traceback-e2e")
    pcap = tmp / "edge.pcap"
    accounts, roster = capture_and_roster(pcap, 8000, 5, ["alice,Alice,00:0a:28:00:fa:42,"])  # + DHCP client
    gen = serve(tmp)
    c = next(gen)
    recs = _replay(pcap, tmp / "edge.jsonl", c, "--roster", str(roster))
    sessions = [r for r in recs if r["type"] == "session" and r["proto"] in ("tcp", "udp")
                and r["src_ip"] in accounts and r["duration"] and r["dst_port"] != 53]
    mappings = _allocate(sessions, SAMPLE)
    nat = [_nat("create", create, s, PUBLIC_IP, port) for s, port, create, _ in mappings]
    nat += [_nat("destroy", destroy, s, PUBLIC_IP, port) for s, port, _, destroy in mappings]
    corpus: dict[str, list[dict[str, Any]]] = {}
    if CORPUS.is_dir():
        captures = (("pppoe", CORPUS / "pppoe.pcap"),
                    ("dhcp", CORPUS / "dhcp" / "dhcp_ack_subscriber_id_and_agent_remote_id.pcap"))
        for name, path in captures:
            corpus[name] = _replay(path, tmp / f"{name}.jsonl", c, "--roster", str(roster))
    up = Uploader(c["url"], c["token"])
    up.add(sorted(nat, key=lambda r: r["ts"]))
    up.flush()
    c.update(recs=recs, mappings=mappings, accounts=accounts, corpus=corpus, uploader=up)
    try:
        yield c
    finally:
        next(gen, None)


def test_every_known_mapping_traces_back_to_its_connection_and_account(lab: dict[str, Any]) -> None:
    by_uid: dict[str, list[dict[str, Any]]] = {}
    for r in lab["recs"]:
        if r.get("uid"):
            by_uid.setdefault(r["uid"], []).append(r)
    ports = [port for _, port, _, _ in lab["mappings"]]
    assert len(set(ports)) < len(ports), "the allocator must reuse public ports, or reuse is not tested"
    with_http = 0
    for s, port, _create, _destroy in lab["mappings"]:
        ans = _traceback(lab, PUBLIC_IP, port, s["ts"] + s["duration"] / 2)
        assert ans["inside"] == {"ip": s["src_ip"], "port": s["src_port"], "via": "nat"}, (s, port, ans)
        assert ans["nat"][0]["inside_ip"] == s["src_ip"]
        assert ans["identity"] is not None and ans["identity"]["account"] == lab["accounts"][s["src_ip"]], ans
        assert [x["uid"] for x in ans["sessions"]] == [s["uid"]]
        got = sorted((r["type"], r["ts"]) for r in ans["records"])
        want = sorted((r["type"], r["ts"]) for r in by_uid[s["uid"]])
        assert got == want, f"records of connection {s['uid']}: {got} != {want}"
        with_http += any(r["type"] == "http" for r in ans["records"])
    assert with_http >= 5


def test_between_two_mappings_of_a_port_the_earlier_one_is_over(lab: dict[str, Any]) -> None:
    # after a mapping's destroy and before the port's next create, the old connection no
    # longer holds the port; a next create within NAT_CLOCK_SLACK answers (conntrack reports
    # a connection after its first packet), and nobody otherwise
    by_port: dict[int, list[tuple[float, float, dict[str, Any]]]] = {}
    for s, port, create, destroy in lab["mappings"]:
        by_port.setdefault(port, []).append((create, destroy, s))
    gaps = [(port, (a[1] + b[0]) / 2, b) for port, spans in by_port.items()
            for a, b in zip(sorted(spans, key=lambda x: x[0]), sorted(spans, key=lambda x: x[0])[1:],
                            strict=False) if b[0] - a[1] > 0.0005]
    assert gaps, "no idle gap between two mappings of one port in the sample"
    for port, ts, (create, _, nxt) in gaps[:8]:
        ans = _traceback(lab, PUBLIC_IP, port, ts)
        if create - ts <= NAT_CLOCK_SLACK:
            want = {"ip": nxt["src_ip"], "port": nxt["src_port"], "via": "nat"}
            assert ans["inside"] == want, (port, ts, ans)
        else:
            assert ans["nat"] == [] and ans["inside"] is None, (port, ts, ans)
    # long after every mapping's destroy, well past the slack: nobody
    last = max(destroy for _, _, _, destroy in lab["mappings"])
    ans = _traceback(lab, PUBLIC_IP, lab["mappings"][0][1], last + 10 * NAT_CLOCK_SLACK)
    assert ans["nat"] == [] and ans["inside"] is None, ans


def test_corpus_logins_give_the_account_behind_the_public_port(lab: dict[str, Any]) -> None:
    if not lab["corpus"]:
        pytest.skip("../shared/corpus is absent")
    up: Uploader = lab["uploader"]
    # PPPoE (Zeek's pppoe.pcap): the subscriber "cisco" got 10.0.2.16 in IPCP
    ppp = next(r for r in lab["corpus"]["pppoe"] if r["type"] == "login")
    # DHCP (a Zeek test capture): an ACK of 192.168.0.10 to 00:0a:28:00:fa:42, alice's device in the roster
    dhcp = next(r for r in lab["corpus"]["dhcp"] if r["type"] == "login" and r["event"] == "login")
    cases = [(ppp, 51000, "cisco", "pppoe"), (dhcp, 51001, "alice", "dhcp")]
    for login, port, _, _ in cases:
        inside = {"proto": "tcp", "src_ip": login["ip"], "src_port": 40000, "dst_ip": "192.0.2.80",
                  "dst_port": 80}
        up.add([_nat("create", login["ts"] + 0.0001, inside, PUBLIC_IP, port)])
        up.flush()  # one batch per capture: 2004 and 2010 in one would span more than a backup holds
    for login, port, account, source in cases:
        ans = _traceback(lab, PUBLIC_IP, port, login["ts"] + 0.00015)
        assert ans["inside"] == {"ip": login["ip"], "port": 40000, "via": "nat"}, ans
        assert ans["identity"]["account"] == account, ans
        assert ans["identity"]["source"] == source
        assert ans["identity"]["mac"] == login["mac"]


def test_a_session_stamped_with_its_public_address_needs_no_nat_record(lab: dict[str, Any]) -> None:
    # the live agent stamps nat_ip/nat_port from conntrack on the session itself
    mapped = {s["uid"] for s, _, _, _ in lab["mappings"]}
    s = next(r for r in lab["recs"] if r["type"] == "session" and r["uid"] not in mapped
             and r["src_ip"] in lab["accounts"] and r["duration"] and r["proto"] == "tcp")
    stamped = dict(s, uid="Cstamped0000000001", nat_ip=STAMPED_IP, nat_port=61000)
    up: Uploader = lab["uploader"]
    up.add([stamped])
    up.flush()
    ans = _traceback(lab, STAMPED_IP, 61000, s["ts"] + s["duration"] / 2)
    assert ans["nat"] == []
    assert ans["inside"] == {"ip": s["src_ip"], "port": s["src_port"], "via": "session nat_ip"}, ans
    assert ans["identity"]["account"] == lab["accounts"][s["src_ip"]]
    assert [r["uid"] for r in ans["records"]] == ["Cstamped0000000001"]
