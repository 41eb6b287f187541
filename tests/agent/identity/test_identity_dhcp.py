"""DHCP leases → login/logout records: ACK, renewal, RELEASE, DECLINE, expiry, roster accounts."""

from __future__ import annotations

from identity_records import T0, Checked, dhcp, http, login, session

from agent.identity import IdentityTable, parse_roster

MAC = "aa:bb:cc:00:00:01"
IP = "10.0.1.10"
ROSTER = parse_roster("account,name,mac,ip\nzhangsan,张三,AA-BB-CC-00-00-01,\nlisi,李四,,10.0.1.99\n")


def lease_login(ts: float, account: str | None = None, ip: str = IP, mac: str = MAC) -> dict[str, object]:
    return login(ts, "login", account=account, ip=ip, mac=mac, source="dhcp")


def lease_logout(
    ts: float, duration: float | None, account: str | None = None, ip: str = IP
) -> dict[str, object]:
    return login(ts, "logout", account=account, ip=ip, mac=MAC, source="dhcp", duration=duration)


def test_ack_without_roster_is_a_login_without_account() -> None:
    t = Checked()
    assert t.feed(dhcp(T0, ["DISCOVER", "OFFER", "REQUEST", "ACK"])) == [lease_login(T0)]
    assert t.table.account_at(IP, T0 + 1) is None
    found = t.table.lookup(IP, T0 + 1)
    assert found is not None and found.mac == MAC and found.source == "dhcp" and found.since == T0


def test_ack_for_roster_mac_takes_roster_account_not_host_name() -> None:
    t = Checked(roster=ROSTER)
    assert t.feed(dhcp(T0, ["REQUEST", "ACK"], host_name="mallory")) == [lease_login(T0, "zhangsan")]
    assert t.table.account_at(IP, T0 + 1) == "zhangsan"


def test_ack_for_roster_ip_takes_roster_account() -> None:
    t = Checked(roster=ROSTER)
    out = t.feed(dhcp(T0, ["REQUEST", "ACK"], mac="aa:bb:cc:00:00:02", assigned="10.0.1.99"))
    assert out == [lease_login(T0, "lisi", ip="10.0.1.99", mac="aa:bb:cc:00:00:02")]


def test_release_is_a_logout() -> None:
    t = Checked(roster=ROSTER)
    t.feed(dhcp(T0, ["REQUEST", "ACK"]))
    out = t.feed(dhcp(T0 + 120, ["RELEASE"], assigned=None, client=IP, lease=None))
    assert out == [lease_logout(T0 + 120, 120, "zhangsan")]
    assert t.table.account_at(IP, T0 + 60) == "zhangsan"
    assert t.table.account_at(IP, T0 + 120) is None
    assert t.table.counters["dhcp_released"] == 1


def test_release_without_known_lease_still_logs_out() -> None:
    t = Checked()
    out = t.feed(dhcp(T0, ["RELEASE"], assigned=None, client=IP, lease=None))
    assert out == [lease_logout(T0, None)]
    assert t.table.counters["dhcp_release_without_lease"] == 1


def test_renewal_within_lease_is_not_a_new_login_and_extends_it() -> None:
    t = Checked()
    t.feed(dhcp(T0, ["REQUEST", "ACK"], lease=3600))
    assert t.feed(dhcp(T0 + 1800, ["REQUEST", "ACK"], client=IP, lease=3600)) == []
    assert t.table.counters["renewed"] == 1
    assert t.expire(T0 + 3600) == []  # the original end passed: renewed, so no logout
    assert t.table.account_at(IP, T0 + 4000) is None and t.table.lookup(IP, T0 + 4000) is not None
    assert t.expire(T0 + 5400) == [lease_logout(T0 + 5400, 5400)]
    assert t.table.lookup(IP, T0 + 5400) is None
    assert t.table.lookup(IP, T0 + 5399) is not None


def test_expiry_is_dated_at_lease_end_and_found_by_observe_too() -> None:
    t = Checked()
    t.feed(dhcp(T0, ["REQUEST", "ACK"], lease=600))
    assert t.expire(T0 + 599) == []
    # any later record runs the expiry: the logout comes first, dated at the lease end
    out = t.feed(session(T0 + 10_000, "10.9.9.9"))
    assert out == [lease_logout(T0 + 600, 600)]
    assert t.table.counters["expired"] == 1
    assert t.expire(T0 + 20_000) == []


def test_lease_end_bounds_answers_even_before_expire_runs() -> None:
    t = Checked(roster=ROSTER)
    t.feed(dhcp(T0, ["REQUEST", "ACK"], lease=600))
    assert t.table.account_at(IP, T0 + 599) == "zhangsan"
    assert t.table.account_at(IP, T0 + 600) is None


def test_missing_lease_time_uses_default() -> None:
    t = Checked(dhcp_default_lease=100.0)
    t.feed(dhcp(T0, ["REQUEST", "ACK"], lease=None))
    assert t.expire(T0 + 100) == [lease_logout(T0 + 100, 100)]


def test_address_given_to_another_mac_ends_the_old_lease() -> None:
    t = Checked()
    t.feed(dhcp(T0, ["REQUEST", "ACK"]))
    out = t.feed(dhcp(T0 + 50, ["REQUEST", "ACK"], mac="aa:bb:cc:00:00:02"))
    assert out == [lease_logout(T0 + 50, 50), lease_login(T0 + 50, mac="aa:bb:cc:00:00:02")]
    assert t.table.counters["dhcp_reassigned"] == 1


def test_mac_moving_to_another_address_ends_its_old_lease() -> None:
    t = Checked()
    t.feed(dhcp(T0, ["REQUEST", "ACK"]))
    out = t.feed(dhcp(T0 + 50, ["REQUEST", "ACK"], assigned="10.0.1.11"))
    assert out == [lease_logout(T0 + 50, 50), lease_login(T0 + 50, ip="10.0.1.11")]
    assert t.table.counters["dhcp_moved"] == 1


def test_decline_ends_matching_lease_only() -> None:
    t = Checked()
    t.feed(dhcp(T0, ["REQUEST", "ACK"]))
    assert t.feed(dhcp(T0 + 1, ["DECLINE"], assigned=None, requested="10.0.1.77", lease=None)) == []
    out = t.feed(dhcp(T0 + 2, ["DECLINE"], assigned=None, requested=IP, lease=None))
    assert out == [lease_logout(T0 + 2, 2)]


def test_nak_inform_and_ack_without_address_bind_nothing() -> None:
    t = Checked()
    assert t.feed(dhcp(T0, ["REQUEST", "NAK"], assigned=None)) == []
    assert t.feed(dhcp(T0, ["INFORM", "ACK"], client=IP, assigned=IP)) == []
    assert t.feed(dhcp(T0, ["REQUEST", "ACK"], assigned="0.0.0.0")) == []
    assert t.table.counters["dhcp_ack_without_address"] == 1
    assert t.table.lookup(IP, T0) is None


def test_dhcp_logout_ends_app_logins_on_the_address() -> None:
    t = Checked()
    t.feed(dhcp(T0, ["REQUEST", "ACK"]))
    t.feed(http(T0 + 10, IP, username="webuser"))
    assert t.table.account_at(IP, T0 + 20) == "webuser"
    t.feed(dhcp(T0 + 30, ["RELEASE"], assigned=None, client=IP, lease=None))
    assert t.table.account_at(IP, T0 + 20) == "webuser"  # history stays
    assert t.table.account_at(IP, T0 + 40) is None


def test_default_table_has_sane_defaults() -> None:
    table = IdentityTable()
    assert table.roster is not None and len(table.roster) == 0
