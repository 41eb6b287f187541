"""Frame -> Packet: IPv4/IPv6, fragments, tunnels, Teredo, and malformed input as weirds.

Every malformed variant must give None and one weird with a Zeek-style name, never an
exception. Corpus captures from ../shared/corpus are decoded packet by packet where present.
"""

from __future__ import annotations

import collections
import random
import socket
import struct
from pathlib import Path

import dpkt
import pytest
from scapy.contrib.erspan import ERSPAN_II
from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_Router_Alert, fragment
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    fragment6,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import GRE_PPTP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.layers.ppp import PPP, PPPoE
from scapy.packet import Packet as ScapyPacket
from scapy.packet import Raw

from agent.capture import linktypes as lt
from agent.decode import packet as packet_mod
from agent.decode.packet import MAX_EXT_HEADERS, MAX_TUNNEL_DEPTH, Decoder, Packet
from agent.outbox import Weird

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus absent")

MAC = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
A4, B4 = "192.0.2.1", "198.51.100.2"
A6, B6 = "2001:db8::1", "2001:db8::2"
TS = 1_700_000_000.0


def p4(a: str) -> bytes:
    return socket.inet_aton(a)


def p6(a: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, a)


def b(p: ScapyPacket | bytes) -> bytes:
    return p if isinstance(p, bytes) else bytes(p)


def udp4(payload: bytes = b"hello world!", src: str = A4, dst: str = B4, **kw: object) -> ScapyPacket:
    return IP(src=src, dst=dst, **kw) / UDP(sport=1234, dport=5353) / Raw(payload)


def tcp6(payload: bytes = b"GET / HTTP/1.0\r\n\r\n", src: str = A6, dst: str = B6) -> ScapyPacket:
    return IPv6(src=src, dst=dst) / TCP(sport=40000, dport=80, flags="PA") / Raw(payload)


def dec(frame: ScapyPacket | bytes, linktype: int = lt.ETHERNET,
        d: Decoder | None = None) -> tuple[Packet | None, list[tuple[str, str]]]:
    d = d if d is not None else Decoder()
    n = len(d.weirds)
    pkt = d.decode(TS, linktype, b(frame))
    return pkt, [(w[1], w[2]) for w in d.weirds[n:]]


def ok(frame: ScapyPacket | bytes, linktype: int = lt.ETHERNET, d: Decoder | None = None) -> Packet:
    pkt, weirds = dec(frame, linktype, d)
    assert weirds == []
    assert pkt is not None
    return pkt


def malformed(frame: ScapyPacket | bytes, linktype: int = lt.ETHERNET) -> str:
    """Decode a malformed frame: None and exactly one weird; returns its name."""
    d = Decoder()
    pkt, weirds = dec(frame, linktype, d)
    assert pkt is None
    assert len(weirds) == 1, weirds
    assert d.counters["malformed"] == 1
    name, detail = weirds[0]
    assert name and isinstance(detail, str)
    return name


def payload_of(pkt: Packet) -> bytes:
    return pkt.buf[pkt.l4_off:pkt.l4_off + pkt.l4_len]


# -- IPv4 ----------------------------------------------------------------------------------------


def test_ipv4_udp_fields() -> None:
    frame = b(Ether(**MAC) / udp4())
    pkt = ok(frame)
    assert (pkt.src, pkt.dst, pkt.proto) == (p4(A4), p4(B4), 17)
    assert pkt.ip_len == 20 + 8 + 12
    assert (pkt.l4_off, pkt.l4_len) == (34, 20)
    assert pkt.buf is pkt.frame and pkt.frame == frame
    assert (pkt.vlan, pkt.inner_vlan, pkt.mac_off) == (None, None, 0)
    assert pkt.buf[pkt.l4_off:pkt.l4_off + 2] == struct.pack("!H", 1234)


def test_ipv4_ethernet_padding_is_not_transport_data() -> None:
    frame = b(Ether(**MAC) / IP(src=A4, dst=B4) / TCP(flags="S")) + b"\0" * 6  # padded to 60 bytes
    pkt = ok(frame)
    assert (pkt.ip_len, pkt.l4_len) == (40, 20)


def test_ipv4_options() -> None:
    ip = IP(src=A4, dst=B4, options=[IPOption_Router_Alert(), IPOption_NOP(), IPOption_NOP(),
                                     IPOption_NOP(), IPOption_NOP()]) / UDP(sport=1, dport=2) / b"x"
    assert len(b(ip)) == 28 + 8 + 1  # router alert (4) + 4 NOPs
    pkt = ok(Ether(**MAC) / ip)
    assert (pkt.l4_off, pkt.l4_len, pkt.ip_len, pkt.proto) == (14 + 28, 9, 37, 17)


def test_ipv4_max_options() -> None:
    ip = b(IP(src=A4, dst=B4, ihl=15, options=[IPOption_NOP()] * 40) / UDP(sport=1, dport=2))
    pkt = ok(ip, lt.RAW)
    assert pkt.l4_off == 60


def test_ipv4_tso_zero_total_length_uses_captured_length() -> None:
    raw = bytearray(b(udp4(b"z" * 100)))
    struct.pack_into("!H", raw, 2, 0)
    pkt = ok(bytes(raw), lt.RAW)
    assert pkt.ip_len == len(raw) and pkt.l4_len == len(raw) - 20


def test_ipv4_snapped_capture_keeps_header_lengths() -> None:
    raw = b(udp4(b"z" * 1000))[:96]
    pkt = ok(raw, lt.RAW)
    assert pkt.ip_len == 1028 and pkt.l4_len == 1008  # as the header says, not as captured


def test_ipv4_other_transports() -> None:
    assert ok(IP(src=A4, dst=B4) / ICMP(), lt.RAW).proto == 1
    assert ok(IP(src=A4, dst=B4, proto=132) / Raw(b"sctp" * 4), lt.RAW).proto == 132


