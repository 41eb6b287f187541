"""Link layers: every link type and header `link_layer` peels, and each malformed variant.

Frames are built with scapy (the layers it has) or struct (NFLOG, odd byte orders);
corpus captures from ../shared/corpus are checked where present.
"""

from __future__ import annotations

import struct
from pathlib import Path

import dpkt
import pytest
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, LLC, SNAP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether, Loopback
from scapy.layers.ppp import PPP, PPPoE, PPPoED
from scapy.packet import Packet, Raw

from agent.capture import linktypes as lt
from agent.decode.errors import DecodeError
from agent.decode.link import (
    ETH_ARP,
    ETH_IPV4,
    ETH_IPV6,
    ETH_PPPOE_DISC,
    MAX_MPLS,
    MAX_TAGS,
    NOT_IP,
    link_layer,
)

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus absent")

MAC = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
IP4 = IP(src="192.0.2.1", dst="198.51.100.2") / UDP(sport=1234, dport=53) / Raw(b"q" * 12)
IP6 = IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=4321, dport=80, flags="S")


def b(p: Packet | bytes) -> bytes:
    return p if isinstance(p, bytes) else bytes(p)


def ll(linktype: int, frame: Packet | bytes) -> tuple[int, int, int | None, int | None, int]:
    return link_layer(linktype, b(frame))


def bad(linktype: int, frame: Packet | bytes) -> DecodeError:
    with pytest.raises(DecodeError) as ei:
        link_layer(linktype, b(frame))
    assert ei.value.name and isinstance(ei.value.detail, str)
    return ei.value


# -- Ethernet, VLAN, QinQ ------------------------------------------------------------------


def test_ethernet_ipv4_and_ipv6() -> None:
    assert ll(lt.ETHERNET, Ether(**MAC) / IP4) == (ETH_IPV4, 14, None, None, 0)
    assert ll(lt.ETHERNET, Ether(**MAC) / IP6) == (ETH_IPV6, 14, None, None, 0)


def test_ethernet_non_ip_returns_its_ethertype() -> None:
    assert ll(lt.ETHERNET, Ether(**MAC) / ARP())[0] == ETH_ARP
    # 802.3 length field + LLC/SNAP (STP, CDP): no IP we follow
    assert ll(lt.ETHERNET, Ether(**MAC, type=38) / LLC() / SNAP() / Raw(b"x" * 30))[0] == NOT_IP
    assert ll(lt.ETHERNET, Ether(**MAC, type=0x88CC) / Raw(b"lldp"))[0] == 0x88CC


def test_ethernet_truncated() -> None:
    assert bad(lt.ETHERNET, b"\x02" * 13).name == "truncated_link_header"
    assert bad(lt.ETHERNET, b"").name == "truncated_link_header"


def test_single_vlan() -> None:
    frame = Ether(**MAC) / Dot1Q(vlan=42, prio=5) / IP4
    assert ll(lt.ETHERNET, frame) == (ETH_IPV4, 18, 42, None, 0)
    frame6 = Ether(**MAC) / Dot1Q(vlan=4095) / IP6
    assert ll(lt.ETHERNET, frame6) == (ETH_IPV6, 18, 4095, None, 0)


def test_vlan_zero_is_reported_as_zero_not_none() -> None:
    assert ll(lt.ETHERNET, Ether(**MAC) / Dot1Q(vlan=0) / IP4)[2] == 0


@pytest.mark.parametrize("outer_type", [0x88A8, 0x9100, 0x8100])
def test_qinq(outer_type: int) -> None:
    frame = Ether(**MAC, type=outer_type) / Dot1Q(vlan=100) / Dot1Q(vlan=200) / IP4
    assert ll(lt.ETHERNET, frame) == (ETH_IPV4, 22, 100, 200, 0)


def test_qinq_depth_three_reports_outer_and_second() -> None:
    frame = Ether(**MAC) / Dot1AD(vlan=10) / Dot1Q(vlan=20) / Dot1Q(vlan=30) / IP6
    assert ll(lt.ETHERNET, frame) == (ETH_IPV6, 26, 10, 20, 0)


def _tags(n: int, payload: Packet) -> Packet:
    p: Packet = Ether(**MAC)
    for i in range(n):
        p = p / Dot1Q(vlan=i + 1)
    return p / payload


