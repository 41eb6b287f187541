"""NatTable and classify (agent/nat/table.py): which tuple is inside/outside/remote, the
create/destroy records, reconciliation after event loss, the lookup's linger and limits."""

from __future__ import annotations

import socket

from agent.nat.table import CtKey, CtTuple, Current, NatTable, classify
from wire.validate import validate_record

TCP, UDP, ICMP = socket.IPPROTO_TCP, socket.IPPROTO_UDP, socket.IPPROTO_ICMP


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def snat(sport: int, public_port: int, proto: int = TCP) -> tuple[CtTuple, CtTuple]:
    orig = CtTuple(proto, "10.0.0.5", "198.51.100.9", sport, 443)
    reply = CtTuple(proto, "198.51.100.9", "203.0.113.7", 443, public_port)
    return orig, reply


def key(orig: CtTuple) -> CtKey:
    return (socket.AF_INET, 0, orig)


def test_masquerade_is_inside_outside_remote() -> None:
    t = classify(*snat(51234, 40001))
    assert t is not None and t.snat
    got = (t.proto, t.inside_ip, t.inside_port, t.outside_ip, t.outside_port, t.remote_ip, t.remote_port)
    assert got == ("tcp", "10.0.0.5", 51234, "203.0.113.7", 40001, "198.51.100.9", 443)


def test_port_only_translation_counts_as_translated() -> None:
    orig = CtTuple(UDP, "203.0.113.7", "198.51.100.9", 5000, 53)
    reply = CtTuple(UDP, "198.51.100.9", "203.0.113.7", 53, 5001)
    t = classify(orig, reply)
    assert t is not None and (t.inside_port, t.outside_port) == (5000, 5001)


def test_untranslated_gives_none() -> None:
    orig = CtTuple(UDP, "10.0.0.5", "10.0.0.1", 5353, 53)
    assert classify(orig, CtTuple(UDP, "10.0.0.1", "10.0.0.5", 53, 5353)) is None
    ping = CtTuple(ICMP, "10.0.0.5", "10.0.0.1", 77, None)
    assert classify(ping, CtTuple(ICMP, "10.0.0.1", "10.0.0.5", 77, None)) is None


def test_port_forward_dnat_names_the_internal_server_inside() -> None:
    orig = CtTuple(TCP, "198.51.100.9", "203.0.113.7", 60000, 8080)  # caller -> public:8080
    reply = CtTuple(TCP, "10.0.0.20", "198.51.100.9", 80, 60000)  # internal server:80 answers
    t = classify(orig, reply)
    assert t is not None and not t.snat
    assert (t.inside_ip, t.inside_port, t.outside_ip, t.outside_port, t.remote_ip, t.remote_port) == (
        "10.0.0.20", 80, "203.0.113.7", 8080, "198.51.100.9", 60000)


def test_icmp_echo_id_is_the_port() -> None:
    orig = CtTuple(ICMP, "10.0.0.5", "198.51.100.9", 77, None)
    reply = CtTuple(ICMP, "198.51.100.9", "203.0.113.7", 1024, None)
    t = classify(orig, reply)
    assert t is not None
    got = (t.proto, t.inside_port, t.outside_ip, t.outside_port, t.remote_port)
    assert got == ("icmp", 77, "203.0.113.7", 1024, None)


def test_create_destroy_records_and_lookup_linger() -> None:
    clock = Clock()
    table = NatTable(linger=30.0, clock=clock)
    orig, reply = snat(51234, 40001)
    t = classify(orig, reply)
    assert t is not None
    (c,) = table.create(key(orig), 7, t, 100.5)
    validate_record(c)
    assert c == {"type": "nat", "ts": 100.5, "event": "create", "proto": "tcp", "inside_ip": "10.0.0.5",
                 "inside_port": 51234, "outside_ip": "203.0.113.7", "outside_port": 40001,
                 "remote_ip": "198.51.100.9", "remote_port": 443}
    assert table.create(key(orig), 7, t, 100.6) == []  # the same entry again: duplicate
    assert table.outside_for("tcp", "10.0.0.5", 51234, "198.51.100.9", 443) == ("203.0.113.7", 40001)
    assert table.outside_for("udp", "10.0.0.5", 51234, "198.51.100.9", 443) is None
    assert table.destroy(key(orig), 8, 101.0) == []  # another entry's destroy (other CTA_ID)
    (d,) = table.destroy(key(orig), 7, 160.0)
    validate_record(d)
    assert d == {**c, "event": "destroy", "ts": 160.0}
    assert table.destroy(key(orig), 7, 161.0) == []
    assert table.counters["destroy_unknown"] == 1 and table.counters["destroy_other_id"] == 1
    clock.now = 29.0
    assert table.outside_for("tcp", "10.0.0.5", 51234, "198.51.100.9", 443) == ("203.0.113.7", 40001)
    clock.now = 30.0
    assert table.outside_for("tcp", "10.0.0.5", 51234, "198.51.100.9", 443) is None


