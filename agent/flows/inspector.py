"""From flows to protocol decoders: reassembly, decoder choice, STARTTLS, flow ids.

What: the flow table calls an `Inspector` for the packets of connections
whose payload is still of interest (DESIGN.md data path steps 3-4):

- TCP: each direction goes through a bounded `StreamReassembler` (ordered,
  retransmissions and overlaps resolved, out-of-order data buffered, holes
  reported as gaps when the peer acknowledges past them or at the end,
  mid-stream pickup, one-sided streams); the in-order events are handed to
  the decoder the registry names for the flow's service. Until the content
  probe has named the service, delivered events are kept (bounded by the
  inspection depth) and replayed to the decoder once it exists, so nothing
  before the detection is lost. A flow whose probing ends without a service
  with a decoder is dropped from inspection and goes back to the fast path.
- UDP: each datagram goes to the flow's decoder (DNS, RADIUS); a service followed
  across flows (DHCP: a transaction spans several) goes to its one `FlowTracker`.
- What a decoder offers besides feed/gap/close is what its protocol's spec declares
  (`agent.protocols.registry.decoder_kind`), reached through the capability types of
  `agent.protocols.base`, never by attribute names.
- Command protocols (SMTP, POP3, IMAP, FTP: their specs' `whole_connection`)
  are followed to the end of the connection, not to the depth: each of their
  transactions is a record (Zeek logs every one), and a mass mailer's 150th
  message comes long after the first 16 KiB. Their decoders keep that cheap:
  bodies of known length (IMAP literals, SMTP BDAT chunks) are skipped like
  HTTP bodies (the fast path counts them), the others (SMTP DATA, POP3 RETR)
  are only searched for their end, and nothing past a bounded prefix is kept.
  A decoder that stops decoding (TLS, COMPRESS) says so (`Finishing`) and the
  flow goes back to the fast path.
- STARTTLS: when an SMTP, POP3 or IMAP decoder says the connection switched
  to TLS (`StartTls.tls`), the rest of the stream goes to a TLS decoder,
  inspected up to the depth from there (until its hellos are done); both are
  closed at the end.
- FTP: data channels announced on a control connection (PASV/EPSV replies,
  accepted PORT/EPRT) are remembered for a while; a new TCP connection to
  such an address and port gets the service `ftp-data` (Zeek's
  `ftp_data_expected`) and is not inspected.
- Message bodies: decoders keep a prefix of each body only when a content
  filter reads them (`keep_bodies`); otherwise an HTTP body is only counted,
  and the flow table's fast path counts it without calling the decoder.
- Keyword filtering (`agent.filter`): what decoders hand over is matched at the end of
  the batch of packets (`tick`), all connections' pieces one after another, not between
  packets: the matcher's tables and code stay in the CPU caches (measured: the same work
  costs nearly twice as much interleaved with packet handling). Each alert is put back in
  the records at the place it would have had if matched at once (so the identity table
  stamps it with the same account), and a connection's end is handled in the same order.
  `DEFER_PIECES` pieces are held at most. Inline (`on_block` set), matching is immediate:
  the packet that completes a blocked keyword must be judged before its verdict.
- The mail policy (`agent.filter.mail_policy`, when the pipeline has one): a decoder that
  reports mail transaction steps (`MailSteps`: SMTP's MAIL FROM, RCPT TO, message end)
  has them judged right after the delivery that made them, never deferred: a sender past
  its limit is stopped inline at the packet carrying its MAIL FROM.
- Records from decoders get the flow id fields (uid, proto, addresses,
  ports, VLANs) here. A `DecodeError` becomes a `weird` record for the flow
  and ends decoding of that flow (after a last `close` to flush what the
  decoder already had, e.g. the TLS hellos).

Limits (named, counted): `depth` bytes per direction are inspected (DESIGN.md
16 KiB default; gaps count toward it; a command protocol's connection is
followed whole, unless the depth is 0: nothing is inspected) and the
reassembler's own buffer limits apply, followed or not; `MAX_EXPECTED`
announced FTP data channels are remembered for `EXPECTED_TIMEOUT` seconds
of packet time. A flow stops being inspected when both directions reached the
depth or its decoder says it is finished (TLS after the hellos, a mail
protocol after STARTTLS); it then costs only the fast path's counters.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, cast

from agent.decode.errors import DecodeError
from agent.flows.ports import never_flip
from agent.flows.reassembly import Event, StreamReassembler
from agent.flows.state import Flow, FlowApp
from agent.outbox import Outbox, Weird
from agent.protocols.base import (
    Addressed,
    BodySkipping,
    Content,
    ContentSource,
    DataChannels,
    DecoderKind,
    Finishing,
    FlowTracker,
    MailSteps,
    Record,
    Skipping,
    SkippingOf,
    StartTls,
    StreamDecoder,
)
from agent.protocols.registry import decoder_kind, tls_kind
from wire.addresses import ip_from_packed

if TYPE_CHECKING:
    from agent.filter.engine import FilterEngine
    from agent.filter.mail_policy import MailPolicy
    from agent.flows.side import Side

# bytes per direction (DESIGN.md step 3): enough for headers, hellos and commands
DEFAULT_DEPTH: Final = 16384
# announced FTP data channels remembered (a busy FTP server announces one per transfer)
MAX_EXPECTED: Final = 4096
EXPECTED_TIMEOUT: Final = 300.0  # seconds an announced data channel waits for its connection
# content pieces held for the keyword filter before they are matched (see the module docstring):
# bounds the bytes held between batches (pieces are at most a TCP segment or a value)
DEFER_PIECES: Final = 4096
# TCP flags (Final: compiled, they are constants, not a module dictionary lookup per use)
_FIN: Final = 0x01
_SYN: Final = 0x02
_RST: Final = 0x04
_ACK: Final = 0x10
_PROTO = {6: "tcp", 17: "udp"}
_NO_EVENTS: list[Event] = []  # shared, never appended to


class _Deferred:
    """Filter work held until the end of the batch: a connection's pieces (or its end, when
    `pieces` is None), with the packet time and where its alerts go in the records (`pos`)."""

    __slots__ = ("f", "app", "pieces", "ts", "pos")

    def __init__(self, f: Flow, app: FlowApp, pieces: list[Content] | None, ts: float, pos: int) -> None:
        self.f = f
        self.app = app
        self.pieces = pieces
        self.ts = ts
        self.pos = pos


class Inspector:
    def __init__(self, *, depth: int = DEFAULT_DEPTH, max_buffered: int = 65536, max_segments: int = 64,
                 trackers: Mapping[str, FlowTracker] | None = None, keep_bodies: bool = False,
                 filter: FilterEngine | None = None, mail: MailPolicy | None = None) -> None:
        if depth < 0:
            raise ValueError("inspection depth must be >= 0")
        self.depth = depth
        # a content filter reads message bodies (issue 4): decoders keep a prefix of each;
        # without one they only count body bytes, and the fast path skips them
        self.keep_bodies = keep_bodies or filter is not None
        self.filter = filter  # the keyword filter (agent.filter), when a ruleset is loaded
        self.mail = mail  # the mail policy (agent.filter.mail_policy), unless it is off
        # called with a connection's `block` alerts; says whether it stopped the connection
        # (the flow, its `block` alerts, the TCP segment whose content made them: from the
        # originator, its sequence number; None for a datagram)
        self.on_block: Callable[[Flow, list[Record], tuple[bool, int] | None], bool] | None = None
        self.max_buffered = max_buffered
        self.max_segments = max_segments
        # services followed across flows (DHCP), each by its one tracker
        self.trackers: dict[str, FlowTracker] = dict(trackers) if trackers is not None else {}
        # where records and weirds go: the flow table's (FlowTable hands over its outbox)
        self.outbox = Outbox()
        self._deferred: list[_Deferred] = []  # filter work held for the batch's end
        self._deferred_pieces = 0
        # (address bytes, port) -> expiry ts of an announced FTP data channel
        self.expected: dict[tuple[bytes, int], float] = {}
        self.counters: dict[str, int] = {
            "inspected_flows": 0, "decoded_flows": 0, "undecoded_flows": 0, "decode_errors": 0,
            "starttls": 0, "ftp_data_expected": 0, "ftp_data_matched": 0, "ftp_data_dropped": 0,
            "depth_reached": 0, "gap_bytes": 0, "retransmitted_bytes": 0, "overflow_gaps": 0,
            "beyond_depth_bytes": 0, "skipped_bytes": 0, "exempted_bytes": 0, "records": 0,
            "followed_flows": 0,
        }

    # -- called by the flow table ---------------------------------------------------
    def open_tcp(self, f: Flow, ts: float) -> None:
        """A new TCP connection: an expected FTP data channel, or one to inspect."""
        if self.expected:
            exp = self.expected.pop((f.rip, f.rport), None)
            if exp is not None and ts <= exp:
                f.service = "ftp-data"
                f.probing = False
                self.counters["ftp_data_matched"] += 1
                return
        f.app = FlowApp(f.orig, self.depth, self.max_buffered, self.max_segments)
        self.counters["inspected_flows"] += 1

    def open_udp(self, f: Flow) -> None:
        """A UDP flow's service was just named: inspect it when a decoder wants it."""
        svc = f.service
        tracker = self.trackers.get(svc) if svc is not None else None
        if tracker is not None:
            app = FlowApp(None, 0, 0, 0)
            app.tracker = tracker
        else:
            kind = decoder_kind(svc, "udp") if svc is not None else None
            if kind is None:
                return
            app = FlowApp(None, 0, 0, 0)
            app.dec = self._new_decoder(f, app, kind)
            app.flip_check = svc == "dns"
        f.app = app
        self.counters["inspected_flows"] += 1
        self.counters["decoded_flows"] += 1

    def tcp(self, f: Flow, side: Side, ts: float, flags: int, seq: int, ack: int, payload: bytes) -> None:
        """One TCP segment of an inspected flow, from `side`."""
        app = f.app
        assert app is not None
        if self.on_block is not None:  # (only a blocker reads it: no tuple per segment otherwise)
            app.segment = (side is f.orig, seq)
        fwd = side is app.side_o
        r = app.ro if fwd else app.rr
        peer_r = app.rr if fwd else app.ro
        assert r is not None and peer_r is not None
        if app.quiet_given_o or app.quiet_given_r:
            self._settle_quiet(f, app, ts)
        if flags & _SYN:
            if not r.started:
                r.start(seq + 1)
            seq = (seq + 1) & 0xFFFFFFFF  # data on a SYN (TCP Fast Open) starts after it
        ev_here: list[Event] = r.segment(seq, payload) if payload and not flags & _RST else _NO_EVENTS
        if flags & _FIN:
            r.fin((seq + len(payload)) & 0xFFFFFFFF)
        ev_peer: list[Event] = peer_r.ack(ack) if flags & _ACK else _NO_EVENTS
        dec = app.dec
        if dec is None:
            if f.service is not None:
                dec = self._attach(f, app, ts)
                if dec is None:
                    return
            elif not f.probing:
                self._drop(f, app)
                return
            else:
                for kind, value in ev_here:
                    app.pending.append((side, kind, value, ts))
                for kind, value in ev_peer:
                    app.pending.append((side.peer, kind, value, ts))
                return
        if ev_here or ev_peer:
            here_is_orig = side is f.orig
            if ev_here:
                self._deliver(f, app, here_is_orig, ev_here, ts)
            if ev_peer:
                self._deliver(f, app, not here_is_orig, ev_peer, ts)
            if app.skipper is not None and app.dec is not None:
                self._offer_skips(f, app)
        if app.dec is not None and r.done and peer_r.done:
            self.counters["depth_reached"] += 1
            app.passive = True
        elif app.finishing is not None and app.dec is not None and app.finishing.finished:
            app.passive = True
        elif app.ro is not None and app.rr is not None:
            ro, rr = app.ro, app.rr
            app.holes = ro.buffered > 0 or rr.buffered > 0
            if not app.holes and app.dec is not None:
                # the open skip windows: the flow table's fast path may count in-order bytes
                # inside them by itself, without calling us per packet (see `_settle_quiet`)
                if ro.skipping:
                    app.quiet_o = app.quiet_given_o = ro.skip_left
                if rr.skipping:
                    app.quiet_r = app.quiet_given_r = rr.skip_left

    def _settle_quiet(self, f: Flow, app: FlowApp, ts: float) -> None:
        """Account for the in-order bytes the fast path counted inside skip windows since our last call.

        The fast path takes only segments that continue their direction exactly
        (the sequence number it expects), so those bytes all arrived, in order,
        with nothing buffered around them: they are handed over as one skip.
        """
        assert app.ro is not None and app.rr is not None and app.side_o is not None
        for given, left, r, side in ((app.quiet_given_o, app.quiet_o, app.ro, app.side_o),
                                     (app.quiet_given_r, app.quiet_r, app.rr, app.side_o.peer)):
            n = given - left
            if n > 0:
                r.skipped(n)
                if app.dec is not None:
                    self._deliver(f, app, side is f.orig, [("skip", n)], ts)
        app.quiet_o = app.quiet_r = app.quiet_given_o = app.quiet_given_r = 0

    def udp(self, f: Flow, is_orig: bool, ts: float, payload: bytes) -> None:
        app = f.app
        assert app is not None
        tracker = app.tracker
        if tracker is not None:
            src, dst = (f.oip, f.rip) if is_orig else (f.rip, f.oip)
            try:
                recs = tracker.message(ts, f.uid, payload, ip_from_packed(src), ip_from_packed(dst))
            except DecodeError as e:
                self._weird(f, ts, e)
                return
            self._emit_plain(recs)
            return
        dec = app.dec
        if dec is None:
            return
        if app.flip_check:
            # Zeek's DNS analyzer: a flow whose first datagram is a response (QR set) was seen
            # from the server first (both ports 53, say): the roles are swapped
            app.flip_check = False
            # (never towards a broadcast or multicast address: mDNS announcements are responses)
            if (is_orig and len(payload) > 2 and payload[2] & 0x80 and not f.resp.pkts
                    and not never_flip(f.rip)):
                f.flip_roles()
                is_orig = False
        try:
            recs = dec.feed(is_orig, payload, ts)
        except DecodeError as e:
            # one bad datagram does not end a UDP flow's decoding: each datagram stands alone
            self._weird(f, ts, e)
            return
        if recs:
            self._emit(f, app, recs)
        if app.content:
            self._filter(f, app, ts)

    def close(self, f: Flow, ts: float) -> None:
        """The flow leaves the table: flush reassembly and decoders."""
        app = f.app
        assert app is not None
        f.app = None
        if app.tracker is not None:
            return
        if app.dec is None and not app.stopped:
            if app.ro is not None:
                self.counters["undecoded_flows"] += 1
                self._count_reassembly(app)
            return
        if app.quiet_given_o or app.quiet_given_r:
            self._settle_quiet(f, app, ts)
        if not app.passive and app.ro is not None and app.rr is not None:
            o_is_orig = app.side_o is f.orig
            events = app.ro.flush()
            if events:
                self._deliver(f, app, o_is_orig, events, ts)
            events = app.rr.flush()
            if events:
                self._deliver(f, app, not o_is_orig, events, ts)
        self._count_reassembly(app)
        self._close_decoders(f, app, ts)

    def tick(self, ts: float) -> None:
        """Packet time advanced (called every batch): the filter work held is done, and what
        waits on time expires."""
        if self._deferred:
            self.flush_filter()
        if self.expected:
            old = [k for k, exp in self.expected.items() if exp < ts]
            for k in old:
                del self.expected[k]
        for tracker in self.trackers.values():
            self._emit_plain(tracker.expire(ts))

    def finish(self, ts: float) -> None:
        if self._deferred:
            self.flush_filter()
        for tracker in self.trackers.values():
            self._emit_plain(tracker.close(ts))

    # -- internals -----------------------------------------------------------------
    def _attach(self, f: Flow, app: FlowApp, ts: float) -> StreamDecoder | None:
        svc = f.service
        keep = self.depth if self.keep_bodies else 0  # body bytes a filter scans, or none
        kind = decoder_kind(svc, "tcp", keep) if svc is not None else None
        if kind is None:
            self._drop(f, app)
            return None
        app.dec = dec = self._new_decoder(f, app, kind)
        # the capabilities the protocol's spec declares (a test checks each decoder has them)
        if kind.skipping:
            # a compiled decoder is one; an interpreted one (IMAP) is wrapped (agent.protocols.base)
            app.skipper = dec if isinstance(dec, BodySkipping) else SkippingOf(cast(Skipping, dec))
            app.exempting = self.keep_bodies
        if kind.finishes:
            app.finishing = cast(Finishing, dec)
        if kind.whole and self.depth > 0:
            # a command protocol: every command of the connection is a record (module docstring)
            assert app.ro is not None and app.rr is not None
            app.ro.follow()
            app.rr.follow()
            self.counters["followed_flows"] += 1
        if kind.starttls:
            app.starttls = cast(StartTls, dec)
        if kind.data_channels:
            app.channels = cast(DataChannels, dec)
        app.watch = kind.starttls or kind.data_channels
        self.counters["decoded_flows"] += 1
        if app.pending:
            pending = app.pending
            app.pending = []
            for s, k, v, t in pending:  # replayed with their own timestamps
                if app.dec is None:
                    break
                self._deliver(f, app, s is f.orig, [(k, v)], t)
        return app.dec if f.app is app else None

    @staticmethod
    def _offer_skips(f: Flow, app: FlowApp) -> None:
        """Let the reassemblers skip what the decoder only counts (HTTP bodies past the kept prefix)."""
        assert app.side_o is not None
        o_is_orig = app.side_o is f.orig
        r = app.ro
        if r is not None and not r.done and not r.skipping:
            Inspector._offer_skip(app, r, o_is_orig)
        r = app.rr
        if r is not None and not r.done and not r.skipping:
            Inspector._offer_skip(app, r, not o_is_orig)

    @staticmethod
    def _offer_skip(app: FlowApp, r: StreamReassembler, is_orig: bool) -> None:
        skipper = app.skipper
        assert skipper is not None
        n = skipper.skippable(is_orig)
        if n > 0:
            r.skip(n)
        elif app.exempting:
            r.exempt(skipper.exempt(is_orig))

    def _drop(self, f: Flow, app: FlowApp) -> None:
        self.counters["undecoded_flows"] += 1
        self._count_reassembly(app)
        f.app = None

    def _deliver(self, f: Flow, app: FlowApp, is_orig: bool, events: list[Event], ts: float) -> None:
        """Hand one direction's events to the decoder; react to what it says (weird, STARTTLS, ftp-data)."""
        for kind, value in events:
            dec = app.dec
            if dec is None:
                return
            try:
                if kind == "data":
                    assert isinstance(value, bytes)
                    recs = dec.feed(is_orig, value, ts)
                elif kind == "skip":
                    assert isinstance(value, int) and app.skipper is not None
                    recs = app.skipper.skip(is_orig, value, ts)
                else:
                    assert isinstance(value, int)
                    recs = dec.gap(is_orig, value, ts)
            except DecodeError as e:
                self._weird(f, ts, e)
                self._close_decoders(f, app, ts)
                app.dec = None
                app.passive = True
                app.stopped = True
                return
            if recs:
                self._emit(f, app, recs)
            if app.content:
                self._filter(f, app, ts)
            if app.mail:
                self._mail(f, app, True)
            if not app.watch:
                continue
            starttls = app.starttls
            if app.outer is None and starttls is not None and starttls.tls:
                # the rest of the connection is TLS (RFC 3207, RFC 2595)
                self.counters["starttls"] += 1
                app.outer = dec
                app.dec = tls = self._new_decoder(f, app, tls_kind())
                app.starttls = None
                # the TLS part is inspected as a TLS connection is: until its hellos are done,
                # within the depth from here (the mail protocol was followed past it)
                app.finishing = cast(Finishing, tls)
                app.skipper = None
                app.exempting = False
                if app.ro is not None and app.rr is not None:
                    app.ro.limit(self.depth)
                    app.rr.limit(self.depth)
                leftover = starttls.tls_leftover
                if leftover:  # the ClientHello that told the mail decoder about the switch
                    try:
                        recs = tls.feed(True, leftover, ts)
                    except DecodeError as e:
                        self._weird(f, ts, e)
                        recs = []
                    if recs:
                        self._emit(f, app, recs)
            elif app.channels is not None:
                channels = app.channels.expected_data_channels
                if channels:
                    self._expect(f, channels, ts)
                    channels.clear()

    def _expect(self, f: Flow, channels: list[tuple[str | None, int, bool]], ts: float) -> None:
        for ip, port, passive in channels:
            if ip is None:
                addr = f.rip if passive else f.oip
            else:
                try:
                    addr = ipaddress.ip_address(ip).packed
                except ValueError:
                    continue
            if len(self.expected) >= MAX_EXPECTED:
                self.expected.pop(next(iter(self.expected)))
                self.counters["ftp_data_dropped"] += 1
            self.expected[(addr, port)] = ts + EXPECTED_TIMEOUT
            self.counters["ftp_data_expected"] += 1

    def _close_decoders(self, f: Flow, app: FlowApp, ts: float) -> None:
        for dec in (app.outer, app.dec):
            if dec is None:
                continue
            try:
                recs = dec.close(ts)
            except DecodeError as e:
                self._weird(f, ts, e)
                continue
            if recs:
                self._emit(f, app, recs)
        app.outer = None
        if self.filter is not None:
            if app.content:
                self._filter(f, app, ts)
            self._filter_close(f, app, ts)
        if app.mail is not None and self.mail is not None:
            if app.mail:  # a message cut short by the connection's end
                self._mail(f, app, False)
            self.mail.close(f.uid)

    def _count_reassembly(self, app: FlowApp) -> None:
        if app.ro is not None:
            app.ro.tally(self.counters)
        if app.rr is not None:
            app.rr.tally(self.counters)

    def _flow_ids(self, f: Flow) -> dict[str, Any]:
        """The start every record of the flow shares: type and ts (filled per record), flow id."""
        return {"type": None, "ts": None, "uid": f.uid, "proto": _PROTO.get(f.proto, str(f.proto)),
                "src_ip": ip_from_packed(f.oip), "src_port": f.oport,
                "dst_ip": ip_from_packed(f.rip), "dst_port": f.rport,
                "vlan": f.vlan, "inner_vlan": f.ivlan}

    def _new_decoder(self, f: Flow, app: FlowApp, kind: DecoderKind) -> StreamDecoder:
        """A decoder for the flow, given what its spec says it takes: the flow's content list
        while a filter runs (one list: a STARTTLS pair shares it), the flow's addresses."""
        dec = kind.factory()
        if self.filter is not None and kind.content:
            if app.content is None:
                app.content = []
            cast(ContentSource, dec).content = app.content
        if self.mail is not None and kind.mail:
            if app.mail is None:
                app.mail = []
            cast(MailSteps, dec).mail_steps = app.mail
        if kind.addressed:
            cast(Addressed, dec).flow_addresses(ip_from_packed(f.oip), ip_from_packed(f.rip))
        return dec

    def _mail(self, f: Flow, app: FlowApp, live: bool) -> None:
        """Judge the mail steps the decoder just reported (`live`: while the connection's packet
        is in hand; not at its end, when nothing is left to stop); alerts go out now, blocked
        when inline and asked."""
        assert self.mail is not None and app.mail is not None
        alerts = self.mail.steps(f.uid, self._ids(f, app), app.mail, live and self.on_block is not None)
        app.mail.clear()
        if not alerts:
            return
        if live:
            self._alerts(f, app, alerts)
        else:
            self._emit_plain(alerts)

    def _filter(self, f: Flow, app: FlowApp, ts: float) -> None:
        """Match what the decoders just handed over (at the batch's end, or now when inline);
        alerts go out with the flow id."""
        assert self.filter is not None and app.content is not None
        if self.on_block is None:
            self._deferred.append(_Deferred(f, app, app.content.copy(), ts, len(self.outbox.records)))
            self._deferred_pieces += len(app.content)
            app.content.clear()
            if self._deferred_pieces >= DEFER_PIECES:
                self.flush_filter()
            return
        alerts = self.filter.scan(f.uid, app.content, ts, self._ids(f, app))
        app.content.clear()
        if alerts:
            self._alerts(f, app, alerts)

    def _filter_close(self, f: Flow, app: FlowApp, ts: float) -> None:
        """The connection ended: its filter streams end (after any work held for it)."""
        assert self.filter is not None
        if self._deferred:
            self._deferred.append(_Deferred(f, app, None, ts, len(self.outbox.records)))
            return
        alerts = self.filter.close(f.uid, ts, self._ids(f, app))
        if alerts:
            self._alerts(f, app, alerts)

    def flush_filter(self) -> None:
        """Do the filter work held, in the order it came; each connection's alerts go into the
        records where they would have been had it been done at once."""
        held = self._deferred
        if not held:
            return
        self._deferred = []
        self._deferred_pieces = 0
        filt = self.filter
        assert filt is not None
        # the whole values of all of it in one engine call (a call costs more than a short value)
        filt.prescan([(d.f.uid, d.pieces) for d in held if d.pieces is not None])
        placed: list[tuple[int, list[Record]]] = []
        for d in held:
            pieces = d.pieces
            ids = self._ids(d.f, d.app)
            alerts = (filt.scan(d.f.uid, pieces, d.ts, ids) if pieces is not None
                      else filt.close(d.f.uid, d.ts, ids))
            if alerts:
                self.counters["records"] += len(alerts)
                placed.append((d.pos, alerts))
        if not placed:
            return
        out = self.outbox.records
        merged: list[Record] = []
        last = 0
        for pos, recs in placed:  # in the order of `pos`: the work was held in record order
            merged += out[last:pos]
            merged += recs
            last = pos
        merged += out[last:]
        out[:] = merged

    def _alerts(self, f: Flow, app: FlowApp, alerts: list[Record]) -> None:
        """Alerts made now (inline): blocked when asked; they carry the flow id already."""
        blocks = [a for a in alerts if a["action"] == "block"]
        if blocks and self.on_block is not None and self.on_block(f, blocks, app.segment):
            for a in blocks:
                a["blocked"] = True
        self._emit_plain(alerts)

    def _emit(self, f: Flow, app: FlowApp, recs: list[Record]) -> None:
        self.outbox.records += self._stamped(f, app, recs)

    def _ids(self, f: Flow, app: FlowApp) -> Record:
        """The fields every record of the flow starts with (made once per flow)."""
        ids = app.ids
        if ids is None:
            ids = app.ids = self._flow_ids(f)
        return ids

    def _stamped(self, f: Flow, app: FlowApp, recs: list[Record]) -> list[Record]:
        """`recs` with the flow id fields (counted as records going out)."""
        ids = self._ids(f, app)
        out: list[Record] = []
        for r in recs:
            rec: Record = ids.copy()  # key order: type, ts, the flow id, then the decoder's fields
            rec.update(r)
            out.append(rec)
        self.counters["records"] += len(recs)
        return out

    def _emit_plain(self, recs: list[Record]) -> None:
        if recs:
            self.outbox.records.extend(recs)
            self.counters["records"] += len(recs)

    def _weird(self, f: Flow, ts: float, e: DecodeError) -> None:
        self.counters["decode_errors"] += 1
        self.outbox.weirds.append(Weird(ts, e.name, e.detail, flow=f))