@pytest.mark.parametrize(("mutate", "name"), [
    (lambda r: r[:14 + 19], "truncated_IP"),
    (lambda r: r[:14], "truncated_IP"),
    (lambda r: r[:14] + bytes([0x65]) + r[15:], "bad_IP_version"),  # IPv4 ethertype, version 6
    (lambda r: r[:14] + bytes([0x44]) + r[15:], "bad_IP_header_len"),  # IHL 4
    (lambda r: r[:14] + bytes([0x40]) + r[15:], "bad_IP_header_len"),  # IHL 0
    (lambda r: r[:14] + bytes([0x4F]) + r[15:], "internally_truncated_header"),  # IHL 15, 40 bytes
    (lambda r: r[:16] + struct.pack("!H", 19) + r[18:], "bad_IP_total_len"),
    (lambda r: r[:16] + struct.pack("!H", 1) + r[18:], "bad_IP_total_len"),
])
def test_ipv4_malformed(mutate: object, name: str) -> None:
    frame = b(Ether(**MAC) / udp4())
    assert callable(mutate)
    assert malformed(mutate(frame)) == name


# -- IPv6 ----------------------------------------------------------------------------------------


def test_ipv6_tcp_fields() -> None:
    pkt = ok(Ether(**MAC) / tcp6(b"abc"))
    assert (pkt.src, pkt.dst, pkt.proto) == (p6(A6), p6(B6), 6)
    assert (pkt.ip_len, pkt.l4_off, pkt.l4_len) == (40 + 23, 54, 23)


def test_ipv6_hop_by_hop_routing_dest_opts() -> None:
    ip = (IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting(addresses=["2001:db8::9"])
          / IPv6ExtHdrDestOpt() / TCP(sport=1, dport=2) / b"data")
    ext = len(b(IPv6ExtHdrHopByHop())) + len(b(IPv6ExtHdrRouting(addresses=["2001:db8::9"]))) + len(
        b(IPv6ExtHdrDestOpt()))
    assert ext == 8 + 24 + 8
    pkt = ok(ip, lt.RAW)
    assert (pkt.proto, pkt.l4_off, pkt.l4_len, pkt.ip_len) == (6, 40 + ext, 24, len(b(ip)))
    assert pkt.dst == p6(B6)  # the header's destination, not the routing header's


def test_ipv6_authentication_header_length_in_4_octet_units() -> None:
    ip = IPv6(src=A6, dst=B6) / AH(nh=17, spi=1, payloadlen=4, icv=b"\0" * 12) / UDP(sport=1, dport=2) / b"x"
    assert len(b(AH(icv=b"\0" * 12))) == 24  # (4 + 2) * 4
    pkt = ok(ip, lt.RAW)
    assert (pkt.proto, pkt.l4_off) == (17, 64)


def test_ipv6_no_next_header() -> None:
    pkt = ok(IPv6(src=A6, dst=B6, nh=59), lt.RAW)
    assert (pkt.proto, pkt.l4_len) == (59, 0)


def _dest_opts(n: int) -> ScapyPacket:
    ip: ScapyPacket = IPv6(src=A6, dst=B6)
    for _ in range(n):
        ip = ip / IPv6ExtHdrDestOpt()
    return ip / UDP(sport=1, dport=2) / b"x"


def test_ipv6_extension_header_limit() -> None:
    assert ok(_dest_opts(MAX_EXT_HEADERS), lt.RAW).l4_off == 40 + 8 * MAX_EXT_HEADERS
    assert malformed(_dest_opts(MAX_EXT_HEADERS + 1), lt.RAW) == "excessive_IPv6_extension_headers"


@pytest.mark.parametrize(("mutate", "name"), [
    (lambda r: r[:39], "truncated_IPv6"),
    (lambda r: bytes([0x45]) + r[1:], "bad_IP_version"),  # IPv6 link type, version 4
    (lambda r: r[:41], "truncated_IPv6_extension_header"),  # HBH next-header only
    (lambda r: r[:44], "truncated_IPv6_extension_header"),  # HBH cut inside
    (lambda r: r[:40 + 8 + 3], "truncated_IPv6_extension_header"),  # routing header cut
    # HBH claims 8 * (1 + 200) bytes
    (lambda r: r[:41] + bytes([200]) + r[42:], "truncated_IPv6_extension_header"),
    # payload length says the chain ends inside the routing header
    (lambda r: r[:4] + struct.pack("!H", 10) + r[6:], "truncated_IPv6_extension_header"),
])
def test_ipv6_malformed(mutate: object, name: str) -> None:
    raw = b(IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting(addresses=[B6])
            / UDP(sport=1, dport=2) / b"x")
    assert callable(mutate)
    assert malformed(mutate(raw), lt.IPV6) == name


def test_ipv6_truncated_fragment_header() -> None:
    raw = b(IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(m=1, id=5) / UDP() / Raw(b"x" * 64))
    assert malformed(raw[:44], lt.RAW) == "truncated_IPv6_fragment_header"


# -- every link type end to end -------------------------------------------------------------------


def _nflog(family: int, ip: bytes) -> bytes:
    tlv = struct.pack("<HH", 4 + len(ip), 9) + ip + b"\0" * (-len(ip) % 4)
    return struct.pack("<BBH", family, 0, 0) + struct.pack("<HH", 8, 1) + b"\x08\x00\x03\x00" + tlv


