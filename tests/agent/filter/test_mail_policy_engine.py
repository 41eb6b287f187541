"""The mail policy itself (agent.filter.mail_policy), driven step by step as the SMTP decoder drives it:
every limit (sender, account, host; messages, recipients; minute, hour), windows across connections
and across capture workers (tallies), every forgery check, actions, how often it alerts, and the
records it makes (valid wire `alert` records with the 1.6 fields)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from agent.filter.mail_config import DEFAULT, Limits, MailConfig
from agent.filter.mail_policy import TALLY, MailPolicy, hidden_address, split_from
from wire.validate import validate_record

T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC: a slot boundary of both windows
ALICE_PC, BOB_PC, SERVER = "10.1.0.11", "10.1.0.12", "10.2.0.25"
_uids = itertools.count()


def ids(client: str = ALICE_PC, server: str = SERVER) -> dict[str, Any]:
    """The flow id fields the inspector gives (a new connection each call)."""
    return {"type": None, "ts": None, "uid": f"C{next(_uids)}", "proto": "tcp", "src_ip": client,
            "src_port": 40000, "dst_ip": server, "dst_port": 25, "vlan": None, "inner_vlan": None}


def send(p: MailPolicy, ts: float, *, mailfrom: str = "alice@unit.example.cn", rcpts: int = 1,
         user: str | None = "alice", helo: str | None = "pc11", from_: str | None = None,
         client: str = ALICE_PC, flow: dict[str, Any] | None = None,
         enforcing: bool = False) -> list[dict[str, Any]]:
    """One transaction (a new connection unless `flow` is given): its alerts, each checked against wire."""
    f = flow if flow is not None else ids(client)
    uid = f["uid"]
    out = p.mail_from(uid, f, ts, helo, user, mailfrom, enforcing)
    for _ in range(rcpts):
        out += p.rcpt_to(uid, f, ts, enforcing)
    out += p.message(uid, f, ts, user, from_ if from_ is not None else mailfrom, enforcing)
    for a in out:
        validate_record(a)
        assert a["type"] == "alert" and a["category"] == "mail" and a["rule_id"] == f"mail:{a['reason']}"
        assert a["ruleset_version"] == "builtin" and a["uid"] == uid and a["src_ip"] == f["src_ip"]
    if flow is None:
        p.close(uid)
    return out


def reasons(alerts: list[dict[str, Any]]) -> list[str]:
    return [a["reason"] for a in alerts]


def only(scope: str, **limits: int) -> MailConfig:
    """A config whose limits are all off but `scope`'s given ones."""
    off = Limits(0, 0, 0, 0)
    lims = {s: off._replace(**limits) if s == scope else off for s in ("sender", "account", "host")}
    return DEFAULT._replace(sender=lims["sender"], account=lims["account"], host=lims["host"])


# -- limits ------------------------------------------------------------------------------------------


def test_the_defaults_stop_the_101st_message_of_a_sender_in_a_minute() -> None:
    p = MailPolicy()
    got: list[dict[str, Any]] = []
    for i in range(100):
        got += send(p, T0 + i * 0.5, user=None)
    assert got == []
    got = send(p, T0 + 50.5, user=None)
    # the sender and its host both passed 100 (the host's limit is the same by default)
    assert sorted(reasons(got)) == ["rate:host:messages:minute", "rate:sender:messages:minute"]
    a = next(a for a in got if a["reason"] == "rate:sender:messages:minute")
    assert (a["action"], a["blocked"], a["field"], a["sender"]) == ("block", False, "smtp.mailfrom",
                                                                    "alice@unit.example.cn")
    assert (a["count"], a["limit"], a["window_s"], a["severity"]) == (101, 100, 60, 4)
    assert a["keyword"] == "100 messages per minute"
    assert a["snippet"] == "sender alice@unit.example.cn: 101 messages in 60 s, limit 100"
    assert a["encoding"] is None and a["account"] is None


def test_recipients_per_minute_alert_at_the_recipient_past_the_limit() -> None:
    p = MailPolicy(only("sender", recipients_per_minute=500))
    assert send(p, T0, rcpts=250) == []
    assert send(p, T0 + 10, rcpts=250) == []
    f = ids()
    got = send(p, T0 + 20, rcpts=3, flow=f)
    assert reasons(got) == ["rate:sender:recipients:minute"]  # once, at the first recipient past 500
    assert (got[0]["count"], got[0]["limit"], got[0]["field"]) == (501, 500, "smtp.rcptto")
    # a sender over its recipient limit is stopped at its next MAIL FROM (a new connection)
    nxt = ids()
    assert reasons(p.mail_from(nxt["uid"], nxt, T0 + 21, "pc11", "alice", "alice@unit.example.cn", True)) == \
        ["rate:sender:recipients:minute"]


