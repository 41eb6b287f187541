"""Ethernet/IPv4/TCP/UDP frame builders with correct checksums.

Design: a :class:`Direction` holds everything that is constant for one
direction of one flow (Ethernet header, addresses, ports, TTL) already packed
into bytes, plus the checksum residues of those constant fields (see
:mod:`agent.synth.checksum`). Building a packet is then one ``struct.pack``
of a fixed layout plus a payload concatenation, with checksums completed by
adding a handful of integers. This is the hot path of the generator: every
packet of the capture goes through :meth:`FrameBuilder.tcp_ts` (TCP with the
timestamp option, i.e. every segment after the SYNs) or
:meth:`FrameBuilder.udp`.

Frames are IPv4 with DF set and no IP options; TCP data segments carry the
12-byte timestamp option (NOP NOP TS), so :data:`MSS` 1448 fills a 1500-byte
MTU.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from agent.synth.checksum import checksum_from_residue, residue

MSS = 1448  # 1500 B MTU - 20 IP - 20 TCP - 12 timestamp option

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
PROTO_TCP, PROTO_UDP = 6, 17

ETHERTYPE_IPV4 = b"\x08\x00"
_IP_VER_TOS = b"\x45\x00"  # version 4, IHL 5 (no options), TOS 0
_IP_FLAGS_DF = 0x4000

# Layouts (network byte order). The "12s" field is src addr + dst addr +
# sport + dport, which are adjacent in IPv4+TCP/UDP and constant per direction.
#   prefix(eth+ver/tos) tot ipid flags|ttl|proto ipsum addrs/ports ...
_TCP_TS = struct.Struct("!16sHH4sH12sIIHHH6sII")  # ... seq ack off|flags win sum urg+NOP NOP TS tsval tsecr
_TCP_BARE = struct.Struct("!16sHH4sH12sIIHHHH")  # ... seq ack off|flags win sum urg   (options appended)
_UDP = struct.Struct("!16sHH4sH12sHH")  # ... len sum
_TS_OPT_HEAD = b"\x00\x00\x01\x01\x08\x0a"  # urgent pointer 0, NOP, NOP, kind 8 len 10
_TS_OPT_RESIDUE = 0x0101 + 0x080A
_TS_OFF_FLAGS = 8 << 12  # data offset 8 words = 20 + 12 option bytes


class Direction:
    """Precomputed constant part of one flow direction (src -> dst)."""

    __slots__ = ("prefix", "mid", "addrs", "ip_const", "l4_const")

    def __init__(
        self, eth: bytes, src: bytes, dst: bytes, sport: int, dport: int, ttl: int, proto: int
    ) -> None:
        self.prefix = eth + _IP_VER_TOS
        self.mid = struct.pack("!HBB", _IP_FLAGS_DF, ttl, proto)
        self.addrs = src + dst + struct.pack("!HH", sport, dport)
        addr_r = int.from_bytes(src, "big") + int.from_bytes(dst, "big")
        # IP header minus tot/ipid/checksum: 0x4500, flags/frag, ttl|proto, addresses.
        self.ip_const = 0x4500 + _IP_FLAGS_DF + ((ttl << 8) | proto) + addr_r
        # L4 pseudo-header (addresses, protocol) plus the ports in the L4 header.
        self.l4_const = addr_r + proto + sport + dport


@dataclass(frozen=True, slots=True)
class MacPair:
    """Ethernet headers for the two directions of a client's traffic through the gateway."""

    from_client: bytes  # dst = gateway, src = client
    to_client: bytes  # dst = client, src = gateway

    @classmethod
    def of(cls, client_mac: bytes, gateway_mac: bytes) -> MacPair:
        return cls(gateway_mac + client_mac + ETHERTYPE_IPV4, client_mac + gateway_mac + ETHERTYPE_IPV4)


class FrameBuilder:
    """Builds complete Ethernet frames; owns the IP ID counter.

    One counter for the whole capture (as the reference generator does): the
    IDs are only required to differ between packets, not to model per-host
    counters.
    """

    __slots__ = ("ipid",)

    def __init__(self, first_ipid: int) -> None:
        self.ipid = first_ipid & 0xFFFF

    def _ip_fields(self, d: Direction, tot: int) -> tuple[int, int]:
        ipid = self.ipid = (self.ipid + 1) & 0xFFFF
        return ipid, checksum_from_residue(d.ip_const + tot + ipid)

    def tcp_ts(
        self, d: Direction, seq: int, ack: int, flags: int, win: int, tsval: int, tsecr: int, payload: bytes
    ) -> bytes:
        """TCP segment with the timestamp option (the common case)."""
        # checksum.residue()/checksum_from_residue() inlined: this runs for ~95% of all packets.
        plen = len(payload)
        tcp_len = 32 + plen
        ipid = self.ipid = (self.ipid + 1) & 0xFFFF
        tot = 20 + tcp_len
        r = (d.ip_const + tot + ipid) % 0xFFFF
        isum = 0xFFFF - r if r else 0
        r = d.l4_const + tcp_len + seq + ack + (_TS_OFF_FLAGS | flags) + win
        r += _TS_OPT_RESIDUE + tsval + tsecr
        if plen:
            pr = int.from_bytes(payload, "big") % 0xFFFF
            # An odd length is padded with a zero byte: value * 256.
            r += pr << 8 if plen & 1 else pr
        r %= 0xFFFF
        tsum = 0xFFFF - r if r else 0
        return (
            _TCP_TS.pack(
                d.prefix, tot, ipid, d.mid, isum, d.addrs, seq, ack, _TS_OFF_FLAGS | flags, win, tsum,
                _TS_OPT_HEAD, tsval, tsecr,
            )
            + payload
        )

    def tcp(
        self, d: Direction, seq: int, ack: int, flags: int, win: int, opts: bytes, payload: bytes
    ) -> bytes:
        """TCP segment with arbitrary options (SYN, SYN/ACK); ``opts`` must be a multiple of 4 bytes."""
        if len(opts) & 3:
            raise ValueError("TCP options must be padded to a multiple of 4 bytes")
        hlen = 20 + len(opts)
        tcp_len = hlen + len(payload)
        tot = 20 + tcp_len
        ipid, isum = self._ip_fields(d, tot)
        off_flags = ((hlen // 4) << 12) | flags
        tsum = checksum_from_residue(
            d.l4_const + tcp_len + seq + ack + off_flags + win + residue(opts) + residue(payload)
        )
        head = _TCP_BARE.pack(d.prefix, tot, ipid, d.mid, isum, d.addrs, seq, ack, off_flags, win, tsum, 0)
        return head + opts + payload

    def udp(self, d: Direction, payload: bytes) -> bytes:
        """UDP datagram; a computed checksum of 0 is sent as 0xFFFF (RFC 768)."""
        ulen = 8 + len(payload)
        tot = 20 + ulen
        ipid, isum = self._ip_fields(d, tot)
        # The UDP length appears twice: in the pseudo-header and in the header.
        usum = checksum_from_residue(d.l4_const + 2 * ulen + residue(payload)) or 0xFFFF
        return _UDP.pack(d.prefix, tot, ipid, d.mid, isum, d.addrs, ulen, usum) + payload
