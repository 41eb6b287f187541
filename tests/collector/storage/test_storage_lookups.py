"""Storage contract: the traceback lookups nat_at, sessions_at, identity_at and connection."""

from __future__ import annotations

from typing import Any

import pytest
from storage_records import DAY, MIDNIGHT, alert, dns, http, login, nat, session, strip

from collector.storage import (
    MAX_SESSION_SPAN,
    NAT_CLOCK_SLACK,
    NAT_DEFAULT_LIFETIME,
    SESSION_TOLERANCE,
    Storage,
)

OUT = ("192.0.2.1", 40000)
T0 = MIDNIGHT - 60  # mappings start before midnight, lookups cross into the next day file


def inside(recs: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(r["inside_ip"], r["inside_port"]) for r in recs]


@pytest.fixture
def nat_store(store: Storage) -> Storage:
    store.insert_batch(
        "gw",
        "u",
        1,
        [
            nat(T0, "create", ("10.0.0.1", 1000), OUT),
            nat(T0 + 10, "create", ("10.0.0.3", 3000), OUT, remote=("198.51.100.2", 80)),
            nat(T0 + 100, "destroy", ("10.0.0.1", 1000), OUT),
            # the same outside port reused for another inside host (and the same remote)
            nat(T0 + 200, "create", ("10.0.0.2", 2000), OUT),
            # an unrelated port on the same address
            nat(T0 + 5, "create", ("10.0.0.9", 9000), ("192.0.2.1", 40001)),
        ],
    )
    return store


def test_nat_overlapping_mappings_newest_first(nat_store: Storage) -> None:
    assert inside(nat_store.nat_at(*OUT, T0 + 50)) == [("10.0.0.3", 3000), ("10.0.0.1", 1000)]
    assert inside(nat_store.nat_at(*OUT, T0)) == [("10.0.0.1", 1000)]
    assert nat_store.nat_at(*OUT, T0 - NAT_CLOCK_SLACK - 0.5) == []


def test_nat_created_just_after_the_queried_time_answers(store: Storage) -> None:
    # conntrack reports a connection after its first packet: a server log may name a time
    # a little before the create record's
    store.insert_batch("gw", "u", 1, [nat(T0, "create", ("10.0.0.1", 1000), OUT),
                                      nat(T0 + 10, "destroy", ("10.0.0.1", 1000), OUT),
                                      nat(T0 + 20, "create", ("10.0.0.2", 2000), OUT)])
    assert inside(store.nat_at(*OUT, T0 - 1)) == [("10.0.0.1", 1000)]
    assert store.nat_at(*OUT, T0 - NAT_CLOCK_SLACK - 0.5) == []
    assert store.nat_at(*OUT, T0 + 15) == []  # between two mappings, far from both
    assert inside(store.nat_at(*OUT, T0 + 19)) == [("10.0.0.2", 2000)]
    # a mapping in force wins over one created within the slack
    store.insert_batch("gw", "u", 2, [nat(T0 + 40, "create", ("10.0.0.3", 3000), OUT, ("198.51.100.7", 80))])
    assert inside(store.nat_at(*OUT, T0 + 39)) == [("10.0.0.2", 2000)]


def test_nat_and_sessions_of_one_protocol(store: Storage) -> None:
    udp = dict(nat(T0, "create", ("10.0.0.9", 9000), OUT), proto="udp")
    c1 = session(T0, "C1", "10.0.0.1", 1000, nat_ip=OUT[0], nat_port=OUT[1])
    c2 = dict(session(T0, "C2", "10.0.0.9", 9000, nat_ip=OUT[0], nat_port=OUT[1]), proto="udp")
    store.insert_batch("gw", "u", 1, [nat(T0, "create", ("10.0.0.1", 1000), OUT), udp, c1, c2])
    assert sorted(inside(store.nat_at(*OUT, T0 + 1))) == [("10.0.0.1", 1000), ("10.0.0.9", 9000)]
    assert inside(store.nat_at(*OUT, T0 + 1, "udp")) == [("10.0.0.9", 9000)]
    assert inside(store.nat_at(*OUT, T0 + 1, "tcp")) == [("10.0.0.1", 1000)]
    assert [r["uid"] for r in store.sessions_at(*OUT, T0 + 1, outside=True, proto="udp")] == ["C2"]
    assert sorted(r["uid"] for r in store.sessions_at(*OUT, T0 + 1, outside=True)) == ["C1", "C2"]


