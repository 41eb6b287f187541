"""Ethernet/IPv4/IPv6/TCP/UDP frames built with struct, and a TCP connection that tracks its sequence numbers.

`Conn` plays both ends of one TCP connection: `c(...)` builds a client -> server
segment, `s(...)` a server -> client one. Payload offsets are relative stream
offsets (0 = the first byte after the SYN); by default a segment continues
where that side's stream has reached and acknowledges everything the other
side has sent so far, so a frame that is built but never fed is a segment the
capture lost while the peer received it.
"""

from __future__ import annotations

import ipaddress
import struct

CLIENT_MAC = bytes.fromhex("020000000001")
SERVER_MAC = bytes.fromhex("020000000002")
_FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10}


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ip_frame(src: str, dst: str, proto: int, l4: bytes, *, smac: bytes, dmac: bytes,
             vlan: int | None = None) -> bytes:
    """Ethernet (optionally 802.1Q-tagged) + IPv4 or IPv6 + the given layer 4 bytes (checksum filled in)."""
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    pseudo_len = len(l4)
    if a.version == 4:
        pseudo = a.packed + b.packed + struct.pack("!xBH", proto, pseudo_len)
    else:
        pseudo = a.packed + b.packed + struct.pack("!I3xB", pseudo_len, proto)
    ck_off = 16 if proto == 6 else 6
    l4 = l4[:ck_off] + struct.pack("!H", _csum(pseudo + l4)) + l4[ck_off + 2:]
    if a.version == 4:
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0x4000, 64, proto, 0, a.packed, b.packed)
        l3 = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:] + l4
        etype = 0x0800
    else:
        l3 = struct.pack("!IHBB16s16s", 0x60000000, len(l4), proto, 64, a.packed, b.packed) + l4
        etype = 0x86DD
    tag = struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
    return dmac + smac + tag + struct.pack("!H", etype) + l3


def tcp_frame(src: str, sport: int, dst: str, dport: int, flags: str, seq: int, ack: int,
              payload: bytes = b"", *, smac: bytes, dmac: bytes, vlan: int | None = None) -> bytes:
    bits = 0
    for ch in flags:
        bits |= _FLAGS[ch]
    l4 = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, bits,
                     65535, 0, 0) + payload
    return ip_frame(src, dst, 6, l4, smac=smac, dmac=dmac, vlan=vlan)


def udp_frame(src: str, sport: int, dst: str, dport: int, payload: bytes, *, smac: bytes = CLIENT_MAC,
              dmac: bytes = SERVER_MAC, vlan: int | None = None) -> bytes:
    l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    return ip_frame(src, dst, 17, l4, smac=smac, dmac=dmac, vlan=vlan)


class Conn:
    """Both ends of one TCP connection (see the module docstring)."""

    def __init__(self, client: str, cport: int, server: str, sport: int, *, cisn: int = 1000,
                 sisn: int = 500000, vlan: int | None = None) -> None:
        self.client, self.cport, self.server, self.sport = client, cport, server, sport
        self.isn = {True: cisn, False: sisn}
        self.sent = {True: 0, False: 0}  # highest relative stream offset sent by each side
        self.fin = {True: 0, False: 0}  # 1 once that side sent its FIN
        self.vlan = vlan

    def seg(self, from_client: bool, flags: str, data: bytes = b"", *, off: int | None = None,
            ack: int | None = None) -> bytes:
        """One segment; `off` is the relative stream offset of `data` (default: where the side is)."""
        me = from_client
        if off is None:
            off = self.sent[me]
        seq = self.isn[me] + (0 if "S" in flags else 1 + off + (self.fin[me] if off >= self.sent[me] else 0))
        self.sent[me] = max(self.sent[me], off + len(data))
        if ack is None:
            ack = self.isn[not me] + 1 + self.sent[not me] + self.fin[not me]
        if "F" in flags:
            self.fin[me] = 1
        if me:
            return tcp_frame(self.client, self.cport, self.server, self.sport, flags, seq,
                             ack if "A" in flags else 0, data, smac=CLIENT_MAC, dmac=SERVER_MAC,
                             vlan=self.vlan)
        return tcp_frame(self.server, self.sport, self.client, self.cport, flags, seq,
                         ack if "A" in flags else 0, data, smac=SERVER_MAC, dmac=CLIENT_MAC, vlan=self.vlan)

    def c(self, data: bytes = b"", flags: str = "PA", **kw: int | None) -> bytes:
        return self.seg(True, flags if data else ("A" if flags == "PA" else flags), data, **kw)

    def s(self, data: bytes = b"", flags: str = "PA", **kw: int | None) -> bytes:
        return self.seg(False, flags if data else ("A" if flags == "PA" else flags), data, **kw)

    def handshake(self) -> list[bytes]:
        return [self.seg(True, "S"), self.seg(False, "SA"), self.c()]

    def exchange(self, request: bytes, response: bytes) -> list[bytes]:
        """Request, ACK, response, ACK."""
        return [self.c(request), self.s(), self.s(response), self.c()]

    def close(self) -> list[bytes]:
        return [self.c(flags="FA"), self.s(flags="FA"), self.c()]


# -- payloads --------------------------------------------------------------------------------------------


def client_hello(sni: str) -> bytes:
    """A TLS 1.2 ClientHello naming `sni` (RFC 6066 §3): what follows a STARTTLS."""
    host = sni.encode()
    entry = struct.pack("!BH", 0, len(host)) + host
    names = struct.pack("!H", len(entry)) + entry
    ext = struct.pack("!HH", 0, len(names)) + names  # server_name (RFC 6066 §3)
    body = (struct.pack("!H", 0x0303) + bytes(range(32)) + b"\x00" + struct.pack("!HH", 2, 0x002F)
            + b"\x01\x00" + struct.pack("!H", len(ext)) + ext)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def server_hello() -> bytes:
    """The ServerHello answering it."""
    body = struct.pack("!H", 0x0303) + bytes(range(32, 64)) + b"\x00" + struct.pack("!H", 0x002F) + b"\x00"
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x03" + struct.pack("!H", len(hs)) + hs
