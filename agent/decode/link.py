"""Link layers: from a captured frame to the offset of its network-layer packet.

What: `link_layer(linktype, frame)` peels every link-layer header a gateway or a
capture file can put in front of IP — Ethernet II, any depth of 802.1Q/802.1ad
tags (QinQ), MPLS label stacks, PPPoE session stage (RFC 2516) with 8- and
16-bit PPP protocol fields (RFC 1661 §2: protocol field compression), Linux
cooked captures v1/v2, BSD loopback (host and network byte order), raw IP, PPP
(with or without the HDLC address/control bytes; Cisco HDLC in LINKTYPE_PPP_HDLC) and NFLOG — and answers
`(ethertype, offset, vlan, inner_vlan, mac_offset)`.

Why this shape: it runs once per packet on the fast path, so it works with
`struct.unpack_from` on the frame as it came from the capture, allocates only
the small result tuple, and leaves the MAC addresses in place (`mac_offset`, or
-1) for the flow table to slice once per new flow.

Limits: tag stacks deeper than `MAX_TAGS` and MPLS stacks deeper than
`MAX_MPLS` are malformed (`DecodeError`); VLAN ids beyond the second tag are
walked over but not reported (the record has `vlan` and `inner_vlan` only, as
Zeek's conn.log). Non-IP payloads return their ethertype so callers can count
them (ARP, PPPoE discovery, LLDP...); `pppoe_header` finds the PPPoE header of
such a frame again for the PPPoE decoder (discovery, and session frames with a
non-IP PPP protocol, which `link_layer` reports as `NOT_IP`).
"""

from __future__ import annotations

import struct
from typing import Final

from agent.capture import linktypes as lt
from agent.decode.errors import DecodeError

ETH_IPV4: Final = 0x0800
ETH_IPV6 = 0x86DD
ETH_ARP: Final = 0x0806
ETH_VLAN: Final = 0x8100
ETH_QINQ = 0x88A8
ETH_QINQ_OLD: Final = 0x9100
ETH_MPLS: Final = 0x8847
ETH_MPLS_MC: Final = 0x8848
ETH_PPPOE_DISC: Final = 0x8863
ETH_PPPOE_SESS: Final = 0x8864
ETH_TEB: Final = 0x6558  # transparent Ethernet bridging (inside GRE)
NOT_IP: Final = -1  # pseudo-ethertype for "a link-layer frame that carries no network packet we know"

# Every tag costs 4 bytes; 8 tags is far beyond any real network (QinQ uses 2,
# carrier stacks 3) and bounds the loop on hostile input.
MAX_TAGS: Final = 8
# MPLS stacks in carrier cores are 2-5 labels deep; 16 bounds a hostile stack.
MAX_MPLS: Final = 16

PPP_IPV4: Final = 0x0021
PPP_IPV6: Final = 0x0057

_H = struct.Struct("!H")
_HH = struct.Struct("!HH")
_I = struct.Struct("!I")
_LE_H = struct.Struct("<H")
_NE_I = struct.Struct("=I")
_SWAP_I = struct.Struct(">I") if struct.pack("=I", 1) == struct.pack("<I", 1) else struct.Struct("<I")

LinkResult = tuple[int, int, int | None, int | None, int]

# BSD loopback address families: AF_INET is 2 everywhere; AF_INET6 differs by OS
# (24 NetBSD/OpenBSD, 28 FreeBSD, 30 macOS, 10 Linux).
_AF_IPV6 = {10, 24, 28, 30}


def ppp_payload(frame: bytes, off: int, end: int) -> tuple[int, int]:
    """PPP protocol field -> (ethertype, offset of the payload)."""
    if off >= end:
        raise DecodeError("truncated_PPP", "no protocol field")
    first = frame[off]
    if first & 1:  # RFC 1661 §2: an odd first octet is a compressed 1-byte protocol
        proto, off = first, off + 1
    else:
        if off + 2 > end:
            raise DecodeError("truncated_PPP", "protocol field cut off")
        proto, off = _H.unpack_from(frame, off)[0], off + 2
    if proto == PPP_IPV4:
        return ETH_IPV4, off
    if proto == PPP_IPV6:
        return ETH_IPV6, off
    return NOT_IP, off


