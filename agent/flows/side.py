"""One direction of a flow: the counters every protocol keeps per sender.

A flow has two sides, `orig` and `resp`. The flow table's dictionaries map
each direction's key straight to its side, so a packet finds its flow and its
direction with one lookup, and counters live where the packet lands. When
Zeek's heuristics flip the roles, the two sides simply trade places.
`agent.flows.tcp.TcpEndpoint` extends this with TCP state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.flows.state import Flow


class Side:
    __slots__ = ("flow", "peer", "pkts", "ipb", "nbytes", "hist", "hist_bit")

    def __init__(self, flow: Flow, hist_bit: int) -> None:
        self.flow = flow  # the Flow this side belongs to
        self.peer: Side = self
        self.pkts = 0  # packets sent by this side
        self.ipb = 0  # IP bytes sent by this side
        self.nbytes = 0  # payload bytes (UDP, ICMP, other transports; TCP uses sequence numbers)
        self.hist = 0  # history letters already recorded for this side (Zeek's CheckHistory bits)
        self.hist_bit = hist_bit  # 0 while this side is the originator (upper-case letters), 8 otherwise
