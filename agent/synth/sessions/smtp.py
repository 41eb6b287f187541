"""SMTP over TCP/25 (RFC 5321 §3.3, §4.1): one message per connection.

Banner, EHLO with PIPELINING/SIZE/8BITMIME, MAIL FROM, RCPT TO, DATA with an
RFC 2047 encoded-word Subject and an 8-bit UTF-8 text body (300 B – 60 KB of
mixed English/Chinese), the final ``.``, QUIT. The text corpus never contains
``CRLF . CRLF``, so the body cannot end DATA early.
"""

from __future__ import annotations

from collections.abc import Iterator

from agent.synth.sessions.base import Client, SessionContext
from agent.synth.sessions.tcp import TcpConn

SUBJECT = "=?UTF-8?B?5Lya6K6u6YCa55+l?="  # "会议通知" (meeting notice)


def smtp_session(ctx: SessionContext, client: Client, cport: int) -> Iterator[bytes]:
    rng, c = ctx.rng, ctx.content
    host = "mx." + c.domain()
    mail_domain = host[3:]
    conn = TcpConn(ctx.builder, rng, client.macs, client.ip, c.ip_for(host), cport, 25)
    yield from conn.handshake()
    user = rng.choice(c.vocab)
    dialogue = (
        (False, f"220 {host} ESMTP Postfix\r\n"),
        (True, "EHLO client.local\r\n"),
        (False, f"250-{host}\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n"),
        (True, f"MAIL FROM:<{user}@example.cn>\r\n"),
        (False, "250 2.1.0 Ok\r\n"),
        (True, f"RCPT TO:<{rng.choice(c.vocab)}@{mail_domain}>\r\n"),
        (False, "250 2.1.5 Ok\r\n"),
        (True, "DATA\r\n"),
        (False, "354 End data with <CR><LF>.<CR><LF>\r\n"),
    )
    for from_client, line in dialogue:
        yield from conn.send(from_client, line.encode())
    message = (
        f"From: {user}@example.cn\r\nTo: someone@{mail_domain}\r\nSubject: {SUBJECT}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + c.slice_text(rng.randint(300, 60000)) + b"\r\n.\r\n"
    yield from conn.send(True, message)
    yield from conn.send(False, b"250 2.0.0 Ok: queued as 4F2A1C\r\n")
    yield from conn.send(True, b"QUIT\r\n")
    yield from conn.send(False, b"221 2.0.0 Bye\r\n")
    yield from conn.close()
