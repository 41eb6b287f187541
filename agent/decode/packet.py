"""Frame -> network packet: link layer, IPv4/IPv6, fragments and tunnels.

What: `Decoder.decode(ts, linktype, frame)` returns one `Packet` tuple for the
flow table, or None when the frame carries nothing a flow is made of (ARP, a
fragment still waiting for the rest of its datagram, a malformed header). It
handles IPv4 with options, IPv6 with its extension-header chain (RFC 8200 §4),
fragment reassembly for both (delegated to `Defragmenter`), and the tunnels a
gateway sees: IP-in-IP (protocols 4 and 41), GRE versions 0 and 1 (RFC 2784,
2890, 2637) carrying IP, PPP, Ethernet (TEB) or ERSPAN II, and Teredo (RFC
4380, `decode_teredo`, called by the pipeline because the outer UDP flow is a
session of its own).

Why a tuple: one small tuple per packet is the only allocation on the fast
path; headers are read with `struct.unpack_from` on the frame bytes, nothing
is copied except the two address slices that key the flow.

Malformed input never raises out of `decode`: a `DecodeError` becomes an entry
in `weirds` (drained by the pipeline into `weird` records, Zeek weird names)
and a counter in `counters`.

Link-layer records: PPPoE discovery frames and PPPoE session frames with a
non-IP PPP protocol (LCP, PAP, CHAP, IPCP...) on Ethernet go to `link` (the registered
link-layer decoder, `agent.protocols.base.LinkDecoder`: PPPoE; None by default, set by the
pipeline)
with their MAC addresses; the records it returns wait in `records` for the
pipeline to drain, as `weirds` do. Only the non-IP branch looks at them, so
the IP path costs nothing more. A `DecodeError` from it is a weird as usual.

Limits: tunnels nest at most `MAX_TUNNEL_DEPTH` deep; IPv6 extension headers
at most `MAX_EXT_HEADERS`; `weirds` holds at most `MAX_PENDING_WEIRDS` entries
between drains (the rest are counted in `counters["weirds_dropped"]`), and
`records` at most `MAX_PENDING_RECORDS` (`counters["records_dropped"]`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from agent.capture import linktypes as lt
from agent.decode.defrag import Defragmenter
from agent.decode.errors import DecodeError
from agent.decode.link import (
    ETH_IPV4,
    ETH_IPV6,
    ETH_PPPOE_DISC,
    ETH_TEB,
    NOT_IP,
    link_layer,
    ppp_payload,
    pppoe_header,
)
from agent.outbox import Outbox, Weird
from agent.protocols.base import LinkDecoder

# Zeek's default Tunnel::max_depth is 2; gateways rarely see more than one level.
MAX_TUNNEL_DEPTH: Final = 3
# RFC 8200 recommends each extension header at most once (dest opts twice); 16 bounds hostile chains.
MAX_EXT_HEADERS: Final = 16
# Bounded so a storm of malformed packets cannot grow memory between pipeline drains.
# not Final (it would be inlined): the tests lower it to check the bound
MAX_PENDING_WEIRDS = 10_000
# Link-layer records (PPPoE) between drains: one per discovery packet, so few; bounded all the same.
# not Final, for the same reason
MAX_PENDING_RECORDS = 10_000

_H = struct.Struct("!H")
_HH = struct.Struct("!HH")
_BBH = struct.Struct("!BBH")

PROTO_ICMP: Final = 1
PROTO_IPIP: Final = 4
PROTO_TCP: Final = 6
PROTO_UDP: Final = 17
PROTO_IPV6: Final = 41
PROTO_GRE: Final = 47
PROTO_ICMP6: Final = 58
PROTO_NONE6: Final = 59

# hop-by-hop, routing, destination options, mobility, HIP, shim6, AH
_TEREDO_PREFIX = b"\x20\x01\x00\x00"  # 2001:0::/32 (RFC 4380 §2.6)
_IPV6_EXT = frozenset({0, 43, 60, 135, 139, 140, 51})
_FRAG6: Final = 44
_IPV6_EXT_OR_FRAG = _IPV6_EXT | {_FRAG6}


class Packet(NamedTuple):
    """One network-layer packet, as the flow table needs it.

    A NamedTuple for readable access in slow paths; the fast path unpacks it.
    """

    src: bytes  # packed address, 4 or 16 bytes
    dst: bytes
    proto: int  # IP protocol number of the transport
    ip_len: int  # IP bytes of the packet as the header says (Zeek's ip_bytes)
    buf: bytes  # bytes holding the transport header (the frame, or a reassembled datagram)
    l4_off: int  # offset of the transport header in buf
    l4_len: int  # transport bytes as the IP header says (may exceed what was captured)
    vlan: int | None
    inner_vlan: int | None
    frame: bytes  # the original frame (for MAC addresses)
    mac_off: int  # offset of the Ethernet destination MAC in frame, -1 when none


# Building the NamedTuple through tuple.__new__ skips its generated Python-level __new__ (1.2 us
# less per packet on the general path); the fields are passed in declaration order.
_new_packet: Callable[[type[Packet], tuple[Any, ...]], Packet] = tuple.__new__  # type: ignore[assignment]


class Decoder:
    """Stateful (because of fragments) but pure: time comes from the packets."""

    def __init__(self, defrag: Defragmenter | None = None, outbox: Outbox | None = None) -> None:
        self.defrag = defrag if defrag is not None else Defragmenter()
        # anomalies go to the pipeline's outbox (agent.outbox), with the packet's addresses
        self.outbox = outbox if outbox is not None else Outbox()
        self.weirds: list[Weird] = self.outbox.weirds  # (the same list: drained in place)
        # PPPoE discovery and session control frames go here when set; their records wait in `records`.
        self.link: LinkDecoder | None = None
        self.records: list[dict[str, Any]] = []
        self.counters: dict[str, int] = {
            "frames": 0,
            "non_ip": 0,
            "malformed": 0,
            "fragments_pending": 0,
            "tunneled": 0,
            "weirds_dropped": 0,
            "records_dropped": 0,
        }

    # -- weird bookkeeping -------------------------------------------------------------
    def _weird(self, ts: float, name: str, detail: str, src: bytes | None = None,
               dst: bytes | None = None) -> None:
        self.counters["malformed"] += 1
        if len(self.weirds) < MAX_PENDING_WEIRDS:
            self.weirds.append(Weird(ts, name, detail, src, dst))
        else:
            self.counters["weirds_dropped"] += 1

    # -- entry points ------------------------------------------------------------------
    def decode(self, ts: float, linktype: int, frame: bytes) -> Packet | None:
        self.counters["frames"] += 1
        try:
            etype, off, vlan, inner, mac_off = link_layer(linktype, frame)
            if etype == ETH_IPV4:
                return self._ipv4(ts, frame, off, vlan, inner, frame, mac_off, 0)
            if etype == ETH_IPV6:
                return self._ipv6(ts, frame, off, vlan, inner, frame, mac_off, 0)
            self.counters["non_ip"] += 1
            if self.link is not None and mac_off >= 0 and etype in (ETH_PPPOE_DISC, NOT_IP):
                self._pppoe(ts, frame, mac_off, self.link)
            return None
        except DecodeError as e:
            self._weird(ts, e.name, e.detail)
            return None
        except (struct.error, IndexError) as e:  # a bound check we missed: still only a weird
            self._weird(ts, "malformed_packet", f"{type(e).__name__}: {e}")
            return None

    def _pppoe(self, ts: float, frame: bytes, mac_off: int, handler: LinkDecoder) -> None:
        """Hand a PPPoE discovery or non-IP session frame to `handler`; keep its records."""
        etype, off = pppoe_header(frame, mac_off + 12)
        if off < 0:
            return
        dst = frame[mac_off:mac_off + 6].hex(":")
        src = frame[mac_off + 6:mac_off + 12].hex(":")
        if etype == ETH_PPPOE_DISC:
            recs = handler.discovery(ts, src, dst, frame[off:])
        else:
            # session stage (RFC 2516 §6): VER/TYPE, CODE, SESSION_ID, LENGTH, then the PPP protocol
            end = len(frame)
            if off + 6 >= end:
                return
            sid, plen = _HH.unpack_from(frame, off + 2)
            pend = min(end, off + 6 + plen)
            p = off + 6
            if p >= pend:
                return
            if frame[p] & 1:  # RFC 1661 §6.5 protocol-field compression
                proto, p = frame[p], p + 1
            elif p + 2 <= pend:
                proto, p = _H.unpack_from(frame, p)[0], p + 2
            else:
                return
            recs = handler.session_control(ts, src, dst, sid, proto, frame[p:pend])
        if recs:
            room = MAX_PENDING_RECORDS - len(self.records)
            if len(recs) > room:
                self.counters["records_dropped"] += len(recs) - max(room, 0)
                recs = recs[:max(room, 0)]
            self.records.extend(recs)

    def decode_teredo(self, ts: float, pkt: Packet, payload_off: int, payload_end: int,
                      teredo_port: bool) -> Packet | None:
        """The IPv6 packet inside a Teredo UDP payload (RFC 4380 §5.1.1), or None.

        Skips the optional authentication and origin-indication headers and
        accepts the payload only when it is exactly one well-formed IPv6 packet
        and either the flow uses the Teredo port (3544) or one of the inner
        addresses is a Teredo address (2001:0::/32): random UDP payloads
        (QUIC, games) must not be mistaken for tunnels.
        """
        buf = pkt.buf
        off = payload_off
        try:
            if off + 2 <= payload_end and buf[off] == 0 and buf[off + 1] == 1:  # authentication
                if off + 4 > payload_end:
                    return None
                id_len, au_len = buf[off + 2], buf[off + 3]
                off += 4 + id_len + au_len + 9
            if off + 2 <= payload_end and buf[off] == 0 and buf[off + 1] == 0:  # origin indication
                off += 8
            if off + 40 > payload_end or buf[off] >> 4 != 6:
                return None
            if 40 + _H.unpack_from(buf, off + 4)[0] != payload_end - off:
                return None
            if not teredo_port and buf[off + 8:off + 12] != _TEREDO_PREFIX \
                    and buf[off + 24:off + 28] != _TEREDO_PREFIX:
                return None
            self.counters["tunneled"] += 1
            inner_buf = bytes(buf[off:payload_end])
            return self._ipv6(ts, inner_buf, 0, pkt.vlan, pkt.inner_vlan, pkt.frame, -1, 1)
        except DecodeError as e:
            self._weird(ts, e.name, "inside Teredo: " + e.detail)
            return None

    # -- network layer -----------------------------------------------------------------
    def _ipv4(self, ts: float, buf: bytes, off: int, vlan: int | None, inner: int | None,
              frame: bytes, mac_off: int, depth: int) -> Packet | None:
        avail = len(buf) - off
        if avail < 20:
            raise DecodeError("truncated_IP", f"{avail} bytes")
        vihl = buf[off]
        if vihl >> 4 != 4:
            raise DecodeError("bad_IP_version", str(vihl >> 4))
        hlen = (vihl & 0x0F) << 2
        if hlen < 20:
            raise DecodeError("bad_IP_header_len", str(hlen))
        if hlen > avail:
            raise DecodeError("internally_truncated_header", f"IPv4 header {hlen} > {avail}")
        tot, frag = _HH.unpack_from(buf, off + 2)[0], _H.unpack_from(buf, off + 6)[0]
        if tot < hlen:
            if tot == 0:  # TSO: segmentation offload leaves the length zero on captured outbound packets
                tot = avail
            else:
                raise DecodeError("bad_IP_total_len", f"{tot} < header {hlen}")
        src = buf[off + 12:off + 16]
        dst = buf[off + 16:off + 20]
        if frag & 0x3FFF:  # MF set or a non-zero offset
            if tot > avail:
                raise DecodeError("truncated_IP", f"fragment of {tot} bytes, {avail} captured")
            whole = self.defrag.add_v4(ts, (vlan, inner), bytes(buf[off:off + tot]))
            self._drain_defrag()
            if whole is None:
                self.counters["fragments_pending"] += 1
                return None
            buf, off = whole, 0
            tot = avail = len(whole)  # the tunnel bound below is the datagram, not the last fragment
            hlen = (whole[0] & 0x0F) << 2
        proto = buf[off + 9]
        l4 = off + hlen
        if proto in (PROTO_IPIP, PROTO_IPV6, PROTO_GRE):
            return self._tunnel(ts, proto, buf, l4, off + min(tot, avail), vlan, inner, frame, depth)
        return _new_packet(Packet, (src, dst, proto, tot, buf, l4, tot - hlen, vlan, inner, frame, mac_off))

    def _ipv6(self, ts: float, buf: bytes, off: int, vlan: int | None, inner: int | None,
              frame: bytes, mac_off: int, depth: int, reassembled: int = 0) -> Packet | None:
        """`reassembled`: Fragment headers already removed from `buf` by reassembly."""
        avail = len(buf) - off
        if avail < 40:
            raise DecodeError("truncated_IPv6", f"{avail} bytes")
        if buf[off] >> 4 != 6:
            raise DecodeError("bad_IP_version", str(buf[off] >> 4))
        plen = _H.unpack_from(buf, off + 4)[0]
        nh = buf[off + 6]
        src = buf[off + 8:off + 24]
        dst = buf[off + 24:off + 40]
        if plen == 0 and nh != PROTO_NONE6 and avail > 40:
            # a zero payload length with payload behind it: a jumbogram (RFC 2675) or Linux BIG TCP
            # on a captured outbound packet; the real length is what was captured, as for IPv4 TSO
            plen = avail - 40
        tot = 40 + plen
        end = off + min(tot, avail)
        p = off + 40
        nh_off = off + 6
        # Fragment headers removed by earlier reassembly count too: a Fragment header inside a
        # reassembled datagram would otherwise re-parse without bound (one recursion per level).
        n_ext = reassembled
        while nh in _IPV6_EXT_OR_FRAG:
            n_ext += 1
            if n_ext > MAX_EXT_HEADERS:
                raise DecodeError("excessive_IPv6_extension_headers", f"more than {MAX_EXT_HEADERS}")
            if nh == _FRAG6:
                if p + 8 > end:
                    raise DecodeError("truncated_IPv6_fragment_header")
                nxt = buf[p]
                offflag = _H.unpack_from(buf, p + 2)[0]
                frag_off = offflag & 0xFFF8
                more = bool(offflag & 1)
                if frag_off == 0 and not more:  # atomic fragment (RFC 6946): a whole datagram
                    nh_off, nh, p = p, nxt, p + 8
                    continue
                if tot > avail:
                    raise DecodeError("truncated_IPv6", f"fragment of {tot} bytes, {avail} captured")
                ident = struct.unpack_from("!I", buf, p + 4)[0]
                whole = self.defrag.add_v6(ts, (vlan, inner), bytes(buf[off:p]), nh_off - off, nxt,
                                           frag_off, more, ident, bytes(buf[p + 8:end]))
                self._drain_defrag()
                if whole is None:
                    self.counters["fragments_pending"] += 1
                    return None
                return self._ipv6(ts, whole, 0, vlan, inner, frame, mac_off, depth, reassembled + 1)
            if p + 2 > end:
                raise DecodeError("truncated_IPv6_extension_header", f"next header {nh}")
            hl = (buf[p + 1] + 2) * 4 if nh == 51 else (buf[p + 1] + 1) * 8
            nh_off, nh, p = p, buf[p], p + hl
            if p > end:
                raise DecodeError("truncated_IPv6_extension_header", f"{hl} bytes")
        if nh in (PROTO_IPIP, PROTO_IPV6, PROTO_GRE):
            return self._tunnel(ts, nh, buf, p, end, vlan, inner, frame, depth)
        return _new_packet(Packet, (src, dst, nh, tot, buf, p, tot - (p - off), vlan, inner, frame, mac_off))

    # -- tunnels -----------------------------------------------------------------------
    def _tunnel(self, ts: float, proto: int, buf: bytes, off: int, end: int, vlan: int | None,
                inner: int | None, frame: bytes, depth: int) -> Packet | None:
        if depth >= MAX_TUNNEL_DEPTH:
            raise DecodeError("exceeded_tunnel_max_depth", str(depth))
        self.counters["tunneled"] += 1
        if proto == PROTO_IPIP:
            return self._ipv4(ts, buf[off:end], 0, vlan, inner, frame, -1, depth + 1)
        if proto == PROTO_IPV6:
            return self._ipv6(ts, buf[off:end], 0, vlan, inner, frame, -1, depth + 1)
        return self._gre(ts, buf, off, end, vlan, inner, frame, depth + 1)

    def _gre(self, ts: float, buf: bytes, off: int, end: int, vlan: int | None, inner: int | None,
             frame: bytes, depth: int) -> Packet | None:
        if off + 4 > end:
            raise DecodeError("truncated_GRE")
        flags, ptype = _HH.unpack_from(buf, off)
        ver = flags & 7
        if ver > 1:
            raise DecodeError("unknown_gre_version", str(ver))
        if flags & 0x4000:  # routing present (RFC 1701): obsolete, unsupported as in Zeek
            raise DecodeError("gre_routing_present")
        hl = 4 + (4 if flags & 0x8000 else 0) + (4 if flags & 0x2000 else 0) + (4 if flags & 0x1000 else 0)
        if ver == 1 and flags & 0x0080:  # PPTP acknowledgment number
            hl += 4
        p = off + hl
        if p > end:
            raise DecodeError("truncated_GRE", f"header {hl}")
        inner_buf = bytes(buf[p:end])
        if ptype == 0x880B:  # PPP (PPTP, GRE version 1)
            ppp_off = 2 if inner_buf[:2] == b"\xff\x03" else 0
            etype, ip_off = ppp_payload(inner_buf, ppp_off, len(inner_buf))
            return self._from_ethertype(ts, etype, inner_buf, ip_off, vlan, inner, frame, depth)
        if ptype == 0x88BE:  # ERSPAN type II: 8-byte header, then the mirrored Ethernet frame
            ptype, inner_buf = ETH_TEB, inner_buf[8:]
        if ptype == ETH_TEB:
            etype, ip_off, v2, i2, _ = link_layer(lt.ETHERNET, inner_buf)
            if v2 is None:  # an untagged bridged frame: the tunnel's own tags stand for its link
                v2, i2 = vlan, inner
            # a tagged one keeps its own pair: never its outer tag with the tunnel's inner one
            return self._from_ethertype(ts, etype, inner_buf, ip_off, v2, i2, frame, depth)
        return self._from_ethertype(ts, ptype, inner_buf, 0, vlan, inner, frame, depth)

    def _from_ethertype(self, ts: float, etype: int, buf: bytes, off: int, vlan: int | None,
                        inner: int | None, frame: bytes, depth: int) -> Packet | None:
        if etype == ETH_IPV4:
            return self._ipv4(ts, buf, off, vlan, inner, frame, -1, depth)
        if etype == ETH_IPV6:
            return self._ipv6(ts, buf, off, vlan, inner, frame, -1, depth)
        self.counters["non_ip"] += 1
        return None

    def _drain_defrag(self) -> None:
        pending = self.defrag.weirds
        if pending:
            for ts, _src, _dst, name, detail in pending:
                self._weird(ts, name, detail)
            pending.clear()
