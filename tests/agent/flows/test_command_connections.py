"""Command protocols followed for the whole connection, past the inspection depth (issue 20).

Zeek logs every transaction of a connection; so must the agent. An SMTP client that
authenticates as alice and sends 150 messages of 5 recipients each (half a megabyte, far past
the 16 KiB depth) gave 6 `smtp` records before (63 on the issue's capture); POP3 and IMAP
sessions lost the commands after a large upload or SASL token, and an FTP control connection
stopped decoding when the replies passed the depth. The conversations are built by
`tests/agent/protocols/command_captures.py` and run through the real `Pipeline`: as one batch
and one packet per feed, on the fast and the general path (all four must agree), every record
valid on the wire; and once through `edgeaudit-agent replay` on a pcap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flow_paths import four_ways
from tcp_frames import client_hello, server_hello

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "protocols"))
from command_captures import (  # noqa: E402
    Conversation,
    ftp_session,
    imap_session,
    pop3_download,
    smtp_mass_mail,
)

from agent.filter.compiled import CompiledRules, compile_rules  # noqa: E402
from agent.protocols.smtp import BODY_KEEP  # noqa: E402
from rulesets.model import FIELDS, Category, Phrase, Ruleset  # noqa: E402

Record = dict[str, Any]
REPO = Path(__file__).resolve().parents[3]
SMTP_FIELDS = ("trans_depth", "helo", "mailfrom", "rcptto", "from", "to", "subject", "user", "tls")


def run(conv: Conversation, **kw: Any) -> tuple[list[Record], dict[str, int]]:
    """All records and the inspector's counters, the same fed in each of four ways."""
    return four_ways(conv.timed(), **kw)


def of(recs: list[Record], rtype: str) -> list[Record]:
    return [r for r in recs if r["type"] == rtype]


def smtp_fields(recs: list[Record]) -> list[Record]:
    return [{k: r[k] for k in SMTP_FIELDS} for r in of(recs, "smtp")]


# -- SMTP ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["sequential", "pipelining", "bdat"])
def test_a_mass_mailer_gives_a_record_for_every_transaction(style: str) -> None:
    """150 messages of 5 recipients after AUTH LOGIN as alice: 150 records, each with its own
    envelope, headers, user and trans_depth, whether each command waits for its reply, the
    client pipelines them (RFC 2920) or sends the messages as BDAT chunks (RFC 3030). Bodies
    have dot-stuffed lines (every 9th line starts with "."), and message 7 carries a 40 KB
    attachment: past the depth by itself."""
    conv = smtp_mass_mail(style=style)
    assert conv.client_bytes() > 30 * 16384  # far past the inspection depth
    recs, counters = run(conv)
    assert smtp_fields(recs) == conv.expected
    [sess] = of(recs, "session")
    assert sess["service"] == "smtp" and sess["orig_bytes"] == conv.client_bytes()
    assert all(r["uid"] == sess["uid"] for r in of(recs, "smtp"))
    assert [r["account"] for r in of(recs, "login")] == ["alice"]  # SMTP AUTH, for the identity table
    assert counters["inspect_depth_reached"] == 0 and counters["inspect_beyond_depth_bytes"] == 0
    assert counters["inspect_followed_flows"] == 1
    if style == "bdat":
        # a chunk's length is known: past the headers (and a filter's prefix) its bytes are
        # skipped, most of them counted by the flow table's fast path without a decoder call
        assert counters["inspect_skipped_bytes"] > conv.client_bytes() // 2
    else:
        assert counters["inspect_skipped_bytes"] == 0


def test_the_depth_does_not_limit_a_mail_connection_but_zero_turns_inspection_off() -> None:
    conv = smtp_mass_mail(n=40, style="pipelining")
    full, _ = run(conv)
    small, _ = run(conv, depth=512)
    assert smtp_fields(small) == smtp_fields(full) == conv.expected
    off, counters = run(conv, depth=0)
    assert of(off, "smtp") == [] and counters["inspect_records"] == 0
    assert counters["inspect_followed_flows"] == 0