def test_nat_destroy_and_reuse(nat_store: Storage) -> None:
    assert inside(nat_store.nat_at(*OUT, T0 + 100)) == [("10.0.0.3", 3000), ("10.0.0.1", 1000)]
    assert inside(nat_store.nat_at(*OUT, T0 + 150)) == [("10.0.0.3", 3000)]
    assert inside(nat_store.nat_at(*OUT, T0 + 250)) == [("10.0.0.2", 2000), ("10.0.0.3", 3000)]
    assert all(r["event"] == "create" and r["type"] == "nat" for r in nat_store.nat_at(*OUT, T0 + 250))


def test_nat_next_create_on_same_tuple_ends_the_old_one(store: Storage) -> None:
    # the destroy of the first mapping was lost (conntrack ENOBUFS)
    store.insert_batch("gw", "u", 1, [nat(T0, "create", ("10.0.0.1", 1000), OUT)])
    store.insert_batch("gw", "u", 2, [nat(T0 + 30, "create", ("10.0.0.2", 2000), OUT)])
    assert inside(store.nat_at(*OUT, T0 + 20)) == [("10.0.0.1", 1000)]
    assert inside(store.nat_at(*OUT, T0 + 40)) == [("10.0.0.2", 2000)]


def test_nat_default_lifetime(store: Storage) -> None:
    store.insert_batch("gw", "u", 1, [nat(T0, "create", ("10.0.0.1", 1000), OUT)])
    assert len(store.nat_at(*OUT, T0 + NAT_DEFAULT_LIFETIME - 1)) == 1
    assert store.nat_at(*OUT, T0 + NAT_DEFAULT_LIFETIME + 1) == []


def test_nat_mappings_of_two_gateways_are_separate(store: Storage) -> None:
    store.insert_batch("gw1", "u", 1, [nat(T0, "create", ("10.0.0.1", 1000), OUT)])
    store.insert_batch("gw2", "u", 1, [nat(T0 + 1, "create", ("10.1.0.1", 1000), OUT)])
    assert inside(store.nat_at(*OUT, T0 + 2)) == [("10.1.0.1", 1000), ("10.0.0.1", 1000)]


def test_sessions_inside_and_outside(store: Storage) -> None:
    recs = [
        session(T0, "C1", "10.0.0.5", 50000, duration=30.0, nat_ip="192.0.2.1", nat_port=40000),
        session(T0 + 100, "C2", "10.0.0.5", 50000, duration=5.0),  # source port reused later
        session(T0, "C3", "10.0.0.6", 50000, duration=30.0),
    ]
    store.insert_batch("gw", "u", 1, recs)
    assert [r["uid"] for r in store.sessions_at("10.0.0.5", 50000, T0 + 15, outside=False)] == ["C1"]
    assert [r["uid"] for r in store.sessions_at("10.0.0.5", 50000, T0 + 102, outside=False)] == ["C2"]
    assert store.sessions_at("10.0.0.5", 50000, T0 + 60, outside=False) == []
    assert [r["uid"] for r in store.sessions_at("192.0.2.1", 40000, T0 + 15, outside=True)] == ["C1"]
    assert store.sessions_at("10.0.0.5", 50000, T0 + 15, outside=True) == []
    # tolerance at both ends
    tol = SESSION_TOLERANCE / 2
    assert [r["uid"] for r in store.sessions_at("10.0.0.5", 50000, T0 - tol, outside=False)] == ["C1"]
    assert [r["uid"] for r in store.sessions_at("10.0.0.5", 50000, T0 + 30 + tol, outside=False)] == ["C1"]
    assert store.sessions_at("10.0.0.5", 50000, T0 + 30 + SESSION_TOLERANCE * 2, outside=False) == []


def test_sessions_interim_snapshots_collapse(store: Storage) -> None:
    store.insert_batch("gw", "u", 1, [session(T0, "C1", duration=60.0, interim=True)])
    store.insert_batch("gw", "u", 2, [session(T0, "C1", duration=600.0)])
    (found,) = store.sessions_at("10.0.0.5", 50000, T0 + 30, outside=False)
    assert (found["interim"], found["duration"]) == (False, 600.0)


def test_long_session_across_days(store: Storage) -> None:
    span = MAX_SESSION_SPAN - 100
    store.insert_batch("gw", "u", 1, [session(T0, "LONG", duration=span)])
    assert [r["uid"] for r in store.sessions_at("10.0.0.5", 50000, T0 + span - 1, outside=False)] == ["LONG"]