def test_the_minute_window_slides_and_the_hour_window_counts_what_minutes_forget() -> None:
    p = MailPolicy(only("account", messages_per_minute=20, messages_per_hour=100))
    t = T0
    got: list[dict[str, Any]] = []
    for _minute in range(5):  # 20 a minute, five minutes: never over the minute's 20
        for i in range(20):
            got += send(p, t + i)
        t += 60
    assert got == [] and p.count("account", "alice", t - 1) == (20, 20, 100, 100)
    got = send(p, t)  # the 101st within the hour
    assert reasons(got) == ["rate:account:messages:hour"]
    a = got[0]
    assert (a["count"], a["limit"], a["window_s"], a["field"]) == (101, 100, 3600, "smtp.user")
    assert got[0]["sender"] == "alice"
    # an hour later the hour has forgotten them
    assert p.count("account", "alice", t + 3600) == (0, 0, 0, 0)


def test_a_minute_is_twelve_five_second_slots() -> None:
    p = MailPolicy(only("sender", messages_per_minute=10))
    for i in range(10):
        assert send(p, T0 + i * 0.4) == []  # all in the first slot
    assert p.count("sender", "alice@unit.example.cn", T0 + 59.9) == (10, 10, 10, 10)
    assert p.count("sender", "alice@unit.example.cn", T0 + 60.0) == (0, 0, 10, 10)  # the slot left the minute
    assert send(p, T0 + 60.0) == []


def test_limits_are_per_account_across_connections_and_not_shared_with_other_accounts() -> None:
    p = MailPolicy(only("account", messages_per_minute=5))
    for i in range(5):
        assert send(p, T0 + i) == []  # five connections
    assert send(p, T0 + 5, user="bob", mailfrom="bob@unit.example.cn", client=BOB_PC) == []
    got = send(p, T0 + 6)
    assert reasons(got) == ["rate:account:messages:minute"] and got[0]["count"] == 6
    # several transactions on one connection count each
    f = ids(BOB_PC)
    out: list[dict[str, Any]] = []
    for i in range(6):
        out += send(p, T0 + 10 + i, user="bob", mailfrom="bob@unit.example.cn", flow=f)
    assert reasons(out) == ["rate:account:messages:minute"] and out[0]["sender"] == "bob"


def test_a_host_is_counted_whatever_sender_it_uses_and_relays_are_not_counted() -> None:
    p = MailPolicy(only("host", messages_per_minute=3)._replace(relays=("10.2.0.26",)))
    got: list[dict[str, Any]] = []
    for i, who in enumerate(("a", "b", "c", "d")):  # a bot rotating envelope senders
        got += send(p, T0 + i, mailfrom=f"{who}@unit.example.cn", user=None)
    assert reasons(got) == ["rate:host:messages:minute"]
    assert (got[0]["sender"], got[0]["field"], got[0]["count"]) == (ALICE_PC, "smtp.src_ip", 4)
    for i in range(10):  # the unit's relay sends for everyone
        assert send(p, T0 + i, mailfrom=f"u{i}@unit.example.cn", user=None, client="10.2.0.26") == []


def test_the_null_sender_and_unauthenticated_mail_count_only_where_they_have_a_key() -> None:
    p = MailPolicy(only("sender", messages_per_minute=1))
    assert send(p, T0, mailfrom="", user=None) == []
    assert send(p, T0 + 1, mailfrom="", user=None) == []  # bounces have no sender key
    p = MailPolicy(only("account", messages_per_minute=1))
    assert send(p, T0, user=None) == [] and send(p, T0 + 1, user=None) == []  # no account


def test_mail_from_outside_is_not_judged() -> None:
    p = MailPolicy(only("sender", messages_per_minute=1)._replace(domains=("unit.example.cn",)))
    for i in range(5):  # the world delivering to the unit's server
        assert send(p, T0 + i, mailfrom="news@example.org", user=None, client="203.0.113.9") == []
    assert p.counters["outside"] == 5 and p.counters["transactions"] == 0