def test_max_tags_accepted_one_more_is_malformed() -> None:
    assert ll(lt.ETHERNET, _tags(MAX_TAGS, IP4)) == (ETH_IPV4, 14 + 4 * MAX_TAGS, 1, 2, 0)
    assert bad(lt.ETHERNET, _tags(MAX_TAGS + 1, IP4)).name == "excessive_VLAN_tags"


def test_truncated_vlan_header() -> None:
    frame = b(Ether(**MAC) / Dot1Q(vlan=7) / IP4)[:16]
    assert bad(lt.ETHERNET, frame).name == "truncated_VLAN_header"
    # the second tag of a QinQ pair cut off
    frame = b(Ether(**MAC) / Dot1AD(vlan=7) / Dot1Q(vlan=8) / IP4)[:20]
    assert bad(lt.ETHERNET, frame).name == "truncated_VLAN_header"


def test_vlan_tagged_arp_keeps_tags() -> None:
    assert ll(lt.ETHERNET, Ether(**MAC) / Dot1AD(vlan=200) / Dot1Q(vlan=2001) / ARP()) == (
        ETH_ARP, 22, 200, 2001, 0)


# -- MPLS -----------------------------------------------------------------------------------


def _mpls(n: int, payload: Packet | bytes, *, bottom: bool = True, etype: int = 0x8847) -> bytes:
    labels = b"".join(
        struct.pack("!I", ((16 + i) << 12) | (0x100 if bottom and i == n - 1 else 0) | 64) for i in range(n))
    return b(Ether(**MAC, type=etype)) + labels + b(payload)


def test_mpls_single_label_scapy() -> None:
    assert ll(lt.ETHERNET, Ether(**MAC) / MPLS(label=100, s=1) / IP4) == (ETH_IPV4, 18, None, None, 0)


def test_mpls_stack_ipv4_and_ipv6() -> None:
    assert ll(lt.ETHERNET, _mpls(3, IP4)) == (ETH_IPV4, 26, None, None, 0)
    assert ll(lt.ETHERNET, _mpls(2, IP6)) == (ETH_IPV6, 22, None, None, 0)
    # multicast MPLS ethertype
    assert ll(lt.ETHERNET, _mpls(1, IP4, etype=0x8848))[:2] == (ETH_IPV4, 18)


def test_mpls_under_vlan_keeps_the_tag() -> None:
    frame = b(Ether(**MAC) / Dot1Q(vlan=33, type=0x8847)) + _mpls(2, IP4)[14:]
    assert ll(lt.ETHERNET, frame) == (ETH_IPV4, 26, 33, None, 0)


def test_mpls_payload_not_ip_by_version_nibble() -> None:
    assert ll(lt.ETHERNET, _mpls(1, b"\x00" * 20))[0] == NOT_IP


def test_mpls_limits_and_truncation() -> None:
    assert ll(lt.ETHERNET, _mpls(MAX_MPLS, IP4))[:2] == (ETH_IPV4, 14 + 4 * MAX_MPLS)
    assert bad(lt.ETHERNET, _mpls(MAX_MPLS + 1, IP4)).name == "excessive_MPLS_labels"
    # no bottom-of-stack bit: walks off the end of the frame
    assert bad(lt.ETHERNET, _mpls(2, b"", bottom=False)).name == "truncated_MPLS_header"
    # label cut in half
    assert bad(lt.ETHERNET, _mpls(2, IP4)[:20]).name == "truncated_MPLS_header"
    # bottom of stack with nothing after it
    assert bad(lt.ETHERNET, _mpls(1, b"")).name == "truncated_MPLS_header"


# -- PPPoE -----------------------------------------------------------------------------------


def test_pppoe_session_ipv4_and_ipv6() -> None:
    frame = Ether(**MAC) / PPPoE(sessionid=0x1234) / PPP(proto=0x0021) / IP4
    assert ll(lt.ETHERNET, frame) == (ETH_IPV4, 22, None, None, 0)
    frame6 = Ether(**MAC) / PPPoE(sessionid=1) / PPP(proto=0x0057) / IP6
    assert ll(lt.ETHERNET, frame6) == (ETH_IPV6, 22, None, None, 0)


def test_pppoe_compressed_protocol_field() -> None:
    # RFC 1661 §6.5 protocol-field compression: one odd octet
    frame = b(Ether(**MAC, type=0x8864)) + struct.pack("!BBHH", 0x11, 0, 7, 1 + len(IP4)) + b"\x21" + b(IP4)
    assert ll(lt.ETHERNET, frame) == (ETH_IPV4, 21, None, None, 0)
    frame6 = b(Ether(**MAC, type=0x8864)) + struct.pack("!BBHH", 0x11, 0, 7, 1 + len(IP6)) + b"\x57" + b(IP6)
    assert ll(lt.ETHERNET, frame6) == (ETH_IPV6, 21, None, None, 0)