LINK_CASES: list[tuple[str, int, bytes, int | None, int | None, int]] = [
    ("ethernet", lt.ETHERNET, b(Ether(**MAC) / udp4()), None, None, 0),
    ("dot1q", lt.ETHERNET, b(Ether(**MAC) / Dot1Q(vlan=7) / udp4()), 7, None, 0),
    ("qinq3", lt.ETHERNET, b(Ether(**MAC) / Dot1AD(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / udp4()),
     1, 2, 0),
    ("mpls", lt.ETHERNET, b(Ether(**MAC, type=0x8847)) + struct.pack("!II", 0x10000, 0x20140) + b(udp4()),
     None, None, 0),
    ("pppoe", lt.ETHERNET, b(Ether(**MAC) / PPPoE(sessionid=1) / PPP(proto=0x21) / udp4()), None, None, 0),
    ("pppoe-qinq", lt.ETHERNET,
     b(Ether(**MAC) / Dot1AD(vlan=10) / Dot1Q(vlan=20) / PPPoE(sessionid=1) / PPP(proto=0x21) / udp4()),
     10, 20, 0),
    ("sll", lt.LINUX_SLL, b(CookedLinux() / udp4()), None, None, -1),
    ("sll2", lt.LINUX_SLL2, b(CookedLinuxV2() / udp4()), None, None, -1),
    ("null", lt.NULL, struct.pack("=I", 2) + b(udp4()), None, None, -1),
    ("null-swapped", lt.NULL, struct.pack("<I" if struct.pack("=I", 1) == b"\0\0\0\1" else ">I", 2)
     + b(udp4()), None, None, -1),
    ("loop", lt.LOOP, struct.pack(">I", 2) + b(udp4()), None, None, -1),
    ("raw101", lt.RAW, b(udp4()), None, None, -1),
    ("raw12", lt.RAW_DLT12, b(udp4()), None, None, -1),
    ("raw14", lt.RAW_DLT14, b(udp4()), None, None, -1),
    ("ipv4", lt.IPV4, b(udp4()), None, None, -1),
    ("ppp", lt.PPP, b"\xff\x03\x00\x21" + b(udp4()), None, None, -1),
    ("ppp-hdlc", lt.PPP_HDLC, b"\xff\x03\x21" + b(udp4()), None, None, -1),
    ("cisco-hdlc", lt.PPP_HDLC, b"\x0f\x00\x08\x00" + b(udp4()), None, None, -1),
    ("ppp-ether", lt.PPP_ETHER, b(PPPoE(sessionid=1) / PPP(proto=0x21) / udp4()), None, None, -1),
    ("nflog", lt.NFLOG, _nflog(2, b(udp4())), None, None, -1),
]


@pytest.mark.parametrize(("linktype", "frame", "vlan", "inner", "mac_off"),
                         [c[1:] for c in LINK_CASES], ids=[c[0] for c in LINK_CASES])
def test_every_link_type_to_udp(linktype: int, frame: bytes, vlan: int | None, inner: int | None,
                                mac_off: int) -> None:
    pkt = ok(frame, linktype)
    assert (pkt.src, pkt.dst, pkt.proto, pkt.ip_len, pkt.l4_len) == (p4(A4), p4(B4), 17, 40, 20)
    assert payload_of(pkt)[8:] == b"hello world!"
    assert (pkt.vlan, pkt.inner_vlan, pkt.mac_off) == (vlan, inner, mac_off)


@pytest.mark.parametrize(("linktype", "frame"), [
    (lt.IPV6, b(tcp6())),
    (lt.RAW, b(tcp6())),
    (lt.NULL, struct.pack("=I", 30) + b(tcp6())),
    (lt.LOOP, struct.pack(">I", 24) + b(tcp6())),
    (lt.NFLOG, _nflog(10, b(tcp6()))),
    (lt.LINUX_SLL, b(CookedLinux(proto=0x86DD) / tcp6())),
    (lt.ETHERNET, b(Ether(**MAC) / PPPoE(sessionid=1) / PPP(proto=0x57) / tcp6())),
    (lt.ETHERNET, b(Ether(**MAC, type=0x8864)) + struct.pack("!BBHH", 0x11, 0, 1, 1 + len(tcp6()))
     + b"\x57" + b(tcp6())),
])
def test_ipv6_over_link_types(linktype: int, frame: bytes) -> None:
    pkt = ok(frame, linktype)
    assert (pkt.src, pkt.dst, pkt.proto) == (p6(A6), p6(B6), 6)


def test_non_ip_frames_are_counted_not_weird() -> None:
    d = Decoder()
    assert dec(Ether(**MAC, type=0x0806) / Raw(b"\0" * 28), d=d) == (None, [])
    assert dec(b"\xff\x03\xc0\x21\x01\x01\x00\x04", lt.PPP, d) == (None, [])
    assert d.counters["non_ip"] == 2 and d.counters["malformed"] == 0


def _nflog_tlvs(*tlvs: tuple[int, int, bytes]) -> bytes:
    return struct.pack("<BBH", 2, 0, 0) + b"".join(struct.pack("<HH", n, t) + v for n, t, v in tlvs)


def _tags(n: int) -> bytes:
    return b(Ether(**MAC, type=0x8100)) + b"".join(struct.pack("!HH", i, 0x8100) for i in range(n - 1)) + \
        struct.pack("!HH", n, 0x0800) + b(udp4())


def _labels(n: int, bottom: bool = True) -> bytes:
    stack = b"".join(struct.pack("!I", (i << 12) | (0x100 if bottom and i == n - 1 else 0)) for i in range(n))
    return b(Ether(**MAC, type=0x8847)) + stack + b(udp4())


_PPPOE = b(Ether(**MAC) / PPPoE(sessionid=1) / PPP(proto=0x21) / udp4())
LINK_MALFORMED = [
    ("excessive_VLAN_tags", lt.ETHERNET, _tags(9)),
    ("truncated_VLAN_header", lt.ETHERNET, _tags(3)[:24]),
    ("excessive_MPLS_labels", lt.ETHERNET, _labels(17)),
    ("truncated_MPLS_header", lt.ETHERNET, _labels(3, bottom=False)[:14 + 12]),
    ("truncated_PPPoE_header", lt.ETHERNET, _PPPOE[:19]),
    ("truncated_PPP", lt.ETHERNET, _PPPOE[:21]),
    ("truncated_PPP", lt.PPP, b"\xff\x03"),
    ("truncated_link_header", lt.LINUX_SLL, b(CookedLinux() / udp4())[:12]),
    ("truncated_link_header", lt.LINUX_SLL2, b(CookedLinuxV2() / udp4())[:12]),
    ("truncated_link_header", lt.NULL, b"\x02\x00"),
    ("truncated_link_header", lt.PPP_HDLC, b"\x0f\x00\x08"),
    ("truncated_NFLOG_header", lt.NFLOG, b"\x02\x00"),
    ("bad_NFLOG_TLV", lt.NFLOG, _nflog_tlvs((3, 1, b""))),
    ("bad_NFLOG_TLV", lt.NFLOG, _nflog_tlvs((8, 1, b"\0" * 4), (0, 9, b(udp4())))),
    ("NFLOG_no_payload", lt.NFLOG, _nflog_tlvs((8, 1, b"\0" * 4))),
    ("unknown_IP_version", lt.RAW, b"\x55" + b(udp4())[1:]),
    ("truncated_IP", lt.RAW_DLT12, b""),
    ("unknown_link_type", 4242, b(udp4())),
]


@pytest.mark.parametrize(("name", "linktype", "frame"), LINK_MALFORMED,
                         ids=[f"{c[0]}-{lt.name(c[1])}" for c in LINK_MALFORMED])
def test_malformed_link_layers_are_weirds(name: str, linktype: int, frame: bytes) -> None:
    assert malformed(frame, linktype) == name


def test_link_layer_errors_become_weirds() -> None:
    assert malformed(b"\x02" * 10) == "truncated_link_header"
    assert malformed(b"", lt.RAW) == "truncated_IP"
    assert malformed(b(udp4()), 999) == "unknown_link_type"
    assert malformed(b(Ether(**MAC) / Dot1Q(vlan=1) / Dot1Q(vlan=2))[:20]) == "truncated_VLAN_header"


# -- fragments -------------------------------------------------------------------------------------


def _frags4(size: int = 3072, fragsize: int = 1000, **ip: object) -> tuple[ScapyPacket, list[bytes]]:
    data = bytes(range(256)) * (size // 256)
    whole = IP(src=A4, dst=B4, id=0x4242, **ip) / UDP(sport=53, dport=9999) / Raw(data)
    whole = IP(b(whole))
    return whole, [b(f) for f in fragment(whole, fragsize=fragsize)]


@pytest.mark.parametrize("order", ["in-order", "reversed", "shuffled", "last-first"])
def test_ipv4_fragments_reassemble(order: str) -> None:
    whole, frags = _frags4()
    assert len(frags) == 4
    idx = list(range(len(frags)))
    if order == "reversed":
        idx.reverse()
    elif order == "shuffled":
        idx = [2, 0, 3, 1]
    elif order == "last-first":
        idx = [3, 1, 2, 0]
    d = Decoder()
    results = [dec(Ether(**MAC) / Dot1Q(vlan=5) / IP(frags[i]), d=d) for i in idx]
    assert all(p is None and w == [] for p, w in results[:-1])
    pkt, weirds = results[-1]
    assert weirds == [] and pkt is not None
    assert (pkt.src, pkt.dst, pkt.proto, pkt.vlan) == (p4(A4), p4(B4), 17, 5)
    assert pkt.ip_len == len(b(whole)) and pkt.l4_off == 20 and pkt.buf is not pkt.frame
    assert payload_of(pkt) == b(whole)[20:]
    assert d.counters["fragments_pending"] == 3
    assert d.defrag.counters["reassembled"] == 1


def test_ipv4_fragments_of_different_vlans_do_not_mix() -> None:
    _, frags = _frags4()
    d = Decoder()
    for i, f in enumerate(frags):
        assert dec(Ether(**MAC) / Dot1Q(vlan=1 + i % 2) / IP(f), d=d) == (None, [])
    assert d.defrag.pending == 2


def test_ipv4_fragment_captured_short_is_truncated() -> None:
    _, frags = _frags4()
    assert malformed(frags[0][:200], lt.RAW) == "truncated_IP"


def test_ipv4_fragment_weirds_come_through() -> None:
    _, frags = _frags4(flags="DF")
    d = Decoder()
    names = [n for f in frags for n, _ in dec(f, lt.RAW, d)[1]]
    assert names == ["fragment_with_DF"] * len(frags)
    assert d.defrag.counters["reassembled"] == 1


def test_ipv4_overlapping_fragment_inconsistency() -> None:
    _, frags = _frags4()
    d = Decoder()
    assert dec(frags[0], lt.RAW, d) == (None, [])
    evil = bytearray(frags[0])
    evil[40] ^= 0xFF
    pkt, weirds = dec(bytes(evil), lt.RAW, d)
    assert pkt is None and [n for n, _ in weirds] == ["fragment_inconsistency"]


def _frags6(ext: list[ScapyPacket] | None = None, size: int = 3000) -> tuple[bytes, list[bytes]]:
    ip: ScapyPacket = IPv6(src=A6, dst=B6)
    for e in ext or []:
        ip = ip / e
    whole = ip / IPv6ExtHdrFragment(id=0x77) / UDP(sport=53, dport=9999) / Raw(b"\xab" * size)
    return b(whole), [b(f) for f in fragment6(whole, 1280)]


@pytest.mark.parametrize("order", ["in-order", "reversed", "shuffled"])
def test_ipv6_fragments_reassemble(order: str) -> None:
    whole, frags = _frags6()
    assert len(frags) == 3
    idx = {"in-order": [0, 1, 2], "reversed": [2, 1, 0], "shuffled": [1, 2, 0]}[order]
    d = Decoder()
    results = [dec(Ether(**MAC) / Dot1AD(vlan=8) / Dot1Q(vlan=9) / IPv6(frags[i]), d=d) for i in idx]
    assert all(r == (None, []) for r in results[:-1])
    pkt, weirds = results[-1]
    assert weirds == [] and pkt is not None
    assert (pkt.src, pkt.dst, pkt.proto, pkt.vlan, pkt.inner_vlan) == (p6(A6), p6(B6), 17, 8, 9)
    assert pkt.l4_off == 40 and pkt.ip_len == len(whole) - 8  # the Fragment header is gone
    assert payload_of(pkt) == whole[48:]


def test_ipv6_fragments_after_extension_headers() -> None:
    whole, frags = _frags6([IPv6ExtHdrHopByHop(), IPv6ExtHdrDestOpt()])
    d = Decoder()
    pkt = None
    for f in reversed(frags):
        pkt, weirds = dec(f, lt.RAW, d)
        assert weirds == []
    assert pkt is not None
    assert pkt.proto == 17 and pkt.l4_off == 56
    assert payload_of(pkt) == whole[40 + 16 + 8:]


def test_ipv6_atomic_fragment_is_a_whole_packet() -> None:
    raw = b(IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(m=0, offset=0, id=1) / UDP(sport=1, dport=2) / b"x")
    d = Decoder()
    pkt = ok(raw, lt.RAW, d)
    assert (pkt.proto, pkt.l4_off, pkt.l4_len) == (17, 48, 9)
    assert d.defrag.pending == 0


def test_ipv6_fragment_captured_short_is_truncated() -> None:
    _, frags = _frags6()
    assert malformed(frags[0][:300], lt.RAW) == "truncated_IPv6"


def test_nested_ipv6_fragment_headers_are_bounded() -> None:
    """A Fragment header inside each reassembled datagram: formerly unbounded recursion.

    Datagram k's payload is the offset-0 fragment of datagram k+1, whose other
    half was sent earlier; reassembling datagram 1 then completes 2, 3, ...
    """
    def v6(nh: int, payload: bytes) -> bytes:
        return struct.pack("!IHBB", 0x60000000, len(payload), nh, 64) + p6(A6) + p6(B6) + payload

    def fh(nh: int, off: int, m: int, ident: int) -> bytes:
        return struct.pack("!BBHI", nh, 0, off | m, ident)

    def build(n: int) -> list[bytes]:
        udp = struct.pack("!HHHH", 1, 2, 16, 0) + b"ABCDEFGH"
        first, rest, nhs = {n: udp[:8]}, {n: udp[8:]}, {n: 17}
        for k in range(n - 1, 0, -1):
            w = fh(nhs[k + 1], 0, 1, k + 1) + first[k + 1]
            first[k], rest[k], nhs[k] = w[:8], w[8:], 44
        return [v6(44, fh(nhs[k], 8, 0, k) + rest[k]) for k in range(1, n + 1)] + [
            v6(44, fh(nhs[1], 0, 1, 1) + first[1])]

    d = Decoder()
    frames = build(4)
    for f in frames[:-1]:
        assert d.decode(TS, lt.RAW, f) is None
    pkt = d.decode(TS, lt.RAW, frames[-1])
    assert pkt is not None and payload_of(pkt) == struct.pack("!HHHH", 1, 2, 16, 0) + b"ABCDEFGH"

    d = Decoder()
    for f in build(1500):
        assert d.decode(TS, lt.RAW, f) is None
    assert "excessive_IPv6_extension_headers" in {w[1] for w in d.weirds}


# -- tunnels: IP in IP -----------------------------------------------------------------------------


INNER4 = IP(src="10.1.1.1", dst="10.2.2.2") / UDP(sport=7, dport=9) / Raw(b"inner")
INNER6 = IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=7, dport=9) / Raw(b"inner")


def test_ipip() -> None:
    d = Decoder()
    pkt = ok(Ether(**MAC) / Dot1Q(vlan=3) / IP(src=A4, dst=B4) / INNER4, d=d)
    assert (pkt.src, pkt.dst, pkt.proto, pkt.ip_len) == (p4("10.1.1.1"), p4("10.2.2.2"), 17, 33)
    assert payload_of(pkt)[8:] == b"inner"
    assert (pkt.vlan, pkt.mac_off) == (3, -1)
    assert d.counters["tunneled"] == 1


def test_6in4_4in6_6in6() -> None:
    assert ok(IP(src=A4, dst=B4) / INNER6, lt.RAW).src == p6("fd00::1")
    assert ok(IPv6(src=A6, dst=B6) / INNER4, lt.RAW).src == p4("10.1.1.1")
    assert ok(IPv6(src=A6, dst=B6) / IPv6ExtHdrDestOpt() / INNER6, lt.RAW).dst == p6("fd00::2")


def test_fragmented_outer_ipip_reassembles_the_whole_inner_packet() -> None:
    """The tunnel bound after reassembly is the datagram, not the last fragment (fixed bug)."""
    inner = IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / Raw(b"y" * 1000)
    outer = IP(src=A4, dst=B4, id=9, proto=4) / inner
    d = Decoder()
    pkt = None
    for f in fragment(outer, fragsize=400):
        pkt, weirds = dec(f, lt.RAW, d)
        assert weirds == []
    assert pkt is not None and pkt.src == p4("10.0.0.1")
    assert pkt.l4_len == 1008 and payload_of(pkt)[8:] == b"y" * 1000


def _nest(depth: int) -> bytes:
    p: ScapyPacket = INNER4
    for i in range(depth):
        p = IP(src=f"192.0.2.{i + 10}", dst=B4) / p
    return b(p)


def test_tunnel_depth_limit() -> None:
    assert ok(_nest(MAX_TUNNEL_DEPTH), lt.RAW).src == p4("10.1.1.1")
    assert malformed(_nest(MAX_TUNNEL_DEPTH + 1), lt.RAW) == "exceeded_tunnel_max_depth"


def test_malformed_inner_packet() -> None:
    assert malformed(b(IP(src=A4, dst=B4) / INNER4)[:30], lt.RAW) == "truncated_IP"
    assert malformed(b(IP(src=A4, dst=B4, proto=41) / INNER4), lt.RAW) == "truncated_IPv6"  # 33 < 40
    assert malformed(b(IP(src=A4, dst=B4, proto=4) / INNER6), lt.RAW) == "bad_IP_version"


# -- tunnels: GRE --------------------------------------------------------------------------------


@pytest.mark.parametrize("chksum", [0, 1])
@pytest.mark.parametrize("key", [0, 1])
@pytest.mark.parametrize("seq", [0, 1])
def test_gre_v0_optional_fields(chksum: int, key: int, seq: int) -> None:
    gre = GRE(chksum_present=chksum, key_present=key, seqnum_present=seq, key=77, sequence_number=5)
    frame = Ether(**MAC) / IP(src=A4, dst=B4) / gre / INNER4
    pkt = ok(frame)
    assert (pkt.src, pkt.proto, payload_of(pkt)[8:]) == (p4("10.1.1.1"), 17, b"inner")


def test_gre_ipv6_payload_over_ipv6() -> None:
    pkt = ok(IPv6(src=A6, dst=B6) / GRE(key_present=1) / INNER6, lt.RAW)
    assert pkt.src == p6("fd00::1")


def test_gre_teb_inner_ethernet_and_vlans() -> None:
    outer = Ether(**MAC) / Dot1Q(vlan=100) / IP(src=A4, dst=B4) / GRE(proto=0x6558)
    pkt = ok(outer / Ether(**MAC) / INNER4)
    assert (pkt.src, pkt.vlan, pkt.mac_off) == (p4("10.1.1.1"), 100, -1)
    # an inner tag replaces the outer one
    pkt = ok(outer / Ether(**MAC) / Dot1Q(vlan=200) / INNER4)
    assert pkt.vlan == 200
    # non-IP inside
    assert dec(outer / Ether(**MAC, type=0x0806) / Raw(b"\0" * 28)) == (None, [])


def test_gre_teb_tags_are_never_mixed_across_the_tunnel() -> None:
    """Outer QinQ (100, 200), inner frame tagged 300: (300, None), not (300, 200) (fixed bug)."""
    outer = Ether(**MAC) / Dot1AD(vlan=100) / Dot1Q(vlan=200) / IP(src=A4, dst=B4) / GRE(proto=0x6558)
    assert ok(outer / Ether(**MAC) / Dot1Q(vlan=300) / INNER4)[7:9] == (300, None)
    assert ok(outer / Ether(**MAC) / Dot1AD(vlan=300) / Dot1Q(vlan=400) / INNER4)[7:9] == (300, 400)
    assert ok(outer / Ether(**MAC) / INNER4)[7:9] == (100, 200)


def test_erspan_type_ii() -> None:
    frame = (Ether(**MAC) / IP(src=A4, dst=B4) / GRE(seqnum_present=1, proto=0x88BE)
             / ERSPAN_II(session_id=12, vlan=0) / Ether(**MAC) / Dot1Q(vlan=44) / INNER6)
    pkt = ok(frame)
    assert (pkt.src, pkt.proto, pkt.vlan) == (p6("fd00::1"), 17, 44)


@pytest.mark.parametrize("ack", [0, 1])
@pytest.mark.parametrize("seq", [0, 1])
@pytest.mark.parametrize("hdlc", [True, False])
def test_pptp_gre_v1_ppp(ack: int, seq: int, hdlc: bool) -> None:
    ppp = b"\xff\x03\x00\x21" if hdlc else b"\x00\x21"
    gre = GRE_PPTP(seqnum_present=seq, acknum_present=ack, call_id=6, sequence_number=1, ack_number=2)
    pkt = ok(Ether(**MAC) / IP(src=A4, dst=B4) / gre / Raw(ppp + b(INNER4)))
    assert (pkt.src, pkt.proto, payload_of(pkt)[8:]) == (p4("10.1.1.1"), 17, b"inner")


def test_pptp_compressed_protocol_ipv6_and_lcp() -> None:
    gre = GRE_PPTP(seqnum_present=1)
    assert ok(IP(src=A4, dst=B4) / gre / Raw(b"\x57" + b(INNER6)), lt.RAW).src == p6("fd00::1")
    d = Decoder()
    assert dec(IP(src=A4, dst=B4) / gre / PPP(proto=0xC021) / b"\x01\x01\x00\x04", lt.RAW, d) == (None, [])
    assert d.counters["non_ip"] == 1


def _gre_raw(flags: int, proto: int, rest: bytes) -> bytes:
    return b(IP(src=A4, dst=B4, proto=47) / Raw(struct.pack("!HH", flags, proto) + rest))


@pytest.mark.parametrize(("frame", "name"), [
    (_gre_raw(0x0002, 0x0800, b(INNER4)), "unknown_gre_version"),
    (_gre_raw(0x4000, 0x0800, b"\0" * 4 + b(INNER4)), "gre_routing_present"),
    (b(IP(src=A4, dst=B4, proto=47) / Raw(b"\x00\x00\x08")), "truncated_GRE"),
    (_gre_raw(0xB000, 0x0800, b"\0" * 8), "truncated_GRE"),  # checksum+key+seq claimed, 8 bytes given
    (_gre_raw(0x3081, 0x880B, b"\0" * 8), "truncated_GRE"),  # PPTP with ack number cut off
    (_gre_raw(0x2001, 0x880B, b"\0" * 4), "truncated_PPP"),
    (_gre_raw(0x0000, 0x0800, b(INNER4)[:12]), "truncated_IP"),
    (_gre_raw(0x0000, 0x6558, b"\0" * 10), "truncated_link_header"),
    (_gre_raw(0x1000, 0x88BE, b"\0" * 4 + b"\0" * 8 + b"\0" * 6), "truncated_link_header"),
])
def test_gre_malformed(frame: bytes, name: str) -> None:
    assert malformed(frame, lt.RAW) == name


def test_gre_unknown_payload_is_non_ip() -> None:
    d = Decoder()
    assert dec(_gre_raw(0, 0x8847, b"\0" * 20), lt.RAW, d) == (None, [])
    assert d.counters["non_ip"] == 1


# -- Teredo ----------------------------------------------------------------------------------------

TEREDO_CLIENT = "2001:0:4136:e378:8000:63bf:3fff:fdd2"


def _teredo_outer(payload: bytes, sport: int = 3544, dport: int = 3544) -> tuple[Decoder, Packet, int, int]:
    udp = UDP(sport=sport, dport=dport) / Raw(payload)
    frame = b(Ether(**MAC) / Dot1Q(vlan=9) / IP(src=A4, dst=B4) / udp)
    d = Decoder()
    pkt = ok(frame, d=d)
    assert pkt.proto == 17
    return d, pkt, pkt.l4_off + 8, pkt.l4_off + pkt.l4_len


def _inner6(src: str = TEREDO_CLIENT, dst: str = "2001:db8::80") -> bytes:
    return b(IPv6(src=src, dst=dst) / TCP(sport=1025, dport=80, flags="S"))


def test_teredo_plain() -> None:
    d, pkt, off, end = _teredo_outer(_inner6())
    inner = d.decode_teredo(TS, pkt, off, end, True)
    assert inner is not None
    assert (inner.src, inner.dst, inner.proto, inner.l4_len) == (p6(TEREDO_CLIENT), p6("2001:db8::80"), 6, 20)
    assert (inner.vlan, inner.mac_off, inner.frame) == (9, -1, pkt.frame)
    assert d.counters["tunneled"] == 1


def test_teredo_origin_indication() -> None:
    origin = b"\x00\x00" + struct.pack("!H", 0xFFFF ^ 40000) + bytes(b ^ 0xFF for b in p4("203.0.113.5"))
    d, pkt, off, end = _teredo_outer(origin + _inner6())
    inner = d.decode_teredo(TS, pkt, off, end, True)
    assert inner is not None and inner.src == p6(TEREDO_CLIENT)
    assert inner.buf[inner.l4_off:inner.l4_off + 2] == struct.pack("!H", 1025)


def test_teredo_authentication_and_origin_indication() -> None:
    client_id, auth = b"id", b"auth-value"
    auth_hdr = b"\x00\x01" + bytes([len(client_id), len(auth)]) + client_id + auth + b"N" * 8 + b"\x00"
    origin = b"\x00\x00" + b"\x12\x34" + b"\x01\x02\x03\x04"
    d, pkt, off, end = _teredo_outer(auth_hdr + origin + _inner6())
    inner = d.decode_teredo(TS, pkt, off, end, True)
    assert inner is not None and inner.proto == 6


def test_teredo_without_the_port_needs_a_teredo_address() -> None:
    d, pkt, off, end = _teredo_outer(_inner6(), 50000, 60000)
    assert d.decode_teredo(TS, pkt, off, end, False) is not None
    d, pkt, off, end = _teredo_outer(_inner6("2001:db8::1", "2001:db8::2"), 50000, 60000)
    assert d.decode_teredo(TS, pkt, off, end, False) is None
    assert d.decode_teredo(TS, pkt, off, end, True) is not None


@pytest.mark.parametrize("payload", [
    b"",
    b"\x00",
    b"\x00\x01\x05",  # authentication header cut
    b"\x00\x00" + b"\x00" * 6,  # origin indication and nothing else
    b"Q" + b"\x00" * 60,  # QUIC-ish: not IPv6
    _inner6()[:-1],  # one byte short of the payload length
    _inner6() + b"\x00",  # one byte extra
    b(IP(src=A4, dst=B4) / TCP()),  # IPv4 is not Teredo
])
def test_teredo_rejects_non_teredo_payloads(payload: bytes) -> None:
    d, pkt, off, end = _teredo_outer(payload)
    assert d.decode_teredo(TS, pkt, off, end, True) is None
    assert d.weirds == [] and d.counters["tunneled"] == 0


def test_teredo_malformed_inner_is_a_weird() -> None:
    inner = b(IPv6(src=TEREDO_CLIENT, dst="2001:db8::80") / IPv6ExtHdrHopByHop() / TCP())
    bad = bytearray(inner)
    bad[41] = 100  # hop-by-hop header longer than the packet
    d, pkt, off, end = _teredo_outer(bytes(bad))
    assert d.decode_teredo(TS, pkt, off, end, True) is None
    assert [(w[1], w[2].startswith("inside Teredo")) for w in d.weirds] == [
        ("truncated_IPv6_extension_header", True)]


# -- weird bookkeeping ---------------------------------------------------------------------------


def test_pending_weirds_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packet_mod, "MAX_PENDING_WEIRDS", 3)
    d = Decoder()
    for _ in range(5):
        assert d.decode(TS, lt.RAW, b"\x45") is None
    assert len(d.weirds) == 3
    assert d.counters["weirds_dropped"] == 2 and d.counters["malformed"] == 5


