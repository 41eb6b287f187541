"""The flow table: packets in, Zeek-grade `session` records out.

What: `FlowTable.process(ts, pkt)` finds or creates the bidirectional flow of
a decoded packet and updates it; flows leave the table when they end (Zeek's
removal timers), time out, are evicted at the size limit, or when `flush()`
is called at the end of a capture; each leaving flow becomes one `session`
record (SCHEMA.md), and long flows also give interim records every
`INTERIM_INTERVAL` seconds of packet time.

How (DESIGN.md data path step 3):
- one dict maps both the forward and the reverse key (5-tuple + VLANs) of a
  flow to the side (direction) of its `Flow` that sends with that key, so
  every packet finds its flow and direction with one lookup;
- a fast path (`_fast`, fed by `process_batch` or, for classic pcap files,
  by `process_pcap` from megabyte copies of the file's map) handles untagged
  IPv4 packets of established TCP connections and known UDP flows with a few
  machine loads when compiled (`librt.strings`; one struct unpack when
  interpreted) and one lookup in a second dict keyed by the 12 wire bytes of
  addresses and ports; everything else takes the general path, and both
  give identical records (tested);
- the originator is the sender of the SYN, else of the first packet, unless
  the port heuristics of Zeek's `WantConnection` say the first packet came from
  the server (the history then starts with `^`);
- TCP state, history, byte counts from sequence numbers and gaps follow
  `agent.flows.tcp`; UDP history is D/d, conn_state SF/S0/SHR/OTH as Zeek;
  ICMP flows use type and counterpart type (or code) as ports;
- connections end as in Zeek: a completed close or reset is retired 5 s after
  its last packet (tcp_close_delay), an unanswered SYN after 5 s
  (tcp_attempt_delay), a half-closed one after 5 s idle (tcp_connection_linger);
  a new SYN on a closed connection starts a new one (IsReuse); idle timeouts
  are Zeek's defaults (TCP 5 min, UDP and ICMP 1 min, DNS over UDP 10 s);
- the first payload packets of each direction are probed for the service
  (`agent.flows.classify`); Teredo payloads are decapsulated and their inner
  packets become flows of their own.

Limits: `max_flows` (default 1,000,000) flows at once; when full, the 1% least
recently active are retired early as session records (counted in
`counters["flows_evicted"]`), so nothing is silently lost.
"""

from __future__ import annotations

import hashlib
import heapq
import struct
from binascii import b2a_base64
from collections.abc import Callable
from typing import Any, Final, cast

from librt.strings import read_i16_be, read_i32_be

from agent.capture.pcapfile import RecordSink
from agent.decode.packet import Packet
from agent.flows import tcp as T
from agent.flows.classify import MAX_PROBE_SEGMENTS, MAX_PROBES, PROBE_BYTES, classifier
from agent.flows.community_id import community_id, icmp_port_equivalents
from agent.flows.inspector import Inspector
from agent.flows.ports import LIKELY_SERVER_TCP, LIKELY_SERVER_UDP, never_flip
from agent.flows.side import Side
from agent.flows.state import Flow, FlowKey
from agent.flows.tcp import H_ACK, H_DATA
from agent.outbox import Outbox, Weird
from agent.protocols.base import Record
from wire.addresses import ip_from_packed
from wire.records import ConnState, SessionRecord

TCP_INACTIVITY: Final = 300.0  # Zeek tcp_inactivity_timeout
UDP_INACTIVITY: Final = 60.0  # Zeek udp_inactivity_timeout
ICMP_INACTIVITY: Final = 60.0  # Zeek icmp_inactivity_timeout
# Zeek dns_session_timeout: a DNS-over-UDP flow ends 10 s after its last packet
DNS_SESSION_TIMEOUT: Final = 10.0
TCP_ATTEMPT_DELAY: Final = 5.0  # Zeek tcp_attempt_delay
TCP_CLOSE_DELAY: Final = 5.0  # Zeek tcp_close_delay
TCP_LINGER: Final = 5.0  # Zeek tcp_connection_linger
INTERIM_INTERVAL: Final = 60.0  # SCHEMA.md: long connections report at least every 60 s
SCAN_INTERVAL: Final = 5.0  # how often (packet time) timeouts and interim reports are checked
DEFAULT_MAX_FLOWS: Final = 1_000_000  # ~1 KB each: about 1 GB at the limit
TEREDO_PORT: Final = 3544
# True when this module runs compiled by mypyc (`make compiled`), which changes what is cheapest.
COMPILED: Final = not __file__.endswith(".py")
PROTO_NONE6: Final = 59
# Teredo inside Teredo: real networks have one level; a crafted packet could nest 1000s
MAX_TEREDO_DEPTH: Final = 3
_INF = float("inf")
_MAX_HELD: Final = 8  # out-of-order pieces of the probed prefixes a flow holds
_FAST_STATES = (T.ESTABLISHED, T.PARTIAL)

