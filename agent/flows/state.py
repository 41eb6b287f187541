"""What the agent knows about one connection, shared by the flow table and the inspector.

What: `Flow` (addresses, timing, history, its two sides: Zeek's connection record) and
`FlowApp` (the inspection state of a flow whose payload still matters: reassemblers, the
decoder and its declared capabilities, the quiet windows the table's fast path may count
in by itself). A leaf module: the table (`agent.flows.table`) and the inspector
(`agent.flows.inspector`) both import it, and neither imports the other's internals.

Why here: the table's per-packet fast path and the inspector share these objects; keeping
them apart from both says which fields are the contract between the two.
"""

from __future__ import annotations

from typing import Any

from agent.flows import tcp as T
from agent.flows.reassembly import StreamReassembler
from agent.flows.side import Side
from agent.protocols.base import (
    BodySkipping,
    Content,
    DataChannels,
    Finishing,
    FlowTracker,
    MailStep,
    StartTls,
    StreamDecoder,
)

_INF = float("inf")
#: A flow's key as its first packet had it: (src, src port, dst, dst port, IP protocol, VLAN,
#: inner VLAN); the ports are 0 for a transport without them, ICMP's type and code for ICMP.
FlowKey = tuple[bytes, int, bytes, int, int, "int | None", "int | None"]


class Flow:
    """One connection: addresses, timing, history and its two sides (`orig`, `resp`)."""

    __slots__ = (
        "uid", "proto", "oip", "rip", "oport", "rport", "vlan", "ivlan", "omac", "rmac",
        "start", "last", "history", "orig", "resp", "missed", "is_partial", "flipped", "service",
        "probes", "first_o", "first_r", "key", "rkey", "fkey", "idle", "hard", "interim_at", "closed",
        "fast", "probing", "app", "probe_done", "probe_held",
    )

    def __init__(self, uid: str, key: FlowKey, smac: bytes | None, dmac: bytes | None, ts: float,
                 idle: float) -> None:
        src, sport, dst, dport, proto, vlan, ivlan = key
        self.uid = uid
        self.proto = proto
        self.oip, self.rip, self.oport, self.rport = src, dst, sport, dport
        self.vlan, self.ivlan = vlan, ivlan
        self.omac, self.rmac = smac, dmac
        self.start = self.last = self.interim_at = ts
        self.idle = idle
        self.key = key
        self.rkey = (dst, dport, src, sport, proto, vlan, ivlan)
        # the fast path's key (IPv4 without VLAN, TCP/UDP): addresses and ports as on the wire
        self.fkey: bytes | None = None
        self.history: list[str] = []
        if proto == 6:
            self.orig: Side = T.TcpEndpoint(self, 0)
            self.resp: Side = T.TcpEndpoint(self, 8)
        else:
            self.orig = Side(self, 0)
            self.resp = Side(self, 8)
        self.orig.peer = self.resp
        self.resp.peer = self.orig
        self.missed = 0
        self.is_partial = False
        self.flipped = False
        self.service: str | None = None
        self.probes = 0
        # `fast`: the per-packet fast path may handle this flow (see FlowTable.process_batch);
        # `probing`: payload is still being looked at to name the service
        self.fast = False
        self.probing = True
        # while probing TCP (agent.flows.classify): each direction's in-order prefix, which of
        # them are complete (bit 1: the originator's, 2: the responder's), and pieces that
        # arrived ahead of a hole in a prefix: (originator's, offset, bytes)
        self.first_o: bytes | None = None
        self.first_r: bytes | None = None
        self.probe_done = 0
        self.probe_held: list[tuple[bool, int, bytes]] | None = None
        self.hard = _INF
        self.closed = False
        self.app: FlowApp | None = None  # inspection state while the payload matters (agent.flows.inspector)

    def flip_roles(self) -> None:
        """Swap originator and responder (Zeek's Connection::FlipRoles); the sides keep their counters."""
        self.oip, self.rip = self.rip, self.oip
        self.oport, self.rport = self.rport, self.oport
        self.omac, self.rmac = self.rmac, self.omac
        self.first_o, self.first_r = self.first_r, self.first_o
        self.probe_done = (self.probe_done & 1) << 1 | (self.probe_done & 2) >> 1
        if self.probe_held is not None:
            self.probe_held = [(not o, rel, data) for o, rel, data in self.probe_held]
        self.orig, self.resp = self.resp, self.orig
        self.orig.hist_bit, self.resp.hist_bit = 0, 8
        self.flipped = not self.flipped
        self.history.append("^")


