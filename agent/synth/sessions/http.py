"""HTTP/1.1 over TCP/80: keep-alive connections with 1–4 request/response exchanges.

Requests are GET (85%) or POST (15%; half form-encoded with a text field,
half JSON), with browser/app User-Agents, Chinese Accept-Language, optional
Cookie and Referer. Responses carry Content-Length (no chunking, identity
encoding) and a body whose type is drawn from the mix below: HTML/JSON/JS/CSS
bodies are mixed English/Chinese UTF-8 text, images/video/octet-stream are
binary. Non-200 statuses get a short text body (304: none).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate

from agent.synth.sessions.base import Client, SessionContext
from agent.synth.sessions.tcp import TcpConn

USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 "
    "MicroMessenger/8.0.47",
    "Mozilla/5.0 (Linux; Android 13; M2012K11AC) AppleWebKit/537.36 Chrome/116.0 Mobile Safari/537.36",
    "okhttp/4.9.3",
    "curl/8.4.0",
    "Dalvik/2.1.0 (Linux; U; Android 12; V2145A Build/SP1A)",
)
# (Content-Type, body is text?, weight)
CONTENT_TYPES: tuple[tuple[str, bool, float], ...] = (
    ("text/html; charset=utf-8", True, 0.35),
    ("application/json; charset=utf-8", True, 0.15),
    ("image/jpeg", False, 0.2),
    ("image/png", False, 0.05),
    ("application/octet-stream", False, 0.1),
    ("video/mp4", False, 0.08),
    ("application/javascript", True, 0.05),
    ("text/css", True, 0.02),
)
_CT_CUM = list(accumulate(w for _, _, w in CONTENT_TYPES))
STATUSES = ("200 OK", "304 Not Modified", "404 Not Found", "302 Found")
_STATUS_CUM = list(accumulate((0.85, 0.07, 0.05, 0.03)))
REQUESTS_PER_CONN = (1, 1, 1, 2, 2, 3, 4)
POST_PROBABILITY = 0.15


def _request(ctx: SessionContext, host: str) -> bytes:
    rng, c = ctx.rng, ctx.content
    path = "/" + "/".join(rng.choice(c.vocab) for _ in range(rng.randint(1, 4)))
    if rng.random() < 0.4:
        path += "?q=" + rng.choice(c.vocab) + "&id=" + str(rng.randrange(10**6))
    post = rng.random() < POST_PROBABILITY
    hdrs = [
        f"{'POST' if post else 'GET'} {path} HTTP/1.1",
        f"Host: {host}",
        f"User-Agent: {rng.choice(USER_AGENTS)}",
        "Accept: */*",
        "Accept-Language: zh-CN,zh;q=0.9,en;q=0.8",
        "Accept-Encoding: identity",
        "Connection: keep-alive",
    ]
    if rng.random() < 0.5:
        hdrs.append(f"Cookie: sid={rng.randbytes(12).hex()}; uid={rng.randrange(10**8)}")
    if rng.random() < 0.3:
        hdrs.append(f"Referer: http://{host}/")
    body = b""
    if post:
        if rng.random() < 0.5:
            body = (
                "user=" + rng.choice(c.vocab) + "&pass=" + rng.randbytes(4).hex() + "&msg="
            ).encode() + c.slice_text(rng.randint(20, 3000))
            hdrs.append("Content-Type: application/x-www-form-urlencoded")
        else:
            body = b'{"text":"' + c.slice_text(rng.randint(20, 6000)) + b'"}'
            hdrs.append("Content-Type: application/json")
        hdrs.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(hdrs) + "\r\n\r\n").encode() + body


def _response(ctx: SessionContext) -> bytes:
    rng, c = ctx.rng, ctx.content
    ctype, is_text, _ = rng.choices(CONTENT_TYPES, cum_weights=_CT_CUM)[0]
    n = c.body_size()
    body = c.slice_text(n) if is_text else c.slice_bin(n)
    status = rng.choices(STATUSES, cum_weights=_STATUS_CUM)[0]
    if status != "200 OK":
        body = b"" if status.startswith("304") else c.slice_text(rng.randint(100, 600))
    head = (
        f"HTTP/1.1 {status}\r\nServer: nginx\r\nDate: Mon, 01 Jul 2024 08:00:00 GMT\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: keep-alive\r\n"
        "Cache-Control: max-age=600\r\n\r\n"
    ).encode()
    return head + body


def http_session(ctx: SessionContext, client: Client, cport: int) -> Iterator[bytes]:
    host = ctx.content.domain()
    conn = TcpConn(ctx.builder, ctx.rng, client.macs, client.ip, ctx.content.ip_for(host), cport, 80)
    yield from conn.handshake()
    for _ in range(ctx.rng.choice(REQUESTS_PER_CONN)):
        yield from conn.send(True, _request(ctx, host))
        yield from conn.send(False, _response(ctx))
    yield from conn.close()