_TCP_HDR: Final = struct.Struct("!HHIIHH")
# One unpack for the fast path: Ethernet type, IPv4 version/IHL and TOS as one integer
# (0x080045xx: IPv4 without options), IPv4's total length, fragment field and protocol, the
# addresses and ports as one 12-byte flow key (bytes 26-37), then TCP's seq, ack, offset/flags
# and window.
_FAST_HDR: Final = struct.Struct("!12xIH2xHxB2x12sIIHH")
# bytes of a capture file copied out of its map at a time for `process_pcap`: big enough that the
# copy costs nothing per packet, small enough to stay in the CPU's caches
_PORTS: Final = struct.Struct("!HH")
_UDP_LEN: Final = struct.Struct("!H")
PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp6"}
_UID_MASK: Final = (1 << 96) - 1
_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")
_UID_MULT = 0x9E3779B97F4A7C15F39CC061  # odd, so multiplication is a bijection modulo 2**96

TunnelHook = Callable[[float, Packet, int, int, bool], "Packet | None"]


def _mac(b: bytes | None) -> str | None:
    return None if b is None else b.hex(":")


def _fast_key(src: bytes, dst: bytes, sport: int, dport: int) -> bytes:
    return src + dst + _PORTS.pack(sport, dport)


# What a retired flow's sides point at (`FlowTable._retire`): no flow, never in a table.
_DETACHED: Final = Flow("", (b"", 0, b"", 0, 0, None, None), None, None, 0.0, 0.0)


