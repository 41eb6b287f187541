"""The shape every protocol decoder has (DESIGN.md, data path step 4).

Decoders are sans-IO, in the h11 style: the flow table hands them the bytes of
one direction of a connection in order (`feed`), says when bytes are missing
(`gap`) and when the connection ends (`close`); they return finished records.
No sockets, clocks or globals. Peer input may raise only
`agent.decode.errors.DecodeError`; the pipeline turns it into a `weird` record
and stops decoding that flow.

Besides its own records a decoder may return `weird` records (``{"type":
"weird", "ts", "name", "detail"}``) for anomalies it recovers from, the way
Zeek goes on after many of its weirds (an HTTP request side that is not
HTTP, while the replies still parse); a `DecodeError` is for what it cannot
go on after.

Records come back without the flow id fields (uid, proto, src_ip, src_port,
dst_ip, dst_port, vlan, inner_vlan): the pipeline adds them from the flow, so a
decoder never needs to know addresses. Every buffer a decoder keeps has a named
limit with its reason beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, cast

from wire.records import WeirdRecord

Record = dict[str, Any]


def weird(ts: float, name: str, detail: str | None) -> Record:
    """A `weird` record a decoder returns for an anomaly it goes on after (no flow id: the
    inspector adds it)."""
    rec: WeirdRecord = {"type": "weird", "ts": ts, "name": name, "detail": detail}
    return cast(Record, rec)


def dot_end(buf: bytearray, at_line_start: bool) -> tuple[int, int]:
    """Where the line holding only "." that ends dot-stuffed data (SMTP DATA, RFC 5321
    §4.1.1.4; a POP3 multi-line response, RFC 1939 §3) is in `buf`, which starts at a line
    start when `at_line_start`: (n, t), the first n bytes of `buf` being data and the t after
    them that line ("." CR LF, or "." LF: bare LF line ends are tolerated); t is 0 when `buf`
    does not hold it, and then the bytes after n (a "." at a line start, with at most a CR
    after it) may still begin it and must wait for more.

    For data that is only counted, not read: one search for LF "." per call, in C, however
    long the lines (a stuffed line "..x" is data; unstuffing it is the reader's business).
    """
    n = len(buf)
    p = 0
    if not (at_line_start and n and buf[0] == 0x2E):
        i = buf.find(b"\n.")
        if i < 0:
            return n, 0
        p = i + 1
    while True:
        # buf[p] is a "." at a line start
        if p + 1 < n:
            c = buf[p + 1]
            if c == 0x0A:
                return p, 2
            if c == 0x0D:
                if p + 2 >= n:
                    return p, 0  # ".\r" at the end: its LF may follow
                if buf[p + 2] == 0x0A:
                    return p, 3
        else:
            return p, 0  # a lone "." at the end: wait for what follows it
        i = buf.find(b"\n.", p + 1)
        if i < 0:
            return n, 0
        p = i + 1


class StreamDecoder(Protocol):
    """One application protocol on one connection."""

    name: str  # the service it confirms: "http", "dns", "tls", ...

    def feed(self, is_orig: bool, data: bytes, ts: float) -> list[Record]:
        """The next in-order bytes from the originator (is_orig) or the responder."""
        ...

    def gap(self, is_orig: bool, length: int, ts: float) -> list[Record]:
        """`length` bytes of that direction will never arrive (capture loss)."""
        ...

    def close(self, ts: float) -> list[Record]:
        """The connection ended (or timed out): flush what is pending."""
        ...


# -- optional capabilities ----------------------------------------------------------------
# What a decoder may offer besides feed/gap/close. A protocol module declares the ones its
# decoder has in its spec (`agent.protocols.spec.ProtocolSpec.capabilities`); the inspector
# reaches them through these types, never by looking attributes up by name, and a test checks
# every registered decoder has what its spec declares (and nothing it does not).


class ContentSource(Protocol):
    """It hands what users sent and received to the keyword filter: the inspector sets
    `content` to a list (only while a ruleset is loaded) and the decoder appends `Content`."""

    content: list[Content] | None


class Finishing(Protocol):
    """It knows when nothing more of the connection interests it (TLS: after the hellos)."""

    @property
    def finished(self) -> bool: ...


class StartTls(Protocol):
    """A mail protocol whose STARTTLS/STLS hands the rest of the connection to TLS: `tls` turns
    true, and `tls_leftover` holds client bytes already read after the switch (a ClientHello)."""

    tls: bool
    tls_leftover: bytes


class Addressed(Protocol):
    """It is told its connection's addresses once, when it is made (records still get the
    flow id from the inspector): for what depends on who is inside (a login's direction)."""

    def flow_addresses(self, orig_ip: str, resp_ip: str) -> None: ...


class DataChannels(Protocol):
    """It announces connections that will carry its data (FTP PASV/EPSV/PORT): (address or
    None for the peer's, port, passive) each, taken (and cleared) by the inspector."""

    expected_data_channels: list[tuple[str | None, int, bool]]


#: One step of a mail transaction (`MailSteps`): ("mail", ts, txn) at MAIL FROM, ("rcpt", ts, txn) at
#: each RCPT TO, ("message", ts, txn) at the message's end; `txn` is the transaction's record so far
#: (helo, user, mailfrom, and at the end its headers' from), read at once, never kept.
MailStep = tuple[str, float, Record]


class MailSteps(Protocol):
    """It reports each mail transaction's steps as it reads them, for the mail policy
    (`agent.filter.mail_policy`): the inspector sets `mail_steps` to a list (only while a policy
    runs), the decoder appends `MailStep`s, and the inspector hands them over after each delivery,
    so a step can be judged, and stopped inline, while its packet is in hand."""

    mail_steps: list[MailStep] | None


class BodySkipping:
    """A decoder's optional capability: bytes it only counts, not reads (HTTP bodies past the
    prefix kept for the filter, SMTP BDAT chunks, IMAP literals). The inspector lets its
    reassemblers skip them, and the flow table's fast path count them, without delivering
    them. A native base class, not a Protocol: compiled, the inspector's calls through it are
    direct, not attribute lookups. A decoder that is not compiled cannot inherit it; it has the
    same three methods (`Skipping`) and the inspector wraps it (`SkippingOf`)."""

    def skippable(self, is_orig: bool) -> int:
        """Bytes of that direction, from the next one, that need only be counted."""
        raise NotImplementedError

    def exempt(self, is_orig: bool) -> int:
        """Bytes of that direction a content filter scans on its own budget, not the inspection
        depth's (asked once per message; 0 when there are none, or they were given already)."""
        raise NotImplementedError

    def skip(self, is_orig: bool, length: int, ts: float) -> list[Record]:
        """`length` bytes `skippable` offered went by, counted and not delivered."""
        raise NotImplementedError


class Skipping(Protocol):
    """BodySkipping's calls, offered by a decoder mypyc does not compile (IMAP): an interpreted
    class cannot inherit a native one, so the inspector reaches it through `SkippingOf`."""

    def skippable(self, is_orig: bool) -> int: ...

    def exempt(self, is_orig: bool) -> int: ...

    def skip(self, is_orig: bool, length: int, ts: float) -> list[Record]: ...


class SkippingOf(BodySkipping):
    """The BodySkipping of a decoder that is not a native class: its own calls, passed on (the
    extra call costs little next to the bytes it lets the fast path count)."""

    def __init__(self, dec: Skipping) -> None:
        self.dec = dec

    def skippable(self, is_orig: bool) -> int:
        return self.dec.skippable(is_orig)

    def exempt(self, is_orig: bool) -> int:
        return self.dec.exempt(is_orig)

    def skip(self, is_orig: bool, length: int, ts: float) -> list[Record]:
        return self.dec.skip(is_orig, length, ts)


class Content:
    """A piece of what a user sent or received, for the keyword filter (DESIGN.md step 7).

    A decoder whose `content` attribute is a list (the inspector sets it only while a
    ruleset is loaded; otherwise it is None and costs nothing) appends these as it parses:
    whole values (a URI, a Host, a DNS name, an SNI, a mail subject, an FTP argument) as one
    `final` piece, and message bodies as they are decoded, piece by piece, ended by an empty
    `final` piece carrying the body's Content-Type (and, for mail, Content-Transfer-Encoding).
    `data` is the bytes as the user's software sent them after transfer and content
    decoding (dechunked, gunzipped), before any charset decoding; `msg` numbers the messages
    of one field within the connection, so the pieces of one body form one stream.
    """

    __slots__ = ("field", "data", "msg", "final", "ctype", "cte", "found")

    def __init__(self, field: str, data: bytes, msg: int, final: bool,
                 ctype: str | None = None, cte: str | None = None) -> None:
        self.field = field
        self.data = data
        self.msg = msg
        self.final = final
        self.ctype = ctype
        self.cte = cte
        # the filter's matches of a whole value, when it found them ahead of `scan` with those
        # of other values in one engine call (agent.filter.engine.FilterEngine.prescan)
        self.found: list[tuple[int, int]] | None = None

    def __repr__(self) -> str:
        return f"Content({self.field!r}, {self.data[:40]!r}, msg={self.msg}, final={self.final})"


class FlowTracker(Protocol):
    """A protocol followed across every flow of its service at once, not per connection (DHCP:
    one transaction spans several flows, from 0.0.0.0 and to the broadcast address). The
    inspector hands it each datagram with the flow's uid and addresses; its records carry no
    flow id."""

    name: str
    counters: dict[str, int]

    def message(self, ts: float, uid: str, payload: bytes, src_ip: str | None,
                dst_ip: str | None) -> list[Record]: ...

    def expire(self, ts: float) -> list[Record]:
        """Time went on to `ts`: records of what is finished by now."""
        ...

    def close(self, ts: float) -> list[Record]:
        """The end of the capture: records of everything pending."""
        ...


class LinkDecoder(Protocol):
    """A link-layer protocol (PPPoE): the packet decoder hands it the non-IP frames of its
    ethertypes; besides records it has authentication events for the identity table."""

    name: str
    counters: dict[str, int]

    def discovery(self, ts: float, src_mac: str, dst_mac: str, payload: bytes) -> list[Record]: ...

    def session_control(self, ts: float, src_mac: str, dst_mac: str, session_id: int, ppp_proto: int,
                        payload: bytes) -> list[Record]: ...

    def auth_events(self) -> list[dict[str, Any]]:
        """The authentication events since the last call (``agent.identity.pppoe``)."""
        ...


class DecoderKind:
    """A registered decoder as the inspector uses it (`agent.protocols.registry.decoder_kind`):
    its constructor, and which optional capabilities its spec declares, read once per
    connection as plain flags (a native class: compiled, these are field reads)."""

    __slots__ = ("service", "factory", "content", "finishes", "starttls", "data_channels", "skipping",
                 "addressed", "whole", "mail")

    def __init__(self, service: str, factory: Callable[[], StreamDecoder], *, content: bool = False,
                 finishes: bool = False, starttls: bool = False, data_channels: bool = False,
                 skipping: bool = False, addressed: bool = False, whole: bool = False,
                 mail: bool = False) -> None:
        self.service = service
        self.factory = factory
        self.content = content  # ContentSource
        self.finishes = finishes  # Finishing
        self.starttls = starttls  # StartTls
        self.data_channels = data_channels  # DataChannels
        self.skipping = skipping  # BodySkipping
        self.addressed = addressed  # Addressed
        # followed to the end of the connection, past the inspection depth (a command protocol:
        # `agent.protocols.spec.ProtocolSpec.whole_connection`)
        self.whole = whole
        self.mail = mail  # MailSteps
