"""DNS over UDP/53 (RFC 1035 §4.1): one query to the site resolver and its answer.

Query types A (50%), AAAA (33%), HTTPS/65 (17%). The response repeats the
question, optionally starts with a CNAME to a ``cdn.`` name (30%), then 1–4
answers pointing at the question name with a compression pointer (RFC 1035
§4.1.4). A answers use the domain's stable server address, so later TCP flows
to that address match the lookup; AAAA answers get random addresses. HTTPS
queries are answered with A records, as in the reference generator: a
type mismatch real resolvers never send but decoders must tolerate.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from agent.synth.frames import PROTO_UDP, Direction
from agent.synth.sessions.base import Client, SessionContext

RESOLVER_IP = bytes((192, 168, 0, 1))
RESOLVER_TTL = 64
CLIENT_TTL = 64
QTYPES = (1, 1, 1, 28, 28, 65)
QTYPE_A, QTYPE_AAAA, QTYPE_CNAME = 1, 28, 5
CLASS_IN = 1
_NAME_PTR = b"\xc0\x0c"  # pointer to the question name at offset 12
_RR = struct.Struct("!HHIH")  # type, class, TTL, RDLENGTH


def encode_name(domain: str) -> bytes:
    """Uncompressed wire-format name (RFC 1035 §3.1)."""
    return b"".join(bytes([len(p)]) + p.encode() for p in domain.split(".")) + b"\x00"


def dns_session(ctx: SessionContext, client: Client, cport: int) -> Iterator[bytes]:
    rng, c, b = ctx.rng, ctx.content, ctx.builder
    d = c.domain()
    qid = rng.randrange(65536)
    qtype = rng.choice(QTYPES)
    question = encode_name(d) + struct.pack("!HH", qtype, CLASS_IN)
    query = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question  # RD
    up = Direction(client.macs.from_client, client.ip, RESOLVER_IP, cport, 53, CLIENT_TTL, PROTO_UDP)
    yield b.udp(up, query)
    answers = b""
    n = rng.randint(1, 4)
    extra = 0
    if rng.random() < 0.3:
        cname = encode_name("cdn." + rng.choice(c.domains))
        answers += _NAME_PTR + _RR.pack(QTYPE_CNAME, CLASS_IN, 300, len(cname)) + cname
        extra = 1
    for _ in range(n):
        if qtype == QTYPE_AAAA:
            answers += _NAME_PTR + _RR.pack(QTYPE_AAAA, CLASS_IN, 60, 16) + rng.randbytes(16)
        else:
            answers += _NAME_PTR + _RR.pack(QTYPE_A, CLASS_IN, 60, 4) + c.ip_for(d)
    # QR, RD, RA, NOERROR
    response = struct.pack("!HHHHHH", qid, 0x8180, 1, n + extra, 0, 0) + question + answers
    yield b.udp(
        Direction(client.macs.to_client, RESOLVER_IP, client.ip, 53, cport, RESOLVER_TTL, PROTO_UDP), response
    )