def test_pppoe_lcp_and_discovery_are_not_ip() -> None:
    lcp = Ether(**MAC) / PPPoE(sessionid=1) / PPP(proto=0xC021) / Raw(b"\x01\x01\x00\x04")
    assert ll(lt.ETHERNET, lcp)[0] == NOT_IP
    padi = Ether(**MAC) / PPPoED(code=0x09)
    assert ll(lt.ETHERNET, padi)[0] == ETH_PPPOE_DISC


def test_pppoe_over_qinq() -> None:
    frame = Ether(**MAC) / Dot1AD(vlan=5) / Dot1Q(vlan=6) / PPPoE(sessionid=9) / PPP(proto=0x21) / IP4
    assert ll(lt.ETHERNET, frame) == (ETH_IPV4, 30, 5, 6, 0)


def test_pppoe_truncated() -> None:
    full = b(Ether(**MAC) / PPPoE(sessionid=1) / PPP(proto=0x21) / IP4)
    assert bad(lt.ETHERNET, full[:18]).name == "truncated_PPPoE_header"
    assert bad(lt.ETHERNET, full[:20]).name == "truncated_PPP"  # PPPoE header, no PPP protocol
    assert bad(lt.ETHERNET, full[:21]).name == "truncated_PPP"  # half a 16-bit protocol
    # PPPoE length 0: the PPP protocol lies outside the session payload
    zero = bytearray(full)
    struct.pack_into("!H", zero, 18, 0)
    assert bad(lt.ETHERNET, bytes(zero)).name == "truncated_PPP"


def test_ppp_ether_linktype_starts_at_the_pppoe_header() -> None:
    frame = PPPoE(sessionid=3) / PPP(proto=0x21) / IP4
    assert ll(lt.PPP_ETHER, frame) == (ETH_IPV4, 8, None, None, -1)
    assert bad(lt.PPP_ETHER, b"\x11\x00").name == "truncated_PPPoE_header"


# -- Linux cooked captures ---------------------------------------------------------------------


def test_sll_v1() -> None:
    assert ll(lt.LINUX_SLL, CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6) / IP4) == (
        ETH_IPV4, 16, None, None, -1)
    assert ll(lt.LINUX_SLL, CookedLinux() / IP6)[:2] == (ETH_IPV6, 16)
    # 802.1Q left in place by the kernel
    assert ll(lt.LINUX_SLL, CookedLinux(proto=0x8100) / Dot1Q(vlan=12) / IP4) == (
        ETH_IPV4, 20, 12, None, -1)
    assert bad(lt.LINUX_SLL, b(CookedLinux() / IP4)[:15]).name == "truncated_link_header"


def test_sll_v2() -> None:
    assert ll(lt.LINUX_SLL2, CookedLinuxV2(ifindex=3) / IP4) == (ETH_IPV4, 20, None, None, -1)
    assert ll(lt.LINUX_SLL2, CookedLinuxV2(proto=0x86DD) / IP6)[:2] == (ETH_IPV6, 20)
    assert bad(lt.LINUX_SLL2, b(CookedLinuxV2() / IP4)[:19]).name == "truncated_link_header"


# -- BSD loopback ----------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize(("family", "etype"), [(2, ETH_IPV4), (10, ETH_IPV6), (24, ETH_IPV6),
                                               (28, ETH_IPV6), (30, ETH_IPV6)])
def test_null_loopback_either_byte_order(order: str, family: int, etype: int) -> None:
    payload = IP4 if etype == ETH_IPV4 else IP6
    frame = struct.pack(order + "I", family) + b(payload)
    assert ll(lt.NULL, frame) == (etype, 4, None, None, -1)


def test_null_loopback_scapy_and_unknown_family() -> None:
    assert ll(lt.NULL, Loopback(type=2) / IP4)[:2] == (ETH_IPV4, 4)
    assert ll(lt.NULL, struct.pack("<I", 7) + b(IP4))[0] == NOT_IP
    assert bad(lt.NULL, b"\x02\x00\x00").name == "truncated_link_header"


