"""Tests for agent.protocols.smtp (hand-built sessions + Zeek corpus comparison)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_streams import Seg, feed_split, state_of, tcp_streams, zeek_rows

from agent.decode.errors import DecodeError
from agent.protocols.base import dot_end
from agent.protocols.smtp import BODY_KEEP, SmtpDecoder, decode_rfc2047

C, S = True, False


def run(
    segs: list[Seg], mode: str = "whole", seed: int = 0, dec: SmtpDecoder | None = None
) -> list[dict[str, Any]]:
    return feed_split(dec or SmtpDecoder(), segs, mode, seed)


def all_modes(segs: list[Seg]) -> list[dict[str, Any]]:
    base = run(segs)
    assert run(segs, "bytes") == base
    for seed in range(5):
        assert run(segs, "random", seed) == base
    return base


GREET: list[Seg] = [
    (S, b"220 mx.example ESMTP\r\n"),
    (C, b"EHLO client.example\r\n"),
    (S, b"250-mx\r\n250 PIPELINING\r\n"),
]

MSG1 = (
    b'From: "Alice" <alice@example.com>\r\n'
    b'To: bob@example.com, "Carol, C." <carol@example.com>\r\n'
    b"Cc: dave@example.com\r\n"
    b"Subject: =?UTF-8?B?5L2g5aW9?= world\r\n"
    b"\r\n"
    b"Hello\r\n"
    b"..dotted line\r\n"
    b".\r\n"
)


def transaction(
    msg: bytes = MSG1,
    frm: str = "alice@example.com",
    rcpts: tuple[str, ...] = ("bob@example.com", "carol@example.com"),
) -> list[Seg]:
    segs: list[Seg] = [(C, f"MAIL FROM:<{frm}> SIZE=100\r\n".encode()), (S, b"250 ok\r\n")]
    for r in rcpts:
        segs += [(C, f"RCPT TO:<{r}>\r\n".encode()), (S, b"250 ok\r\n")]
    segs += [(C, b"DATA\r\n"), (S, b"354 go\r\n"), (C, msg), (S, b"250 queued\r\n")]
    return segs


def test_basic_transaction() -> None:
    recs = all_modes(GREET + transaction() + [(C, b"QUIT\r\n"), (S, b"221 bye\r\n")])
    assert len(recs) == 1
    r = recs[0]
    assert r["trans_depth"] == 1
    assert r["helo"] == "client.example"
    assert r["mailfrom"] == "alice@example.com"
    assert r["rcptto"] == ["bob@example.com", "carol@example.com"]
    assert r["from"] == '"Alice" <alice@example.com>'
    assert r["to"] == ["bob@example.com", '"Carol, C." <carol@example.com>']
    assert r["cc"] == ["dave@example.com"]
    assert r["subject"] == "你好 world"
    assert r["user"] is None and r["tls"] is False
    assert not any(k in r for k in ("uid", "src_ip", "src_port", "dst_ip", "dst_port", "proto"))


def test_body_unstuffed_and_kept() -> None:
    dec = SmtpDecoder()
    run(GREET + transaction(), dec=dec)
    assert dec.last_body == b"Hello\r\n.dotted line\r\n"
    big = b"Subject: x\r\n\r\n" + b"A" * (3 * BODY_KEEP) + b"\r\n.\r\n"
    dec = SmtpDecoder()
    recs = run(GREET + transaction(big), dec=dec)
    assert recs[0]["subject"] == "x"
    assert dec.last_body == b"A" * BODY_KEEP


def test_gb2312_q_subject_and_rfc2047() -> None:
    q = "".join(f"={b:02X}" for b in "中文邮件".encode("gb2312"))
    name = base64.b64encode("张三".encode("gbk")).decode()
    msg = f"Subject: =?GB2312?Q?{q}?=\r\nFrom: =?gbk?B?{name}?= <z@x.cn>\r\n\r\nhi\r\n.\r\n"
    r = all_modes(GREET + transaction(msg.encode()))[0]
    assert r["subject"] == "中文邮件"
    assert r["from"] == "张三 <z@x.cn>"
    # adjacent encoded-words: whitespace between them is dropped (RFC 2047 §6.2)
    assert decode_rfc2047("=?utf-8?Q?a_b?= =?utf-8?Q?c?=") == "a bc"
    assert decode_rfc2047("=?gb18030?B?" + base64.b64encode("𠀀".encode("gb18030")).decode() + "?=") == "𠀀"
    assert decode_rfc2047("=?x-unknown?Q?ok?=") == "ok"
    assert decode_rfc2047("plain") == "plain"


def test_folded_header() -> None:
    msg = b"Subject: part one\r\n\tpart two\r\nTo: a@x,\r\n b@x\r\n\r\n.\r\n"
    r = all_modes(GREET + transaction(msg))[0]
    assert r["subject"] == "part one part two"
    assert r["to"] == ["a@x", "b@x"]


def test_two_transactions() -> None:
    m2 = b"Subject: second\r\n\r\nbody\r\n.\r\n"
    recs = all_modes(GREET + transaction() + transaction(m2, "x@y", ("z@y",)) + [(C, b"QUIT\r\n")])
    assert [r["trans_depth"] for r in recs] == [1, 2]
    assert recs[1]["mailfrom"] == "x@y" and recs[1]["rcptto"] == ["z@y"] and recs[1]["subject"] == "second"
    assert recs[1]["helo"] == "client.example" and recs[1]["to"] == []


PASSWORD = "s3cr3t-Pa55"


def _no_secret(dec: SmtpDecoder, recs: list[dict[str, Any]]) -> None:
    b64pw = base64.b64encode(PASSWORD.encode()).decode()
    state = repr(recs) + repr(state_of(dec)) + repr(state_of(dec._msg) if dec._msg else "")
    assert PASSWORD not in state and b64pw not in state
    assert PASSWORD.encode() not in bytes(dec._cbuf)


def test_auth_plain() -> None:
    tok = base64.b64encode(b"\0alice\0" + PASSWORD.encode())
    segs = GREET + [(C, b"AUTH PLAIN " + tok + b"\r\n"), (S, b"235 ok\r\n")] + transaction()
    recs = all_modes(segs)
    assert recs[0]["user"] == "alice"
    dec = SmtpDecoder()
    _no_secret(dec, run(segs, dec=dec))
    # without an initial response: the token comes after 334
    segs2 = (
        GREET
        + [(C, b"AUTH PLAIN\r\n"), (S, b"334 \r\n"), (C, tok + b"\r\n"), (S, b"235 ok\r\n")]
        + transaction()
    )
    dec = SmtpDecoder()
    recs = run(segs2, dec=dec)
    assert recs[0]["user"] == "alice" and recs[0]["mailfrom"] == "alice@example.com"
    _no_secret(dec, recs)


def test_auth_login() -> None:
    u = base64.b64encode(b"bob@example.com")
    p = base64.b64encode(PASSWORD.encode())
    segs = GREET + [
        (C, b"AUTH LOGIN\r\n"),
        (S, b"334 VXNlcm5hbWU6\r\n"),
        (C, u + b"\r\n"),
        (S, b"334 UGFzc3dvcmQ6\r\n"),
        (C, p + b"\r\n"),
        (S, b"235 Authentication successful\r\n"),
    ]
    recs = all_modes(segs + [(C, b"QUIT\r\n")])
    assert len(recs) == 1 and recs[0]["user"] == "bob@example.com" and recs[0]["mailfrom"] is None
    dec = SmtpDecoder()
    recs = run(segs + transaction(), dec=dec)
    assert recs[0]["user"] == "bob@example.com" and recs[0]["rcptto"]
    _no_secret(dec, recs)
    # mid-exchange the password line has been consumed, not kept
    dec = SmtpDecoder()
    for is_orig, data in segs:
        dec.feed(is_orig, data, 1.0)
    _no_secret(dec, [])


def test_auth_refused_mechanism() -> None:
    segs = GREET + [(C, b"AUTH LOGIN\r\n"), (S, b"504 unrecognized\r\n")] + transaction()
    recs = all_modes(segs)
    assert recs[-1]["mailfrom"] == "alice@example.com" and recs[-1]["user"] is None


def test_starttls() -> None:
    segs = GREET + [
        (C, b"STARTTLS\r\n"),
        (S, b"220 2.0.0 Ready to start TLS\r\n"),
        (C, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256))),
        (S, b"\x16\x03\x03\x00\x5a\x02\x00\x00\x56" + bytes(200)),
        (C, b"MAIL FROM:<hidden@x>\r\n"),
    ]
    recs = all_modes(segs)
    assert len(recs) == 1
    assert recs[0]["tls"] is True and recs[0]["helo"] == "client.example" and recs[0]["mailfrom"] is None


def test_starttls_refused_keeps_decoding() -> None:
    segs = GREET + [(C, b"STARTTLS\r\n"), (S, b"454 TLS not available\r\n")] + transaction()
    recs = all_modes(segs)
    assert recs[0]["tls"] is False and recs[0]["mailfrom"] == "alice@example.com"


def test_bdat() -> None:
    part1 = b"From: a@x\r\nTo: b@x\r\nSub"
    part2 = b"ject: chunked\r\n\r\n.not unstuffed\r\n"
    segs = GREET + [
        (C, b"MAIL FROM:<a@x>\r\n"),
        (S, b"250 ok\r\n"),
        (C, b"RCPT TO:<b@x>\r\n"),
        (S, b"250 ok\r\n"),
        (C, b"BDAT " + str(len(part1)).encode() + b"\r\n" + part1),
        (S, b"250 got\r\n"),
        (C, b"BDAT " + str(len(part2)).encode() + b" LAST\r\n" + part2),
        (S, b"250 queued\r\n"),
        (C, b"QUIT\r\n"),
    ]
    dec = SmtpDecoder()
    assert run(segs, dec=dec) == all_modes(segs)
    recs = all_modes(segs)
    assert len(recs) == 1
    r = recs[0]
    assert (r["from"], r["to"], r["subject"], r["mailfrom"], r["rcptto"]) == (
        "a@x",
        ["b@x"],
        "chunked",
        "a@x",
        ["b@x"],
    )
    assert dec.last_body == b".not unstuffed\r\n"
    # BDAT 0 LAST ends an empty message
    segs0 = GREET + [(C, b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nBDAT 0 LAST\r\n")]
    assert all_modes(segs0)[0]["rcptto"] == ["b@x"]


def test_pipelining() -> None:
    segs = GREET + [
        (C, b"MAIL FROM:<p@x>\r\nRCPT TO:<q@x>\r\nRCPT TO:<r@x>\r\nDATA\r\n"),
        (S, b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
        (C, b"Subject: piped\r\n\r\nx\r\n.\r\nMAIL FROM:<p2@x>\r\nRCPT TO:<q@x>\r\nDATA\r\n"),
        (S, b"250 queued\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
        (C, b"Subject: piped2\r\n\r\n.\r\nQUIT\r\n"),
    ]
    recs = all_modes(segs)
    assert [(r["trans_depth"], r["mailfrom"], r["rcptto"], r["subject"]) for r in recs] == [
        (1, "p@x", ["q@x", "r@x"], "piped"),
        (2, "p2@x", ["q@x"], "piped2"),
    ]


def test_data_refused_and_one_sided() -> None:
    segs = GREET + [
        (C, b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n"),
        (S, b"250 ok\r\n250 ok\r\n554 no valid recipients\r\n"),
        (C, b"QUIT\r\n"),
    ]
    recs = all_modes(segs)
    assert len(recs) == 1 and recs[0]["subject"] is None and recs[0]["mailfrom"] == "a@x"
    # client side only: records still come out
    one = [s for s in GREET + transaction() + transaction(b"Subject: 2\r\n\r\n.\r\n") if s[0]]
    recs = all_modes(one)
    assert [r["subject"] for r in recs] == ["你好 world", "2"]


def test_close_mid_message_and_rset() -> None:
    segs = GREET + [
        (C, b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n"),
        (S, b"354 go\r\n"),
        (C, b"Subject: cut\r\n"),
    ]
    recs = all_modes(segs)
    assert recs[0]["subject"] == "cut"
    assert all_modes(GREET + [(C, b"NOOP\r\nQUIT\r\n")]) == []


def test_gap_resyncs() -> None:
    dec = SmtpDecoder()
    out: list[dict[str, Any]] = []
    for is_orig, data in GREET:
        out += dec.feed(is_orig, data, 0.5)
    dec.feed(C, b"MAIL FROM:<a@x>\r\nRCPT TO:<b", 1.0)
    dec.gap(C, 10, 1.0)
    out += dec.feed(C, b"garbage\r\nRCPT TO:<c@x>\r\n", 2.0)
    out += dec.close(3.0)
    assert out[0]["rcptto"] == ["c@x"]


def test_errors() -> None:
    with pytest.raises(DecodeError) as e:
        SmtpDecoder().feed(C, b"\x00\x01 bad\r\n", 1.0)
    assert e.value.name == "smtp_invalid_command"
    with pytest.raises(DecodeError) as e:
        SmtpDecoder().feed(S, b"hello\r\n", 1.0)
    assert e.value.name == "smtp_invalid_reply"
    with pytest.raises(DecodeError) as e:
        SmtpDecoder().feed(C, b"MAIL " + b"A" * 20000, 1.0)
    assert e.value.name == "smtp_line_too_long"
    with pytest.raises(DecodeError) as e:
        SmtpDecoder().feed(C, b"BDAT -5\r\n", 1.0)
    assert e.value.name == "smtp_invalid_bdat_command"


# --- the whole connection: bodies past what is read are only counted (issue 20) ----------------


def _dot_end_by_lines(buf: bytes, bol: bool) -> tuple[int, int]:
    """dot_end's definition, line by line: the first line holding only "." (CR LF or LF)."""
    starts = ([0] if bol else []) + [i + 1 for i, c in enumerate(buf) if c == 0x0A]
    for p in starts:
        rest = buf[p:]
        if rest.startswith(b".\r\n"):
            return p, 3
        if rest.startswith(b".\n"):
            return p, 2
        if rest in (b".", b".\r"):
            return p, 0
    return len(buf), 0


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"x", b"..", b"\r\n.", b".\r\n"]), max_size=16),
       st.booleans())
