"""What a hostile peer sends cannot make the agent write a record the wire refuses (the spool
would drop it as invalid, and the traffic would go unrecorded): a NUL in a URI, a command, a
server name or a mail header is written ``\\x00``; a capture whose clock steps back gives a
duration of 0, not a negative one (SCHEMA.md: last - first)."""

from __future__ import annotations

from typing import Any

from flow_paths import both_paths
from tcp_frames import Conn

from agent.pipeline import Pipeline
from wire.validate import validate_record

T0 = 1_700_000_000.0
CLIENT, SERVER = "192.0.2.10", "198.51.100.80"


def test_a_nul_in_a_uri_and_a_header_is_written_escaped() -> None:
    c = Conn(CLIENT, 40001, SERVER, 80)
    req = b"GET /a\x00b HTTP/1.1\r\nHost: ex\x00ample.com\r\nUser-Agent: t\x00/1\r\n\r\n"
    recs = both_paths(c.handshake() + c.exchange(req, b"HTTP/1.1 204 No\x00Content\r\n\r\n") + c.close(), T0)
    [http] = [r for r in recs if r["type"] == "http"]
    assert (http["uri"], http["host"], http["user_agent"]) == ("/a\\x00b", "ex\\x00ample.com", "t\\x00/1")


def test_a_nul_in_ftp_and_smtp_is_written_escaped() -> None:
    c = Conn(CLIENT, 40002, SERVER, 21)
    frames = c.handshake()
    for line, reply in ((b"USER an\x00on\r\n", b"331 ok\r\n"), (b"RETR a\x00b.txt\r\n", b"550 no\r\n")):
        frames += [c.s(b"220 ftp\r\n"), c.c()] if len(frames) == 3 else []
        frames += [c.c(line), c.s(), c.s(reply), c.c()]
    m = Conn(CLIENT, 40003, SERVER, 25)
    mail = (b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\x00there\r\n\r\nbody\r\n.\r\n")
    frames += m.handshake()
    talk = [(None, b"220 mx ESMTP\r\n"), (b"EHLO c\x00x\r\n", b"250 ok\r\n"),
            (b"MAIL FROM:<a@example.com>\r\n", b"250 ok\r\n"),
            (b"RCPT TO:<b@example.org>\r\n", b"250 ok\r\n"),
            (b"DATA\r\n", b"354 go\r\n"), (mail, b"250 queued\r\n"), (b"QUIT\r\n", b"221 bye\r\n")]
    for line, reply in talk:
        if line is not None:
            frames += [m.c(line), m.s()]
        frames += [m.s(reply), m.c()]
    recs = both_paths(frames + c.close() + m.close(), T0)
    assert [r["arg"] for r in recs if r["type"] == "ftp"] == ["an\\x00on", "a\\x00b.txt"]
    [smtp] = [r for r in recs if r["type"] == "smtp"]
    assert (smtp["helo"], smtp["subject"]) == ("c\\x00x", "hi\\x00there")


def test_a_clock_stepping_back_gives_no_negative_duration() -> None:
    c = Conn(CLIENT, 40004, SERVER, 8081)
    frames = c.handshake() + c.close()
    times = [T0 + 10.0, T0 + 10.1, T0 + 10.2, T0, T0 + 0.1, T0 + 0.2]  # the clock stepped back 10 s
    out: list[dict[str, Any]] = []
    p = Pipeline(out.extend)
    p.feed([(ts, 1, f) for ts, f in zip(times, frames, strict=True)])
    p.finish()
    [session] = [r for r in out if r["type"] == "session"]
    assert session["duration"] == 0.0
    for r in out:
        validate_record(r)
