"""RADIUS accounting → login/logout records and address history."""

from __future__ import annotations

from identity_records import T0, Checked, dhcp, login, radius


def test_start_stop_with_calling_station() -> None:
    t = Checked()
    assert t.feed(radius(T0, "Start")) == [
        login(
            T0,
            "login",
            account="alice",
            ip="10.0.0.5",
            mac="00:11:22:33:44:55",
            calling_station="00-11-22-33-44-55",
            source="radius",
            session_id="S1",
        )
    ]
    assert t.table.account_at("10.0.0.5", T0 + 10) == "alice"
    assert t.feed(radius(T0 + 100, "Stop", session_time=98)) == [
        login(
            T0 + 100,
            "logout",
            account="alice",
            ip="10.0.0.5",
            mac="00:11:22:33:44:55",
            calling_station="00-11-22-33-44-55",
            source="radius",
            session_id="S1",
            duration=98,
        )
    ]
    # the session's time is history: still answerable afterwards, not beyond its end
    assert t.table.account_at("10.0.0.5", T0 + 50) == "alice"
    assert t.table.account_at("10.0.0.5", T0 + 100) is None
    assert t.table.account_at("10.0.0.5", T0 - 1) is None
    assert t.table.counters["logins"] == 1 and t.table.counters["logouts"] == 1


def test_phone_number_calling_station_and_mac_from_dhcp_lease() -> None:
    t = Checked()
    t.feed(dhcp(T0, ["REQUEST", "ACK"], mac="aa:bb:cc:00:00:09", assigned="10.0.0.5"))
    out = t.feed(radius(T0 + 1, "Start", csid="13800138000"))
    assert out == [
        login(
            T0 + 1,
            "login",
            account="alice",
            ip="10.0.0.5",
            mac="aa:bb:cc:00:00:09",
            calling_station="13800138000",
            source="radius",
            session_id="S1",
        )
    ]


def test_stop_without_session_time_uses_elapsed_time() -> None:
    t = Checked()
    t.feed(radius(T0, "Start", csid=None))
    (out,) = t.feed(radius(T0 + 42.5, "Stop", csid=None))
    assert out["duration"] == 42.5 and out["mac"] is None and out["calling_station"] is None


def test_duplicate_start_and_interim_refresh_make_no_records() -> None:
    t = Checked()
    t.feed(radius(T0, "Start"))
    assert t.feed(radius(T0 + 0.5, "Start")) == []
    assert t.feed(radius(T0 + 300, "Interim-Update", session_time=300)) == []
    assert t.table.counters["radius_duplicate_start"] == 1
    assert t.table.counters["logins"] == 1


def test_interim_for_unknown_session_is_a_login_dated_back() -> None:
    t = Checked()
    (out,) = t.feed(radius(T0 + 600, "Interim-Update", session_time=600))
    assert out["event"] == "login" and out["ts"] == T0 and out["account"] == "alice"
    assert t.table.account_at("10.0.0.5", T0 + 1) == "alice"
    assert t.table.counters["radius_interim_without_start"] == 1


def test_interim_binds_an_address_the_start_lacked() -> None:
    t = Checked()
    (start,) = t.feed(radius(T0, "Start", framed=None))
    assert start["ip"] is None
    assert t.feed(radius(T0 + 60, "Interim-Update", session_time=60)) == []
    assert t.table.account_at("10.0.0.5", T0 + 61) == "alice"
    assert t.table.account_at("10.0.0.5", T0 + 59) is None


def test_stop_without_start_gives_logout_and_history() -> None:
    t = Checked()
    out = t.feed(radius(T0 + 100, "Stop", session_time=100))
    assert out == [
        login(
            T0 + 100,
            "logout",
            account="alice",
            ip="10.0.0.5",
            mac="00:11:22:33:44:55",
            calling_station="00-11-22-33-44-55",
            source="radius",
            session_id="S1",
            duration=100,
        )
    ]
    assert t.table.account_at("10.0.0.5", T0 + 50) == "alice"
    assert t.table.counters["radius_stop_without_start"] == 1


def test_new_start_on_same_address_supersedes_old_session() -> None:
    t = Checked()
    t.feed(radius(T0, "Start"))
    out = t.feed(radius(T0 + 10, "Start", username="bob", sid="S2", csid=None))
    assert [(r["event"], r["account"], r["ts"], r["duration"]) for r in out] == [
        ("logout", "alice", T0 + 10, 10),
        ("login", "bob", T0 + 10, None),
    ]
    assert t.table.account_at("10.0.0.5", T0 + 5) == "alice"
    assert t.table.account_at("10.0.0.5", T0 + 15) == "bob"
    assert t.table.counters["superseded"] == 1


def test_sessions_are_per_nas() -> None:
    t = Checked()
    t.feed(radius(T0, "Start", nas="192.0.2.1", framed="10.0.0.5"))
    t.feed(radius(T0, "Start", nas="192.0.2.2", framed="10.0.0.6", username="bob"))
    (out,) = t.feed(radius(T0 + 5, "Stop", nas="192.0.2.2", framed="10.0.0.6", username="bob"))
    assert out["account"] == "bob"
    assert t.table.account_at("10.0.0.5", T0 + 6) == "alice"


def test_accounting_on_ends_all_sessions_of_that_nas() -> None:
    t = Checked()
    t.feed(radius(T0, "Start", sid="S1", framed="10.0.0.5"))
    t.feed(radius(T0, "Start", sid="S2", framed="10.0.0.6", username="bob"))
    t.feed(radius(T0, "Start", sid="S3", framed="10.0.0.7", username="carol", nas="192.0.2.9"))
    on = radius(T0 + 50, "Accounting-On", username=None, framed=None, csid=None, sid=None)
    out = t.feed(on)
    assert sorted((r["event"], r["account"], r["duration"]) for r in out) == [
        ("logout", "alice", 50),
        ("logout", "bob", 50),
    ]
    assert t.table.account_at("10.0.0.7", T0 + 60) == "carol"


def test_access_accept_binds_nothing() -> None:
    t = Checked()
    rec = radius(T0, None, code="Access-Request", sid=None)
    assert t.feed(rec) == []
    assert t.table.account_at("10.0.0.5", T0 + 1) is None


def test_session_without_acct_session_id_is_keyed_by_user_and_address() -> None:
    t = Checked()
    t.feed(radius(T0, "Start", sid=None))
    (out,) = t.feed(radius(T0 + 3, "Stop", sid=None))
    assert out["event"] == "logout" and out["duration"] == 3 and out["session_id"] is None
    assert t.table.counters["radius_stop_without_start"] == 0
