"""The mail policy in the agent: SMTP connections (built by the tests as real TCP frames) through the
pipeline and its SMTP decoder, `edgeaudit-agent replay` with the defaults and with an agent.toml's
[mail], two capture workers that count one sender together (their tallies through real
multiprocessing queues), and inline mode stopping the MAIL FROM that passes a limit and the
final dot of a message with a hidden sender."""

from __future__ import annotations

import base64
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "protocols"))
from command_captures import Conversation, Turn, smtp_mass_mail  # noqa: E402
from tcp_frames import Conn  # noqa: E402

from agent.cli import main  # noqa: E402
from agent.enforce.inline import InlineAgent  # noqa: E402
from agent.filter.mail_config import DEFAULT, Limits, MailConfig  # noqa: E402
from agent.pipeline import Pipeline  # noqa: E402
from agent.run.worker import GatewayConsumer  # noqa: E402
from agent.spool.store import Spool  # noqa: E402
from wire.validate import validate_record  # noqa: E402

T0 = 1_767_225_600.0
OFF = Limits(0, 0, 0, 0)


def smtp(messages: list[tuple[str, int, str]], *, user: str | None = "alice", helo: str = "pc11.lan",
         client: str = "192.168.10.23", cport: int = 51000, server: str = "192.168.1.25") -> Conversation:
    """One SMTP connection: (envelope sender, recipients, From: header) per message, as a Postfix
    server answers them; AUTH PLAIN as `user` first when given."""
    t: list[Turn] = [(False, b"220 mail.unit.example.cn ESMTP Postfix\r\n"),
                     (True, f"EHLO {helo}\r\n".encode()),
                     (False, b"250-mail.unit.example.cn\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")]
    if user is not None:
        token = base64.b64encode(f"\0{user}\0secret-{user}".encode()).decode()
        t += [(True, f"AUTH PLAIN {token}\r\n".encode()), (False, b"235 2.7.0 Authentication successful\r\n")]
    for i, (mailfrom, rcpts, from_) in enumerate(messages):
        t += [(True, f"MAIL FROM:<{mailfrom}>\r\n".encode()), (False, b"250 2.1.0 Ok\r\n")]
        for k in range(rcpts):
            t += [(True, f"RCPT TO:<r{i}.{k}@example.net>\r\n".encode()), (False, b"250 2.1.5 Ok\r\n")]
        body = f"From: {from_}\r\nTo: r{i}.0@example.net\r\nSubject: note {i}\r\n\r\nSee you at 3.\r\n.\r\n"
        t += [(True, b"DATA\r\n"), (False, b"354 End data with <CR><LF>.<CR><LF>\r\n"), (True, body.encode()),
              (False, f"250 2.0.0 Ok: queued as {i:05X}\r\n".encode())]
    t += [(True, b"QUIT\r\n"), (False, b"221 2.0.0 Bye\r\n")]
    return Conversation(t, client=client, cport=cport, server=server)


def run(frames: list[tuple[float, int, bytes]], mail: MailConfig | None = DEFAULT) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    p = Pipeline(out.extend, mail=mail)
    p.feed(frames)
    p.finish()
    for r in out:
        validate_record(r)
    return out


def alerts(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in recs if r["type"] == "alert"]


def connections(n: int, per: int, *, t0: float = T0, every: float = 1.0, user: str = "alice",
                client: str = "192.168.10.23") -> list[tuple[float, int, bytes]]:
    """`n` connections of alice's, `per` messages each, one starting every `every` seconds."""
    frames: list[tuple[float, int, bytes]] = []
    for c in range(n):
        address = f"{user}@unit.example.cn"
        conv = smtp([(address, 1, address)] * per, user=user, client=client, cport=40000 + c)
        frames += conv.timed(t0 + c * every, step=0.0005)
    return frames