def test_openbsd_loop_is_network_order() -> None:
    assert ll(lt.LOOP, struct.pack(">I", 2) + b(IP4)) == (ETH_IPV4, 4, None, None, -1)
    assert ll(lt.LOOP, struct.pack(">I", 24) + b(IP6))[0] == ETH_IPV6
    # LOOP is always network order: a little-endian family is not guessed
    assert ll(lt.LOOP, struct.pack("<I", 2) + b(IP4))[0] == NOT_IP
    assert bad(lt.LOOP, b"").name == "truncated_link_header"


# -- raw IP ----------------------------------------------------------------------------------


@pytest.mark.parametrize("linktype", [lt.RAW, lt.RAW_DLT12, lt.RAW_DLT14])
def test_raw_ip_by_version_nibble(linktype: int) -> None:
    assert ll(linktype, IP4) == (ETH_IPV4, 0, None, None, -1)
    assert ll(linktype, IP6) == (ETH_IPV6, 0, None, None, -1)
    assert bad(linktype, b"\x55" + b"\x00" * 30).name == "unknown_IP_version"
    assert bad(linktype, b"").name == "truncated_IP"


def test_raw_ipv4_and_ipv6_linktypes_do_not_look_at_the_version() -> None:
    assert ll(lt.IPV4, IP4) == (ETH_IPV4, 0, None, None, -1)
    assert ll(lt.IPV6, IP6) == (ETH_IPV6, 0, None, None, -1)


# -- PPP ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("linktype", [lt.PPP, lt.PPP_HDLC])
def test_ppp_with_and_without_address_control(linktype: int) -> None:
    assert ll(linktype, b"\xff\x03\x00\x21" + b(IP4)) == (ETH_IPV4, 4, None, None, -1)
    assert ll(linktype, b"\x00\x57" + b(IP6)) == (ETH_IPV6, 2, None, None, -1)
    assert ll(linktype, b"\xff\x03\x21" + b(IP4)) == (ETH_IPV4, 3, None, None, -1)
    assert ll(linktype, b"\x21" + b(IP4))[:2] == (ETH_IPV4, 1)
    assert ll(linktype, b"\xff\x03\xc0\x21\x01\x01\x00\x04")[0] == NOT_IP
    assert bad(linktype, b"").name == "truncated_PPP"
    assert bad(linktype, b"\xff\x03").name == "truncated_PPP"
    assert bad(linktype, b"\xff\x03\x00").name == "truncated_PPP"


def test_ppp_scapy_frame() -> None:
    assert ll(lt.PPP, PPP(proto=0x21) / IP4)[:2] == (ETH_IPV4, 2)


@pytest.mark.parametrize("address", [0x0F, 0x8F])
def test_cisco_hdlc_in_ppp_hdlc_linktype(address: int) -> None:
    # LINKTYPE_PPP_HDLC (50) also carries Cisco HDLC: address, control 0, ethertype
    assert ll(lt.PPP_HDLC, bytes([address, 0]) + b"\x08\x00" + b(IP4)) == (ETH_IPV4, 4, None, None, -1)
    assert ll(lt.PPP_HDLC, bytes([address, 0]) + b"\x86\xdd" + b(IP6))[:2] == (ETH_IPV6, 4)
    assert ll(lt.PPP_HDLC, bytes([address, 0]) + b"\x80\x35" + b"x" * 20)[0] == 0x8035  # SLARP
    assert bad(lt.PPP_HDLC, bytes([address, 0, 8])).name == "truncated_link_header"


# -- NFLOG ---------------------------------------------------------------------------------------


def _tlv(tlv_type: int, value: bytes, *, length: int | None = None) -> bytes:
    n = 4 + len(value) if length is None else length
    pad = -(4 + len(value)) % 4
    return struct.pack("<HH", n, tlv_type) + value + b"\0" * pad


def nflog(family: int, *tlvs: bytes) -> bytes:
    return struct.pack("<BBH", family, 0, 0x1234) + b"".join(tlvs)


def test_nflog_ipv4_after_other_tlvs_with_padding() -> None:
    frame = nflog(2, _tlv(1, b"\x08\x00\x03\x00"), _tlv(10, b"prefix\0"), _tlv(9, b(IP4)))
    off = 4 + 8 + 12 + 4
    assert ll(lt.NFLOG, frame) == (ETH_IPV4, off, None, None, -1)
    assert frame[off:] == b(IP4) + b"\0" * (-len(IP4) % 4)


def test_nflog_ipv6_and_other_family() -> None:
    assert ll(lt.NFLOG, nflog(10, _tlv(9, b(IP6))))[:2] == (ETH_IPV6, 8)
    assert ll(lt.NFLOG, nflog(7, _tlv(9, b"xyz")))[0] == NOT_IP


