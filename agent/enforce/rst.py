"""TCP reset packets that stop a connection in both directions (sans-IO).

What: `reset_packets` builds the IP packets (IPv4 or IPv6, chosen by the address
family; IP and TCP checksums filled in; TCP flags RST+ACK) that an agent puts on
the network to stop a TCP connection whose content matched a `block` rule
(DESIGN.md data path step 8): one to the server forged as coming from the
client, one to the client forged as coming from the server. `ethernet_frame`
wraps one of them in an Ethernet II header (optionally one 802.1Q tag) for an
agent on a mirror port, which must put the frame on the wire itself.
`agent.enforce.inject` sends them; this module does no IO at all (no sockets, no
clocks, no randomness), so the same inputs always give the same bytes.

Why the sequence numbers matter (RFC 793 §3.4 "Reset Processing", RFC 5961 §3):
a receiver in a synchronized state checks the sequence number of an RST against
its receive window:
- seq == RCV.NXT exactly: the connection is reset (RFC 5961 §3.2, first case).
- RCV.NXT < seq < RCV.NXT + RCV.WND: an RFC 793 stack resets; an RFC 5961 stack
  (Linux since 3.6, among others) does NOT reset but answers
  with a "challenge ACK" (an ACK carrying its RCV.NXT) and drops the RST, so that
  an off-path attacker who guesses an in-window number cannot kill connections.
- outside the window: dropped silently.
So the exact RST uses, towards each receiver, the next sequence number its peer
would send: to the server seq = client_next_seq (the byte the server expects
next), ack = server_next_seq; to the client seq = server_next_seq, ack =
client_next_seq. The agent learns both from the packets it captured (seq +
payload length, +1 for SYN and FIN, of the latest segment each side sent).

The burst (``burst`` > 1): what the agent saw last may be behind what the
receiver has by the time the RST arrives, because the sender had more data in
flight (segments not yet captured, or captured after the match). Then the exact
RST is in the window but no longer exact. `burst` - 1 further RSTs per direction
go at seq + k * step (k = 1 .. burst - 1, step = receiver's window // burst), all
inside the receiver's window [RCV.NXT, RCV.NXT + RCV.WND):
- an RFC 793 receiver accepts any of them: the connection is reset anyway;
- an RFC 5961 receiver answers each with a challenge ACK whose acknowledgment
  number is its exact RCV.NXT; an agent watching the traffic (inline or on a
  mirror port) sees it and can call `reset_packets` again with ``burst=1`` at
  that number, which is then accepted. Challenge ACKs are rate-limited (Linux:
  per socket by net.ipv4.tcp_invalid_ratelimit, per namespace by
  net.ipv4.tcp_challenge_ack_limit), another reason to send few.
When a receiver's window is unknown (``*_window=0``), no extra RSTs go to it: a
guessed offset could fall outside the window and only adds traffic.
RSTs carry no data and window 0 (as the stack's own RSTs do). The exact RSTs come
first in the list: the earlier a packet is sent, the likelier it still matches.

Limits: this is a best effort against an endpoint that is not trying to evade it
(an endpoint that ignores RSTs, or a tunnel the agent cannot see into, is not
stopped; inline mode also drops the packet that completed the match, see
`agent.enforce.nfqueue`). IPv4 packets have no options, ID 0 with DF set (an
atomic datagram, RFC 6864 §4.1); IPv6 packets have no extension headers, flow
label 0. Sequence arithmetic is modulo 2**32 (RFC 793 §3.3).
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Final, Literal

Direction = Literal["to_server", "to_client"]

SEQ_MOD: Final = 1 << 32  # TCP sequence space (RFC 793 §3.3)
TCP_RST: Final = 0x04
TCP_ACK: Final = 0x10
RST_FLAGS: Final = TCP_RST | TCP_ACK
IPPROTO_TCP: Final = 6
IPV4_HEADER_LEN: Final = 20
IPV6_HEADER_LEN: Final = 40
TCP_HEADER_LEN: Final = 20  # no options: an RST needs none
IPV4_DF: Final = 0x4000  # "don't fragment": with ID 0 this is an atomic datagram (RFC 6864 §4.1)
ETHERTYPE_IPV4: Final = 0x0800
ETHERTYPE_IPV6: Final = 0x86DD
ETHERTYPE_VLAN: Final = 0x8100
ETH_ZLEN: Final = 60  # minimum Ethernet frame without FCS (IEEE 802.3): shorter frames are padded
MAX_BURST: Final = 16  # more RSTs per direction only add challenge ACKs (rate-limited by the receiver)
MAX_WINDOW: Final = 65535 << 14  # the largest window TCP can advertise (RFC 7323 §2.3, shift 14)

_IP4: Final = struct.Struct("!BBHHHBBH4s4s")
_IP6: Final = struct.Struct("!IHBB16s16s")
_TCP: Final = struct.Struct("!HHIIBBHHH")
_PSEUDO4: Final = struct.Struct("!4s4sBBH")
_PSEUDO6: Final = struct.Struct("!16s16sI3xB")
_ETH: Final = struct.Struct("!6s6sH")
_VLAN: Final = struct.Struct("!HH")


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): one's complement of the one's-complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def reset_packets(*, client_ip: str, client_port: int, server_ip: str, server_port: int,
                  client_next_seq: int, server_next_seq: int, client_window: int = 0,
                  server_window: int = 0, ttl: int = 64, burst: int = 3) -> list[tuple[Direction, bytes]]:
    """IP packets resetting the connection both ways: ``[(direction, packet), ...]``.

    ``client_next_seq`` / ``server_next_seq``: the sequence number of the next byte each
    side would send (the receiver's RCV.NXT). ``client_window`` / ``server_window``: the
    receive window (already scaled, in bytes) each side last advertised, 0 when unknown;
    ``server_window`` spaces the extra RSTs to the server, ``client_window`` those to the
    client. Raises ValueError on an invalid argument.
    """
    client = ipaddress.ip_address(client_ip)
    server = ipaddress.ip_address(server_ip)
    if client.version != server.version:
        raise ValueError(f"client {client_ip} and server {server_ip} are not of one address family")
    for name, port in (("client_port", client_port), ("server_port", server_port)):
        if not 0 < port <= 0xFFFF:
            raise ValueError(f"{name} {port} is not a TCP port (1..65535)")
    for name, seq in (("client_next_seq", client_next_seq), ("server_next_seq", server_next_seq)):
        if not 0 <= seq < SEQ_MOD:
            raise ValueError(f"{name} {seq} is not a 32-bit sequence number")
    for name, win in (("client_window", client_window), ("server_window", server_window)):
        if not 0 <= win <= MAX_WINDOW:
            raise ValueError(f"{name} {win} is not a TCP window (0..{MAX_WINDOW})")
    if not 1 <= ttl <= 255:
        raise ValueError(f"ttl {ttl} is not 1..255")
    if not 1 <= burst <= MAX_BURST:
        raise ValueError(f"burst {burst} is not 1..{MAX_BURST}")

    c, s = client.packed, server.packed
    out: list[tuple[Direction, bytes]] = [
        ("to_server", _packet(c, s, client_port, server_port, client_next_seq, server_next_seq, ttl)),
        ("to_client", _packet(s, c, server_port, client_port, server_next_seq, client_next_seq, ttl)),
    ]
    for k in range(1, burst):
        if server_window // burst:
            seq = (client_next_seq + k * (server_window // burst)) % SEQ_MOD
            out.append(("to_server", _packet(c, s, client_port, server_port, seq, server_next_seq, ttl)))
        if client_window // burst:
            seq = (server_next_seq + k * (client_window // burst)) % SEQ_MOD
            out.append(("to_client", _packet(s, c, server_port, client_port, seq, client_next_seq, ttl)))
    return out


def _packet(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, ttl: int) -> bytes:
    """One RST+ACK segment from ``src`` to ``dst`` (packed addresses) in its IP header."""
    tcp = _TCP.pack(sport, dport, seq, ack, (TCP_HEADER_LEN // 4) << 4, RST_FLAGS, 0, 0, 0)
    if len(src) == 4:
        pseudo = _PSEUDO4.pack(src, dst, 0, IPPROTO_TCP, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
        head = _IP4.pack(0x45, 0, IPV4_HEADER_LEN + len(tcp), 0, IPV4_DF, ttl, IPPROTO_TCP, 0, src, dst)
        head = head[:10] + struct.pack("!H", checksum(head)) + head[12:]
        return head + tcp
    pseudo = _PSEUDO6.pack(src, dst, len(tcp), IPPROTO_TCP)
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    return _IP6.pack(6 << 28, len(tcp), IPPROTO_TCP, ttl, src, dst) + tcp


def ethernet_frame(packet: bytes, src_mac: bytes, dst_mac: bytes, *, vlan: int | None = None) -> bytes:
    """``packet`` (IPv4 or IPv6) in an Ethernet II frame, padded to the 60-byte minimum.

    ``src_mac`` / ``dst_mac``: 6 bytes each, the addresses the agent observed on frames of
    that direction (so switches and the receiver's NIC treat the frame like the real ones).
    ``vlan``: the 802.1Q VLAN ID the observed frames carried, if any (priority 0).
    """
    if len(src_mac) != 6 or len(dst_mac) != 6:
        raise ValueError("MAC addresses are 6 bytes")
    if not packet:
        raise ValueError("empty packet")
    version = packet[0] >> 4
    if version == 4:
        ethertype = ETHERTYPE_IPV4
    elif version == 6:
        ethertype = ETHERTYPE_IPV6
    else:
        raise ValueError(f"not an IP packet (version {version})")
    if vlan is None:
        head = _ETH.pack(dst_mac, src_mac, ethertype)
    else:
        if not 0 <= vlan < 0xFFF:  # 0xFFF is reserved (IEEE 802.1Q)
            raise ValueError(f"VLAN ID {vlan} is not 0..4094")
        head = _ETH.pack(dst_mac, src_mac, ETHERTYPE_VLAN) + _VLAN.pack(vlan, ethertype)
    frame = head + packet
    # the receiver trims the padding using the IP length field
    return frame + b"\0" * (ETH_ZLEN - len(frame)) if len(frame) < ETH_ZLEN else frame