def test_dot_end_finds_the_first_dot_line(parts: list[bytes], bol: bool) -> None:
    buf = b"".join(parts)
    assert dot_end(bytearray(buf), bol) == _dot_end_by_lines(buf, bol)


def _message(body_lines: int) -> bytes:
    lines = [b"Subject: long one\r\n", b"\r\n"]
    for i in range(body_lines):
        # stuffed dots, a stuffed lone ".", and a line ending in CR CR LF
        line = b"..line %d\r\n" % i if i % 5 == 0 else b"..\r\n" if i % 7 == 0 else b"text %d\r\r\n" % i
        lines.append(line)
    return b"".join(lines) + b".\r\n"


def test_a_body_past_the_kept_prefix_is_counted_not_kept() -> None:
    """Past its headers and kept prefix a message's bytes are only searched for the "." line:
    the decoder holds at most the two bytes that may begin it, however long the body, and the
    end is found however the stream is cut (byte by byte, random pieces, CR LF split)."""
    msg = _message(3000)  # ~30 KB: past BODY_KEEP and the inspection depth
    segs = GREET + transaction(msg) + transaction(b"Subject: next\r\n\r\n.\r\n", "b@x", ("c@x",))
    recs = all_modes(segs)
    assert [(r["trans_depth"], r["subject"], r["mailfrom"]) for r in recs] == [
        (1, "long one", "alice@example.com"), (2, "next", "b@x")]
    dec = SmtpDecoder()
    for is_orig, data in GREET + transaction(msg)[:-2]:  # up to DATA's 354
        dec.feed(is_orig, data, 1.0)
    body = _message(100_000)  # ~1 MB, in Ethernet-sized pieces
    body = body[body.index(b"\r\n\r\n") + 4:]
    dec.feed(C, b"Subject: big\r\n\r\n", 2.0)
    text, end = body[:-3], body[-3:]
    assert end == b".\r\n"
    for i in range(0, len(text), 1448):
        assert dec.feed(C, text[i:i + 1448], 2.0) == []
        assert dec._msg is not None and len(dec._msg.body) <= BODY_KEEP
        if i > BODY_KEEP + 100:
            assert len(dec._cbuf) <= 2
    [rec] = dec.feed(C, end, 3.0)
    assert rec["subject"] == "big"
    assert len(dec.last_body) == BODY_KEEP and dec.last_body.startswith(b".line 0\r\ntext 1\r\r\n")


