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
