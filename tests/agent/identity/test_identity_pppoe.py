"""PPPoE discovery/termination → login/logout records."""

from __future__ import annotations

from identity_records import T0, Checked, login, pppoe

AC = "00:00:5e:00:53:01"
HOST = "02:00:00:00:00:07"


def test_pads_padt_from_host() -> None:
    t = Checked()
    t.feed(pppoe(T0 - 1, "PADO", src=AC, dst=HOST, session_id=0))
    out = t.feed(pppoe(T0, "PADS", src=AC, dst=HOST, session_id=0x1234))
    assert out == [login(T0, "login", account=None, ip=None, mac=HOST, source="pppoe", session_id="4660")]
    out = t.feed(pppoe(T0 + 90, "PADT", src=HOST, dst=AC, session_id=0x1234, username="dsl-user"))
    assert out == [
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
    (start,) = t.feed(pppoe(T0, "PADS", src=AC, dst=HOST, session_id=7, username="u1"))
    assert start["account"] == "u1"
    (end,) = t.feed(pppoe(T0 + 5, "PADT", src=AC, dst=HOST, session_id=7))
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
    (end,) = t.feed(pppoe(T0 + 5, "PADT", src=AC, dst=HOST, session_id=7))
    assert end["account"] == "dsl-user"
    assert t.table.counters["pppoe_auth_named"] == 1