def test_replay_judges_mail_with_the_defaults(tmp_path: Path) -> None:
    """A capture the test made (alice authenticates and sends 150 messages of 5 recipients on one
    connection): `replay` alone alerts her sender, account and host at the 101st message and
    the 501st recipient, with the default limits."""
    pcap, out = tmp_path / "mass.pcap", tmp_path / "out.jsonl"
    smtp_mass_mail(150, 5).write_pcap(pcap)
    assert main(["replay", str(pcap), "--jsonl", str(out), "--no-progress"]) == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    for r in recs:
        validate_record(r)
    mails = [r for r in recs if r["type"] == "smtp"]
    assert len(mails) == 150
    got = {a["reason"]: a for a in alerts(recs)}
    assert sorted(got) == sorted(f"rate:{s}:{m}:minute" for s in ("sender", "account", "host")
                                 for m in ("messages", "recipients"))
    for scope, sender in (("sender", "alice@example.org"), ("account", "alice"), ("host", "192.168.10.23")):
        a = got[f"rate:{scope}:messages:minute"]
        assert (a["count"], a["limit"], a["window_s"], a["sender"]) == (101, 100, 60, sender)
        assert a["ts"] == mails[100]["ts"]  # at the 101st message's MAIL FROM
        r = got[f"rate:{scope}:recipients:minute"]
        assert (r["count"], r["limit"], r["field"]) == (501, 500, "smtp.rcptto")
    for a in got.values():
        assert (a["category"], a["action"], a["blocked"]) == ("mail", "block", False)
        assert a["ruleset_version"] == "builtin"
        assert a["account"] == "alice" and a["uid"] == mails[0]["uid"] and a["dst_port"] == 25


def _agent_toml(tmp_path: Path, mail: str) -> Path:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f"""[capture]\ninterfaces = ["lan0"]\n[collector]\nurl = "http://127.0.0.1:9"\ntoken = "t"
[spool]\npath = "{tmp_path / 'spool'}"\n[unit]\nname = "Reading room 3"\n{mail}\n""")
    return cfg


def test_replay_takes_mail_from_an_agent_toml(tmp_path: Path) -> None:
    pcap, out = tmp_path / "mail.pcap", tmp_path / "out.jsonl"
    alice = ("alice@unit.example.cn", 1, "alice@unit.example.cn")
    ceo = ("ceo@bank.example", 1, "ceo@bank.example")
    smtp([alice] * 25 + [ceo], user=None).write_pcap(pcap)
    cfg = _agent_toml(tmp_path, '[mail]\ndomains = ["unit.example.cn"]\nrate = "alert"\n'
                                '[mail.sender]\nmessages_per_minute = 20\n')
    assert main(["replay", str(pcap), "--jsonl", str(out), "--no-progress", "--config", str(cfg)]) == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(a["reason"], a["count"], a["action"]) for a in alerts(got)] == [
        ("rate:sender:messages:minute", 21, "alert"), ("forged:envelope_domain", None, "alert")]
    # turned off
    cfg = _agent_toml(tmp_path, "[mail]\nenabled = false\n")
    assert main(["replay", str(pcap), "--jsonl", str(out), "--no-progress", "--config", str(cfg)]) == 0
    assert alerts([json.loads(line) for line in out.read_text().splitlines()]) == []
    # a bad [mail] is refused, named
    cfg = _agent_toml(tmp_path, '[mail]\nrate = "drop"\n')
    assert main(["replay", str(pcap), "--jsonl", str(out), "--no-progress", "--config", str(cfg)]) == 2


def test_windows_outlive_connections_and_the_hour_counts_what_the_minute_forgets() -> None:
    cfg = DEFAULT._replace(sender=OFF, host=OFF, account=Limits(5, 0, 30, 0))
    # 40 connections of one message, one every 30 s: 2 a minute, 40 in 20 minutes
    got = alerts(run(connections(40, 1, every=30.0), cfg))
    assert [(a["reason"], a["count"], a["window_s"], a["src_port"]) for a in got] == [
        ("rate:account:messages:hour", 31, 3600, 40030)]
    # 3 connections of 2 messages within the minute: the 6th message is over 5
    got = alerts(run(connections(3, 2, every=1.0), cfg))
    assert [(a["reason"], a["count"], a["src_port"]) for a in got] == [
        ("rate:account:messages:minute", 6, 40002)]


