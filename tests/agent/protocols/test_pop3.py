"""Tests for agent.protocols.pop3 (hand-built sessions + corpus captures)."""

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
from agent.protocols.pop3 import MAX_CMD_LINE, MAX_COMMANDS, MAX_REPLY_LINE, Pop3Decoder, SaslExchange

C, S = True, False
SECRET = "s3cr3t-Pa55"


def run(segs: list[Seg], mode: str = "whole", seed: int = 0) -> tuple[list[dict[str, Any]], Pop3Decoder]:
    dec = Pop3Decoder()
    return feed_split(dec, segs, mode, seed, max_piece=7), dec


def all_modes(segs: list[Seg]) -> dict[str, Any]:
    """The one record of a session; identical fed whole, byte by byte and in random pieces."""
    return one_mailbox_record(Pop3Decoder, "pop3", segs)[0]


c, s = client_line, server_lines


GREETING = s("+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>")


def test_user_pass_ok_with_multiline_responses() -> None:
    rec = all_modes(
        [
            GREETING,
            c("CAPA"),
            s("+OK Capability list follows\nTOP\nUSER\nSASL PLAIN LOGIN\n."),
            c("USER alice"),
            s("+OK alice is a real hoopy frood"),
            c(f"PASS {SECRET}"),
            s("+OK maildrop has 2 messages (320 octets)"),
            c("STAT"),
            s("+OK 2 320"),
            c("LIST"),
            s("+OK 2 messages (320 octets)\n1 120\n2 200\n."),
            (C, b"RETR 1\r\nSTLS\r\n"),  # pipelined: the STLS reply comes after the body
            s("+OK 120 octets\nSubject: hi\n\n..\n+OK looks like a reply\n..dot-stuffed\n.\n-ERR not now"),
            c("DELE 1"),
            s("+OK message 1 deleted"),
            c("QUIT"),
            s("+OK dewey POP3 server signing off"),
        ]
    )
    assert rec["user"] == "alice"
    assert rec["login_ok"] is True
    assert rec["commands"] == ["CAPA", "USER", "PASS", "STAT", "LIST", "RETR", "STLS", "DELE", "QUIT"]
    assert rec["tls"] is False
    assert rec["ts"] == 1.0
    assert SECRET not in repr(rec)


def test_failed_login_then_lowercase_commands() -> None:
    rec = all_modes(
        [
            GREETING,
            c("user bob"),
            s("+OK"),
            c("pass wrong"),
            s("-ERR [AUTH] invalid password"),
            c("quit"),
            s("+OK bye"),
        ]
    )
    assert (rec["user"], rec["login_ok"], rec["commands"]) == ("bob", False, ["USER", "PASS", "QUIT"])
    assert "wrong" not in repr(rec)


def test_failure_then_success_keeps_success_user() -> None:
    rec = all_modes(
        [
            GREETING,
            c("USER typo"),
            s("+OK"),
            c("PASS x"),
            s("-ERR no"),
            c("USER carol"),
            s("+OK"),
            c("PASS y"),
            s("+OK in"),
            c("USER mallory"),
            s("-ERR already authenticated"),
        ]
    )
    assert (rec["user"], rec["login_ok"]) == ("carol", True)


def test_no_login_attempt_is_none() -> None:
    rec = all_modes([GREETING, c("CAPA"), s("+OK\nUSER\n."), c("QUIT"), s("+OK")])
    assert (rec["user"], rec["login_ok"], rec["commands"]) == (None, None, ["CAPA", "QUIT"])


def test_pipelined_commands_pair_with_replies() -> None:
    # RFC 2449 §6.6 PIPELINING: several commands in one segment, replies in one segment
    rec = all_modes(
        [
            GREETING,
            (C, f"USER dave\r\nPASS {SECRET}\r\nLIST\r\nUIDL 1\r\nTOP 1 0\r\nSTLS\r\n".encode()),
            (
                S,
                b"+OK\r\n+OK logged in\r\n+OK\r\n1 100\r\n.\r\n+OK 1 whqtswO00WBw418f9t5JxYwZ\r\n"
                b"+OK\r\nFrom: x\r\n.\r\n-ERR not now\r\n",
            ),
            c("QUIT"),
            s("+OK"),
        ]
    )
    assert rec["login_ok"] is True and rec["user"] == "dave"
    assert rec["commands"] == ["USER", "PASS", "LIST", "UIDL", "TOP", "STLS", "QUIT"]
    assert rec["tls"] is False  # STLS was refused