def test_without_a_filter_no_body_is_kept() -> None:
    """body_keep=0 (the registry's choice when no filter reads bodies): the same records, and
    past the headers every body byte is only counted."""
    segs = GREET + transaction() + transaction(_message(500), "b@x", ("c@x",))
    dec = SmtpDecoder(body_keep=0)
    assert run(segs, dec=dec) == all_modes(segs)
    assert dec.last_body == b""


def test_bdat_chunks_are_offered_for_skipping() -> None:
    """A BDAT chunk's size is known (RFC 3030 §2): once its message's headers and kept prefix
    are read, the rest is `skippable` and `skip` counts it off; the record comes out of the
    skip that ends the LAST chunk, and the reply to BDAT LAST answers the message."""
    msg = b"Subject: chunked\r\nFrom: a@x\r\n\r\n" + b"y" * 50_000
    dec = SmtpDecoder(body_keep=100)
    for is_orig, data in GREET + [(C, b"MAIL FROM:<a@x>\r\n"), (S, b"250 ok\r\n"),
                                  (C, b"RCPT TO:<b@x>\r\n"), (S, b"250 ok\r\n")]:
        assert dec.feed(is_orig, data, 1.0) == []
    assert dec.skippable(C) == 0
    head = b"BDAT %d LAST\r\n" % len(msg)
    assert dec.feed(C, head + msg[:1000], 2.0) == []
    left = len(msg) - 1000
    assert dec.skippable(C) == left and dec.skippable(S) == 0 and dec.exempt(C) == 0
    assert dec.skip(C, left - 10, 2.5) == []
    [rec] = dec.skip(C, 10, 3.0)
    assert (rec["subject"], rec["trans_depth"], dec.skippable(C)) == ("chunked", 1, 0)
    assert dec.last_body == b"y" * 100
    out = dec.feed(S, b"250 2.0.0 queued\r\n", 3.5)
    out += dec.feed(C, b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n", 4.0)
    out += dec.feed(S, b"250 ok\r\n250 ok\r\n354 go\r\n", 4.5)
    out += dec.feed(C, b"Subject: two\r\n\r\n.\r\n", 5.0)
    assert [(r["subject"], r["trans_depth"]) for r in out] == [("two", 2)]


def test_refused_data_after_a_bdat_message_is_not_taken_for_a_message() -> None:
    """The reply to BDAT LAST is the message's: no reply is awaited for a "." that was never
    sent, so a later refused DATA (554) is paired with its own reply and the commands after it
    are commands, not message text."""
    segs = GREET + [
        (C, b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nBDAT 14 LAST\r\nSubject: one\r\n"),
        (S, b"250 ok\r\n250 ok\r\n250 queued\r\n"),
        (C, b"MAIL FROM:<a@x>\r\n"), (S, b"250 ok\r\n"),
        (C, b"RCPT TO:<nobody@x>\r\n"), (S, b"550 no such user\r\n"),
        (C, b"DATA\r\n"), (S, b"554 no valid recipients\r\n"),
        (C, b"MAIL FROM:<z@x>\r\n"), (S, b"250 ok\r\n"),
        (C, b"RCPT TO:<b@x>\r\n"), (S, b"250 ok\r\n"),
        (C, b"DATA\r\n"), (S, b"354 go\r\n"),
        (C, b"Subject: three\r\n\r\n.\r\n"), (S, b"250 queued\r\n"),
    ]
    recs = all_modes(segs)
    assert [(r["trans_depth"], r["mailfrom"], r["subject"]) for r in recs] == [
        (1, "a@x", "one"), (2, "a@x", None), (2, "z@x", "three")]


def test_finished_after_starttls() -> None:
    dec = SmtpDecoder()
    for is_orig, data in GREET + [(C, b"STARTTLS\r\n")]:
        dec.feed(is_orig, data, 1.0)
    assert not dec.finished
    dec.feed(S, b"220 go ahead\r\n", 2.0)
    assert dec.finished and dec.tls


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=64)), max_size=12))
def test_random_bytes_only_decode_error(segs: list[Seg]) -> None:
    dec = SmtpDecoder()
    try:
        for i, (is_orig, data) in enumerate(segs):
            dec.feed(is_orig, data, float(i))
        dec.close(99.0)
    except DecodeError:
        pass


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"EHLO x\r\n",
                b"MAIL FROM:<a@b>\r\n",
                b"RCPT TO:<c@d>\r\n",
                b"DATA\r\n",
                b"BDAT 3\r\n",
                b"BDAT 2 LAST\r\n",
                b"AUTH PLAIN\r\n",
                b"AUTH LOGIN\r\n",
                b"AUTH XOAUTH2\r\n",
                b"STARTTLS\r\n",
                b"Subject: =?utf-8?B?5L2g?=\r\n",
                b".\r\n",
                b"\r\n",
                b"..x\r\n",
                b"=?gbk?Q?=D6=D0?=\r\n",
                b"\x16\x03\x01",
                b"*\r\n",
                b"QUIT\r\n",
            ]
        ),
        max_size=20,
    ),
    st.lists(
        st.sampled_from([b"250 ok\r\n", b"354 go\r\n", b"334 \r\n", b"220 go\r\n", b"535 no\r\n"]), max_size=8
    ),
)
def test_random_commands_only_decode_error(cmds: list[bytes], replies: list[bytes]) -> None:
    dec = SmtpDecoder()
    try:
        for c in cmds:
            dec.feed(C, c, 1.0)
            if replies:
                dec.feed(S, replies.pop(), 1.0)
        dec.close(2.0)
    except DecodeError:
        pass


