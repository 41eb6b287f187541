"""Captures of long command-protocol connections, for the tests that follow them whole (issue 20).

A mass mailer that authenticates and sends 150 messages, a mailbox session that downloads
megabytes over POP3 or IMAP, an FTP control connection with a thousand commands: each is
built as a conversation (`Turn`: who speaks, what bytes), then as the frames of a real TCP
connection (`Conversation.frames`: handshake, segments of at most `mss` bytes, the peer's
ACKs, FIN), and written as a pcap for `edgeaudit-agent replay` when a test wants the CLI.
Every conversation is what a real client and server say (Postfix, Dovecot, vsftpd
replies), well-formed: what the tests expect of the decoders comes with it (`expected`).

The frames come from `tests/agent/flows/tcp_frames.py` (struct-built, checksums right).
"""

from __future__ import annotations

import base64
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "flows"))
from tcp_frames import Conn  # noqa: E402

Turn = tuple[bool, bytes]  # (from the client, bytes)
T0 = 1_700_000_000.0
MSS = 1448  # an Ethernet path's TCP segment size with timestamps

_WORDS = ("the", "quarterly", "report", "is", "attached", "please", "review", "figures", "before", "friday",
          "meeting", "budget", "invoice", "shipment", "customer", "order", "schedule", "update", "thanks",
          "regards", "project", "team", "network", "office", "printer", "holiday", "notice", "contract",
          "signed", "delivery", "warehouse")


@dataclass
class Conversation:
    """One TCP connection's conversation, and what a decoder must make of it."""

    turns: list[Turn]
    client: str = "192.168.10.23"
    cport: int = 51234
    server: str = "203.0.113.25"
    sport: int = 25
    expected: list[dict[str, Any]] = field(default_factory=list)

    def frames(self, mss: int = MSS) -> list[bytes]:
        """Ethernet frames: handshake, each turn in segments of at most `mss` bytes (the peer
        acknowledging every second one, and the next turn the rest), then FIN both ways."""
        c = Conn(self.client, self.cport, self.server, self.sport, cisn=0x7F000000, sisn=0xFFFFF000)
        out = c.handshake()
        for from_client, data in self.turns:
            segs = [data[i:i + mss] for i in range(0, len(data), mss)]
            for k, seg in enumerate(segs):
                out.append(c.c(seg) if from_client else c.s(seg))
                if k % 2 == 1 and k + 1 < len(segs):
                    out.append(c.s() if from_client else c.c())  # delayed ACK: every second segment
        return out + c.close()

    def timed(self, t0: float = T0, step: float = 0.001, mss: int = MSS) -> list[tuple[float, int, bytes]]:
        """(ts, link type, frame) for `Pipeline.feed`."""
        return [(t0 + i * step, 1, f) for i, f in enumerate(self.frames(mss))]

    def write_pcap(self, path: Path, t0: float = T0, step: float = 0.001) -> int:
        """The frames as a classic pcap; returns the packet count."""
        import dpkt

        timed = self.timed(t0, step)
        with path.open("wb") as f:
            w = dpkt.pcap.Writer(f, linktype=1)
            for ts, _, frame in timed:
                w.writepkt(frame, ts=ts)
        return len(timed)

    def client_bytes(self) -> int:
        return sum(len(d) for c, d in self.turns if c)

    def server_bytes(self) -> int:
        return sum(len(d) for c, d in self.turns if not c)


def _lines(rng: random.Random, size: int, dot_every: int = 0) -> list[bytes]:
    """Text lines (at most 76 characters) of about `size` bytes with their CRLFs; every
    `dot_every`th line starts with "." (a line the sender's SMTP must dot-stuff)."""
    out: list[bytes] = []
    n = 0
    while n < size:
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 11))]
        line = " ".join(words).capitalize()[:76]
        if dot_every and len(out) % dot_every == dot_every - 1:
            line = "." + line if len(out) // dot_every % 2 else "."  # ".text", or a lone "."
        out.append(line.encode() + b"\r\n")
        n += len(out[-1])
    return out