def test_inside_networks_and_relays_come_from_the_unit_profile_unless_mail_names_them() -> None:
    cfg = DEFAULT.with_unit({"ip_ranges": ["203.0.113.0/24"], "mail_servers": ["10.2.0.25"]})
    assert cfg.relays == ("10.2.0.25",) and any(str(n) == "203.0.113.0/24" for n in cfg.inside)
    p = MailPolicy(cfg._replace(sender=Limits(1, 0, 0, 0)))
    assert send(p, T0, user=None, client="203.0.113.9") == []
    assert reasons(send(p, T0 + 1, user=None, client="203.0.113.9")) == ["rate:sender:messages:minute"]
    given = DEFAULT._replace(relays=("10.9.9.9",), relays_given=True)
    assert given.with_unit({"mail_servers": ["10.2.0.25"], "ip_ranges": []}).relays == ("10.9.9.9",)


# -- how often, and blocking ----------------------------------------------------------------------------


def test_a_limit_alerts_once_per_window_while_over_and_again_after() -> None:
    p = MailPolicy(only("sender", messages_per_minute=2)._replace(
        actions=(("rate", "alert"),) + tuple(a for a in DEFAULT.actions if a[0] != "rate")))
    got = [send(p, T0 + i) for i in range(10)]  # 10 in ten seconds
    assert [len(g) for g in got] == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert got[2][0]["action"] == "alert" and p.counters["suppressed"] == 7
    later = [send(p, T0 + 62 + i) for i in range(3)]  # a minute after the alert, still over
    assert [len(g) for g in later] == [1, 0, 0]
    assert later[0][0]["count"] == 6  # the first slot's 5 (T0..T0+4) left the minute: 5 + this one


def test_blocking_gives_each_stopped_connection_its_alert() -> None:
    p = MailPolicy(only("sender", messages_per_minute=2))
    got = [send(p, T0 + i, enforcing=True) for i in range(5)]
    assert [reasons(g) for g in got] == [[], [], *[["rate:sender:messages:minute"]] * 3]
    assert [g[0]["count"] for g in got[2:]] == [3, 4, 5]  # attempts count: blocked ones too
    assert all(g[0]["action"] == "block" for g in got[2:])


def test_rate_off_counts_nothing() -> None:
    cfg = DEFAULT._replace(actions=tuple((c, "off" if c == "rate" else a) for c, a in DEFAULT.actions))
    p = MailPolicy(cfg)
    for i in range(300):
        assert send(p, T0 + i * 0.1) == []
    assert p.keys == {}


# -- across capture workers ------------------------------------------------------------------------------


def test_two_workers_count_one_sender_together_and_alert_once() -> None:
    cfg = only("account", messages_per_minute=10)
    a, b = MailPolicy(cfg), MailPolicy(cfg)
    a.share = b.share = True
    got: list[dict[str, Any]] = []
    for i in range(30):  # alice's connections alternate between the workers (the fanout hash)
        me, peer = (a, b) if i % 2 == 0 else (b, a)
        got += send(me, T0 + i)
        for t in me.take_tallies():  # forwarded at the end of the worker's batch
            assert t["type"] == TALLY
            peer.absorb(dict(t))
    assert reasons(got) == ["rate:account:messages:minute"] and got[0]["count"] == 11
    assert a.count("account", "alice", T0 + 30) == b.count("account", "alice", T0 + 30)
    assert b.counters["tallies_received"] > 0 and a.counters["tallies_sent"] > 0


def test_without_tallies_each_worker_sees_only_half() -> None:
    cfg = only("account", messages_per_minute=10)
    a, b = MailPolicy(cfg), MailPolicy(cfg)
    got: list[dict[str, Any]] = []
    for i in range(20):
        got += send(a if i % 2 == 0 else b, T0 + i)
    assert got == []  # 20 messages, 10 each: what forwarding the tallies is for