# --- Zeek corpus ------------------------------------------------------------
CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"  # ../shared, by path
FIELDS = ["helo", "mailfrom", "rcptto", "from", "to", "cc", "subject", "tls"]


def _decode_pcap(path: Path) -> list[dict[str, Any]]:
    """Every SMTP connection (responder port 25/587/2525), each fed as the flow table would."""
    out: list[dict[str, Any]] = []
    for segs in tcp_streams(path, (25, 587, 2525)).values():
        dec = SmtpDecoder()
        recs: list[dict[str, Any]] = []
        try:
            for ts, d, chunk in segs:
                recs += dec.feed(d, chunk, ts)
        except DecodeError:
            pass
        recs += dec.close(0.0)
        out += recs
    return out


def _norm(f: str, v: Any) -> Any:
    if f in ("rcptto", "to", "cc"):
        if v in (None, "-", "(empty)"):
            return []
        return sorted(v.split(",") if isinstance(v, str) else v)
    if f == "tls":
        return v in (True, "T")
    return None if v == "-" else v


def _corpus_cases() -> list[tuple[str, str]]:
    if not (CORPUS / "manifest.json").exists():
        return []
    man = json.loads((CORPUS / "manifest.json").read_text())
    out = []
    for e in man["zeek"]:
        for x in e["expected"]:
            if x["path"].endswith("/smtp.log") and len(e["traces"]) == 1:
                out.append((e["traces"][0]["path"], x["path"]))
    return out