def test_weird_shape() -> None:
    d = Decoder()
    d.decode(12.5, lt.ETHERNET, b"x")
    assert d.weirds == [Weird(12.5, "truncated_link_header", "ethernet frame of 1 bytes")]
    assert d.weirds is d.outbox.weirds and d.weirds[0].flow is None


def test_decoder_never_raises_on_truncations_of_valid_frames() -> None:
    """Every prefix of every test frame: a Packet, None, or None + weird; never an exception."""
    frames = [(c[1], c[2]) for c in LINK_CASES] + [
        (lt.ETHERNET, b(Ether(**MAC) / IP(src=A4, dst=B4) / GRE(key_present=1) / INNER6)),
        (lt.ETHERNET, b(Ether(**MAC) / IP(src=A4, dst=B4) / GRE_PPTP(seqnum_present=1) / PPP() / INNER4)),
        (lt.RAW, b(IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment(m=1) / UDP()
                   / Raw(b"x" * 80))),
        (lt.RAW, b(IP(src=A4, dst=B4, flags="MF") / UDP() / Raw(b"x" * 80))),
    ]
    rng = random.Random(7)
    d = Decoder()
    for linktype, frame in frames:
        for n in range(len(frame) + 1):
            cut = frame[:n]
            d.decode(TS, linktype, cut)
            flipped = bytearray(frame)
            flipped[rng.randrange(len(frame))] ^= 1 << rng.randrange(8)
            d.decode(TS, linktype, bytes(flipped))
    assert all(isinstance(w[1], str) and isinstance(w[2], str) for w in d.weirds)


