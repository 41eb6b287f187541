"""TLS 1.3-shaped sessions over TCP/443 (RFC 8446 record and handshake framing).

The client sends a real ClientHello (RFC 8446 §4.1.2) with server_name
(RFC 6066 §3) set to the Zipf-chosen domain, ALPN h2/http/1.1 (RFC 7301),
supported_groups, signature_algorithms, supported_versions (TLS 1.3 + 1.2),
an X25519 key_share and padding (RFC 7685) to a ~512-byte hello. The server
answers ServerHello (TLS_AES_128_GCM_SHA256, key_share), a
ChangeCipherSpec and 2.5–6 KB of encrypted handshake records; then 1–5
application-data exchanges (small request up, lognormal-sized response down).
Encrypted records are random bytes with correct record headers, so a decoder
can walk the record layer but nothing past the hellos is meaningful.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator

from agent.synth.content import Content
from agent.synth.sessions.base import Client, SessionContext
from agent.synth.sessions.tcp import TcpConn

CONTENT_CCS, CONTENT_HANDSHAKE, CONTENT_APPDATA = 20, 22, 23
MAX_RECORD_PLAINTEXT = 16384  # RFC 8446 §5.1
AEAD_OVERHEAD = 17  # 16-byte tag + inner content type
EXCHANGES_PER_CONN = (1, 1, 2, 3, 5)

_CIPHER_SUITES = bytes.fromhex("130113021303c02bc02fc02cc030cca9cca8c013c014009c009d002f0035")
_EXT_FIXED = (
    # extended_master_secret, renegotiation_info,
    # supported_groups (x25519, P-256, P-384, P-521), ec_point_formats
    bytes.fromhex("00170000ff01000100000a000a0008001d001700180019000b00020100")
    # session_ticket (empty), ALPN h2 + http/1.1, status_request
    + bytes.fromhex("00230000" "0010000e000c02683208687474702f312e31" "000500050100000000")
    # signature_algorithms
    + bytes.fromhex("000d0012001004030804040105030805050108060601")
    # supported_versions: TLS 1.3, TLS 1.2
    + bytes.fromhex("002b00050403040303")
)
_CCS_RECORD = b"\x14\x03\x03\x00\x01\x01"
# ServerHello extensions: supported_versions = TLS 1.3; key_share x25519 with a 32-byte key (appended).
_SH_EXTS_HEAD = bytes.fromhex("002e" "002b00020304" "00330024001d0020")
_HELLO_TARGET = 512  # pad the ClientHello the way browsers do (RFC 7685)


def client_hello(rng: random.Random, sni: str) -> bytes:
    """A complete TLS record carrying a ClientHello for ``sni``."""
    sni_b = sni.encode()
    name = struct.pack("!BH", 0, len(sni_b)) + sni_b
    exts = struct.pack("!HHH", 0, len(name) + 2, len(name)) + name + _EXT_FIXED
    exts += struct.pack("!HHHHH", 0x0033, 2 + 4 + 32, 4 + 32, 0x001D, 32) + rng.randbytes(32)
    # Same arithmetic as the reference generator (it counts 32 bytes for the 30-byte suite list).
    pad = _HELLO_TARGET - 4 - (2 + 32 + 1 + 32 + 2 + 32 + 2 + 2 + len(exts)) - 4
    if pad > 0:
        exts += struct.pack("!HH", 0x0015, pad) + bytes(pad)
    body = (
        b"\x03\x03"
        + rng.randbytes(32)
        + b"\x20"
        + rng.randbytes(32)
        + struct.pack("!H", len(_CIPHER_SUITES))
        + _CIPHER_SUITES
        + b"\x01\x00"
        + struct.pack("!H", len(exts))
        + exts
    )
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def server_hello(rng: random.Random) -> bytes:
    """A TLS record carrying a TLS 1.3 ServerHello."""
    body = (
        b"\x03\x03"
        + rng.randbytes(32)
        + b"\x20"
        + rng.randbytes(32)
        + b"\x13\x01\x00"
        + _SH_EXTS_HEAD
        + rng.randbytes(32)
    )
    sh = b"\x02" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x03" + struct.pack("!H", len(sh)) + sh


def encrypted_records(content: Content, n: int, ctype: int = CONTENT_APPDATA) -> bytes:
    """``n`` bytes of plaintext as opaque TLS 1.3 records of at most 16 KiB each."""
    out: list[bytes] = []
    while n > 0:
        ln = min(n, MAX_RECORD_PLAINTEXT) + AEAD_OVERHEAD
        out.append(struct.pack("!BHH", ctype, 0x0303, ln) + content.slice_bin(ln))
        n -= ln - AEAD_OVERHEAD
    return b"".join(out)


def tls_session(ctx: SessionContext, client: Client, cport: int) -> Iterator[bytes]:
    rng, c = ctx.rng, ctx.content
    host = c.domain()
    conn = TcpConn(ctx.builder, rng, client.macs, client.ip, c.ip_for(host), cport, 443)
    yield from conn.handshake()
    yield from conn.send(True, client_hello(rng, host))
    server_flight = server_hello(rng) + _CCS_RECORD + encrypted_records(c, rng.randint(2500, 6000))
    yield from conn.send(False, server_flight)
    yield from conn.send(True, _CCS_RECORD + encrypted_records(c, 53))
    for _ in range(rng.choice(EXCHANGES_PER_CONN)):
        yield from conn.send(True, encrypted_records(c, rng.randint(100, 1500)))
        yield from conn.send(False, encrypted_records(c, c.body_size() + 200))
    yield from conn.close(rng.random() < 0.5)
