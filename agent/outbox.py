"""Where the packet path puts what it makes, until the pipeline takes it (one per pipeline).

What: `Outbox.records` (finished records: sessions from the flow table, the decoders' records
with their flow id from the inspector, in the order they were made) and `Outbox.weirds`
(anomalies as `Weird`: from the packet decoder, which knows addresses, and from the flow
table and the inspector, which know the flow). The pipeline drains both at the end of each
batch (`agent.pipeline`), turning weirds into `weird` records.

Why one: the flow table, the inspector and the packet decoder used to keep lists of their
own, one written into by another, with weirds as 5-tuples from one and 4-tuples from the
other; now each part is handed the outbox and writes its own kind of entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from agent.protocols.base import Record

if TYPE_CHECKING:
    from agent.flows.state import Flow


class Weird(NamedTuple):
    """An anomaly (Zeek weird names): with the flow it happened on, or the addresses the packet
    decoder saw (packed), or neither."""

    ts: float
    name: str
    detail: str
    src: bytes | None = None
    dst: bytes | None = None
    flow: Flow | None = None


class Outbox:
    __slots__ = ("records", "weirds")

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.weirds: list[Weird] = []

    def take_records(self) -> list[Record]:
        """The records so far (a new list takes their place)."""
        out = self.records
        self.records = []
        return out