# -- corpus ------------------------------------------------------------------------------------------


def _decode_corpus(rel: str) -> tuple[Decoder, list[Packet | None]]:
    d = Decoder()
    with open(CORPUS / rel, "rb") as f:
        r = dpkt.pcap.Reader(f)
        linktype = r.datalink()
        out = [d.decode(ts, linktype, bytes(buf)) for ts, buf in r]
    return d, out


# (path, frames, decoded IP packets, expected weird names)
CORPUS_CASES: list[tuple[str, int, int, list[str]]] = [
    ("zeek/Traces/q-in-q.pcap", 5, 4, []),  # + 1 ARP
    ("zeek/Traces/mixed-vlan-mpls.pcap", 47, 47, []),
    ("zeek/Traces/pppoe.pcap", 65, 25, []),  # + PPPoE discovery and LCP/IPCP
    ("zeek/Traces/pppoe-over-qinq.pcap", 86, 86, []),
    ("zeek/Traces/nflog-http.pcap", 13, 13, []),
    ("zeek/Traces/tunnels/gre-sample.pcap", 40, 40, []),
    ("zeek/Traces/tunnels/Teredo.pcap", 78, 78, []),
    ("suricata-verify/decode-teredo-01/input.pcap", 78, 78, []),
    ("suricata-verify/bug-4810/pppoe-session-http.pcap", 30, 30, []),
    ("zeek/Traces/radius/radius_localhost.pcap", 19, 19, []),
    ("zeek/Traces/http/261/variant-10-multi_value_te.pcap", 8, 8, []),
    ("zeek/Traces/http-qinq-0.pcap", 14, 14, []),
    ("zeek/Traces/ipv6-http-atomic-frag.pcap", 38, 38, []),
    ("zeek/Traces/ipv6-fragmented-dns.pcap", 8, 5, []),
    ("suricata-verify/http-ipv6/input.pcap", 14, 14, []),  # NULL loopback, IPv6
    ("tcpdump/RADIUS-RFC4675.pcap", 6, 6, []),  # Linux SLL
    ("suricata-verify/defrag/bug-6887-defrag-ipv6-tcp/frag-ip-tcp.pcap", 3, 1, []),
    # two 8-byte non-last IPv4 fragments: Zeek reports the same
    ("suricata-verify/defrag/bug-6887-defrag-eth-vlan-ipv4-tcp-syn/frag-eth-vlan-ip-tcp-syn.pcap", 3, 1,
     ["excessively_small_fragment"] * 2),
]


