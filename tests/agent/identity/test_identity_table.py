"""The table as a whole: stamping past timestamps, priority between sources, limits, invariants."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from identity_records import T0, Checked, alert, dhcp, http, radius, session, smtp

from agent.identity import IdentityTable, parse_roster
from wire.validate import validate_record

IP = "10.0.0.5"


# --- stamping -----------------------------------------------------------------------------
def test_stamp_uses_the_holder_at_the_records_ts_not_now() -> None:
    t = Checked()
    t.feed(radius(T0, "Start", username="alice", sid="S1"))
    t.feed(radius(T0 + 100, "Stop", username="alice", sid="S1"))
    t.feed(radius(T0 + 100, "Start", username="bob", sid="S2"))
    # a long connection that began during alice's session is emitted after bob logged in
    early = session(T0 + 10, IP)
    late = session(T0 + 150, IP)
    before = session(T0 - 10, IP)
    for rec in (early, late, before):
        t.table.stamp(rec)
        validate_record(rec)
    assert (early["account"], late["account"], before["account"]) == ("alice", "bob", None)
    assert t.table.counters["stamped"] == 2 and t.table.counters["stamped_unknown"] == 1


def test_stamp_http_and_alert_and_not_other_types() -> None:
    t = Checked()
    t.feed(radius(T0, "Start"))
    h = http(T0 + 1, IP)
    a = alert(T0 + 1, IP)
    a_noflow = alert(T0 + 1, None)
    s = smtp(T0 + 1, IP, user=None)
    for rec in (h, a, a_noflow, s):
        t.table.stamp(rec)
    assert h["account"] == "alice" and a["account"] == "alice" and a_noflow["account"] is None
    assert "account" not in s


def test_stamp_keeps_an_existing_account() -> None:
    t = Checked()
    t.feed(radius(T0, "Start"))
    rec = session(T0 + 1, IP, account="preset")
    t.table.stamp(rec)
    assert rec["account"] == "preset"


def test_observe_then_stamp_binds_the_records_own_login() -> None:
    t = Checked()
    rec = http(T0, "10.0.3.3", username="basic-user")
    t.table.observe(rec)
    t.table.stamp(rec)
    assert rec["account"] == "basic-user"


def test_stamp_falls_back_to_roster_by_src_mac_for_sessions() -> None:
    roster = parse_roster("account,name,mac,ip\nzhangsan,,00:11:22:33:44:55,\n")
    t = Checked(roster=roster)
    rec = session(T0, "10.0.9.9", src_mac="00:11:22:33:44:55")
    t.table.stamp(rec)
    assert rec["account"] == "zhangsan"


# --- priority -----------------------------------------------------------------------------
def test_network_login_beats_app_login_whatever_the_order() -> None:
    t = Checked()
    t.feed(radius(T0, "Start", username="alice"))
    t.feed(http(T0 + 10, IP, username="shared-web-account"))
    assert t.table.account_at(IP, T0 + 20) == "alice"
    found = t.table.lookup(IP, T0 + 20)
    assert found is not None and found.source == "radius"


def test_roster_dhcp_beats_app_login_but_radius_beats_dhcp() -> None:
    roster = parse_roster("account,name,mac,ip\nzhangsan,,aa:bb:cc:00:00:01,\n")
    t = Checked(roster=roster)
    t.feed(dhcp(T0, ["REQUEST", "ACK"], assigned=IP))
    t.feed(http(T0 + 1, IP, username="webuser"))
    assert t.table.account_at(IP, T0 + 2) == "zhangsan"
    t.feed(radius(T0 + 3, "Start", username="alice", csid=None))
    assert t.table.account_at(IP, T0 + 4) == "alice"
    assert t.table.account_at(IP, T0 + 2) == "zhangsan"


def test_app_login_answers_when_the_lease_names_no_account() -> None:
    t = Checked()
    t.feed(dhcp(T0, ["REQUEST", "ACK"], assigned=IP))
    t.feed(http(T0 + 1, IP, username="webuser"))
    assert t.table.account_at(IP, T0 + 2) == "webuser"
    assert t.table.account_at(IP, T0 + 0.5) is None


def test_latest_app_login_wins_among_equals() -> None:
    t = Checked()
    t.feed(http(T0, IP, username="first"))
    t.feed(smtp(T0 + 5, IP, user="second"))
    assert t.table.account_at(IP, T0 + 3) == "first"
    assert t.table.account_at(IP, T0 + 6) == "second"


def test_network_login_ends_earlier_app_logins() -> None:
    t = Checked()
    t.feed(http(T0, IP, username="previous-user"))
    t.feed(dhcp(T0 + 10, ["REQUEST", "ACK"], assigned=IP))  # the address changed hands
    assert t.table.account_at(IP, T0 + 5) == "previous-user"
    assert t.table.account_at(IP, T0 + 20) is None


def test_late_arriving_app_login_is_cut_at_the_next_network_login() -> None:
    t = Checked()
    t.feed(dhcp(T0 + 10, ["REQUEST", "ACK"], assigned=IP))
    out = t.feed(http(T0, IP, username="previous-user"))  # emitted late, ts before the lease
    assert len(out) == 1
    assert t.table.account_at(IP, T0 + 5) == "previous-user"
    assert t.table.account_at(IP, T0 + 20) is None


def test_roster_answers_when_no_dynamic_source_names_an_account() -> None:
    roster = parse_roster("account,name,mac,ip\nlisi,,,10.0.0.5\nzhangsan,,00:11:22:33:44:55,\n")
    t = Checked(roster=roster)
    t.feed(radius(T0, "Start", username=None))  # a session without User-Name, from a roster MAC
    assert t.table.account_at(IP, T0 + 1) == "zhangsan"
    assert t.table.account_at(IP, T0 - 1) == "lisi"  # before it: the fixed address


# --- limits -------------------------------------------------------------------------------
def test_max_entries_evicts_least_recently_updated_address() -> None:
    t = Checked(max_entries=3)
    for i in range(4):
        t.feed(http(T0 + i, f"10.0.4.{i}", username=f"u{i}"))
    assert t.table.counters["addresses_evicted"] == 1
    assert t.table.account_at("10.0.4.0", T0 + 10) is None
    assert [t.table.account_at(f"10.0.4.{i}", T0 + 10) for i in (1, 2, 3)] == ["u1", "u2", "u3"]


def test_max_entries_bounds_open_sessions() -> None:
    t = Checked(max_entries=2)
    for i in range(3):
        t.feed(radius(T0, "Start", sid=f"S{i}", framed=None, username=f"u{i}"))
    assert t.table.counters["sessions_evicted"] == 1
    (out,) = t.feed(radius(T0 + 1, "Stop", sid="S0", framed=None, username="u0"))
    assert out["duration"] is None  # forgotten: matched as a Stop without Start
    assert t.table.counters["radius_stop_without_start"] == 1


def test_max_intervals_per_ip_drops_oldest_closed_history() -> None:
    t = Checked(max_intervals_per_ip=8)
    for i in range(20):
        t.feed(radius(T0 + 10 * i, "Start", sid=f"S{i}", username=f"u{i}"))
        t.feed(radius(T0 + 10 * i + 5, "Stop", sid=f"S{i}", username=f"u{i}"))
    assert t.table.counters["intervals_dropped"] == 12
    assert t.table.account_at(IP, T0 + 1) is None  # dropped
    assert t.table.account_at(IP, T0 + 191) == "u19"
    assert t.table.account_at(IP, T0 + 121) == "u12"


def test_many_app_logins_on_one_address_stay_bounded() -> None:
    t = Checked(max_intervals_per_ip=8)
    for i in range(50):
        t.feed(http(T0 + i, IP, username=f"user{i}"))
    assert t.table.counters["intervals_dropped"] == 42
    assert t.table.account_at(IP, T0 + 60) == "user49"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_entries": 0},
        {"max_intervals_per_ip": 7},
        {"dhcp_default_lease": 0.0},
        {"app_login_ttl": float("inf")},
    ],
)
def test_bad_limits_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        IdentityTable(**kwargs)  # type: ignore[arg-type]


def test_malformed_and_unrelated_records_are_ignored() -> None:
    t = IdentityTable()
    assert t.observe({"type": "radius"}) == []
    assert t.observe({"type": "dhcp", "ts": "yesterday"}) == []
    assert t.observe({"type": "dns", "ts": T0}) == []
    assert t.observe({"type": "dhcp", "ts": T0, "msg_types": "ACK"}) == []
    assert t.counters["records_malformed"] == 2 and t.counters["records_seen"] == 4


def test_counters_are_all_present_from_the_start() -> None:
    counters = IdentityTable().counters
    assert {
        "logins",
        "logouts",
        "addresses_evicted",
        "sessions_evicted",
        "intervals_dropped",
    } <= counters.keys()
    assert set(counters.values()) == {0}


# --- invariants over random record sequences -----------------------------------------------
MACS = [f"aa:bb:cc:00:00:0{i}" for i in range(4)]
IPS = [f"10.0.5.{i}" for i in range(4)]
USERS = ["u0", "u1", "u2"]


@st.composite
def feed_records(draw: st.DrawFn) -> list[dict[str, object]]:
    recs: list[dict[str, object]] = []
    ts = T0
    for _ in range(draw(st.integers(0, 40))):
        ts += draw(st.floats(0, 2000, allow_nan=False))
        kind = draw(st.sampled_from(["ack", "release", "start", "stop", "interim", "http", "session"]))
        ip, mac, user = draw(st.sampled_from(IPS)), draw(st.sampled_from(MACS)), draw(st.sampled_from(USERS))
        sid = draw(st.sampled_from(["S1", "S2", "S3"]))
        if kind == "ack":
            recs.append(
                dhcp(ts, ["REQUEST", "ACK"], mac=mac, assigned=ip, lease=draw(st.sampled_from([None, 600.0])))
            )
        elif kind == "release":
            recs.append(dhcp(ts, ["RELEASE"], mac=mac, assigned=None, client=ip, lease=None))
        elif kind in ("start", "stop", "interim"):
            status = {"start": "Start", "stop": "Stop", "interim": "Interim-Update"}[kind]
            st_time = draw(st.sampled_from([None, 30]))
            recs.append(radius(ts, status, username=user, framed=ip, sid=sid, session_time=st_time))
        elif kind == "http":
            recs.append(http(ts - draw(st.floats(0, 100)), ip, username=user))
        else:
            recs.append(session(ts - draw(st.floats(0, 100)), ip))
    return recs


@settings(max_examples=150, deadline=None)
@given(feed_records(), st.integers(8, 12), st.integers(1, 6))
def test_random_sequences_are_valid_deterministic_and_balanced(
    recs: list[dict[str, object]], max_iv: int, max_entries: int
) -> None:
    def run() -> tuple[list[dict[str, object]], list[object], dict[str, int]]:
        t = Checked(max_intervals_per_ip=max_iv, max_entries=max_entries)
        out = t.feed(*recs)
        out += t.expire(T0 + 10**7)
        answers: list[object] = [
            t.table.account_at(ip, T0 + k * 500.0) for ip in IPS for k in range(0, 40, 3)
        ]
        for rec in recs:
            copy = dict(rec)
            t.table.stamp(copy)
            validate_record(copy)
            answers.append(copy.get("account"))
        return out, answers, dict(t.table.counters)

    first = run()
    assert run() == first  # deterministic: no clock, no randomness
    out, _, counters = first
    logins = sum(1 for r in out if r["event"] == "login")
    assert counters["logins"] == logins
    assert counters["logouts"] == len(out) - logins
    for r in out:
        duration = r["duration"]
        if r["event"] == "login":
            assert duration is None
        else:
            assert duration is None or (isinstance(duration, int | float) and duration >= 0)
