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

from typing import Any, Protocol

Record = dict[str, Any]


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


class BodySkipping:
    """A decoder's optional capability: bytes it only counts, not reads (HTTP bodies past the
    prefix kept for the filter). The inspector lets its reassemblers skip them, and the flow
    table's fast path count them, without delivering them. A native base class, not a
    Protocol: compiled, the inspector's calls through it are direct, not attribute lookups."""

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