def test_apop() -> None:
    rec = all_modes([GREETING, c("APOP mrose c4c9334bac560ecc979e58001b3e22fb"), s("+OK mrose's maildrop")])
    assert (rec["user"], rec["login_ok"], rec["commands"]) == ("mrose", True, ["APOP"])
    assert "c4c9334bac560ecc979e58001b3e22fb" not in repr(rec)
    rec = all_modes([GREETING, c("APOP eve 0123456789abcdef0123456789abcdef"), s("-ERR permission denied")])
    assert (rec["user"], rec["login_ok"]) == ("eve", False)


def test_auth_plain_initial_response_and_continuation() -> None:
    token = b64(f"\0frank\0{SECRET}".encode())
    rec = all_modes([GREETING, c(f"AUTH PLAIN {token}"), s("+OK maildrop locked and ready")])
    assert (rec["user"], rec["login_ok"], rec["commands"]) == ("frank", True, ["AUTH"])
    rec = all_modes(
        [
            GREETING,
            c("AUTH"),
            s("+OK methods\nPLAIN\nLOGIN\n."),
            c("AUTH PLAIN"),
            s("+ "),
            c(b64(f"admin\0grace\0{SECRET}".encode())),
            s("-ERR authentication failed"),
            c("STAT"),
            s("-ERR not authenticated"),
        ]
    )
    assert (rec["user"], rec["login_ok"], rec["commands"]) == ("grace", False, ["AUTH", "AUTH", "STAT"])
    assert SECRET not in repr(rec) and b64(f"admin\0grace\0{SECRET}".encode()) not in repr(rec)


def test_auth_login_and_cancel() -> None:
    rec = all_modes(
        [
            GREETING,
            c("AUTH LOGIN"),
            s("+ VXNlcm5hbWU6"),
            c(b64(b"heidi@example.org")),
            s("+ UGFzc3dvcmQ6"),
            c(b64(SECRET.encode())),
            s("+OK welcome"),
            c("STAT"),
            s("+OK 0 0"),
        ]
    )
    assert (rec["user"], rec["login_ok"], rec["commands"]) == ("heidi@example.org", True, ["AUTH", "STAT"])
    rec = all_modes(
        [GREETING, c("AUTH LOGIN"), s("+ VXNlcm5hbWU6"), c("*"), s("-ERR cancelled"), c("NOOP"), s("+OK")]
    )
    assert (rec["user"], rec["login_ok"], rec["commands"]) == (None, False, ["AUTH", "NOOP"])


def test_auth_xoauth2_and_unknown_mechanism() -> None:
    token = b64(b"user=ivan@example.com\x01auth=Bearer ya29.secret-token\x01\x01")
    rec = all_modes([GREETING, c("AUTH XOAUTH2"), s("+ "), c(token), s("+OK Welcome.")])
    assert (rec["user"], rec["login_ok"]) == ("ivan@example.com", True)
    assert "ya29" not in repr(rec)
    rec = all_modes(
        [GREETING, c("AUTH GSSAPI"), s("+ "), c(b64(b"\x60\x82opaque")), s("+ "), c(""), s("+OK ok")]
    )
    assert (rec["user"], rec["login_ok"], rec["commands"]) == (None, True, ["AUTH"])


def test_sasl_exchange_mechanisms() -> None:
    def ident(mech: bytes, *responses: bytes) -> str | None:
        x = SaslExchange(mech)
        for r in responses:
            x.response(r)
        return x.user

    assert ident(b"plain", b64(b"\0u1\0pw").encode()) == "u1"
    assert ident(b"PLAIN", b"=") is None
    assert ident(b"PLAIN", b"!!not base64!!") is None
    assert ident(b"LOGIN", b64(b"u2").encode(), b64(b"pw").encode()) == "u2"
    assert ident(b"CRAM-MD5", b64(b"tim b913a602c7eda7a495b4e6e7334d3890").encode()) == "tim"
    assert ident(b"OAUTHBEARER", b64(b"n,a=u=2Cv@x.org,\x01auth=Bearer t\x01\x01").encode()) == "u,v@x.org"
    assert ident(b"XOAUTH2", b64(b"auth=Bearer t\x01\x01").encode()) is None