@needs_corpus
@pytest.mark.parametrize(("rel", "frames", "ip", "weirds"), CORPUS_CASES, ids=[c[0] for c in CORPUS_CASES])
def test_corpus_decodes(rel: str, frames: int, ip: int, weirds: list[str]) -> None:
    d, out = _decode_corpus(rel)
    assert len(out) == frames
    assert sum(p is not None for p in out) == ip
    assert [w[1] for w in d.weirds] == weirds


@needs_corpus
def test_corpus_vlan_and_mpls_values() -> None:
    # plain Ethernet (22), 802.1Q VLAN 4093 (14), one MPLS label (11), as Zeek's three connections
    _, out = _decode_corpus("zeek/Traces/mixed-vlan-mpls.pcap")
    seen = collections.Counter((p.vlan, p.l4_off) for p in out if p is not None)
    assert seen == {(None, 34): 22, (4093, 38): 14, (None, 38): 11}
    _, out = _decode_corpus("zeek/Traces/q-in-q.pcap")
    assert {(p.vlan, p.inner_vlan) for p in out if p is not None} == {(13, 10)}
    _, out = _decode_corpus("zeek/Traces/pppoe-over-qinq.pcap")
    assert {(p.vlan, p.inner_vlan, p.mac_off) for p in out if p is not None} == {(3704, 2474, 0)}