def test_replay_of_the_capture_gives_150_records(tmp_path: Path) -> None:
    """The issue's capture through `edgeaudit-agent replay`: 150 `smtp` records, not 63."""
    conv = smtp_mass_mail()
    pcap = tmp_path / "mass-mail.pcap"
    assert conv.write_pcap(pcap) > 2400
    out = tmp_path / "out.jsonl"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run([sys.executable, "-m", "agent.cli", "replay", str(pcap), "--jsonl", str(out)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert smtp_fields(recs) == conv.expected


def test_starttls_after_the_depth_still_hands_the_connection_to_tls() -> None:
    """30 messages, then STARTTLS: the switch is seen (a record with tls True) and the TLS
    hellos give their `tls` record; the encrypted rest is not decoded."""
    conv = smtp_mass_mail(n=30, starttls_after=True)
    conv.turns += [(True, client_hello("mx.example.org")), (False, server_hello()),
                   (True, b"\x17\x03\x03\x40\x00" + bytes(16384)),
                   (False, b"\x17\x03\x03\x00\x20" + bytes(32))]
    recs, counters = run(conv)
    smtp = of(recs, "smtp")
    assert [{k: r[k] for k in SMTP_FIELDS} for r in smtp[:30]] == conv.expected
    assert len(smtp) == 31 and smtp[30]["tls"] is True and smtp[30]["mailfrom"] is None
    [tls] = of(recs, "tls")
    assert tls["server_name"] == "mx.example.org" and tls["uid"] == smtp[0]["uid"]
    assert counters["inspect_starttls"] == 1


def _ruleset(*words: str) -> CompiledRules:
    cat = Category(id="spam", action="alert", severity=3,  # type: ignore[arg-type]
                   keywords=[Phrase(w, "spam.txt", i + 1) for i, w in enumerate(words)],
                   fields=frozenset(FIELDS), exceptions=[], combinations=[])
    return compile_rules(Ruleset(name="t", version=3, categories=[cat]))


@pytest.mark.usefixtures("keyword_engine")
def test_keywords_in_late_messages_are_alerted() -> None:
    """With a ruleset, what the filter scans of each message — its Subject and its body's first
    BODY_KEEP bytes — is scanned for every message of the connection, not only the first
    16 KiB's: a keyword in the 100th message's Subject and one at the start of the 120th's body
    are alerted. Past a message's kept prefix its body is only counted (the choice: a mail's
    first 8 KiB of text say what it is about), so a keyword at the end of a long body is not."""
    late = b"x" * (BODY_KEEP + 100) + b" jackpot-tonight"
    conv = smtp_mass_mail(keyword_at=100, keyword="casino-royale",
                          body_lines={120: (b"Join the lottery-win today", b""), 130: (b"", late)})
    # (the keyword filter alone: the mail policy's limits would alert this mass mailer too)
    recs, _ = run(conv, rules=_ruleset("casino-royale", "lottery-win", "jackpot-tonight"), mail=None)
    smtp = of(recs, "smtp")
    assert [r["subject"] for r in smtp] == [e["subject"] for e in conv.expected]
    alerts = {a["keyword"]: a for a in of(recs, "alert")}
    assert sorted(alerts) == ["casino-royale", "lottery-win"]
    assert alerts["casino-royale"]["field"] == "smtp.subject"
    assert alerts["lottery-win"]["field"] == "smtp.body"
    # each found at the end of its message: after its MAIL FROM (the record's ts), before the next
    assert smtp[99]["ts"] < alerts["casino-royale"]["ts"] < smtp[100]["ts"]
    assert smtp[119]["ts"] < alerts["lottery-win"]["ts"] < smtp[120]["ts"]


# -- POP3, IMAP, FTP -------------------------------------------------------------------------------------


def mailbox(recs: list[Record]) -> Record:
    [rec] = of(recs, "mailbox")
    return {k: rec[k] for k in ("protocol", "user", "login_ok", "commands", "tls")}


def test_pop3_commands_after_a_long_token_and_large_downloads() -> None:
    """A client that tries Kerberos first (a 20 KB GSSAPI token, refused: its stream is past the
    depth before USER), then USER/PASS, downloads 20 messages of 100 KB (2 MB: their bodies
    hold "+OK" and "-ERR" lines and stuffed dots) and deletes them: the mailbox record has
    every command in order (up to its cap), the user, the login and QUIT."""
    conv = pop3_download(gssapi=20_000)
    assert conv.client_bytes() > 16384 and conv.server_bytes() > 2_000_000
    recs, counters = run(conv)
    assert mailbox(recs) == conv.expected[0]
    assert [r["account"] for r in of(recs, "login")] == ["alice"]
    assert counters["inspect_depth_reached"] == 0 and counters["inspect_followed_flows"] == 1


def test_imap_commands_after_large_fetches_and_an_append() -> None:
    """20 FETCHes of 100 KB messages (literals whose text holds lines like "a5 OK" and
    "* BYE"), then an APPEND of a 200 KB draft (a synchronizing client literal), NOOP and
    LOGOUT: every command is in the record, and the literals' octets were skipped by length
    (counted by the flow table's fast path, not handed to the decoder)."""
    conv = imap_session()
    recs, counters = run(conv)
    assert mailbox(recs) == conv.expected[0]
    literals = 20 * 100_000 + 200_000
    assert counters["inspect_skipped_bytes"] > literals * 9 // 10
    assert counters["inspect_depth_reached"] == 0 and counters["inspect_followed_flows"] == 1


def test_ftp_every_command_of_a_long_control_connection_is_a_record() -> None:
    """300 rounds of CWD, PASV, LIST (150, then 226) and SIZE after the login: 1,205 commands,
    48 KB of replies. Each is a record, as in Zeek's ftp.log; before, decoding stopped when
    the replies passed the depth (and the commands waiting for them overflowed)."""
    conv = ftp_session()
    recs, counters = run(conv)
    got = [{k: r[k] for k in ("command", "arg", "reply_code", "user")} for r in of(recs, "ftp")]
    assert got == conv.expected
    assert of(recs, "weird") == []
    assert counters["inspect_ftp_data_expected"] == 300 and counters["inspect_followed_flows"] == 1