def mail_message(i: int, sender: str, rcpts: list[str], subject: str, body_size: int,
                 rng: random.Random, *, attachment: int = 0, dot_every: int = 0) -> bytes:
    """An RFC 5322 message (CRLF line ends, not dot-stuffed): headers, a text part of about
    `body_size` bytes, and `attachment` bytes of base64 in a MIME part when asked."""
    head = (f"Date: Tue, 14 Nov 2023 10:{i // 60 % 60:02d}:{i % 60:02d} +0800\r\n"
            f"From: Alice <{sender}>\r\n"
            f"To: {', '.join(rcpts)}\r\n"
            f"Subject: {subject}\r\n"
            f"Message-ID: <{i}.{rng.getrandbits(48):x}@client.lan>\r\n"
            "MIME-Version: 1.0\r\n").encode()
    text = b"".join(_lines(rng, body_size, dot_every))
    if not attachment:
        return head + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + text
    blob = base64.encodebytes(rng.randbytes(attachment * 3 // 4)).replace(b"\n", b"\r\n")
    return (head + b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
            b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + text
            + b"--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + blob + b"--b1--\r\n")


def dot_stuffed(message: bytes) -> bytes:
    """`message` as DATA carries it (RFC 5321 §4.5.2): a leading "." doubled, then "." CRLF."""
    lines = message.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines) + b".\r\n"


def smtp_mass_mail(n: int = 150, rcpts: int = 5, *, style: str = "sequential", user: str = "alice",
                   body_size: int = 2500, seed: int = 1, keyword_at: int | None = None,
                   keyword: str = "", big_at: tuple[int, ...] = (7,), big: int = 40_000,
                   dot_every: int = 9, starttls_after: bool = False,
                   body_lines: dict[int, tuple[bytes, bytes]] | None = None) -> Conversation:
    """An authenticated client sending `n` messages of `rcpts` recipients each.

    `style`: "sequential" (each command waits for its reply), "pipelining" (RFC 2920: MAIL,
    the RCPTs and DATA in one segment, their replies in one), "bdat" (RFC 3030 CHUNKING: MAIL,
    RCPTs and ``BDAT n LAST`` with the message, pipelined). Message `keyword_at` (1-based)
    has `keyword` in its Subject; the messages in `big_at` carry a `big`-byte attachment
    (past the inspection depth by itself); every `dot_every`th body line starts with ".".
    `starttls_after`: after the messages, STARTTLS instead of QUIT (the caller adds the TLS).
    `body_lines`: message number -> (a line put first in its body, one put last).
    """
    rng = random.Random(seed)
    sender = f"{user}@example.org"
    t: list[Turn] = [
        (False, b"220 mx.example.org ESMTP Postfix (Debian/GNU)\r\n"),
        (True, b"EHLO client.lan\r\n"),
        (False, b"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n"
                b"250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-CHUNKING\r\n"
                b"250 SMTPUTF8\r\n"),
        (True, b"AUTH LOGIN\r\n"), (False, b"334 VXNlcm5hbWU6\r\n"),
        (True, base64.b64encode(user.encode()) + b"\r\n"), (False, b"334 UGFzc3dvcmQ6\r\n"),
        (True, base64.b64encode(b"w0nderland-Pa55") + b"\r\n"),
        (False, b"235 2.7.0 Authentication successful\r\n"),
    ]
    expected: list[dict[str, Any]] = []
    for i in range(1, n + 1):
        to = [f"user{(i * rcpts + k) % 997}@example.net" for k in range(rcpts)]
        subject = f"Report {i} of {n}" + (f" {keyword}" if i == keyword_at else "")
        msg = mail_message(i, sender, to, subject, body_size, rng, dot_every=dot_every,
                           attachment=big if i in big_at else 0)
        if body_lines and i in body_lines:
            first, last = body_lines[i]
            head, sep, body = msg.partition(b"\r\n\r\n")
            msg = head + sep + first + b"\r\n" + body + last + b"\r\n"
        mail = f"MAIL FROM:<{sender}> SIZE={len(msg)}\r\n".encode()
        rcpt = [f"RCPT TO:<{r}>\r\n".encode() for r in to]
        queued = f"250 2.0.0 Ok: queued as {i:05X}A{rng.getrandbits(20):05X}\r\n".encode()
        if style == "sequential":
            t += [(True, mail), (False, b"250 2.1.0 Ok\r\n")]
            for r in rcpt:
                t += [(True, r), (False, b"250 2.1.5 Ok\r\n")]
            t += [(True, b"DATA\r\n"), (False, b"354 End data with <CR><LF>.<CR><LF>\r\n"),
                  (True, dot_stuffed(msg)), (False, queued)]
        elif style == "pipelining":
            t += [(True, mail + b"".join(rcpt) + b"DATA\r\n"),
                  (False, b"250 2.1.0 Ok\r\n" + b"250 2.1.5 Ok\r\n" * rcpts
                   + b"354 End data with <CR><LF>.<CR><LF>\r\n"),
                  (True, dot_stuffed(msg)), (False, queued)]
        elif style == "bdat":
            t += [(True, mail + b"".join(rcpt) + f"BDAT {len(msg)} LAST\r\n".encode() + msg),
                  (False, b"250 2.1.0 Ok\r\n" + b"250 2.1.5 Ok\r\n" * rcpts + queued)]
        else:
            raise ValueError(style)
        expected.append({"trans_depth": i, "helo": "client.lan", "mailfrom": sender, "rcptto": to,
                         "from": f"Alice <{sender}>", "to": to, "subject": subject, "user": user,
                         "tls": False})
    if starttls_after:
        t += [(True, b"STARTTLS\r\n"), (False, b"220 2.0.0 Ready to start TLS\r\n")]
    else:
        t += [(True, b"QUIT\r\n"), (False, b"221 2.0.0 Bye\r\n")]
    return Conversation(t, expected=expected)


def pop3_download(n: int = 20, size: int = 100_000, *, user: str = "alice", seed: int = 2,
                  gssapi: int = 0) -> Conversation:
    """A Dovecot POP3 session: CAPA, USER/PASS, STAT, LIST, UIDL, then RETR and DELE of `n`
    messages of about `size` bytes each (their bodies hold lines that look like POP3: "+OK",
    "-ERR", lone "." lines stuffed), a TOP, NOOP and QUIT. `gssapi`: first an AUTH GSSAPI
    whose Kerberos token is that many base64 bytes (a user in many groups: Windows allows
    48 KB), refused, as a client that tries Kerberos first does."""
    rng = random.Random(seed)
    msgs = [mail_message(i, "bob@example.net", [f"{user}@example.org"], f"Message {i}", size // 4, rng,
                         attachment=size * 3 // 4, dot_every=7)
            + b"+OK not a status line\r\n-ERR nor this\r\n" for i in range(1, n + 1)]
    t: list[Turn] = [
        (False, b"+OK Dovecot (Debian) ready.\r\n"),
        (True, b"CAPA\r\n"),
        (False, b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nUSER\r\nSASL PLAIN GSSAPI\r\n.\r\n"),
    ]
    commands = ["CAPA"]
    if gssapi:
        token = base64.b64encode(rng.randbytes(gssapi * 3 // 4))
        t += [(True, b"AUTH GSSAPI\r\n"), (False, b"+ \r\n"), (True, token + b"\r\n"),
              (False, b"-ERR [AUTH] Authentication failed.\r\n")]
        commands.append("AUTH")
    t += [
        (True, f"USER {user}\r\n".encode()), (False, b"+OK\r\n"),
        (True, b"PASS w0nderland-Pa55\r\n"), (False, b"+OK Logged in.\r\n"),
        (True, b"STAT\r\n"), (False, f"+OK {n} {sum(map(len, msgs))}\r\n".encode()),
        (True, b"LIST\r\n"),
        (False, f"+OK {n} messages:\r\n".encode()
         + b"".join(f"{i} {len(m)}\r\n".encode() for i, m in enumerate(msgs, 1)) + b".\r\n"),
        (True, b"UIDL\r\n"),
        (False, b"+OK\r\n" + b"".join(f"{i} 0000{i:04d}5f3a\r\n".encode() for i in range(1, n + 1))
         + b".\r\n"),
    ]
    for i, m in enumerate(msgs, 1):
        t += [(True, f"RETR {i}\r\n".encode()), (False, f"+OK {len(m)} octets\r\n".encode() + dot_stuffed(m))]
    t += [(True, b"TOP 1 3\r\n"), (False, b"+OK\r\n" + dot_stuffed(msgs[0][:300]))]
    for i in range(1, n + 1):
        t += [(True, f"DELE {i}\r\n".encode()), (False, b"+OK Marked to be deleted.\r\n")]
    t += [(True, b"NOOP\r\n"), (False, b"+OK\r\n"), (True, b"QUIT\r\n"), (False, b"+OK Logging out.\r\n")]
    commands += (["USER", "PASS", "STAT", "LIST", "UIDL"] + ["RETR"] * n + ["TOP"] + ["DELE"] * n
                 + ["NOOP", "QUIT"])
    return Conversation(t, sport=110, expected=[{"protocol": "pop3", "user": user, "login_ok": True,
                                                 "commands": commands, "tls": False}])


def imap_session(n: int = 20, size: int = 100_000, *, user: str = "alice", seed: int = 3,
                 append: int = 200_000) -> Conversation:
    """A Dovecot IMAP session: CAPABILITY, LOGIN, SELECT, `n` FETCHes of whole messages of about
    `size` bytes (literals whose text holds lines that look like IMAP completions), an APPEND
    of an `append`-byte message (a synchronizing client literal), NOOP, LOGOUT."""
    rng = random.Random(seed)
    t: list[Turn] = [
        (False, b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ "
                b"AUTH=PLAIN] Dovecot (Debian) ready.\r\n"),
        (True, b"a1 CAPABILITY\r\n"),
        (False, b"* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT LITERAL+\r\n"
                b"a1 OK Pre-login capabilities listed, post-login capabilities have more.\r\n"),
        (True, f'a2 LOGIN {user} "w0nderland-Pa55"\r\n'.encode()),
        (False, b"a2 OK [CAPABILITY IMAP4rev1] Logged in\r\n"),
        (True, b"a3 SELECT INBOX\r\n"),
        (False, f"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* {n} EXISTS\r\n* 0 RECENT\r\n"
                "* OK [UIDVALIDITY 1699950000] UIDs valid\r\n* OK [UIDNEXT 100] Predicted next UID\r\n"
                "a3 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\r\n".encode()),
    ]
    commands = ["CAPABILITY", "LOGIN", "SELECT"]
    tag = 3
    for i in range(1, n + 1):
        tag += 1
        m = (mail_message(i, "bob@example.net", [f"{user}@example.org"], f"Message {i}", size // 4, rng,
                          attachment=size * 3 // 4)
             + f"a{tag} OK Fetch completed.\r\n* BYE not really\r\n".encode())
        t += [(True, f"a{tag} UID FETCH {i} (UID RFC822.SIZE BODY.PEEK[])\r\n".encode()),
              (False, f"* {i} FETCH (UID {i} RFC822.SIZE {len(m)} BODY[] {{{len(m)}}}\r\n".encode() + m
               + f")\r\na{tag} OK Fetch completed (0.002 + 0.000 secs).\r\n".encode())]
        commands.append("UID FETCH")
    tag += 1
    draft = mail_message(0, f"{user}@example.org", ["carol@example.net"], "Draft", append // 4, rng,
                         attachment=append * 3 // 4) + f"a{tag + 1} LOGOUT\r\n".encode()
    t += [(True, f"a{tag} APPEND Sent (\\Seen) {{{len(draft)}}}\r\n".encode()), (False, b"+ OK\r\n"),
          (True, draft + b"\r\n"),
          (False, f"a{tag} OK [APPENDUID 1699950000 100] Append completed.\r\n".encode())]
    commands.append("APPEND")
    t += [(True, f"a{tag + 1} NOOP\r\n".encode()), (False, f"a{tag + 1} OK NOOP completed.\r\n".encode()),
          (True, f"a{tag + 2} LOGOUT\r\n".encode()),
          (False, f"* BYE Logging out\r\na{tag + 2} OK Logout completed.\r\n".encode())]
    commands += ["NOOP", "LOGOUT"]
    return Conversation(t, sport=143, expected=[{"protocol": "imap", "user": user, "login_ok": True,
                                                 "commands": commands, "tls": False}])


def ftp_session(n: int = 300, *, user: str = "alice") -> Conversation:
    """A vsftpd control connection: login, then `n` rounds of CWD, PASV, LIST (150 then 226)
    and SIZE, then QUIT: 4n + 5 commands, each a record (Zeek's ftp.log)."""
    t: list[Turn] = [
        (False, b"220 (vsFTPd 3.0.3)\r\n"),
        (True, f"USER {user}\r\n".encode()), (False, b"331 Please specify the password.\r\n"),
        (True, b"PASS w0nderland-Pa55\r\n"), (False, b"230 Login successful.\r\n"),
        (True, b"SYST\r\n"), (False, b"215 UNIX Type: L8\r\n"),
        (True, b"PWD\r\n"), (False, b'257 "/home/alice" is the current directory\r\n'),
    ]
    expected: list[dict[str, Any]] = [
        {"command": "USER", "arg": user, "reply_code": 331, "user": user},
        {"command": "PASS", "arg": "<hidden>", "reply_code": 230, "user": user},
        {"command": "SYST", "arg": None, "reply_code": 215, "user": user},
        {"command": "PWD", "arg": None, "reply_code": 257, "user": user},
    ]
    for i in range(n):
        port = 40000 + i
        t += [(True, f"CWD /srv/projects/dept-{i:04d}\r\n".encode()),
              (False, b"250 Directory successfully changed.\r\n"),
              (True, b"PASV\r\n"),
              (False, f"227 Entering Passive Mode (203,0,113,25,{port >> 8},{port & 255}).\r\n".encode()),
              (True, b"LIST -la\r\n"),
              (False, b"150 Here comes the directory listing.\r\n226 Directory send OK.\r\n"),
              (True, f"SIZE report-{i:04d}.xlsx\r\n".encode()), (False, f"213 {1000 + i}\r\n".encode())]
        expected += [
            {"command": "CWD", "arg": f"/srv/projects/dept-{i:04d}", "reply_code": 250, "user": user},
            {"command": "PASV", "arg": None, "reply_code": 227, "user": user},
            {"command": "LIST", "arg": "-la", "reply_code": 226, "user": user},
            {"command": "SIZE", "arg": f"report-{i:04d}.xlsx", "reply_code": 213, "user": user},
        ]
    t += [(True, b"QUIT\r\n"), (False, b"221 Goodbye.\r\n")]
    expected.append({"command": "QUIT", "arg": None, "reply_code": 221, "user": user})
    return Conversation(t, sport=21, expected=expected)