def test_forged_and_hidden_senders_through_the_decoder() -> None:
    cfg = DEFAULT._replace(domains=("unit.example.cn",), server_names=("mail.unit.example.cn",))
    conv = smtp([("bob@unit.example.cn", 1, "alice@unit.example.cn"),
                 ("alice@unit.example.cn", 2, '"boss@unit.example.cn" <alice@unit.example.cn>'),
                 ("alice@unit.example.cn", 1, "Bob <bob@unit.example.cn>")], helo="[192.168.10.99]")
    recs = run(conv.timed(T0), cfg)
    got = [(a["reason"], a["field"], a["keyword"], a["sender"]) for a in alerts(recs)]
    bob, alice = "bob@unit.example.cn", "alice@unit.example.cn"
    assert got == [("forged:mailfrom_not_account", "smtp.mailfrom", bob, bob),
                   ("forged:helo", "smtp.helo", "[192.168.10.99]", bob),
                   ("hidden:display_name", "smtp.from", "boss@unit.example.cn", alice),
                   ("forged:from_not_account", "smtp.from", bob, bob)]
    # `account` is the identity table's: it knows alice's SMTP login from her first transaction's
    # record on (the alerts at that transaction's MAIL FROM come before it; "sender" names who)
    assert [a["account"] for a in alerts(recs)] == [None, None, "alice", "alice"]
    # unauthenticated, from another domain; and the same mail from outside the unit: not judged
    conv = smtp([("ceo@bank.example", 1, "ceo@bank.example")], user=None)
    assert [a["reason"] for a in alerts(run(conv.timed(T0), cfg))] == ["forged:envelope_domain"]
    conv = smtp([("ceo@bank.example", 1, "ceo@bank.example")] * 200, user=None, client="198.51.100.7")
    assert alerts(run(conv.timed(T0), cfg)) == []
    # ordinary mail: nothing
    conv = smtp([(alice, 3, f"Alice Wang <{alice}>")] * 3, helo="[192.168.10.23]")
    assert alerts(run(conv.timed(T0), cfg)) == []


def test_mail_after_starttls_is_not_seen() -> None:
    conv = smtp_mass_mail(120, 1, starttls_after=True)
    conv.turns += [(True, bytes.fromhex("160301002a") + bytes(42))]  # the ClientHello's start
    recs = run(conv.timed(T0))
    assert [a["count"] for a in alerts(recs)] == [101, 101, 101]  # the 120 in clear text only


def _spooled(spool: Spool) -> list[dict[str, Any]]:
    rows = spool._conn.execute("SELECT body FROM records ORDER BY id").fetchall()  # test-only peek
    return [msgpack.unpackb(r[0]) for r in rows]


def test_two_capture_workers_count_one_account_together(tmp_path: Path) -> None:
    """alice's connections alternate between two workers (the fanout hash); each worker forwards
    its counts to the other through its inbox, so the limit is alerted once, at the 11th message."""
    ctx = mp.get_context("fork")
    inboxes = [ctx.Queue(), ctx.Queue()]
    cfg = DEFAULT._replace(sender=OFF, host=OFF, account=Limits(10, 0, 0, 0))
    workers = [GatewayConsumer(f"lan0-{i}", Spool(tmp_path / "spool.sqlite"), depth=16384, roster=None,
                               rules=None, rules_path=None, pubkeys=[], inbox=inboxes[i],
                               peers=[inboxes[1 - i]], mail=cfg) for i in range(2)]
    now = time.time() - 60
    frames = connections(16, 1, t0=now)
    per_conn = len(frames) // 16
    for c in range(16):
        me, peer = workers[c % 2], workers[1 - c % 2]
        me.feed(frames[c * per_conn:(c + 1) * per_conn])
        sent = me.counters["mail_tallies_forwarded"]
        for _ in range(100):  # the queue's feeder thread delivers asynchronously
            if peer.counters["mail_tallies_received"] >= sent:
                break
            peer.feed([])
            time.sleep(0.01)
        assert peer.counters["mail_tallies_received"] >= sent
    for w in workers:
        w.finish()
    got = [r for r in _spooled(workers[0].spool) if r["type"] == "alert"]
    assert [(a["reason"], a["count"], a["src_port"]) for a in got] == [
        ("rate:account:messages:minute", 11, 40010)]
    assert all(w.counters["mail_tallies_received"] > 0 for w in workers)
    assert [r for r in _spooled(workers[0].spool) if r["type"] == "mail_tally"] == []  # never spooled


def test_without_peers_each_worker_sees_half(tmp_path: Path) -> None:
    cfg = DEFAULT._replace(sender=OFF, host=OFF, account=Limits(10, 0, 0, 0))
    workers = [GatewayConsumer(f"lan0-{i}", Spool(tmp_path / "spool.sqlite"), depth=16384, roster=None,
                               rules=None, rules_path=None, pubkeys=[], mail=cfg) for i in range(2)]
    frames = connections(16, 1, t0=time.time() - 60)
    per_conn = len(frames) // 16
    for c in range(16):
        workers[c % 2].feed(frames[c * per_conn:(c + 1) * per_conn])
    for w in workers:
        w.finish()
    assert [r for r in _spooled(workers[0].spool) if r["type"] == "alert"] == []