@pytest.mark.skipif(not CORPUS.exists(), reason="corpus absent")
def test_zeek_corpus(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("dpkt")
    total = matched = 0
    report = []
    cases = _corpus_cases()
    assert cases
    for trace, log in cases:
        rows = zeek_rows(CORPUS / log)
        got = _decode_pcap(CORPUS / trace)
        for i, row in enumerate(rows):
            want = {f: _norm(f, row.get(f, "-")) for f in FIELDS}
            # pair in order of appearance; Zeek writes one row per transaction too
            have = {f: _norm(f, got[i].get(f)) for f in FIELDS} if i < len(got) else None
            total += len(FIELDS)
            if have is None:
                report.append(f"{trace} row {i}: missing")
                continue
            for f in FIELDS:
                if have[f] == want[f]:
                    matched += 1
                else:
                    report.append(f"{trace} row {i} {f}: zeek={want[f]!r} ours={have[f]!r}")
        if len(got) != len(rows):
            report.append(f"{trace}: {len(got)} records vs {len(rows)} zeek rows")
    rate = matched / total
    with capsys.disabled():
        print(f"\nsmtp corpus: {len(cases)} traces, {matched}/{total} fields match ({rate:.1%})")
        for line in report:
            print("  " + line)
    assert rate >= 0.95