def test_a_reused_five_tuple_replaces_the_lingering_entry() -> None:
    clock = Clock()
    table = NatTable(linger=30.0, clock=clock)
    o1, r1 = snat(51234, 40001)
    t1 = classify(o1, r1)
    assert t1 is not None
    table.create(key(o1), 1, t1, 1.0)
    table.destroy(key(o1), 1, 2.0)
    o2, r2 = snat(51234, 40002)
    t2 = classify(o2, r2)
    assert t2 is not None
    table.create(key(o2), 2, t2, 3.0)
    clock.now = 100.0  # the first entry's linger is over; the second is live
    assert table.outside_for("tcp", "10.0.0.5", 51234, "198.51.100.9", 443) == ("203.0.113.7", 40002)


def test_a_new_entry_under_a_known_key_destroys_the_old_one() -> None:
    table = NatTable()
    o1, r1 = snat(51234, 40001)
    t1 = classify(o1, r1)
    assert t1 is not None
    table.create(key(o1), 1, t1, 1.0)
    o2, r2 = snat(51234, 40002)
    t2 = classify(o2, r2)
    assert t2 is not None
    recs = table.create(key(o2), 2, t2, 5.0)  # the destroy of id 1 was lost
    assert [(r["event"], r["outside_port"], r["ts"]) for r in recs] == [("destroy", 40001, 5.0),
                                                                       ("create", 40002, 5.0)]


def test_reconcile_creates_missing_destroys_vanished_keeps_the_rest() -> None:
    table = NatTable()
    entries = {}
    for i, sport in enumerate((1000, 1001, 1002, 1003)):
        o, r = snat(sport, 40000 + i)
        t = classify(o, r)
        assert t is not None
        entries[sport] = (key(o), t)
    for sport in (1000, 1001, 1002):
        k, t = entries[sport]
        table.create(k, sport, t, 1.0)
    # the table now holds 1000 (same id), 1002 under a new id, and 1003 (never seen); 1001 is gone
    current = {entries[1000][0]: Current(1000, entries[1000][1], 1.0),
               entries[1002][0]: Current(99, entries[1002][1], 7.0),
               entries[1003][0]: Current(1003, entries[1003][1], 8.0)}
    recs = table.reconcile(current, 10.0)
    got = sorted((r["event"], r["inside_port"], r["ts"]) for r in recs)
    assert got == [("create", 1002, 7.0), ("create", 1003, 8.0), ("destroy", 1001, 10.0),
                   ("destroy", 1002, 10.0)]
    assert sorted(k[2].sport for k in table.live) == [1000, 1002, 1003]
    assert table.reconcile(current, 11.0) == []  # idempotent


def test_limits_count_what_they_drop() -> None:
    clock = Clock()
    table = NatTable(linger=30.0, limit=2, clock=clock)
    ts = []
    for i in range(3):
        o, r = snat(2000 + i, 41000 + i)
        t = classify(o, r)
        assert t is not None
        ts.append((key(o), t))
    for k, t in ts[:2]:
        table.create(k, None, t, 1.0)
    assert len(table.create(ts[2][0], None, ts[2][1], 1.0)) == 1  # the record is still emitted
    assert table.counters["live_dropped"] == 1 and len(table) == 2
    # a destroyed entry lingers in the lookup; a new translation evicts it when the map is full
    table.destroy(ts[0][0], None, 2.0)
    table.create(ts[2][0], None, ts[2][1], 3.0)
    assert table.counters["lookup_evicted"] == 1
    assert table.outside_for("tcp", "10.0.0.5", 2000, "198.51.100.9", 443) is None
    assert table.outside_for("tcp", "10.0.0.5", 2002, "198.51.100.9", 443) == ("203.0.113.7", 41002)