def _payload(packet: bytes) -> bytes:
    """The TCP payload of a raw IPv4 packet."""
    ihl = (packet[0] & 0x0F) * 4
    return packet[ihl + (packet[ihl + 12] >> 4) * 4:]


def _inline(cfg: MailConfig) -> tuple[InlineAgent, list[dict[str, Any]]]:
    out: list[dict[str, Any]] = []
    return InlineAgent(Pipeline(out.extend, mail=cfg), injector=None), out


@pytest.mark.parametrize("mss", [1448, 7])
def test_inline_stops_the_mail_from_that_passes_the_limit(mss: int) -> None:
    """Packet by packet as NFQUEUE hands them over: the 4th MAIL FROM (limit 3) is dropped, so the
    server never gets it; the connection's later packets are dropped unseen; one alert, blocked."""
    agent, out = _inline(DEFAULT._replace(sender=OFF, host=OFF, account=Limits(3, 0, 0, 0)))
    conv = smtp([("alice@unit.example.cn", 1, "alice@unit.example.cn")] * 6)
    verdicts = [(f[14:], agent.handle(f[14:], T0 + i * 0.001)) for i, f in enumerate(conv.frames(mss))]
    dropped = [p for p, ok in verdicts if not ok]
    server_got = b"".join(_payload(p) for p, ok in verdicts if ok and p[12:16] == bytes([192, 168, 10, 23]))
    # complete commands the server received: 3 MAIL FROMs and their messages, not the 4th
    assert server_got.count(b"MAIL FROM:<alice@unit.example.cn>\r\n") == 3
    assert server_got.count(b"\r\n.\r\n") == 3
    assert _payload(dropped[0]).endswith(b"\r\n")  # the packet that completed the 4th MAIL FROM line
    assert b"MAIL FROM" in _payload(dropped[0]) or mss == 7
    got = alerts(out)
    assert [(a["reason"], a["count"], a["blocked"], a["action"]) for a in got] == [
        ("rate:account:messages:minute", 4, True, "block")]
    assert agent.counters["connections_blocked"] == 1


def test_inline_stops_a_hidden_sender_at_its_final_dot() -> None:
    agent, out = _inline(DEFAULT._replace(actions=tuple((c, "block" if c == "display_name" else a)
                                                        for c, a in DEFAULT.actions)))
    conv = smtp([("alice@unit.example.cn", 1, '"boss@unit.example.cn" <alice@unit.example.cn>')])
    verdicts = [(f[14:], agent.handle(f[14:], T0 + i * 0.001)) for i, f in enumerate(conv.frames())]
    first_drop = next(p for p, ok in verdicts if not ok)
    assert b"Subject: note 0" in first_drop and first_drop.endswith(b"\r\n.\r\n")  # the data with its dot
    assert [(a["reason"], a["blocked"]) for a in alerts(out)] == [("hidden:display_name", True)]


def test_inline_a_new_connection_on_a_blocked_ones_ports_is_a_new_connection() -> None:
    """A client reset at a block frees its port, and its kernel may hand the same port to its next
    connection: that SYN starts a new connection, inspected, not dropped as the blocked one's."""
    agent, out = _inline(DEFAULT._replace(actions=tuple((c, "block" if c == "display_name" else a)
                                                        for c, a in DEFAULT.actions)))
    hidden = smtp([("alice@unit.example.cn", 1, '"boss@unit.example.cn" <alice@unit.example.cn>')])
    assert not all(agent.handle(f[14:], T0 + i * 0.001) for i, f in enumerate(hidden.frames()))
    ordinary = smtp([("alice@unit.example.cn", 1, "alice@unit.example.cn")])  # the same addresses and ports
    # ... with its own initial sequence number, as the client's kernel picks one per connection
    c = Conn(ordinary.client, ordinary.cport, ordinary.server, ordinary.sport, cisn=0x1000, sisn=0x2000)
    frames = c.handshake() + [c.c(d) if mine else c.s(d) for mine, d in ordinary.turns] + c.close()
    assert all(agent.handle(f[14:], T0 + 1 + i * 0.001) for i, f in enumerate(frames))
    assert agent.counters["blocked_reused"] == 1
    froms = [r["from"] for r in out if r["type"] == "smtp"]
    assert froms == ['"boss@unit.example.cn" <alice@unit.example.cn>', "alice@unit.example.cn"]
