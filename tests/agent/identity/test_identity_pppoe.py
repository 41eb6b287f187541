"""PPPoE discovery/termination → login/logout records."""

from __future__ import annotations

from identity_records import T0, Checked, login, pppoe

AC = "00:00:5e:00:53:01"
HOST = "02:00:00:00:00:07"


def test_pads_padt_from_host() -> None:
    t = Checked()
    t.feed(pppoe(T0 - 1, "PADO", src=AC, dst=HOST, session_id=0))
    # the login waits for IPCP (none here): the PADT writes it, dated at the PADS, then the logout
    assert t.feed(pppoe(T0, "PADS", src=AC, dst=HOST, session_id=0x1234)) == []
    out = t.feed(pppoe(T0 + 90, "PADT", src=HOST, dst=AC, session_id=0x1234, username="dsl-user"))
    assert out == [
        login(T0, "login", account=None, ip=None, mac=HOST, source="pppoe", session_id="4660"),
        login(
            T0 + 90,
            "logout",
            account="dsl-user",
            ip=None,
            mac=HOST,
            source="pppoe",
            session_id="4660",
            duration=90,
        )
    ]


def test_padt_from_concentrator_and_username_on_pads() -> None:
    t = Checked()
    assert t.feed(pppoe(T0, "PADS", src=AC, dst=HOST, session_id=7, username="u1")) == []
    (start, end) = t.feed(pppoe(T0 + 5, "PADT", src=AC, dst=HOST, session_id=7))
    assert start["event"] == "login" and start["account"] == "u1" and start["ts"] == T0
    assert end["account"] == "u1" and end["mac"] == HOST and end["duration"] == 5


def test_repeated_pads_and_refused_session_make_no_records() -> None:
    t = Checked()
    t.feed(pppoe(T0, "PADS", src=AC, dst=HOST, session_id=7))
    assert t.feed(pppoe(T0 + 1, "PADS", src=AC, dst=HOST, session_id=7)) == []
    assert t.feed(pppoe(T0 + 2, "PADS", src=AC, dst="02:00:00:00:00:08", session_id=0)) == []


def test_padt_without_pads_uses_known_concentrator_to_find_host() -> None:
    t = Checked()
    t.feed(pppoe(T0, "PADO", src=AC, dst=HOST, session_id=0))
    (out,) = t.feed(pppoe(T0 + 1, "PADT", src=AC, dst=HOST, session_id=99))
    assert out == login(T0 + 1, "logout", account=None, ip=None, mac=HOST, source="pppoe", session_id="99")
    (unknown,) = t.feed(
        pppoe(T0 + 1, "PADT", src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b", session_id=98)
    )
    assert unknown["mac"] is None
    assert t.table.counters["pppoe_padt_without_pads"] == 2


def test_auth_event_names_the_open_session() -> None:
    t = Checked()
    t.feed(pppoe(T0, "PADS", src=AC, dst=HOST, session_id=7))
    ev = {"ts": T0 + 1, "event": "auth", "method": "pap", "session_id": 7, "client_mac": HOST}
    t.table.pppoe_auth({**ev, "server_mac": AC, "username": "bad", "ok": False})
    t.table.pppoe_auth({**ev, "server_mac": AC, "username": "dsl-user", "ok": True})
    (start, end) = t.feed(pppoe(T0 + 5, "PADT", src=AC, dst=HOST, session_id=7))
    assert start["account"] == end["account"] == "dsl-user"
    assert t.table.counters["pppoe_auth_named"] == 1


def test_ipcp_address_completes_the_login_with_the_account_and_binds_the_address() -> None:
    """RFC 1661 phases: discovery, PAP, then IPCP; the login carries the account and the address."""
    t = Checked()
    assert t.feed(pppoe(T0, "PADS", src=AC, dst=HOST, session_id=7)) == []
    ev = {"session_id": 7, "method": None, "username": None, "ok": None}
    assert t.table.pppoe_auth({**ev, "ts": T0 + 1, "event": "auth", "method": "pap", "client_mac": HOST,
                               "server_mac": AC, "username": "dsl-user", "ok": True}) == []
    # the host acknowledging the concentrator's own address binds nothing
    assert t.table.pppoe_auth({**ev, "ts": T0 + 2, "event": "ipcp", "client_mac": AC, "server_mac": HOST,
                               "ip": "10.0.0.1"}) == []
    (start,) = t.table.pppoe_auth({**ev, "ts": T0 + 2, "event": "ipcp", "client_mac": HOST,
                                   "server_mac": AC, "ip": "10.0.2.16"})
    assert start == login(T0, "login", account="dsl-user", ip="10.0.2.16", mac=HOST, source="pppoe",
                          session_id="7")
    assert t.table.account_at("10.0.2.16", T0 + 30) == "dsl-user"
    assert t.table.account_at("10.0.2.16", T0 + 1) is None  # not before IPCP gave it
    (end,) = t.feed(pppoe(T0 + 60, "PADT", src=HOST, dst=AC, session_id=7))
    assert (end["event"], end["ip"], end["duration"]) == ("logout", "10.0.2.16", 60)
    assert t.table.account_at("10.0.2.16", T0 + 61) is None


def test_held_logins_are_written_at_the_end_of_input() -> None:
    t = Checked()
    t.feed(pppoe(T0, "PADS", src=AC, dst=HOST, session_id=9))
    (held,) = t.table.finish()
    assert held == login(T0, "login", account=None, ip=None, mac=HOST, source="pppoe", session_id="9")
    assert t.table.finish() == []
