"""Tests for agent.protocols.ftp (hand-built sessions + Zeek corpus comparison)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_streams import Seg, feed_split, state_of, tcp_streams, zeek_rows

from agent.decode.errors import DecodeError
from agent.protocols.ftp import HIDDEN, MAX_LINE, MAX_PENDING, UNKNOWN_USER, FtpDecoder

SECRET = "s3cr3t-Pa55"


def run(segs: list[Seg], mode: str = "whole", seed: int = 0) -> tuple[list[dict[str, Any]], FtpDecoder]:
    dec = FtpDecoder()
    return feed_split(dec, segs, mode, seed, max_piece=11), dec


def all_modes(segs: list[Seg]) -> tuple[list[dict[str, Any]], FtpDecoder]:
    base, dec = run(segs)
    for mode, seed in [("bytes", 0)] + [("random", s) for s in range(6)]:
        recs, d2 = run(segs, mode, seed)
        assert recs == base
        assert d2.expected_data_channels == dec.expected_data_channels
    return base, dec


def c(line: str) -> Seg:
    return (True, line.encode() + b"\r\n")


def r(text: str) -> Seg:
    return (False, text.encode().replace(b"\n", b"\r\n") + b"\r\n")


LOGIN: list[Seg] = [
    r("220 ProFTPD Server ready."),
    c("USER alice"),
    r("331 Password required for alice"),
    c(f"PASS {SECRET}"),
    r("230-Welcome to the archive.\n230-  Be nice.\n  indented free text 999 \n230 User alice logged in."),
]


def _pick(recs: list[dict[str, Any]], *fields: str) -> list[tuple[Any, ...]]:
    return [tuple(x[f] for f in fields) for x in recs]


def test_login_and_password_never_stored() -> None:
    recs, dec = all_modes(LOGIN)
    assert _pick(recs, "user", "command", "arg", "reply_code", "reply_msg") == [
        ("alice", "USER", "alice", 331, "Password required for alice"),
        ("alice", "PASS", HIDDEN, 230, "User alice logged in."),
    ]
    assert all(x["type"] == "ftp" and x["file_size"] is None for x in recs)
    assert [x["ts"] for x in recs] == [2.0, 4.0]
    assert SECRET not in repr(recs)
    assert SECRET not in repr(state_of(dec))
    assert not any(k in recs[0] for k in ("uid", "src_ip", "dst_port", "password"))


def test_password_absent_from_state_mid_session() -> None:
    dec = FtpDecoder()
    dec.feed(True, f"USER bob\r\nPASS {SECRET}\r\n".encode(), 1.0)
    assert SECRET not in repr(state_of(dec))
    assert SECRET.encode() not in bytes(dec._buf[True])


def test_failed_login_530_and_unknown_user() -> None:
    recs, _ = all_modes(
        [
            r("220 hi"),
            c("SYST"),
            r("530 Please login with USER and PASS."),
            c("USER Admin"),
            r("331 Please, specify the password."),
            c("PASS qwerty"),
            r("530 Login incorrect."),
            c("QUIT"),
            r("221 Goodbye."),
        ]
    )
    assert _pick(recs, "user", "command", "arg", "reply_code") == [
        (UNKNOWN_USER, "SYST", None, 530),
        ("Admin", "USER", "Admin", 331),
        ("Admin", "PASS", HIDDEN, 530),
        ("Admin", "QUIT", None, 221),
    ]
    assert "qwerty" not in repr(recs)


def test_pasv_retr_150_226_and_size() -> None:
    recs, dec = all_modes(
        LOGIN
        + [
            c("TYPE I"),
            r("200 Type set to I"),
            c("SIZE /pub/robots.txt"),
            r("213 77"),
            c("PASV"),
            r("227 Entering Passive Mode (199,233,217,249,221,90)."),
            c("RETR robots.txt"),
            r("150 Opening BINARY mode data connection for robots.txt (77 bytes)."),
            r("226 Transfer complete."),
            c("PASV"),
            r("227 Entering Passive Mode 10,0,0,1,4,1"),
        ]
    )
    tail = recs[2:]
    assert _pick(tail, "command", "arg", "reply_code", "file_size") == [
        ("TYPE", "I", 200, None),
        ("SIZE", "/pub/robots.txt", 213, 77),
        ("PASV", None, 227, None),
        ("RETR", "robots.txt", 226, 77),
        ("PASV", None, 227, None),
    ]
    assert tail[3]["reply_msg"] == "Transfer complete."
    assert dec.expected_data_channels == [("199.233.217.249", 56666, True), ("10.0.0.1", 1025, True)]


def test_epsv_port_eprt() -> None:
    recs, dec = all_modes(
        LOGIN
        + [
            c("EPSV"),
            r("229 Entering Extended Passive Mode (|||57086|)"),
            c("PORT 141,142,220,235,131,46"),
            r("200 PORT command successful."),
            c("EPRT |2|2001:470:1f11:81f:c999:d94:aa7c:2e3e|49189|"),
            r("200 EPRT command successful."),
            c("EPRT |1|10.1.2.3|2000|"),
            r("200 ok"),
            c("PORT 1,2,3,4,5,6"),
            r("500 Illegal PORT command."),
            c("PORT 300,2,3,4,5,6"),
            r("200 sure"),
            c("EPRT !2!not-an-ip!21!"),
            r("200 sure"),
        ]
    )
    assert [x["command"] for x in recs[2:]] == ["EPSV", "PORT", "EPRT", "EPRT", "PORT", "PORT", "EPRT"]
    assert dec.expected_data_channels == [
        (None, 57086, True),
        ("141.142.220.235", 33582, False),
        ("2001:470:1f11:81f:c999:d94:aa7c:2e3e", 49189, False),
        ("10.1.2.3", 2000, False),
    ]


def test_pipelined_commands_and_lowercase() -> None:
    recs, _ = all_modes(
        [
            r("220 ready"),
            (True, b"user anonymous\r\npass guest@\r\npwd\r\ncwd /pub\r\n"),
            (False, b'331 ok\r\n230 in\r\n257 "/" is cwd\r\n250 CWD ok\r\n'),
        ]
    )
    assert _pick(recs, "user", "command", "arg", "reply_code") == [
        ("anonymous", "USER", "anonymous", 331),
        ("anonymous", "PASS", HIDDEN, 230),
        ("anonymous", "PWD", None, 257),
        ("anonymous", "CWD", "/pub", 250),
    ]
    assert "guest@" not in repr(recs)


def test_bare_lf_and_close_flushes_unterminated_reply() -> None:
    recs, _ = run([(True, b"NOOP\n"), (False, b"200 ok")])
    assert _pick(recs, "command", "reply_code", "reply_msg") == [("NOOP", 200, "ok")]


def test_unanswered_commands_no_record() -> None:
    recs, _ = run([r("220 hi"), c("USER x"), c("QUIT")])
    assert recs == []


def test_auth_tls_stops_decoding() -> None:
    recs, _ = run(
        [
            r("220 hi"),
            c("AUTH TLS"),
            r("234 go ahead"),
            (True, b"\x16\x03\x01\x00\xff garbage"),
            (False, b"\x16\x03"),
        ]
    )
    assert _pick(recs, "command", "arg", "reply_code") == [("AUTH", "TLS", 234)]


def test_finished_after_auth_tls() -> None:
    """Once the channel is TLS nothing more is decoded, and the decoder says so: the flow
    inspector, which follows an FTP control connection to its end, stops there."""
    dec = FtpDecoder()
    for seg in [r("220 hi"), c("AUTH TLS")]:
        dec.feed(*seg, 1.0)
    assert not dec.finished
    dec.feed(*r("234 go ahead"), 2.0)
    assert dec.finished


def test_gap_resyncs() -> None:
    dec = FtpDecoder()
    dec.feed(True, b"USER a\r\nRETR fi", 1.0)
    assert dec.gap(True, 100, 2.0) == []
    dec.feed(True, b"le-tail\r\nNOOP\r\n", 3.0)
    assert dec.feed(False, b"200 ok\r\n", 4.0)[0]["command"] == "NOOP"


@pytest.mark.parametrize(
    ("segs", "name"),
    [
        ([(True, b"US3R x\r\n")], "FTP_bad_command"),
        ([(True, b"\x00\x01\r\n")], "FTP_bad_command"),
        ([(False, b"hello\r\n")], "FTP_bad_reply"),
        ([(False, b"22 short\r\n")], "FTP_bad_reply"),
        ([(False, b"220x\r\n")], "FTP_bad_reply"),
        ([(True, b"A" * (MAX_LINE + 2))], "FTP_line_too_long"),
        ([(True, b"NOOP\r\n" * (MAX_PENDING + 1))], "FTP_too_many_pending_commands"),
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
        b"USER a\r\n",
        b"PASS b\r\n",
        b"PASV\r\n",
        b"EPSV\r\n",
        b"PORT 1,2,3,4,5,6\r\n",
        b"EPRT |2|::1|5|\r\n",
        b"RETR x\r\n",
    ]
    + [
        b"220 hi\r\n",
        b"230-a\r\n",
        b"230 b\r\n",
        b"227 (1,2,3,4,5,6)\r\n",
        b"229 (|||7|)\r\n",
        b"150 (9 bytes)\r\n",
    ]
    + [b"226 ok\r\n", b"213 5\r\n", b"200 ok\r\n", b"\r\n"]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), _LINES), max_size=30), st.integers(0, 1000))
def test_random_sessions_split_invariant(segs: list[Seg], seed: int) -> None:
    try:
        base, dec = run(segs)
    except DecodeError:
        return
    recs, d2 = run(segs, "random", seed)
    assert recs == base and d2.expected_data_channels == dec.expected_data_channels
    assert "PASS b" not in repr(base)


# --- Zeek corpus --------------------------------------------------------
CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"  # ../shared, by path
ZEEK = CORPUS / "zeek"
CASES = [
    ("Traces/ftp/ipv4.pcap", "Baseline/scripts.base.protocols.ftp.ftp-ipv4"),
    ("Traces/ftp/ipv6.pcap", "Baseline/scripts.base.protocols.ftp.ftp-ipv6"),
    (
        "Traces/ftp/ftp-password-pass-command.pcap",
        "Baseline/scripts.base.protocols.ftp.ftp-password-pass-command",
    ),
    ("Traces/ftp/bruteforce.pcap", "Baseline/scripts.policy.protocols.ftp.bruteforce"),
]
FILE_COMMANDS = {"RETR", "STOR", "APPE", "STOU", "DELE"}




def _decode_pcap(path: Path) -> dict[tuple[str, int, str, int], tuple[list[dict[str, Any]], FtpDecoder]]:
    """Every port-21 connection: each direction in seq order (stopping at a gap), in capture order."""
    result = {}
    for key, segs in tcp_streams(path, (21,)).items():
        dec = FtpDecoder()
        recs: list[dict[str, Any]] = []
        try:
            for ts, is_orig, chunk in segs:
                recs += dec.feed(is_orig, chunk, ts)
        except DecodeError as e:  # reported by the corpus test, never expected here
            recs.append({"decode_error": e.name})
        recs += dec.close(0.0)
        result[key] = (recs, dec)
    return result


def _opt(v: str) -> str | None:
    return None if v == "-" else v


def _row_matches(z: dict[str, str], x: dict[str, Any]) -> bool:
    if x["command"] != z["command"] or x["user"] != z["user"] or x["reply_code"] != int(z["reply_code"]):
        return False
    fs = _opt(z["file_size"])
    if x["file_size"] != (int(fs) if fs else None):
        return False
    zarg = _opt(z["arg"])
    if x["command"] == "PASS":
        return bool(x["arg"] == HIDDEN)  # Zeek had password capture on; we never record it
    if x["command"] in FILE_COMMANDS and zarg and zarg.startswith("ftp://") and x["arg"]:
        # Zeek: ftp://<server>/<cwd>/<path>; we keep the path as sent
        return zarg.endswith("/" + str(x["arg"]).lstrip("/"))
    return bool(x["arg"] == zarg)


@pytest.mark.skipif(not ZEEK.exists(), reason="Zeek corpus absent")
def test_zeek_corpus_match_rate(capsys: pytest.CaptureFixture[str]) -> None:
    total = matched = msg_ok = 0
    chan_total = chan_found = learnt = 0
    lines = []
    for trace, base in CASES:
        decoded = _decode_pcap(ZEEK / trace)
        rows = zeek_rows(ZEEK / base / "ftp.log")
        t = m = 0
        by_conn: dict[tuple[str, int, str, int], list[dict[str, str]]] = {}
        for z in rows:
            k = (z["id.orig_h"], int(z["id.orig_p"]), z["id.resp_h"], int(z["id.resp_p"]))
            by_conn.setdefault(k, []).append(z)
        for k, zrows in by_conn.items():
            recs = decoded.get(k, ([], FtpDecoder()))[0]
            pos = 0
            for z in zrows:
                t += 1
                for j in range(pos, len(recs)):
                    if _row_matches(z, recs[j]):
                        m += 1
                        msg_ok += recs[j]["reply_msg"] == z["reply_msg"]
                        pos = j + 1
                        break
        # data channels vs the ftp-data connections of conn.log
        conn_log = ZEEK / base / "conn.log"
        errors = [x for recs, _ in decoded.values() for x in recs if "decode_error" in x]
        assert errors == [], trace
        if conn_log.exists():
            learnt += sum(len(dec.expected_data_channels) for _, dec in decoded.values())
            for z in zeek_rows(conn_log):
                if z["service"] != "ftp-data":
                    continue
                chan_total += 1
                rh, rp = z["id.resp_h"], int(z["id.resp_p"])
                ok = False
                for (ch, _cp, sh, _sp), (_, dec) in decoded.items():
                    for ip, port, passive in dec.expected_data_channels:
                        if port != rp:
                            continue
                        if passive and rh == sh and ip in (None, sh):
                            ok = True
                        if not passive and rh == ch and ip == ch:
                            ok = True
                chan_found += ok
        total += t
        matched += m
        lines.append(f"{trace}: {m}/{t}")
    rate = matched / total
    with capsys.disabled():
        print(f"\nFTP corpus match: {matched}/{total} = {rate:.1%} ({'; '.join(lines)})")
        print(f"reply_msg {msg_ok}/{matched}; data channels {chan_found}/{chan_total}, learnt {learnt}")
    assert total >= 40
    assert rate >= 0.95
    assert msg_ok == matched
    assert chan_found == chan_total == learnt
