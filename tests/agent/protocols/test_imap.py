"""Tests for agent.protocols.imap (hand-built sessions + corpus captures)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_streams import (
    Key,
    Seg,
    b64,
    client_line,
    feed_split,
    one_mailbox_record,
    server_lines,
    state_of,
    tcp_streams,
)

from agent.decode.errors import DecodeError
from agent.protocols.imap import MAX_CMD_LINE, MAX_COMMANDS, MAX_RESP_LINE, ImapDecoder

C, S = True, False
SECRET = "s3cr3t-Pa55"


def run(segs: list[Seg], mode: str = "whole", seed: int = 0) -> tuple[list[dict[str, Any]], ImapDecoder]:
    dec = ImapDecoder()
    return feed_split(dec, segs, mode, seed, max_piece=7), dec


def all_modes(segs: list[Seg]) -> dict[str, Any]:
    """The one record of a session; identical fed whole, byte by byte and in random pieces."""
    return one_mailbox_record(ImapDecoder, "imap", segs)[0]


c, s = client_line, server_lines


GREETING = s("* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR AUTH=PLAIN STARTTLS] Dovecot ready.")


def test_login_atoms_select_fetch_logout() -> None:
    rec = all_modes(
        [
            GREETING,
            c(f"a001 LOGIN alice {SECRET}"),
            s("a001 OK [CAPABILITY IMAP4rev1] Logged in"),
            c("a002 SELECT INBOX"),
            s("* 2 EXISTS\n* OK [UIDVALIDITY 3857529045] UIDs valid\na002 OK [READ-WRITE] SELECT completed"),
            c("a003 uid fetch 1:* (FLAGS)"),
            s("* 1 FETCH (UID 7 FLAGS (\\Seen))\na003 OK done"),
            c("a004 LOGOUT"),
            s("* BYE bye\na004 OK LOGOUT completed"),
        ]
    )
    assert (rec["user"], rec["login_ok"], rec["tls"]) == ("alice", True, False)
    assert rec["commands"] == ["LOGIN", "SELECT", "UID FETCH", "LOGOUT"]
    assert rec["ts"] == 1.0
    assert SECRET not in repr(rec)


def test_login_quoted_with_escapes_failure() -> None:
    rec = all_modes(
        [
            GREETING,
            c(r'A1 LOGIN "bo\"b \\ smith" "pa\"ss word"'),
            s("A1 NO [AUTHENTICATIONFAILED] Authentication failed."),
        ]
    )
    assert (rec["user"], rec["login_ok"], rec["commands"]) == ('bo"b \\ smith', False, ["LOGIN"])
    assert "pa" not in repr(rec)


def test_login_literals_sync_and_nonsync() -> None:
    # RFC 9051 §4.3 synchronizing literal for the userid (after "+"), RFC 7888 {n+} for the password
    rec = all_modes(
        [
            GREETING,
            c("a1 LOGIN {11}"),
            s("+ Ready for literal data"),
            (C, f"carol smith {{{len(SECRET)}+}}\r\n{SECRET}\r\n".encode()),
            s("a1 OK LOGIN completed"),
            c("a2 NOOP"),
            s("a2 OK"),
        ]
    )
    assert (rec["user"], rec["login_ok"], rec["commands"]) == ("carol smith", True, ["LOGIN", "NOOP"])
    assert SECRET not in repr(rec)


def test_password_literal_with_crlf_inside_is_skipped_by_count() -> None:
    pw = "x\r\na9 LOGOUT\r\n"  # a password that looks like a command line must not be parsed
    rec = all_modes(
        [
            GREETING,
            c(f"t1 LOGIN dave {{{len(pw)}}}"),
            s("+ go ahead"),
            (C, pw.encode() + b"\r\n"),
            s("t1 OK welcome"),
        ]
    )
    assert (rec["user"], rec["login_ok"], rec["commands"]) == ("dave", True, ["LOGIN"])


def test_refused_synchronizing_literal_is_not_sent() -> None:
    rec = all_modes(
        [
            GREETING,
            c("a1 LOGIN {500}"),
            s("a1 BAD literal too big"),
            c("a2 LOGIN erin pw"),
            s("a2 OK"),
        ]
    )
    assert (rec["user"], rec["login_ok"], rec["commands"]) == ("erin", True, ["LOGIN", "LOGIN"])


def test_authenticate_plain_sasl_ir_and_continuation() -> None:
    token = b64(f"\0frank\0{SECRET}".encode())
    rec = all_modes([GREETING, c(f"a1 AUTHENTICATE PLAIN {token}"), s("a1 OK Success")])
    assert (rec["user"], rec["login_ok"], rec["commands"]) == ("frank", True, ["AUTHENTICATE"])
    rec = all_modes(
        [
            GREETING,
            c("a1 AUTHENTICATE PLAIN"),
            s("+ "),
            c(b64(f"authz\0grace\0{SECRET}".encode())),
            s("a1 NO [AUTHENTICATIONFAILED] Invalid credentials"),
            c("a2 CAPABILITY"),
            s("* CAPABILITY IMAP4rev1\na2 OK"),
        ]
    )
    assert (rec["user"], rec["login_ok"], rec["commands"]) == ("grace", False, ["AUTHENTICATE", "CAPABILITY"])
    assert SECRET not in repr(rec)


def test_authenticate_login_xoauth2_cancel() -> None:
    rec = all_modes(
        [
            GREETING,
            c("x AUTHENTICATE LOGIN"),
            s("+ VXNlcm5hbWU6"),
            c(b64(b"heidi")),
            s("+ UGFzc3dvcmQ6"),
            c(b64(SECRET.encode())),
            s("x OK"),
        ]
    )
    assert (rec["user"], rec["login_ok"]) == ("heidi", True)
    token = b64(b"user=ivan@example.com\x01auth=Bearer ya29.tok\x01\x01")
    rec = all_modes([GREETING, c(f"y AUTHENTICATE XOAUTH2 {token}"), s("y OK")])
    assert (rec["user"], rec["login_ok"]) == ("ivan@example.com", True)
    assert "ya29" not in repr(rec)
    rec = all_modes(
        [GREETING, c("z AUTHENTICATE PLAIN"), s("+"), c("*"), s("z BAD cancelled"), c("z2 NOOP"), s("z2 OK")]
    )
    assert (rec["user"], rec["login_ok"], rec["commands"]) == (None, False, ["AUTHENTICATE", "NOOP"])


def test_preauth_greeting() -> None:
    rec = all_modes([s("* PREAUTH [CAPABILITY IMAP4rev1] logged in as judy"), c('a LIST "" *'), s("a OK")])
    assert (rec["user"], rec["login_ok"], rec["commands"]) == (None, True, ["LIST"])


def test_pipelined_out_of_order_completions() -> None:
    rec = all_modes(
        [
            GREETING,
            (C, b"1 LOGIN kim pw\r\n2 SELECT INBOX\r\n3 FETCH 1 BODY[]\r\n"),
            (S, b"* 1 EXISTS\r\n1 OK in\r\n3 OK fetched\r\n2 OK [READ-WRITE] done\r\n"),
        ]
    )
    assert (rec["user"], rec["login_ok"], rec["commands"]) == ("kim", True, ["LOGIN", "SELECT", "FETCH"])


def test_server_literals_skipped_by_count() -> None:
    body = "Subject: trap\r\n\r\na1 NO fake completion\r\n* PREAUTH fake\r\n{999}\r\n"
    rec = all_modes(
        [
            GREETING,
            c("a0 STARTTLS"),
            s("a0 NO not now"),
            c("a1 LOGIN lee pw"),
            c("a2 FETCH 1 (BODY[] FLAGS)"),
            (S, f"a1 OK in\r\n* 1 FETCH (BODY[] {{{len(body)}}}\r\n{body} FLAGS (\\Seen))\r\n".encode()),
            (S, b"* 2 FETCH (BODY[HEADER] ~{3}\r\n\x00\r\n BODY[TEXT] {0}\r\n)\r\na2 OK FETCH done\r\n"),
            c("a3 LOGOUT"),
            s("a3 OK"),
        ]
    )
    assert (rec["user"], rec["login_ok"], rec["tls"]) == ("lee", True, False)
    assert rec["commands"] == ["STARTTLS", "LOGIN", "FETCH", "LOGOUT"]


def test_literals_are_offered_for_skipping() -> None:
    """A literal's length is known (RFC 9051 §4.3): once it is under way its rest is
    `skippable`, and `skip` counts it off, so the flow inspector can let the fast path count a
    50 MB FETCH (issue 20). Not offered: a synchronizing client literal before its first octet
    (the server may refuse it, §7.5), a LOGIN userid literal (it is read)."""
    dec = ImapDecoder()
    for seg in [GREETING, c("a1 LOGIN {5}")]:
        dec.feed(*seg, 1.0)
    assert dec.skippable(C) == 0  # the userid: read, not skipped
    for seg in [s("+ go"), (C, b"alice {2}\r\n"), s("+ go"), (C, b"pw\r\n"), s("a1 OK")]:
        dec.feed(*seg, 1.0)
    body = b"Subject: x\r\n\r\n" + b"a9 OK fake\r\n" * 10_000
    dec.feed(C, b"a2 FETCH 1 BODY[]\r\n", 2.0)
    dec.feed(S, b"* 1 FETCH (BODY[] {%d}\r\n" % len(body) + body[:100], 2.0)
    assert (dec.skippable(S), dec.skippable(C), dec.exempt(S)) == (len(body) - 100, 0, 0)
    assert dec.skip(S, len(body) - 100, 2.5) == [] and dec.skippable(S) == 0
    dec.feed(S, b")\r\na2 OK done\r\n", 3.0)
    dec.feed(C, b"a3 APPEND INBOX {%d}\r\n" % len(body), 4.0)
    assert dec.skippable(C) == 0  # synchronizing: the server may refuse it
    dec.feed(S, b"+ Ready\r\n", 4.1)
    dec.feed(C, body[:10], 4.2)
    assert dec.skippable(C) == len(body) - 10
    dec.skip(C, len(body) - 10, 4.3)
    for seg in [(C, b"\r\n"), s("a3 OK appended"), c("a4 APPEND INBOX {3+}")]:
        dec.feed(*seg, 5.0)
    assert dec.skippable(C) == 3  # non-synchronizing (RFC 7888): no wait
    dec.skip(C, 3, 5.1)
    for seg in [(C, b"\r\n"), c("a5 LOGOUT"), s("a4 OK\na5 OK bye")]:
        dec.feed(*seg, 6.0)
    [rec] = dec.close(7.0)
    assert (rec["user"], rec["login_ok"]) == ("alice", True)
    assert rec["commands"] == ["LOGIN", "FETCH", "APPEND", "APPEND", "LOGOUT"]
    assert dec.finished and dec.skippable(C) == dec.skippable(S) == 0


def test_skipping_past_a_literal_is_a_gap() -> None:
    """More skipped than the literal had left (the inspector never does it, but a decoder must
    not trust it): the rest is a gap, and the decoder resynchronises on the next line."""
    dec = ImapDecoder()
    for seg in [GREETING, c("a1 LOGIN u p"), s("a1 OK"), c("a2 FETCH 1 BODY[]")]:
        dec.feed(*seg, 1.0)
    dec.feed(S, b"* 1 FETCH (BODY[] {10}\r\n", 2.0)
    assert dec.skip(S, 15, 2.1) == []
    for seg in [(S, b"junk)\r\n"), s("a2 OK"), c("a3 LOGOUT"), s("a3 OK")]:
        dec.feed(*seg, 3.0)
    [rec] = dec.close(4.0)
    assert rec["commands"] == ["LOGIN", "FETCH", "LOGOUT"]


def test_append_literal_and_idle() -> None:
    msg = "From: a@b\r\n\r\nb1 LOGOUT\r\n"
    rec = all_modes(
        [
            GREETING,
            c("b0 LOGIN mo pw"),
            s("b0 OK"),
            c(f"b1 APPEND INBOX (\\Seen) {{{len(msg)}}}"),
            s("+ Ready"),
            (C, msg.encode() + b"\r\n"),
            s("b1 OK APPEND completed"),
            c("b2 IDLE"),
            s("+ idling\n* 3 EXISTS"),
            c("DONE"),
            s("b2 OK IDLE terminated"),
            c("b3 NOOP"),
            s("b3 OK"),
        ]
    )
    assert rec["commands"] == ["LOGIN", "APPEND", "IDLE", "NOOP"]


def test_long_untagged_line_skipped() -> None:
    nums = " ".join(str(i) for i in range(MAX_RESP_LINE // 2))
    rec = all_modes(
        [
            GREETING,
            c("s LOGIN u p"),
            s("s OK"),
            c("s2 SEARCH ALL"),
            s(f"* SEARCH {nums}\n* 1 FETCH (X-LONG ({nums}) BODY[] {{{len(nums)}}}"),
            (S, nums.encode() + b")\r\ns2 OK SEARCH completed\r\n"),
            c("s3 STARTTLS"),
            s("s3 OK begin"),
        ]
    )
    assert (rec["commands"], rec["tls"]) == (["LOGIN", "SEARCH", "STARTTLS"], True)


def test_starttls_switches_and_emits_once() -> None:
    segs = [
        GREETING,
        c(". CAPABILITY"),
        s("* CAPABILITY IMAP4rev1 STARTTLS\n. OK CAPABILITY completed"),
        c(". STARTTLS"),
        s(". OK Begin TLS negotiation now"),
        (C, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03. LOGIN a b\r\n"),
        (S, b"\x16\x03\x03\x00\x5a\x02\x00\x00\x56"),
    ]
    rec = all_modes(segs)
    assert (rec["tls"], rec["commands"], rec["login_ok"]) == (True, ["CAPABILITY", "STARTTLS"], None)
    dec = ImapDecoder()
    out: list[dict[str, Any]] = []
    for i, (is_orig, data) in enumerate(segs[:5]):
        out += dec.feed(is_orig, data, float(i))
    assert dec.tls is True and len(out) == 1 and out[0]["tls"] is True
    assert dec.feed(True, segs[5][1], 9.0) == [] and dec.close(10.0) == []
    rec = all_modes([GREETING, c("t STARTTLS"), (C, b"\x16\x03\x01\x00\x05hello")])  # OK not captured
    assert rec["tls"] is True


def test_compress_stops_decoding() -> None:
    rec = all_modes(
        [GREETING, c("c1 COMPRESS DEFLATE"), s("c1 OK DEFLATE active"), (C, b"\x78\x9c garbage\r\n")]
    )
    assert (rec["commands"], rec["tls"]) == (["COMPRESS"], False)


def test_commands_capped() -> None:
    recs, dec = run([GREETING] + [c(f"n{i} NOOP") for i in range(MAX_COMMANDS + 3)])
    assert recs[0]["commands"] == ["NOOP"] * MAX_COMMANDS and dec.commands_dropped == 3


def test_close_flushes_unterminated_completion_and_no_bytes_no_record() -> None:
    recs, _ = run([GREETING, c("a LOGIN z q"), (S, b"a OK done")])
    assert [(r["user"], r["login_ok"]) for r in recs] == [("z", True)]
    assert ImapDecoder().close(1.0) == []


def test_password_never_in_state() -> None:
    dec = ImapDecoder()
    dec.feed(False, GREETING[1], 1.0)
    dec.feed(
        True,
        f'a LOGIN u "{SECRET}"\r\nb LOGIN {{4}}\r\nuser {{{len(SECRET)}+}}\r\n{SECRET[:5]}'.encode(),
        2.0,
    )
    assert SECRET[:5] not in repr(state_of(dec)) and SECRET not in repr(state_of(dec))
    dec.feed(True, f"{SECRET[5:]}\r\n".encode(), 3.0)
    assert SECRET not in repr(state_of(dec))
    recs = dec.feed(False, b"a OK\r\nb OK\r\n", 4.0) + dec.close(5.0)
    assert SECRET not in repr(recs) and recs[0]["user"] == "user"


def test_gaps() -> None:
    dec = ImapDecoder()
    dec.feed(False, b"* OK hi\r\n", 1.0)
    dec.feed(True, b"a LOGIN {5}\r\nal", 2.0)
    assert dec.gap(True, 3, 3.0) == []  # the rest of the userid literal
    dec.feed(True, b" pw\r\nb SELECT x\r\nc FETCH 1 BO", 4.0)
    assert dec.gap(True, 10, 5.0) == []
    dec.feed(True, b"DY[]\r\nd NOOP\r\n", 6.0)
    dec.feed(False, b"a OK\r\n* 1 FETCH (BODY[] {10}\r\n01234", 7.0)
    assert dec.gap(False, 5, 8.0) == []  # inside the server literal: counted off
    dec.feed(False, b")\r\nc OK\r\nd OK\r\n", 9.0)
    dec.gap(False, 4, 10.0)
    dec.feed(False, b"garbage\r\nnot imap\r\n", 11.0)  # after a gap: skipped, not raised
    recs = dec.close(12.0)
    assert [(r["user"], r["login_ok"], r["commands"]) for r in recs] == [
        (None, True, ["LOGIN", "SELECT", "NOOP"])
    ]


@pytest.mark.parametrize(
    ("segs", "name"),
    [
        ([(C, b"justoneword\r\n")], "imap_bad_command"),
        ([(C, b"a1 9LOGIN\r\n")], "imap_bad_command"),
        ([(C, b"\x00\x01 x\r\n")], "imap_bad_command"),
        ([(S, b"220 smtp.example ESMTP\r\n")], "imap_bad_response"),
        ([(S, b"nospace\r\n")], "imap_bad_response"),
        ([(C, b"A" * (MAX_CMD_LINE + 2))], "imap_line_too_long"),
        ([(S, b"a1 OK " + b"A" * MAX_RESP_LINE + b"\r\n")], "imap_line_too_long"),
    ],
)
def test_malformed(segs: list[Seg], name: str) -> None:
    with pytest.raises(DecodeError) as ei:
        run(segs)
    assert ei.value.name == name


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=64)), max_size=12))
def test_random_bytes_only_decode_error(segs: list[Seg]) -> None:
    with contextlib.suppress(DecodeError):
        run(segs)


_LINES = st.sampled_from(
    [
        (C, b"a LOGIN u hunter2\r\n"),
        (C, b"a LOGIN {1}\r\n"),
        (C, b"b LOGIN u {7+}\r\nhunter2\r\n"),
        (C, b"c AUTHENTICATE PLAIN\r\n"),
        (C, b"d AUTHENTICATE PLAIN AHUAaHVudGVyMg==\r\n"),
        (C, b"AHUAaHVudGVyMg==\r\n"),
        (C, b"*\r\n"),
        (C, b"e IDLE\r\n"),
        (C, b"DONE\r\n"),
        (C, b"f STARTTLS\r\n"),
        (C, b"\x16\x03\x01"),
        (C, b"x"),
        (S, b"* OK hi\r\n"),
        (S, b"* PREAUTH\r\n"),
        (S, b"+ \r\n"),
        (S, b"* 1 FETCH (BODY[] {3}\r\n"),
        (S, b"a OK\r\n"),
        (S, b"b NO\r\n"),
        (S, b"c BAD\r\n"),
        (S, b"f OK\r\n"),
        (S, b")\r\n"),
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINES, max_size=30), st.integers(0, 1000))
def test_random_sessions_split_invariant(segs: list[Seg], seed: int) -> None:
    try:
        base, dec = run(segs)
    except DecodeError:
        return
    recs, d2 = run(segs, "random", seed)
    assert recs == base and d2.tls == dec.tls
    assert len(base) <= 1
    assert "hunter2" not in repr(base) and "hunter2" not in repr(state_of(dec))


# --- corpus captures -------------------------------------------------------
CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"  # ../shared, by path
needs_corpus = pytest.mark.skipif(not CORPUS.exists(), reason="corpus absent")


def decode_capture(path: Path) -> dict[Key, tuple[list[dict[str, Any]], ImapDecoder]]:
    """Run the decoder over every port-143 connection; a DecodeError fails the test."""
    result = {}
    for key, segs in tcp_streams(path, (143,)).items():
        dec = ImapDecoder()
        recs: list[dict[str, Any]] = []
        for ts, d, chunk in segs:
            recs += dec.feed(d, chunk, ts)
            if dec.tls:
                break  # the pipeline hands the rest to the TLS decoder
        recs += dec.close(segs[-1][0] if segs else 0.0)
        result[key] = (recs, dec)
    return result


@needs_corpus
def test_suricata_imap_session() -> None:
    pytest.importorskip("dpkt")
    got = decode_capture(CORPUS / "suricata-verify/imap-detection/input.pcap")
    ((recs, dec),) = got.values()
    # read with tshark: a0001 LOGIN "neulingern" "XXXXXX" -> OK; a0007 FETCH 12 RFC822 returns a
    # {3339} literal; the session ends with a0025 CLOSE answered OK
    assert len(recs) == 1
    rec = recs[0]
    assert (rec["user"], rec["login_ok"], rec["tls"]) == ("neulingern", True, False)
    assert rec["commands"] == (
        ["CAPABILITY", "LOGIN", "LIST", "SELECT", "FETCH", "NOOP", "NOOP", "FETCH"]
        + ["NOOP"] * 11
        + ["STORE", "STORE", "EXPUNGE", "SELECT", "FETCH", "NOOP", "CLOSE"]
    )
    assert not dec._pending  # every command met its tagged completion: literals were skipped by count
    assert "XXXXXX" not in repr(recs)


@needs_corpus
def test_zeek_imap_starttls() -> None:
    pytest.importorskip("dpkt")
    got = decode_capture(CORPUS / "zeek/Traces/tls/imap-starttls.pcap")
    ((recs, dec),) = got.values()
    assert dec.tls is True
    assert [(r["user"], r["login_ok"], r["commands"], r["tls"]) for r in recs] == [
        (None, None, ["CAPABILITY", "STARTTLS"], True)
    ]
