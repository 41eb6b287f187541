"""Application logins (HTTP Basic, FTP, POP3, IMAP, SMTP AUTH) → login records and bindings."""

from __future__ import annotations

import pytest
from identity_records import T0, Checked, ftp, http, login, mailbox, smtp

IP = "10.0.2.20"


def test_http_basic_success_binds_once() -> None:
    t = Checked()
    out = t.feed(http(T0, IP, username="bob", uid="Cweb"))
    assert out == [login(T0, "login", account="bob", ip=IP, mac=None, source="http", session_id="Cweb")]
    assert t.feed(http(T0 + 5, IP, username="bob")) == []
    assert t.table.counters["app_logins_refreshed"] == 1
    assert t.table.account_at(IP, T0 + 1) == "bob"


@pytest.mark.parametrize("status", [401, 403, None])
def test_http_basic_refused_or_unanswered_binds_nothing(status: int | None) -> None:
    t = Checked()
    assert t.feed(http(T0, IP, username="bob", status=status)) == []
    assert t.table.account_at(IP, T0 + 1) is None


def test_ftp_only_successful_non_anonymous_logins() -> None:
    t = Checked()
    assert t.feed(ftp(T0, IP, user="carol", command="USER", reply_code=331)) == []
    assert t.feed(ftp(T0, IP, user="carol", reply_code=530)) == []
    assert t.feed(ftp(T0, IP, user="<unknown>")) == []
    assert t.feed(ftp(T0, IP, user="anonymous")) == []
    assert t.table.counters["app_logins_anonymous_ignored"] == 1
    out = t.feed(ftp(T0 + 1, IP, user="carol"))
    assert out == [login(T0 + 1, "login", account="carol", ip=IP, mac=None, source="ftp", session_id="Cftp1")]
    # a server that logs in on USER alone (no password asked)
    (out2,) = t.feed(ftp(T0 + 2, IP, user="dave", command="USER"))
    assert out2["account"] == "dave"


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_mailbox_login_ok(protocol: str) -> None:
    t = Checked()
    assert t.feed(mailbox(T0, IP, user="erin", protocol=protocol, ok=False)) == []
    assert t.feed(mailbox(T0, IP, user="erin", protocol=protocol, ok=None)) == []
    out = t.feed(mailbox(T0, IP, user="erin", protocol=protocol))
    assert out == [login(T0, "login", account="erin", ip=IP, mac=None, source=protocol, session_id="Cmail1")]


def test_smtp_auth_user() -> None:
    t = Checked()
    assert t.feed(smtp(T0, IP, user=None)) == []
    out = t.feed(smtp(T0, IP, user="frank@example.com"))
    assert out == [
        login(T0, "login", account="frank@example.com", ip=IP, mac=None, source="smtp", session_id="Csmtp1")
    ]


def test_same_account_other_source_is_another_binding() -> None:
    t = Checked()
    t.feed(http(T0, IP, username="bob"))
    assert len(t.feed(smtp(T0 + 1, IP, user="bob"))) == 1


def test_app_login_expires_after_ttl_then_logs_in_again() -> None:
    t = Checked(app_login_ttl=100.0)
    t.feed(http(T0, IP, username="bob"))
    assert t.table.account_at(IP, T0 + 99) == "bob"
    assert t.table.account_at(IP, T0 + 100) is None
    assert t.feed(http(T0 + 50, IP, username="bob")) == []  # refresh: valid until T0 + 150
    assert t.table.account_at(IP, T0 + 149) == "bob"
    assert len(t.feed(http(T0 + 500, IP, username="bob"))) == 1
    assert t.table.account_at(IP, T0 + 200) is None


def test_app_login_takes_mac_of_the_lease() -> None:
    from identity_records import dhcp

    t = Checked()
    t.feed(dhcp(T0, ["REQUEST", "ACK"], assigned=IP, mac="aa:bb:cc:00:00:05"))
    (out,) = t.feed(http(T0 + 1, IP, username="bob"))
    assert out["mac"] == "aa:bb:cc:00:00:05" and out["calling_station"] == "aa:bb:cc:00:00:05"


def test_no_src_ip_no_binding() -> None:
    t = Checked()
    rec = http(T0, IP, username="bob")
    rec["src_ip"] = "not-an-ip"
    assert t.table.observe(rec) == []