IP = "10.0.0.5"


def test_identity_login_logout_relogin(store: Storage) -> None:
    store.insert_batch(
        "gw",
        "u",
        1,
        [
            login(T0, "login", IP, "alice", session_id="s1"),
            login(T0 + 100, "logout", IP, "alice", session_id="s1"),
            login(T0 + 200, "login", IP, "bob", session_id="s2"),
        ],
    )

    def who(ts: float) -> str | None:
        rec = store.identity_at(IP, ts)
        return None if rec is None else str(rec["account"])

    assert who(T0 - 1) is None
    assert who(T0) == "alice"
    assert who(T0 + 99) == "alice"
    assert who(T0 + 100) is None  # a logout at ts has ended the login
    assert who(T0 + 150) is None
    assert who(T0 + 300) == "bob"
    assert store.identity_at("10.0.0.6", T0 + 300) is None


def test_identity_overlapping_sources(store: Storage) -> None:
    store.insert_batch(
        "gw",
        "u",
        1,
        [
            login(T0, "login", IP, "alice", source="radius", session_id="r1"),
            login(T0 + 10, "login", IP, "alice-portal", source="portal"),
            login(T0 + 20, "logout", IP, "alice-portal", source="portal"),
            # a logout of another RADIUS session on this address does not end r1
            login(T0 + 30, "logout", IP, "mallory", source="radius", session_id="r0"),
        ],
    )
    rec = store.identity_at(IP, T0 + 15)
    assert rec is not None and rec["account"] == "alice-portal"
    rec = store.identity_at(IP, T0 + 40)
    assert rec is not None and (rec["account"], rec["session_id"]) == ("alice", "r1")


def test_identity_logout_on_the_next_day(store: Storage) -> None:
    store.insert_batch("gw", "u", 1, [login(MIDNIGHT - 10, "login", IP, "alice", source="dhcp")])
    store.insert_batch("gw", "u", 2, [login(MIDNIGHT + 10, "logout", IP, "alice", source="dhcp")])
    assert store.identity_at(IP, MIDNIGHT + 5) is not None
    assert store.identity_at(IP, MIDNIGHT + 20) is None


def test_connection_collects_a_uid_across_days(store: Storage) -> None:
    recs = [
        session(MIDNIGHT - 5, "C1", duration=20.0),
        dns(MIDNIGHT - 6, "C1", "example.com"),
        http(MIDNIGHT + 3, "C1"),
        alert(MIDNIGHT + 4, "C1", "kw"),
        http(MIDNIGHT + 3, "C2"),
        alert(MIDNIGHT + 4, None, "kw"),
    ]
    store.insert_batch("gw", "u", 1, recs)
    got = store.connection("C1")
    assert [r["type"] for r in got] == ["dns", "session", "http", "alert"]
    assert [strip(r) for r in got] == [recs[1], recs[0], recs[2], recs[3]]
    assert store.connection("nope") == []


def test_connection_of_one_agent_within_a_time_window(store: Storage) -> None:
    # uids are unique per agent run only: another agent's C1, and this agent's C1 of a capture
    # replayed a day earlier, are other connections
    store.insert_batch("gw", "u", 1, [session(MIDNIGHT - 5, "C1", duration=20.0), http(MIDNIGHT + 3, "C1")])
    store.insert_batch("gw", "u", 2, [session(MIDNIGHT - DAY, "C1", duration=1.0)])
    store.insert_batch("other", "u", 1, [session(MIDNIGHT, "C1", duration=1.0), http(MIDNIGHT + 1, "C1")])
    assert len(store.connection("C1")) == 5
    got = store.connection("C1", agent="gw", start=MIDNIGHT - 7, end=MIDNIGHT + 17)
    assert [(r["type"], r["ts"], r["_agent"]) for r in got] == [
        ("session", MIDNIGHT - 5, "gw"), ("http", MIDNIGHT + 3, "gw")]
    assert [r["ts"] for r in store.connection("C1", agent="other")] == [MIDNIGHT, MIDNIGHT + 1]
    assert store.connection("C1", agent="gw", start=MIDNIGHT + 4) == []
    assert [r["ts"] for r in store.connection("C1", end=MIDNIGHT - 6)] == [MIDNIGHT - DAY]