def test_tallies_are_merged_per_slot_and_late_ones_land_in_their_slot() -> None:
    a = MailPolicy(only("sender", messages_per_minute=100))
    a.share = True
    for i in range(4):
        send(a, T0 + i, rcpts=2)
    tallies = a.take_tallies()
    assert a.take_tallies() == []
    # one per (slot, keys): the 4 messages of the first slot (0-5 s) in one tally
    assert [(t["messages"], t["recipients"]) for t in tallies] == [(4, 8)]
    b = MailPolicy(only("sender", messages_per_minute=100))
    send(b, T0 + 30)  # b is already at T0+30 when the tally from T0 arrives
    for t in tallies:
        b.absorb(t)
    assert b.count("sender", "alice@unit.example.cn", T0 + 30) == (5, 9, 5, 9)
    assert b.count("sender", "alice@unit.example.cn", T0 + 61) == (1, 1, 5, 9)
    b.absorb({"type": TALLY, "ts": "bad"})  # a malformed tally is ignored
    b.absorb({"type": TALLY, "ts": T0 - 7200, "keys": [["sender", "x@y.cn"]], "messages": 1, "recipients": 0})
    assert b.count("sender", "x@y.cn", T0 - 7200)[0] == 1


# -- forgery ----------------------------------------------------------------------------------------------


UNIT = DEFAULT._replace(domains=("unit.example.cn",), server_names=("mail.unit.example.cn",),
               relays=("10.2.0.25",), senders=(("alice", ("office@unit.example.cn",)),))


def test_the_envelope_domain_must_be_the_units_when_no_one_authenticated() -> None:
    p = MailPolicy(UNIT)
    got = send(p, T0, mailfrom="ceo@bank.example.com", user=None)
    assert reasons(got) == ["forged:envelope_domain"]
    a = got[0]
    assert (a["action"], a["field"], a["keyword"]) == ("alert", "smtp.mailfrom", "bank.example.com")
    assert a["sender"] == "ceo@bank.example.com"
    assert a["count"] is None and a["limit"] is None and a["window_s"] is None
    assert "unit.example.cn" in a["snippet"]
    assert send(p, T0, mailfrom="news@lists.unit.example.cn", user=None) == []  # a subdomain is the unit's
    assert send(p, T0, mailfrom="Alice@UNIT.example.cn", user=None) == []
    assert send(p, T0, mailfrom="", user=None) == []  # bounces
    assert send(MailPolicy(DEFAULT), T0, mailfrom="ceo@bank.example.com", user=None) == []  # no domains: off


def test_an_envelope_sender_or_from_that_is_not_the_authenticated_account() -> None:
    p = MailPolicy(UNIT)
    got = send(p, T0, mailfrom="bob@unit.example.cn", from_="Bob <bob@unit.example.cn>")
    assert reasons(got) == ["forged:mailfrom_not_account", "forged:from_not_account"]
    assert [(a["field"], a["keyword"]) for a in got] == [("smtp.mailfrom", "bob@unit.example.cn"),
                                                         ("smtp.from", "bob@unit.example.cn")]
    assert got[0]["snippet"] == "MAIL FROM:<bob@unit.example.cn> after AUTH as alice"
    # the envelope is alice's, the header someone else's
    got = send(p, T0, from_='"Alice" <alice@bank.example.com>')
    assert reasons(got) == ["forged:from_not_account"] and got[0]["sender"] == "alice@bank.example.com"
    # her own address, in any case, with a display name; and the shared mailbox she may use
    assert send(p, T0, from_="Alice Wang <ALICE@unit.example.cn>") == []
    assert send(p, T0, mailfrom="office@unit.example.cn", from_="office@unit.example.cn (Office)") == []
    # an account that is an address must be that address
    assert send(p, T0, user="carol@unit.example.cn", mailfrom="carol@unit.example.cn") == []
    assert reasons(send(p, T0, user="carol@unit.example.cn", mailfrom="carol2@unit.example.cn",
                        from_="carol@unit.example.cn")) == ["forged:mailfrom_not_account"]
    # her local part at another domain is not her (the unit's domains are known)
    assert reasons(send(p, T0, mailfrom="alice@bank.example.com",
                        from_="alice@unit.example.cn")) == ["forged:mailfrom_not_account"]
    # without domains, the local part decides
    assert send(MailPolicy(DEFAULT), T0, mailfrom="alice@anywhere.example") == []