def test_stls_switches_and_emits_once() -> None:
    segs = [
        GREETING,
        c("CAPA"),
        s("+OK\nSTLS\nUSER\n."),
        c("STLS"),
        s("+OK Begin TLS negotiation"),
        (C, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03USER x\r\n"),
        (S, b"\x16\x03\x03\x00\x5a\x02\x00\x00\x56"),
    ]
    rec = all_modes(segs)
    assert (rec["tls"], rec["commands"], rec["login_ok"]) == (True, ["CAPA", "STLS"], None)
    dec = Pop3Decoder()
    out: list[dict[str, Any]] = []
    for i, (is_orig, data) in enumerate(segs[:5]):
        out += dec.feed(is_orig, data, float(i))
    assert dec.tls is True and len(out) == 1 and out[0]["tls"] is True  # emitted at the switch
    assert dec.feed(True, segs[5][1], 9.0) == [] and dec.close(10.0) == []


def test_stls_client_hello_without_captured_reply() -> None:
    rec = all_modes([GREETING, c("STLS"), (C, b"\x16\x03\x01\x00\x05hello")])
    assert rec["tls"] is True


def test_close_flushes_unterminated_final_status() -> None:
    recs, _ = run([GREETING, c("USER z"), s("+OK"), c("PASS q"), (S, b"+OK done")])
    assert [(r["user"], r["login_ok"]) for r in recs] == [("z", True)]


def test_no_bytes_no_record_and_close_twice() -> None:
    dec = Pop3Decoder()
    assert dec.close(1.0) == []
    dec = Pop3Decoder()
    dec.feed(False, b"+OK hi\r\n", 5.0)
    assert len(dec.close(6.0)) == 1 and dec.close(7.0) == []


def test_commands_capped() -> None:
    recs, dec = run([GREETING] + [c("NOOP"), s("+OK")] * (MAX_COMMANDS + 5))
    assert recs[0]["commands"] == ["NOOP"] * MAX_COMMANDS
    assert dec.commands_dropped == 5


def test_long_body_lines_are_skipped_not_fatal() -> None:
    body = "x" * (MAX_REPLY_LINE * 3)
    rec = all_modes(
        [
            GREETING,
            c("USER a"),
            s("+OK"),
            c("PASS b"),
            s("+OK"),
            c("RETR 1"),
            s(f"+OK\n{body}\n."),
            c("DELE 1"),
            s("+OK"),
        ]
    )
    assert rec["commands"] == ["USER", "PASS", "RETR", "DELE"]


def test_bodies_are_searched_for_their_end_not_buffered() -> None:
    """A RETR body is never read (issue 20): only its "." line is looked for, across every cut
    of the stream; lines that look like statuses, stuffed dots (a stuffed lone "." too) and
    bare LF line ends are body. The decoder holds at most the two bytes that may begin the end
    line, however long the body and its lines."""
    body = "".join(f"..{i}\n+OK fake\n..\n-ERR fake\nline {i}\r\n" for i in range(40)) + "x" * 5000
    segs = [GREETING, c("USER a"), s("+OK"), c("PASS b"), s("+OK"), c("RETR 1"),
            (S, f"+OK 9999 octets\r\n{body}\r\n.\r\n".encode()), c("RETR 2"),
            (S, b"+OK\n.\n"), c("QUIT"), s("+OK bye")]
    assert all_modes(segs)["commands"] == ["USER", "PASS", "RETR", "RETR", "QUIT"]
    dec = Pop3Decoder()
    for seg in segs[:6] + [(S, b"+OK 1000000 octets\r\n")]:
        dec.feed(*seg, 1.0)
    dec.feed(S, b"Subject: x\r\n\r\n", 2.0)
    chunk = b"A" * 700 + b"\r\n..\r\n" + b"B" * 700  # each segment ends mid-line
    for _ in range(700):  # 1 MB
        dec.feed(S, chunk, 2.0)
        assert len(dec._buf[S]) <= 2
    dec.feed(S, b"\r\n.\r\n", 3.0)
    dec.feed(C, b"QUIT\r\n", 3.0)
    dec.feed(S, b"+OK bye\r\n", 3.0)
    [rec] = dec.close(4.0)
    assert rec["commands"] == ["USER", "PASS", "RETR", "QUIT"] and not dec._multi


def test_finished_after_stls_and_close() -> None:
    dec = Pop3Decoder()
    for seg in [GREETING, c("STLS")]:
        dec.feed(*seg, 1.0)
    assert not dec.finished
    dec.feed(S, b"+OK begin TLS\r\n", 2.0)
    assert dec.finished
    dec = Pop3Decoder()
    dec.close(1.0)
    assert dec.finished


def test_unknown_multiline_answer_is_skipped() -> None:
    # XTND XLST-like extension answering with a body this decoder does not foresee
    rec = all_modes(
        [
            GREETING,
            c("XTND XLST Subject"),
            s("+OK\n1 Subject: a\n2 Subject: b\n."),
            c("USER k"),
            s("+OK"),
            c("PASS p"),
            s("+OK"),
        ]
    )
    assert (rec["user"], rec["login_ok"]) == ("k", True)


def test_password_never_in_state() -> None:
    token = b64(f"\0u\0{SECRET}".encode())
    dec = Pop3Decoder()
    dec.feed(False, b"+OK hi\r\n", 1.0)
    dec.feed(True, f"USER u\r\nPASS {SECRET}\r\nAUTH PLAIN {token}\r\n".encode(), 2.0)
    assert SECRET not in repr(state_of(dec)) and SECRET.encode() not in bytes(dec._buf[True])
    assert token not in repr(state_of(dec))
    recs = dec.feed(False, b"+OK\r\n+OK\r\n", 3.0) + dec.close(4.0)
    assert SECRET not in repr(recs) and token not in repr(recs)


def test_gap_resyncs() -> None:
    dec = Pop3Decoder()
    dec.feed(False, b"+OK hi\r\n", 1.0)
    dec.feed(True, b"USER a\r\nRETR 1", 2.0)
    assert dec.gap(True, 100, 3.0) == []
    dec.feed(True, b"tail of lost\r\nUSER b\r\nPASS c\r\n", 4.0)
    dec.feed(False, b"+OK\r\n", 5.0)
    assert dec.gap(False, 50, 6.0) == []
    dec.feed(False, b"lost body line\r\nbody again\r\n.\r\n+OK\r\n+OK\r\n", 7.0)
    recs = dec.close(8.0)
    assert [(r["user"], r["login_ok"], r["ts"]) for r in recs] == [("b", None, 1.0)]


@pytest.mark.parametrize(
    ("segs", "name"),
    [
        ([(C, b"US3R@ x\r\n")], "pop3_bad_command"),
        ([(C, b"\x00\x01\r\n")], "pop3_bad_command"),
        ([(S, b"220 this is smtp\r\n")], "pop3_bad_reply"),
        ([(C, b"A" * (MAX_CMD_LINE + 2))], "pop3_line_too_long"),
        ([(S, b"+OK " + b"A" * MAX_REPLY_LINE + b"\r\n")], "pop3_line_too_long"),
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
        (C, b"USER a\r\n"),
        (C, b"PASS hunter2\r\n"),
        (C, b"AUTH PLAIN\r\n"),
        (C, b"AUTH LOGIN YQ==\r\n"),
        (C, b"AGEAaHVudGVyMg==\r\n"),
        (C, b"*\r\n"),
        (C, b"RETR 1\r\n"),
        (C, b"LIST\r\n"),
        (C, b"CAPA\r\n"),
        (C, b"STLS\r\n"),
        (C, b"\x16\x03\x01"),
        (S, b"+OK\r\n"),
        (S, b"-ERR\r\n"),
        (S, b"+ \r\n"),
        (S, b".\r\n"),
        (S, b"..x\r\n"),
        (S, b"body\r\n"),
        (S, b"\r\n"),
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


def decode_capture(path: Path) -> dict[Key, tuple[list[dict[str, Any]], Pop3Decoder]]:
    """Run the decoder over every port-110 connection; a DecodeError fails the test."""
    result = {}
    for key, segs in tcp_streams(path, (110,)).items():
        dec = Pop3Decoder()
        recs: list[dict[str, Any]] = []
        for ts, d, chunk in segs:
            recs += dec.feed(d, chunk, ts)
            if dec.tls:
                break  # the pipeline hands the rest to the TLS decoder
        recs += dec.close(segs[-1][0] if segs else 0.0)
        result[key] = (recs, dec)
    return result


needs_corpus = pytest.mark.skipif(not CORPUS.exists(), reason="corpus absent")


@needs_corpus
def test_zeek_pop3_trace() -> None:
    pytest.importorskip("dpkt")
    got = decode_capture(CORPUS / "zeek/Traces/pop3/pop3.pcap")
    by_port = {k[1]: recs for k, (recs, _) in got.items()}
    # ports 26242/26245 carry no payload: no record
    assert by_port[26242] == [] and by_port[26245] == []
    user = "digitalinvestigator@networksims.com"  # AUTH PLAIN authcid (verified with tshark)
    summary = {p: (r[0]["user"], r[0]["login_ok"], r[0]["commands"]) for p, r in by_port.items() if r}
    # the pop3_request events of Zeek's Baseline/scripts.base.protocols.pop3.basic/out, per connection
    assert summary == {
        26272: (None, None, ["CAPA", "QUIT"]),
        26284: (user, False, ["AUTH", "CAPA", "AUTH"]),
        26304: (None, None, ["CAPA", "QUIT"]),
        26308: (user, True, ["AUTH", "CAPA", "AUTH", "QUIT"]),
        26383: (user, True, ["AUTH", "CAPA", "AUTH", "STAT", "LIST", "UIDL", "RETR", "RETR", "RETR", "QUIT"]),
    }
    assert all(not r[0]["tls"] and len(r) == 1 for r in by_port.values() if r)
    assert "napier" not in repr(got)  # the passwords (napier, napier123)


@needs_corpus
def test_suricata_pop3_top_session() -> None:
    pytest.importorskip("dpkt")
    got = decode_capture(CORPUS / "suricata-verify/pop3/input.pcap")
    assert len(got) == 1
    ((recs, _),) = got.values()
    assert len(recs) == 1
    rec = recs[0]
    # suricata-verify pop3/test.yaml: USER moises.nunez@..., PASS ok, 49 TOP (a 50th TOP packet
    # is a retransmission)
    assert rec["user"] == "moises.nunez@ingenierianumar.com"
    assert rec["login_ok"] is True
    assert rec["commands"] == ["USER", "PASS", "STAT", "LIST", "RSET", "UIDL"] + ["TOP"] * 49
    assert rec["tls"] is False


@needs_corpus
def test_suricata_pop3_xoauth2() -> None:
    pytest.importorskip("dpkt")
    got = decode_capture(CORPUS / "suricata-verify/pop3-auth-01/input.pcap")
    ((recs, _),) = got.values()
    # no greeting captured; AUTH XOAUTH2 with user=joe.speedboat, "+OK Welcome."
    assert [(r["user"], r["login_ok"], r["commands"]) for r in recs] == [
        ("joe.speedboat", True, ["CAPA", "AUTH", "STAT", "LIST", "UIDL", "QUIT"])
    ]
    assert "Bearer" not in repr(recs)


@needs_corpus
def test_zeek_pop3_starttls() -> None:
    pytest.importorskip("dpkt")
    got = decode_capture(CORPUS / "zeek/Traces/tls/pop3-starttls.pcap")
    ((recs, dec),) = got.values()
    assert dec.tls is True
    assert [(r["user"], r["login_ok"], r["commands"], r["tls"]) for r in recs] == [
        (None, None, ["STLS"], True)
    ]
