"""The captive portal's login records → who held an address: learnt, never re-emitted.

The portal (agent/portal, in the supervisor) writes its own login/logout records; the table
only keeps their intervals so session/http/alert records get the guest's account."""

from __future__ import annotations

from typing import Any

from identity_records import T0, Checked, alert, dhcp, http, login, session

from agent.identity import IdentityTable
from wire.validate import validate_record

IP = "10.0.2.20"
MAC = "aa:bb:cc:00:02:20"
GUEST = "guest-000123"


def portal(ts: float, event: str, *, account: str | None = GUEST, ip: str | None = IP, mac: str | None = MAC,
           sid: str | None = "P1", duration: float | None = None) -> dict[str, Any]:
    """A login record as the portal writes it (wire-valid)."""
    rec = login(ts, event, account=account, ip=ip, mac=mac, source="portal", session_id=sid,
                duration=duration)
    return validate_record(rec)


def stamped(table: IdentityTable, rec: dict[str, Any]) -> str | None:
    table.stamp(rec)
    validate_record(rec)
    account: str | None = rec["account"]
    return account


def test_login_binds_the_address_and_emits_nothing() -> None:
    t = Checked()
    assert t.feed(portal(T0, "login")) == []
    assert t.table.account_at(IP, T0 + 1) == GUEST
    assert t.table.account_at(IP, T0 - 1) is None
    found = t.table.lookup(IP, T0 + 1)
    assert found is not None
    assert (found.source, found.mac, found.since, found.until) == ("portal", MAC, T0, None)
    c = t.table.counters
    assert (c["portal_logins"], c["logins"], c["logouts"]) == (1, 0, 0)


def test_logout_ends_the_binding_at_its_time_and_emits_nothing() -> None:
    t = Checked()
    t.feed(portal(T0, "login"))
    assert t.feed(portal(T0 + 600, "logout", duration=600.0)) == []
    assert t.table.account_at(IP, T0 + 599) == GUEST  # history: a record stamped late still gets it
    assert t.table.account_at(IP, T0 + 600) is None
    c = t.table.counters
    assert (c["portal_logouts"], c["portal_logout_without_login"], c["logouts"]) == (1, 0, 0)


def test_stamping_inside_and_outside_the_admission() -> None:
    t = Checked()
    t.feed(portal(T0, "login"), portal(T0 + 600, "logout", duration=600.0))
    assert stamped(t.table, session(T0 + 10, IP)) == GUEST
    assert stamped(t.table, http(T0 + 300, IP)) == GUEST
    assert stamped(t.table, alert(T0 + 599, IP)) == GUEST
    assert stamped(t.table, session(T0 - 5, IP)) is None  # before the admission (the portal page)
    assert stamped(t.table, session(T0 + 600, IP)) is None  # after the logout
    assert stamped(t.table, http(T0 + 10, "10.0.2.21")) is None  # another guest's address
    assert t.table.counters["stamped"] == 3


def test_a_new_admission_on_the_address_supersedes_the_previous_one() -> None:
    t = Checked()
    t.feed(portal(T0, "login"))
    assert t.feed(portal(T0 + 100, "login", account="guest-000124", mac="aa:bb:cc:00:02:21", sid="P2")) == []
    assert t.table.account_at(IP, T0 + 50) == "guest-000123"
    assert t.table.account_at(IP, T0 + 150) == "guest-000124"
    c = t.table.counters
    assert (c["superseded"], c["logouts"], c["logins"]) == (1, 0, 0)
    # the portal's own logout of the first admission, later: nothing to reconstruct over P2
    assert t.feed(portal(T0 + 200, "logout", duration=200.0)) == []
    assert t.table.counters["portal_logout_without_login"] == 1
    assert t.table.account_at(IP, T0 + 150) == "guest-000124"
    assert t.feed(portal(T0 + 300, "logout", account="guest-000124", sid="P2", duration=200.0)) == []
    assert t.table.account_at(IP, T0 + 250) == "guest-000124"
    assert t.table.account_at(IP, T0 + 300) is None


def test_a_repeated_login_of_an_open_session_is_ignored() -> None:
    t = Checked()
    t.feed(portal(T0, "login"))
    assert t.feed(portal(T0 + 30, "login")) == []
    found = t.table.lookup(IP, T0 + 40)
    assert found is not None and found.since == T0  # still the first one
    c = t.table.counters
    assert (c["portal_duplicate_login"], c["superseded"]) == (1, 0)


def test_without_session_id_the_mac_pairs_login_and_logout() -> None:
    t = Checked()
    t.feed(portal(T0, "login", sid=None))
    t.feed(portal(T0 + 60, "logout", sid=None, duration=60.0))
    assert t.table.account_at(IP, T0 + 30) == GUEST
    assert t.table.account_at(IP, T0 + 60) is None
    assert t.table.counters["portal_logout_without_login"] == 0


def test_a_logout_whose_login_was_not_seen_gives_the_admissions_history() -> None:
    t = Checked()  # e.g. a worker started during the admission
    assert t.feed(portal(T0 + 600, "logout", duration=600.0)) == []
    assert t.table.counters["portal_logout_without_login"] == 1
    assert t.table.account_at(IP, T0 + 10) == GUEST
    assert t.table.account_at(IP, T0 + 600) is None


def test_login_without_address_binds_nothing() -> None:
    t = Checked()
    assert t.feed(portal(T0, "login", ip=None)) == []
    assert t.table.counters["portal_login_without_address"] == 1
    assert not t.table._b.knows_addresses


def test_the_guest_outranks_a_dhcp_lease_that_names_nobody() -> None:
    t = Checked()
    out = t.feed(dhcp(T0, ["REQUEST", "ACK"], mac=MAC, assigned=IP))
    assert [(r["source"], r["event"]) for r in out] == [("dhcp", "login")]  # the lease's own record
    assert t.feed(portal(T0 + 5, "login")) == []
    assert stamped(t.table, session(T0 + 10, IP)) == GUEST
    assert stamped(t.table, session(T0 + 1, IP)) is None  # the lease alone, before the admission
    t.feed(portal(T0 + 100, "logout", duration=95.0))
    assert stamped(t.table, session(T0 + 110, IP)) is None
    assert t.table.counters["dhcp_reassigned"] == 0  # the lease is untouched by the portal


def test_lease_ends_due_by_a_portal_records_time_still_come_out() -> None:
    t = Checked()
    t.feed(dhcp(T0, ["REQUEST", "ACK"], mac="aa:bb:cc:00:00:09", assigned="10.0.2.99", lease=60.0))
    out = t.feed(portal(T0 + 100, "login"))
    assert [(r["source"], r["event"], r["ts"]) for r in out] == [("dhcp", "logout", T0 + 60)]


def test_login_records_of_other_sources_are_ignored() -> None:
    t = Checked()
    for source in ("radius", "dhcp", "pppoe", "http", "ftp", "roster"):
        rec = validate_record(login(T0, "login", account="alice", ip=IP, mac=MAC, source=source,
                                    session_id="S1"))
        assert t.feed(rec) == []
    # a logout of another source does not end the portal's session either
    t.feed(portal(T0 + 10, "login"))
    t.feed(validate_record(login(T0 + 20, "logout", account=GUEST, ip=IP, mac=MAC, source="radius",
                                 session_id="P1", duration=10.0)))
    assert t.table.account_at(IP, T0 + 5) is None
    assert t.table.account_at(IP, T0 + 30) == GUEST
    c = t.table.counters
    assert (c["portal_logins"], c["portal_logouts"], c["records_seen"]) == (1, 0, 8)