def test_a_helo_that_claims_another_host() -> None:
    p = MailPolicy(UNIT)
    cases = {
        "[10.1.0.99]": ["forged:helo"],  # another address than the client's
        "10.1.0.99": ["forged:helo"],
        "[IPv6:fd00::1]": ["forged:helo"],
        "mail.unit.example.cn": ["forged:helo"],  # the unit's mail server's name, from a PC
        "unit.example.cn": ["forged:helo"],  # the unit's domain as a host
        f"[{ALICE_PC}]": [],  # its own address: Thunderbird's default
        "DESKTOP-7Q2K": [],
        "pc11.unit.example.cn": [],
        "localhost": [],
    }
    for helo, want in cases.items():
        got = send(p, T0, helo=helo)
        assert reasons(got) == want, helo
        if got:
            assert (got[0]["field"], got[0]["keyword"], got[0]["snippet"]) == (
                "smtp.helo", helo, f"HELO {helo} from {ALICE_PC}")
    # the unit's relay may call itself by its name
    assert send(p, T0, helo="mail.unit.example.cn", client="10.2.0.25", user=None) == []


def test_a_display_name_that_hides_another_address() -> None:
    p = MailPolicy(UNIT)
    for from_, shown in (('"ceo@unit.example.cn" <alice@unit.example.cn>', "ceo@unit.example.cn"),
                         ("Boss <boss@unit.example.cn> <alice@unit.example.cn>", "boss@unit.example.cn"),
                         ('"财务 finance＠unit.example.cn" <alice@unit.example.cn>',
                          "finance@unit.example.cn"),
                         ("alice@unit.example.cn (it@unit.example.cn)", "it@unit.example.cn")):
        got = send(p, T0, from_=from_)
        assert reasons(got) == ["hidden:display_name"], from_
        assert (got[0]["field"], got[0]["keyword"], got[0]["sender"]) == ("smtp.from", shown,
                                                                         "alice@unit.example.cn")
        assert got[0]["snippet"] == f"From: {from_}"
    for from_ in ('"alice@unit.example.cn" <alice@unit.example.cn>', "王小丽 <alice@unit.example.cn>",
                  "alice@unit.example.cn"):
        assert send(p, T0, from_=from_) == [], from_


def test_split_from_and_hidden_address() -> None:
    assert split_from('"A, B" <X@Y.cn>') == ("A, B", "x@y.cn")
    assert split_from("x@y.cn") == ("", "x@y.cn")
    assert split_from("x@y.cn (Xavier)") == ("Xavier", "x@y.cn")
    assert split_from("a@b.cn, c@d.cn") == ("", "a@b.cn")
    assert hidden_address("support team", "x@y.cn") is None
    assert hidden_address("a @ b.cn", "x@y.cn") == "a@b.cn"


def test_each_check_can_be_off_alert_or_block() -> None:
    for action in ("off", "alert", "block"):
        cfg = UNIT._replace(actions=tuple((c, action) for c, _ in UNIT.actions))
        got = send(MailPolicy(cfg), T0, mailfrom="x@evil.example", helo="[10.9.9.9]",
                   from_='"ceo@unit.example.cn" <y@evil.example>')
        if action == "off":
            assert got == []
        else:
            assert sorted(reasons(got)) == ["forged:from_not_account", "forged:helo",
                                            "forged:mailfrom_not_account", "hidden:display_name"]
            assert {a["action"] for a in got} == {action}


def test_a_finding_alerts_once_per_connection() -> None:
    p = MailPolicy(UNIT)
    f = ids()
    got: list[dict[str, Any]] = []
    for i in range(3):
        got += send(p, T0 + i, flow=f, mailfrom="bob@unit.example.cn", from_="alice@unit.example.cn")
    assert reasons(got) == ["forged:mailfrom_not_account"]
    got = send(p, T0 + 5, flow=f, mailfrom="carol@unit.example.cn", from_="alice@unit.example.cn")
    assert reasons(got) == ["forged:mailfrom_not_account"]  # another address: another finding


def test_state_is_bounded() -> None:
    p = MailPolicy(only("sender", messages_per_minute=5))
    p.max_keys = p.max_conns = 10
    for i in range(25):
        f = ids()
        p.mail_from(f["uid"], f, T0, None, None, f"u{i}@x.cn")
    assert len(p.keys) == 10 and p.counters["keys_evicted"] == 15
    assert len(p.conns) == 10 and p.counters["conns_evicted"] == 15


@pytest.mark.parametrize("severity", [1, 5])
def test_severity_is_configured(severity: int) -> None:
    got = send(MailPolicy(UNIT._replace(severity=severity)), T0, mailfrom="x@evil.example", user=None)
    assert [a["severity"] for a in got] == [severity]