class FlowApp:
    """Per-flow inspection state."""

    __slots__ = ("side_o", "ro", "rr", "dec", "outer", "pending", "passive", "ids", "tracker", "skipper",
                 "exempting", "stopped", "holes", "quiet_o", "quiet_r", "quiet_given_o", "quiet_given_r",
                 "finishing", "starttls", "channels", "watch", "flip_check", "content", "segment", "mail")

    def __init__(self, side_o: Side | None, depth: int, max_buffered: int, max_segments: int) -> None:
        self.side_o = side_o  # the side that was the originator when inspection began (roles may flip)
        if side_o is not None:
            self.ro: StreamReassembler | None = StreamReassembler(
                depth=depth, max_buffered=max_buffered, max_segments=max_segments)
            self.rr: StreamReassembler | None = StreamReassembler(
                depth=depth, max_buffered=max_buffered, max_segments=max_segments)
        else:
            self.ro = self.rr = None
        self.dec: StreamDecoder | None = None
        self.outer: StreamDecoder | None = None  # the SMTP/POP3/IMAP decoder after a STARTTLS
        # events delivered before the service was known: (side, kind, value, ts)
        self.pending: list[tuple[Side, str, int | bytes, float]] = []
        self.passive = False  # nothing more to feed; only `close` is left
        self.stopped = False  # a DecodeError ended decoding
        # the decoder's optional capabilities its spec declares (agent.protocols.base)
        self.finishing: Finishing | None = None  # it says when it is done (TLS: after the hellos)
        self.starttls: StartTls | None = None  # a mail decoder that may switch to TLS
        self.channels: DataChannels | None = None  # FTP, announcing data channels
        self.watch = False  # starttls or channels: looked at after each delivery
        self.flip_check = False  # DNS over UDP: the first datagram decides who the originator is
        # Read by the flow table's fast path, so that most packets of an inspected flow cost no
        # call here: `holes` (out-of-order data is buffered: a pure ACK may reveal a gap, so
        # ACKs must come to us), and `quiet_o`/`quiet_r`, in-order bytes of each direction the
        # fast path may count by itself (inside a skip window) through `absorb`;
        # `quiet_given_*` is what was granted, so the difference is what it took.
        self.holes = False
        self.quiet_o = self.quiet_r = 0
        self.quiet_given_o = self.quiet_given_r = 0
        self.ids: dict[str, Any] | None = None
        self.tracker: FlowTracker | None = None  # the flow's datagrams go to a tracker (DHCP)
        # the decoder, when it can say which bytes it only counts (HTTP bodies past the kept prefix)
        self.skipper: BodySkipping | None = None
        # ... and it is asked which bytes a content filter scans on its own budget (bodies are kept)
        self.exempting = False
        # the pieces the flow's decoders hand the keyword filter (shared by a STARTTLS pair)
        self.content: list[Content] | None = None
        # the last TCP segment handed to the decoders (from the originator, sequence number),
        # kept only while inline blocking may need to reset the connection after it
        self.segment: tuple[bool, int] | None = None
        # the mail transaction steps its decoder reports to the mail policy (agent.filter.mail_policy)
        self.mail: list[MailStep] | None = None


    def wants_segment(self, side: Side, plen: int) -> bool:
        """The flow table's fast path asks, for an in-order segment of `plen` bytes (0: a pure
        ACK) from `side`: must the inspector see it? Not when decoding is over (`passive`), not
        when its bytes fall inside a quiet window (counted here: `absorb`), and a pure ACK only
        while out-of-order data waits for it (`holes`)."""
        if self.passive:
            return False
        if plen:
            return not self.absorb(side is self.side_o, plen)
        return self.holes

    def absorb(self, fwd: bool, plen: int) -> bool:
        """The fast path's question for an in-order segment of `plen` bytes from the side that was
        the originator (`fwd`) or the other: does it fall inside a quiet window? Then it is counted
        here and needs no inspector call. The segment that reaches a window's end is not
        absorbed, so records come out at the same packet as on the general path."""
        if fwd:
            if self.quiet_o > plen:
                self.quiet_o -= plen
                return True
        elif self.quiet_r > plen:
            self.quiet_r -= plen
            return True
        return False