def ethertype_payload(frame: bytes, etype: int, off: int) -> tuple[int, int, int | None, int | None]:
    """Walk tags, MPLS and PPPoE from an ethertype at `off` to the network layer.

    Returns (ethertype, offset, vlan, inner_vlan).
    """
    end = len(frame)
    vlan: int | None = None
    inner: int | None = None
    tags = 0
    while etype in (ETH_VLAN, ETH_QINQ, ETH_QINQ_OLD):
        if off + 4 > end:
            raise DecodeError("truncated_VLAN_header", f"at offset {off}")
        tci, etype = _HH.unpack_from(frame, off)
        off += 4
        tags += 1
        if tags > MAX_TAGS:
            raise DecodeError("excessive_VLAN_tags", f"more than {MAX_TAGS}")
        if vlan is None:
            vlan = tci & 0x0FFF
        elif inner is None:
            inner = tci & 0x0FFF
    if etype in (ETH_IPV4, ETH_IPV6):
        return etype, off, vlan, inner
    if etype in (ETH_MPLS, ETH_MPLS_MC):
        for _ in range(MAX_MPLS):
            if off + 4 > end:
                raise DecodeError("truncated_MPLS_header", f"at offset {off}")
            label = _I.unpack_from(frame, off)[0]
            off += 4
            if label & 0x100:  # bottom of stack
                break
        else:
            raise DecodeError("excessive_MPLS_labels", f"more than {MAX_MPLS}")
        if off >= end:
            raise DecodeError("truncated_MPLS_header", "no payload")
        # MPLS carries no payload type: guess from the IP version nibble, as Zeek does.
        ver = frame[off] >> 4
        if ver == 4:
            return ETH_IPV4, off, vlan, inner
        if ver == 6:
            return ETH_IPV6, off, vlan, inner
        return NOT_IP, off, vlan, inner
    if etype == ETH_PPPOE_SESS:
        if off + 6 > end:
            raise DecodeError("truncated_PPPoE_header", f"at offset {off}")
        plen = _H.unpack_from(frame, off + 4)[0]
        off += 6
        pend = min(end, off + plen)
        etype2, off = ppp_payload(frame, off, pend)
        return etype2, off, vlan, inner
    return etype, off, vlan, inner


def pppoe_header(frame: bytes, off: int) -> tuple[int, int]:
    """Find the PPPoE header of an Ethernet frame whose ethertype field is at `off`.

    Walks VLAN tags as `ethertype_payload` does and answers (ETH_PPPOE_DISC or
    ETH_PPPOE_SESS, offset of the PPPoE header), or (0, -1) for any other frame.
    Only for the slow path: frames `link_layer` found to carry no IP.
    """
    end = len(frame)
    for _ in range(MAX_TAGS + 1):
        if off + 2 > end:
            break
        etype = _H.unpack_from(frame, off)[0]
        if etype in (ETH_PPPOE_DISC, ETH_PPPOE_SESS):
            return etype, off + 2
        if etype not in (ETH_VLAN, ETH_QINQ, ETH_QINQ_OLD):
            break
        off += 4
    return 0, -1


def _nflog(frame: bytes) -> tuple[int, int]:
    """NFLOG (linktype 239): family, version, resource id, then TLVs in host order."""
    end = len(frame)
    if end < 4:
        raise DecodeError("truncated_NFLOG_header")
    family = frame[0]
    off = 4
    while off + 4 <= end:
        tlv_len, tlv_type = _LE_H.unpack_from(frame, off)[0], _LE_H.unpack_from(frame, off + 2)[0]
        if tlv_len < 4:
            raise DecodeError("bad_NFLOG_TLV", f"length {tlv_len} at offset {off}")
        if tlv_type == 9:  # NFULA_PAYLOAD
            if family == 2:
                return ETH_IPV4, off + 4
            if family == 10:
                return ETH_IPV6, off + 4
            return NOT_IP, off + 4
        off += (tlv_len + 3) & ~3
    raise DecodeError("NFLOG_no_payload")


