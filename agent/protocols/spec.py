"""What a protocol module says about itself: one typed `ProtocolSpec`, listed by the registry.

What: each module in `agent/protocols/` that decodes connections exports `SPEC`: the service
it decodes (the name `agent.flows.classify` gives the flow, which `session.service` carries),
the transports, the decoder class, the record types it makes (`wire.records.RECORDS`), the
server ports it is known on, and the optional capabilities its decoder offers besides
feed/gap/close (`agent.protocols.base`: `ContentSource`, `Finishing`, `StartTls`,
`DataChannels`, `BodySkipping`). `agent.protocols.registry` turns the specs into the
`DecoderKind`s the inspector builds decoders from.

Why: adding a protocol is one module with its spec, one line in the registry and one record
type in `wire.records` (DESIGN.md); nothing in the inspector changes, because it reaches a
decoder's capabilities through the declared types, never by attribute names.
tests/agent/protocols/test_protocol_specs.py checks that every registered decoder has what
its spec declares and nothing it does not declare.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

from agent.protocols.base import BodySkipping, ContentSource, DataChannels, Finishing, StartTls, StreamDecoder

Transport: TypeAlias = Literal["tcp", "udp"]
#: The capability types a spec may declare.
CAPABILITIES: tuple[type, ...] = (ContentSource, Finishing, StartTls, DataChannels, BodySkipping)


@dataclass(frozen=True)
class ProtocolSpec:
    name: str  # the service ("http", "dns", ...): what classify names and session.service says
    transports: tuple[Transport, ...]
    decoder: Callable[..., StreamDecoder]  # its class; called with no argument, or see below
    records: tuple[str, ...]  # the record types it makes (besides weird)
    ports: frozenset[int] = frozenset()  # server ports the protocol is known on
    capabilities: tuple[type, ...] = ()  # from CAPABILITIES
    # the decoder is built with its transport as argument ("tcp" or "udp": DNS)
    takes_transport: bool = False

    def __post_init__(self) -> None:
        unknown = [c for c in self.capabilities if c not in CAPABILITIES]
        if unknown or not self.transports:
            raise TypeError(f"protocol spec {self.name!r}: unknown capabilities {unknown} or no transport")