class FlowTable(RecordSink):
    def __init__(self, *, max_flows: int = DEFAULT_MAX_FLOWS, uid_seed: bytes = b"edgeaudit",
                 tunnel_hook: TunnelHook | None = None, fast_path: bool = True,
                 inspector: Inspector | None = None, outbox: Outbox | None = None) -> None:
        # fast_path=False sends every packet through the general decoder and state machine: the
        # records must be identical either way (the tests compare them)
        super().__init__(fast_path)
        self._unpack_fast = _FAST_HDR.unpack_from  # bound once: no method lookup per packet
        # both directions' keys -> the side that sends packets with that key
        self.flows: dict[tuple[Any, ...], Side] = {}
        # the same for untagged IPv4 TCP and UDP, keyed by the 12 wire bytes src, dst, sport, dport
        self.fast_tcp: dict[bytes, T.TcpEndpoint] = {}
        self.fast_udp: dict[bytes, Side] = {}
        self.active: dict[Flow, None] = {}
        self.max_flows = max_flows
        # session records and weirds go here, as the inspector's records do (agent.outbox)
        self.outbox = outbox if outbox is not None else Outbox()
        self.tunnel_hook = tunnel_hook
        # protocol decoders (None: sessions only); it writes its records to the same outbox
        self.inspector = inspector
        self.classify = classifier()  # the registered protocols' content probes
        if inspector is not None:
            inspector.outbox = self.outbox
        self._uid_key = int.from_bytes(hashlib.blake2b(uid_seed, digest_size=12).digest(), "big")
        self._uid_n = 0
        self._tunnel_depth = 0
        self.counters = {"flows_created": 0, "flows_evicted": 0, "flows_timed_out": 0,
                         "sessions_out": 0, "interim_out": 0, "truncated_l4": 0, "no_next_header": 0}

    # -- ids ---------------------------------------------------------------------------
    def _uid(self) -> str:
        """'C' + 16 URL-safe base-64 characters (96 bits), in the spirit of Zeek's uids.

        A bijection of the flow counter (multiplication by an odd constant and
        an XOR with a per-table key, modulo 2**96), so uids never repeat within
        an agent's life and replaying a capture gives the same uids; hashing
        every flow with a cryptographic function would cost more than the flow.
        """
        self._uid_n += 1
        h = ((self._uid_n * _UID_MULT) ^ self._uid_key) & _UID_MASK
        # binascii directly: base64.urlsafe_b64encode is Python code around the same C call
        return "C" + b2a_base64(h.to_bytes(12, "big"), newline=False).translate(_URLSAFE).decode("ascii")

    # -- the per-packet path -------------------------------------------------------------
    def process_batch(self, batch: list[tuple[float, int, bytes]],
                      decode: Callable[[float, int, bytes], Packet | None]) -> None:
        """Run a capture batch of (timestamp, link type, frame) through the table.

        Each frame is offered to the fast path first (`_fast`); what it does
        not take goes through the general decoder and `process`.
        """
        use_fast = self.fast_path
        slow = self.process
        next_scan = self.next_scan
        for ts, linktype, frame in batch:
            if ts >= next_scan:
                self.scan(ts)
                next_scan = self.next_scan
            if linktype == 1 and use_fast and self.fast(ts, frame, 0, len(frame)):
                continue
            pkt = decode(ts, linktype, frame)
            if pkt is not None:
                slow(ts, pkt)

    def fast(self, ts: float, buf: bytes, p: int, caplen: int) -> bool:
        """The fast path for one Ethernet frame at `buf[p:p + caplen]`; False when it is not for it.

        It takes, without the general decoder, the packets that are almost all
        of a gateway's traffic: untagged Ethernet, IPv4 without options or
        fragmentation, on a TCP flow both of whose sides are established and
        not closing (an in-order segment with nothing but ACK/PSH set), or on
        a UDP flow whose service is known. For those it does exactly what
        `process` and `tcp.tcp_packet` would; anything else (a new flow,
        SYN/FIN/RST, a zero window, a retransmission or a hole, VLAN tags,
        IPv6...) is left to them.
        """
        if caplen < 54:
            return False
        # typed locals: compiled with mypyc these become machine integers
        tot: int
        frag: int
        proto: int
        seq: int
        ack: int
        offflags: int
        win: int
        key: bytes
        if COMPILED:
            # compiled, each librt read is one load and a byte swap: far cheaper than a struct
            # unpack's tuple of boxed integers (interpreted, the one unpack call is cheaper)
            if int(read_i32_be(buf, p + 12)) & 0xFFFFFF00 != 0x08004500:
                return False  # not IPv4 without options (Ethernet type, version and IHL)
            tot = int(read_i16_be(buf, p + 16)) & 0xFFFF
            frag = int(read_i16_be(buf, p + 20)) & 0xFFFF
            proto = buf[p + 23]
            key = buf[p + 26:p + 38]
            seq = int(read_i32_be(buf, p + 38)) & 0xFFFFFFFF
            ack = int(read_i32_be(buf, p + 42)) & 0xFFFFFFFF
            offflags = int(read_i16_be(buf, p + 46)) & 0xFFFF
            win = int(read_i16_be(buf, p + 48)) & 0xFFFF
        else:
            head: int
            head, tot, frag, proto, key, seq, ack, offflags, win = self._unpack_fast(buf, p)
            if head >> 8 != 0x080045:
                return False
        if frag & 0x3FFF or tot + 14 > caplen:
            return False
        if proto == 6:
            ep = self.fast_tcp.get(key)
            # ACK set, no SYN/FIN/RST, a window, and a header length the segment can hold
            if ep is None or offflags & 0x17 != 0x10 or not win:
                return False
            thl = (offflags >> 10) & 0x3C
            plen = tot - 20 - thl
            if thl < 20 or plen < 0:
                return False
            f = ep.flow
            if not f.fast or seq != ep.next32 or ts - f.last > f.idle:
                return False
            peer = cast(T.TcpEndpoint, ep.peer)
            d2 = (ack - peer.ack) & 0xFFFFFFFF
            if d2 >= 0x80000000 or not ack:
                return False
            app = f.app
            # the inspector sees the segment unless its flow's state says it need not (FlowApp:
            # passive, or inside a quiet window, or a pure ACK with nothing out of order)
            inspect = app is not None and self.inspector is not None and app.wants_segment(ep, plen)
            # the payload is copied out of the capture only for a reader: the content probe, or
            # a decoder outside its quiet windows (a passive flow's bulk data is only counted)
            payload: bytes = b""
            if plen:
                if f.probing or inspect:
                    payload = bytes(buf[p + 34 + thl:p + 14 + tot])
                    if f.probing:
                        self._probe_tcp(f, ep is f.orig, ep.last - ep.start, payload)
                # in-order data, no hole: the sequence space and the contiguous point advance together
                ep.last += plen
                ep.contig += plen
                ep.next32 = (seq + plen) & 0xFFFFFFFF
                if not ep.hist & H_DATA:
                    ep.hist |= H_DATA
                    f.history.append("d" if ep.hist_bit else "D")
            elif not ep.hist & H_ACK:
                ep.hist |= H_ACK
                f.history.append("a" if ep.hist_bit else "A")
            ep.pkts += 1
            ep.ipb += tot
            f.last = ts
            if d2:
                peer.ack += d2
                rel_ack = peer.ack - peer.start
                if rel_ack > peer.trim:
                    if rel_ack <= peer.contig:
                        peer.trim = rel_ack
                    else:
                        T.ack_received(f, peer, rel_ack)
            # the inspector's quiet windows: in-order bytes it only needs counted (absorbed above),
            # and pure ACKs while no out-of-order data waits, cost no call (see FlowApp); the
            # packet that reaches a window's end goes to it, so records come out at the same packet
            if inspect:
                cast(Inspector, self.inspector).tcp(f, ep, ts, offflags & 0xFF, seq, ack, payload)
            return True
        if proto == 17:
            side = self.fast_udp.get(key)
            if side is None:
                return False
            f = side.flow
            if not f.fast or ts - f.last > f.idle:
                return False
            ulen = seq >> 16  # the UDP length field sits where TCP's sequence number starts
            if ulen < 8 or ulen > tot - 20:
                return False
            f.last = ts
            side.pkts += 1
            side.ipb += tot
            side.nbytes += ulen - 8
            if not side.hist & H_DATA:
                side.hist |= H_DATA
                f.history.append("d" if side.hist_bit else "D")
            if f.app is not None and self.inspector is not None and ulen > 8:
                # a decoded UDP flow (DNS, RADIUS, DHCP): the datagram goes to its decoder from here too
                self.inspector.udp(f, side is f.orig, ts, bytes(buf[p + 42:p + 34 + ulen]))
            return True
        return False

    def process(self, ts: float, pkt: Packet) -> None:
        src, dst, proto, iplen, buf, off, l4len, vlan, ivlan, frame, mac_off = pkt
        end = off + l4len
        if end > len(buf):
            end = len(buf)
        if proto == 6:
            if end - off < 20:
                self._weird(ts, "truncated_header", "TCP", None)
                return
            sport, dport, seq, ack, offflags, win = _TCP_HDR.unpack_from(buf, off)
            thl = (offflags >> 10) & 0x3C
            if thl < 20 or thl > l4len:
                self._weird(ts, "bad_TCP_header_len", str(thl), None)
                return
            flags = offflags & 0xFF
            plen = l4len - thl
            key = (src, sport, dst, dport, 6, vlan, ivlan)
            side = self.flows.get(key)
            f = None
            if side is not None:
                f = side.flow
                if ts - f.last > f.idle or ts > f.hard or (flags & T.SYN and self._is_reuse(f, flags, seq)):
                    self._retire(f)
                    f = None
            if f is None:
                f = self._new_tcp(ts, key, pkt, flags)
                side = self.flows[key]
            assert side is not None
            is_orig = side is f.orig
            side.pkts += 1
            side.ipb += iplen
            o = f.orig
            r = f.resp
            assert isinstance(o, T.TcpEndpoint) and isinstance(r, T.TcpEndpoint)
            if not (o.did_close and r.did_close):
                f.last = ts
            done = T.tcp_packet(f, is_orig, flags, seq, ack, win, plen, end - off - thl >= plen)
            if done:
                f.closed = True
            if flags & 0x07 or side.pkts == 1 or done:
                self._tcp_deadline(f)
            if plen > 0 and f.probing and not flags & T.RST and end > off + thl:
                # the segment's place in its direction (1: the first byte; data on a SYN follows it)
                ep = cast(T.TcpEndpoint, side)
                rel = ep.widen(seq, ep.last) - ep.start + (1 if flags & T.SYN else 0)
                if rel > 0:
                    self._probe_tcp(f, side is f.orig, rel, bytes(buf[off + thl:end]))
            app = f.app
            if app is not None and not app.passive and self.inspector is not None:
                payload = bytes(buf[off + thl:end]) if plen > 0 else b""
                self.inspector.tcp(f, side, ts, flags, seq, ack, payload)
            o = f.orig
            r = f.resp
            assert isinstance(o, T.TcpEndpoint) and isinstance(r, T.TcpEndpoint)
            f.fast = (o.state in _FAST_STATES and r.state in _FAST_STATES and not o.fin_cnt and not r.fin_cnt
                      and f.hard == _INF)
            return
        if proto == 17:
            if end - off < 8:
                self._weird(ts, "truncated_header", "UDP", None)
                return
            sport, dport = _PORTS.unpack_from(buf, off)
            ulen = _UDP_LEN.unpack_from(buf, off + 4)[0]
            if ulen < 8 or ulen > l4len:
                self._weird(ts, "UDP_datagram_length_mismatch", f"{ulen} vs {l4len}", None)
                ulen = l4len
            key = (src, sport, dst, dport, 17, vlan, ivlan)
            side = self.flows.get(key)
            if side is not None and ts - side.flow.last > side.flow.idle:
                self._retire(side.flow)
                side = None
            if side is None:
                f = self._new_flow(ts, key, pkt, UDP_INACTIVITY)
                if sport in LIKELY_SERVER_UDP and dport not in LIKELY_SERVER_UDP and not never_flip(dst):
                    f.flip_roles()
                side = self.flows[key]
            f = side.flow
            f.last = ts
            side.pkts += 1
            side.ipb += iplen
            side.nbytes += ulen - 8
            if not side.hist & H_DATA:
                side.hist |= H_DATA
                f.history.append("d" if side.hist_bit else "D")
            if f.probing:
                if ulen > 8:
                    f.probes += 1
                    if f.probes >= MAX_PROBES:
                        f.probing = False
                    pend = min(end, off + ulen)
                    if self.tunnel_hook is not None and self._teredo(ts, f, pkt, off + 8, pend):
                        return
                    svc = self.classify.datagram(bytes(buf[off + 8:pend]), f.oport, f.rport)
                    if svc is not None:
                        f.service = svc
                        f.probing = False
                        if svc == "dns":
                            f.idle = DNS_SESSION_TIMEOUT
                        if self.inspector is not None:
                            self.inspector.open_udp(f)
            elif f.service == "teredo":
                self._teredo(ts, f, pkt, off + 8, min(end, off + ulen))
            if f.app is not None and self.inspector is not None and ulen > 8:
                self.inspector.udp(f, side is f.orig, ts, bytes(buf[off + 8:min(end, off + ulen)]))
            f.fast = not f.probing and f.service != "teredo"
            return
        if proto == 1 or proto == 58:
            if end - off < 4:
                self._weird(ts, "truncated_header", "ICMP", None)
                return
            sport, dport, _ = icmp_port_equivalents(proto, buf[off], buf[off + 1])
            key = (src, sport, dst, dport, proto, vlan, ivlan)
            self._count_other(ts, key, pkt, l4len - 8, ICMP_INACTIVITY)
            return
        if proto == PROTO_NONE6:
            # IPv6 "no next header": nothing is carried (Teredo bubbles, keepalives); Zeek logs no
            # connection for it either
            self.counters["no_next_header"] += 1
            return
        # any other transport: one flow per address pair and protocol, no ports
        key = (src, 0, dst, 0, proto, vlan, ivlan)
        self._count_other(ts, key, pkt, l4len, UDP_INACTIVITY)

    def _count_other(self, ts: float, key: FlowKey, pkt: Packet, nbytes: int, idle: float) -> None:
        """A packet of a transport without connection state (ICMP, and the rest): counted."""
        side = self.flows.get(key)
        if side is not None and ts - side.flow.last > side.flow.idle:
            self._retire(side.flow)
            side = None
        if side is None:
            self._new_flow(ts, key, pkt, idle)
            side = self.flows[key]
        side.flow.last = ts
        side.pkts += 1
        side.ipb += pkt.ip_len
        side.nbytes += max(nbytes, 0)

    # -- flow life cycle -----------------------------------------------------------------
    def _new_flow(self, ts: float, key: FlowKey, pkt: Packet, idle: float) -> Flow:
        """A flow for `key`, the first packet `pkt` had (its MAC addresses are the flow's)."""
        if len(self.active) >= self.max_flows:
            self._evict()
        frame, mac_off = pkt.frame, pkt.mac_off
        if mac_off >= 0 and len(frame) >= mac_off + 12:
            dmac: bytes | None = frame[mac_off:mac_off + 6]
            smac: bytes | None = frame[mac_off + 6:mac_off + 12]
        else:
            smac = dmac = None
        src, sport, dst, dport, proto, vlan, _ = key
        f = Flow(self._uid(), key, smac, dmac, ts, idle)
        self.flows[key] = f.orig
        self.flows[f.rkey] = f.resp
        if vlan is None and len(src) == 4 and (proto == 6 or proto == 17):
            f.fkey = _fast_key(src, dst, sport, dport)
            fast: dict[bytes, Any] = self.fast_tcp if proto == 6 else self.fast_udp
            fast[f.fkey] = f.orig
            fast[_fast_key(dst, src, dport, sport)] = f.resp
        self.active[f] = None
        self.counters["flows_created"] += 1
        return f

    def _new_tcp(self, ts: float, key: FlowKey, pkt: Packet, flags: int) -> Flow:
        f = self._new_flow(ts, key, pkt, UDP_INACTIVITY)
        sport, dst, dport = key[1], key[2], key[3]
        syn = flags & T.SYN
        ackf = flags & T.ACK
        # Zeek's SetPartialStatus for the very first packet (from the originator, before any flip)
        f.is_partial = not syn or bool(ackf)
        if syn and ackf:
            # a SYN-ACK comes from the responder whatever the ports (current Zeek flips these too)
            f.flip_roles()
        elif not syn and sport in LIKELY_SERVER_TCP and not never_flip(dst) and (
                dport not in LIKELY_SERVER_TCP or sport < dport):
            f.flip_roles()
        if self.inspector is not None:
            self.inspector.open_tcp(f, ts)
        return f

    @staticmethod
    def _is_reuse(f: Flow, flags: int, seq: int) -> bool:
        """Zeek's TCPSessionAdapter::IsReuse for a SYN on an existing connection."""
        o, r = f.orig, f.resp
        assert isinstance(o, T.TcpEndpoint) and isinstance(r, T.TcpEndpoint)
        conn_orig = o
        if flags & T.ACK:
            if o.state != T.INACTIVE:
                return False
            conn_orig = r
        if not (o.did_close or r.did_close):
            if seq == conn_orig.start & 0xFFFFFFFF:
                return False
            return not (not flags & T.ACK and conn_orig.state == T.SYN_ACK_SENT
                        and r.state == T.INACTIVE and seq == r.start & 0xFFFFFFFF)
        return True

    @staticmethod
    def _tcp_deadline(f: Flow) -> None:
        o, r = f.orig, f.resp
        assert isinstance(o, T.TcpEndpoint) and isinstance(r, T.TcpEndpoint)
        if f.closed:
            f.hard = f.last + TCP_CLOSE_DELAY
            f.idle = TCP_CLOSE_DELAY
        elif o.state in (T.SYN_SENT, T.SYN_ACK_SENT) and r.state == T.INACTIVE:
            f.hard = f.start + TCP_ATTEMPT_DELAY
        elif (o.did_close or r.did_close) and (
                T.INACTIVE in (o.state, r.state) or T.RESET in (o.state, r.state)):
            f.hard = _INF
            f.idle = TCP_LINGER
        else:
            f.hard = _INF
            f.idle = TCP_INACTIVITY

    def _probe_tcp(self, f: Flow, is_orig: bool, rel: int, payload: bytes) -> None:
        """A data segment of a TCP flow not yet named, `rel` its first byte's offset in its
        direction (1: the first byte): grow that direction's in-order prefix and probe it
        (agent.flows.classify)."""
        f.probes += 1
        bit = 1 if is_orig else 2
        # the other side spoke first and is answered: its opening is complete
        if (f.first_r if is_orig else f.first_o) is not None:
            f.probe_done |= 3 - bit
        if not f.probe_done & bit and self._grow_prefix(f, is_orig, rel, payload):
            pre = f.first_o if is_orig else f.first_r
            assert pre is not None
            svc = self.classify.stream(pre, is_orig, f.rport)
            if svc is None and f.first_o is not None and f.first_r is not None:
                svc = self.classify.pair(f.first_o, f.first_r)
            if svc is not None:
                f.service = svc
                f.probing = False
        if f.probe_done == 3 or f.probes >= MAX_PROBE_SEGMENTS:
            f.probing = False
        if not f.probing:
            f.first_o = f.first_r = None
            f.probe_held = None

    @staticmethod
    def _grow_prefix(f: Flow, is_orig: bool, rel: int, payload: bytes) -> bool:
        """Add what `payload` (at offset `rel`) brings to the direction's in-order prefix; a
        piece past a hole is held until the hole fills. True when the prefix grew."""
        pre = f.first_o if is_orig else f.first_r
        have = len(pre) if pre is not None else 0
        want = have + 1  # the offset of the next byte the prefix needs
        if rel > want:
            if rel <= PROBE_BYTES:
                held = f.probe_held
                if held is None:
                    held = f.probe_held = []
                if len(held) < _MAX_HELD:
                    held.append((is_orig, rel, payload[:PROBE_BYTES + 1 - rel]))
            return False
        if rel + len(payload) <= want:
            return False  # a retransmission of what the prefix has: the first copy counts
        grown = payload[want - rel:want - rel + PROBE_BYTES - have]
        pre = grown if pre is None else pre + grown
        held = f.probe_held
        while held and len(pre) < PROBE_BYTES:
            for i in range(len(held)):
                o, r, data = held[i]
                if o == is_orig and r <= len(pre) + 1:
                    del held[i]
                    if r + len(data) > len(pre) + 1:
                        pre += data[len(pre) + 1 - r:len(pre) + 1 - r + PROBE_BYTES - len(pre)]
                    break
            else:
                break
        if is_orig:
            f.first_o = pre
        else:
            f.first_r = pre
        if len(pre) >= PROBE_BYTES:
            f.probe_done |= 1 if is_orig else 2
        return True

    def _teredo(self, ts: float, f: Flow, pkt: Packet, off: int, end: int) -> bool:
        assert self.tunnel_hook is not None
        if self._tunnel_depth >= MAX_TEREDO_DEPTH:
            self._weird(ts, "exceeded_tunnel_max_depth", f"Teredo nested {self._tunnel_depth} deep", f)
            return False
        inner = self.tunnel_hook(ts, pkt, off, end, f.oport == TEREDO_PORT or f.rport == TEREDO_PORT)
        if inner is None:
            return False
        f.service = "teredo"
        f.probing = False
        f.fast = False  # every packet of a Teredo flow must be decapsulated
        self._tunnel_depth += 1
        try:
            self.process(ts, inner)
        finally:
            self._tunnel_depth -= 1
        return True

    def _weird(self, ts: float, name: str, detail: str, f: Flow | None) -> None:
        self.counters["truncated_l4"] += 1
        self.outbox.weirds.append(Weird(ts, name, detail, flow=f))

    # -- leaving the table ---------------------------------------------------------------
    def _retire(self, f: Flow) -> None:
        self.flows.pop(f.key, None)
        self.flows.pop(f.rkey, None)
        if f.fkey is not None:
            fast: dict[bytes, Any] = self.fast_tcp if f.proto == 6 else self.fast_udp
            fast.pop(f.fkey, None)
            fast.pop(f.fkey[4:8] + f.fkey[:4] + f.fkey[10:12] + f.fkey[8:10], None)
        self.active.pop(f, None)
        if f.app is not None and self.inspector is not None:
            self.inspector.close(f, f.last)
        self.outbox.records.append(self.session_record(f, False))
        self.counters["sessions_out"] += 1
        # its sides point back at it and at each other: cycles only the garbage collector would
        # free (every retired flow, its sides, history and keys: measured, all of them). Pointed
        # at a detached stand-in instead, the flow is freed with its last reference.
        for side in (f.orig, f.resp):
            side.flow = _DETACHED
            side.peer = _DETACHED.orig

    def scan(self, ts: float) -> None:
        """Retire timed-out flows and write interim records (every SCAN_INTERVAL of packet time)."""
        self.next_scan = ts + SCAN_INTERVAL
        if not self.active:
            return
        expired = [f for f in self.active if ts - f.last > f.idle or ts > f.hard]
        for f in expired:
            self._retire(f)
        self.counters["flows_timed_out"] += len(expired)
        for f in self.active:
            if ts - f.interim_at >= INTERIM_INTERVAL and f.last > f.interim_at:
                f.interim_at = ts
                self.outbox.records.append(self.session_record(f, True))
                self.counters["interim_out"] += 1

    def _evict(self) -> None:
        n = max(1, self.max_flows // 100)
        for f in heapq.nsmallest(n, self.active, key=lambda fl: fl.last):
            self._retire(f)
        self.counters["flows_evicted"] += n

    def advance(self, ts: float) -> None:
        """Time reached ``ts`` with no packet (a live capture on an idle link): retire what
        timed out and write what is due, as a packet at ``ts`` would have."""
        if ts >= self.next_scan:
            self.scan(ts)

    def flush(self) -> None:
        """Retire every flow (end of capture, shutdown)."""
        for f in list(self.active):
            self._retire(f)

    def session_record(self, f: Flow, interim: bool) -> Record:
        o, r = f.orig, f.resp
        hist = "".join(f.history)
        state: ConnState
        if isinstance(o, T.TcpEndpoint) and isinstance(r, T.TcpEndpoint):
            state = T.conn_state(o, r, hist)
            obytes = o.size(r)
            rbytes = r.size(o)
        else:
            obytes, rbytes = o.nbytes, r.nbytes
            if f.proto == 17:
                state = ("SF" if r.pkts else "S0") if o.pkts else ("SHR" if r.pkts else "OTH")
            else:
                state = "OTH"
        # (raises only for addresses of two families or out-of-range ports: not a flow's)
        cid = community_id(f.proto, f.oip, f.rip, f.oport, f.rport)
        # a capture whose clock stepped back can put the last packet before the first: the
        # contract says last - first, never negative (SCHEMA.md); (a comparison, not max():
        # compiled, max() boxes both floats)
        duration = f.last - f.start
        if duration < 0.0:
            duration = 0.0
        rec: SessionRecord = {
            "type": "session",
            "ts": f.start,
            "uid": f.uid,
            "proto": PROTO_NAMES.get(f.proto, str(f.proto)),
            "src_ip": ip_from_packed(f.oip),
            "src_port": f.oport,
            "dst_ip": ip_from_packed(f.rip),
            "dst_port": f.rport,
            "vlan": f.vlan,
            "inner_vlan": f.ivlan,
            "src_mac": _mac(f.omac),
            "dst_mac": _mac(f.rmac),
            "service": f.service,
            "duration": round(duration, 6),
            "orig_bytes": obytes,
            "resp_bytes": rbytes,
            "orig_pkts": o.pkts,
            "resp_pkts": r.pkts,
            "orig_ip_bytes": o.ipb,
            "resp_ip_bytes": r.ipb,
            "missed_bytes": f.missed,
            "community_id": cid,
            "conn_state": state,
            "history": hist,
            "nat_ip": None,
            "nat_port": None,
            "account": None,
            "blocked": False,
            "interim": interim,
        }
        return cast(Record, rec)