def test_nflog_malformed() -> None:
    assert bad(lt.NFLOG, b"\x02\x00\x00").name == "truncated_NFLOG_header"
    assert bad(lt.NFLOG, nflog(2, _tlv(1, b"", length=2))).name == "bad_NFLOG_TLV"
    assert bad(lt.NFLOG, nflog(2, _tlv(10, b"prefix\0"))).name == "NFLOG_no_payload"
    assert bad(lt.NFLOG, nflog(2)).name == "NFLOG_no_payload"
    # a TLV whose length runs past the frame hides the payload TLV
    assert bad(lt.NFLOG, nflog(2, _tlv(10, b"abcd", length=400), _tlv(9, b(IP4)))).name == "NFLOG_no_payload"


def test_unknown_linktype() -> None:
    e = bad(147, b(IP4))
    assert e.name == "unknown_link_type" and e.detail == "147"


def test_every_supported_linktype_is_handled() -> None:
    """No supported link type falls through to unknown_link_type, whatever the frame."""
    for linktype in lt.SUPPORTED:
        for frame in (b"", b"\x00" * 3, b"\x45" + b"\x00" * 63):
            try:
                link_layer(linktype, frame)
            except DecodeError as e:
                assert e.name != "unknown_link_type", lt.name(linktype)


# -- corpus ----------------------------------------------------------------------------------------


def _corpus_link(rel: str) -> list[tuple[int, int, int | None, int | None, int]]:
    with open(CORPUS / rel, "rb") as f:
        r = dpkt.pcap.Reader(f)
        linktype = r.datalink()
        return [link_layer(linktype, bytes(buf)) for _, buf in r]


@needs_corpus
def test_corpus_tcpdump_802_1ad_qinq_arp() -> None:
    assert _corpus_link("tcpdump/802.1ad_QinQ.pcap") == [(ETH_ARP, 22, 200, 2001, 0)] * 2


@needs_corpus
def test_corpus_zeek_q_in_q() -> None:
    res = _corpus_link("zeek/Traces/q-in-q.pcap")
    assert [r[0] for r in res] == [ETH_IPV4] * 4 + [ETH_ARP]
    assert {(r[2], r[3]) for r in res} == {(13, 10)}


@needs_corpus
def test_corpus_pppoe_over_qinq() -> None:
    res = _corpus_link("zeek/Traces/pppoe-over-qinq.pcap")
    assert len(res) == 86
    assert all(r[0] in (ETH_IPV4, ETH_IPV6) and r[2] is not None and r[3] is not None for r in res)


@needs_corpus
def test_corpus_suricata_pppoe_is_discovery_and_lcp_only() -> None:
    res = _corpus_link("suricata-verify/pppoe/input.pcap")
    assert {r[0] for r in res} == {ETH_PPPOE_DISC, NOT_IP}


@needs_corpus
def test_corpus_tcpdump_ppp_hdlc_with_unknown_protocol_is_not_ip() -> None:
    # tcpdump: "unknown PPP protocol (0x7e08)"
    assert _corpus_link("tcpdump/ppp_ip_udp_dns.pcap") == [(NOT_IP, 1, None, None, -1)]


@needs_corpus
@pytest.mark.parametrize(("rel", "linktype", "etype", "off"), [
    ("zeek/Traces/nflog-http.pcap", lt.NFLOG, ETH_IPV4, None),
    ("zeek/Traces/radius/radius_localhost.pcap", lt.NULL, ETH_IPV4, 4),
    ("suricata-verify/http-ipv6/input.pcap", lt.NULL, ETH_IPV6, 4),
    ("zeek/Traces/http/261/variant-10-multi_value_te.pcap", lt.IPV4, ETH_IPV4, 0),
    ("tcpdump/RADIUS-RFC4675.pcap", lt.LINUX_SLL, None, 16),
    ("suricata-verify/defrag/bug-6887-defrag-ipv6-tcp/frag-ip-tcp.pcap", lt.IPV6, ETH_IPV6, 0),
])
def test_corpus_link_types(rel: str, linktype: int, etype: int | None, off: int | None) -> None:
    with open(CORPUS / rel, "rb") as f:
        assert dpkt.pcap.Reader(f).datalink() == linktype
    res = _corpus_link(rel)
    assert res
    for r in res:
        assert r[0] in (ETH_IPV4, ETH_IPV6) if etype is None else r[0] == etype
        if off is not None:
            assert r[1] == off