@needs_corpus
def test_corpus_gre_sample_is_all_tunneled() -> None:
    d, out = _decode_corpus("zeek/Traces/tunnels/gre-sample.pcap")
    assert d.counters["tunneled"] == 40
    assert all(p is not None and p.mac_off == -1 for p in out)


@needs_corpus
def test_corpus_every_capture_decodes_without_exceptions() -> None:
    for path in sorted(CORPUS.rglob("*.pcap")):
        with open(path, "rb") as f:
            try:
                r = dpkt.pcap.Reader(f)
            except ValueError:
                continue
            d = Decoder()
            linktype = r.datalink()
            for ts, buf in r:
                d.decode(ts, linktype, bytes(buf))


@needs_corpus
@pytest.mark.parametrize("rel", ["zeek/Traces/tunnels/Teredo.pcap",
                                 "suricata-verify/decode-teredo-01/input.pcap"])
def test_corpus_teredo_through_the_pipeline(rel: str) -> None:
    """Teredo with authentication and origin-indication headers, decapsulated by the pipeline."""
    from agent.pipeline import Pipeline

    out: list[dict[str, object]] = []
    pipe = Pipeline(out.extend)
    with open(CORPUS / rel, "rb") as f:
        pipe.feed([(ts, lt.ETHERNET, bytes(buf)) for ts, buf in dpkt.pcap.Reader(f)])
    pipe.finish()
    # the tunnelled connections' decoders run too (http, dns, dhcp)
    assert {r["type"] for r in out} <= {"session", "http", "dns", "dhcp"}
    out = [r for r in out if r["type"] == "session"]
    flows = {(r["proto"], r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"]): r for r in out}
    # the HTTP connection inside the tunnel (Zeek's core.tunnels.teredo conn.log)
    http = flows[("tcp", "2001:0:4137:9e50:8000:f12a:b9c8:2815", 1286, "2001:4860:0:2001::68", 80)]
    assert http["service"] == "http"
    assert ("icmp6", "2001:0:4137:9e50:8000:f12a:b9c8:2815", 128, "2001:4860:0:2001::68", 129) in flows
    assert ("icmp6", "fe80::8000:ffff:ffff:fffd", 133, "ff02::2", 134) in flows  # RS with authentication
    assert flows[("udp", "192.168.2.16", 3797, "65.55.158.80", 3544)]["service"] == "teredo"
    assert flows[("udp", "192.168.2.16", 3797, "83.170.1.38", 32900)]["service"] == "teredo"