def _ip_by_version(frame: bytes, off: int) -> int:
    if off >= len(frame):
        raise DecodeError("truncated_IP", "empty packet")
    ver = frame[off] >> 4
    if ver == 4:
        return ETH_IPV4
    if ver == 6:
        return ETH_IPV6
    raise DecodeError("unknown_IP_version", str(ver))


def link_layer(linktype: int, frame: bytes) -> LinkResult:
    """Decode the link layer of one frame: (ethertype, offset, vlan, inner_vlan, mac_offset)."""
    if linktype == lt.ETHERNET:
        if len(frame) < 14:
            raise DecodeError("truncated_link_header", f"ethernet frame of {len(frame)} bytes")
        etype = _H.unpack_from(frame, 12)[0]
        if etype == ETH_IPV4:  # the overwhelmingly common case first
            return ETH_IPV4, 14, None, None, 0
        if etype < 1536:  # 802.3 length field: LLC/SNAP frames (STP, CDP) carry no IP we follow
            return NOT_IP, 14, None, None, 0
        etype, off, vlan, inner = ethertype_payload(frame, etype, 14)
        return etype, off, vlan, inner, 0
    if linktype in lt.RAW_IP:
        return _ip_by_version(frame, 0), 0, None, None, -1
    if linktype == lt.IPV4:
        return ETH_IPV4, 0, None, None, -1
    if linktype == lt.IPV6:
        return ETH_IPV6, 0, None, None, -1
    if linktype == lt.NULL or linktype == lt.LOOP:
        if len(frame) < 4:
            raise DecodeError("truncated_link_header", "loopback header")
        fam = (_I if linktype == lt.LOOP else _NE_I).unpack_from(frame, 0)[0]
        if fam not in (2,) and fam not in _AF_IPV6 and linktype == lt.NULL:
            # a capture written on a host of the other byte order
            fam = _SWAP_I.unpack_from(frame, 0)[0]
        if fam == 2:
            return ETH_IPV4, 4, None, None, -1
        if fam in _AF_IPV6:
            return ETH_IPV6, 4, None, None, -1
        return NOT_IP, 4, None, None, -1
    if linktype == lt.LINUX_SLL:
        if len(frame) < 16:
            raise DecodeError("truncated_link_header", "SLL header")
        hatype, alen = _HH.unpack_from(frame, 2)
        etype, off, vlan, inner = ethertype_payload(frame, _H.unpack_from(frame, 14)[0], 16)
        return etype, off, vlan, inner, -1
    if linktype == lt.LINUX_SLL2:
        if len(frame) < 20:
            raise DecodeError("truncated_link_header", "SLL2 header")
        etype, off, vlan, inner = ethertype_payload(frame, _H.unpack_from(frame, 0)[0], 20)
        return etype, off, vlan, inner, -1
    if linktype == lt.PPP_HDLC and frame[:1] in (b"\x0f", b"\x8f"):
        # LINKTYPE_PPP_HDLC also holds Cisco HDLC (RFC 1547 §4.3.1): address 0x0F (unicast) or
        # 0x8F (broadcast), control 0, then an Ethernet type instead of a PPP protocol number.
        if len(frame) < 4:
            raise DecodeError("truncated_link_header", "Cisco HDLC header")
        etype, off, vlan, inner = ethertype_payload(frame, _H.unpack_from(frame, 2)[0], 4)
        return etype, off, vlan, inner, -1
    if linktype in (lt.PPP, lt.PPP_HDLC):
        off = 2 if frame[:2] == b"\xff\x03" else 0
        etype, off = ppp_payload(frame, off, len(frame))
        return etype, off, None, None, -1
    if linktype == lt.PPP_ETHER:
        etype, off, vlan, inner = ethertype_payload(frame, ETH_PPPOE_SESS, 0)
        return etype, off, vlan, inner, -1
    if linktype == lt.NFLOG:
        etype, off = _nflog(frame)
        return etype, off, None, None, -1
    raise DecodeError("unknown_link_type", str(linktype))
