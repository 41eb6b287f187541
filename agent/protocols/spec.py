"""What a protocol module says about itself: one typed `ProtocolSpec`, listed by the registry.

What: each module in `agent/protocols/` that decodes connections exports `SPEC`: the service
it decodes (the name `agent.flows.classify` gives the flow, which `session.service` carries),
the transports, the decoder class, the record types it makes (`wire.records.RECORDS`), the
server ports it is known on, and the optional capabilities its decoder offers besides
feed/gap/close (`agent.protocols.base`: `ContentSource`, `Finishing`, `StartTls`,
`DataChannels`, `BodySkipping`, `Addressed`). `agent.protocols.registry` turns the specs into the
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

from agent.protocols.base import (
    Addressed,
    BodySkipping,
    ContentSource,
    DataChannels,
    Finishing,
    FlowTracker,
    LinkDecoder,
    StartTls,
    StreamDecoder,
)

Transport: TypeAlias = Literal["tcp", "udp", "link"]
#: The capability types a spec may declare.
CAPABILITIES: tuple[type, ...] = (ContentSource, Finishing, StartTls, DataChannels, BodySkipping, Addressed)


@dataclass(frozen=True)
class ProtocolSpec:
    """One protocol. Exactly one of `decoder` (one per connection), `tracker` (one for all
    flows of the service: DHCP) and `link` (link layer, "link" transport: PPPoE) is given."""

    name: str  # the service ("http", "dns", ...): what classify names and session.service says
    transports: tuple[Transport, ...]
    decoder: Callable[..., StreamDecoder] | None  # its class; called with no argument, or see below
    records: tuple[str, ...]  # the record types it makes (besides weird)
    ports: frozenset[int] = frozenset()  # server ports the protocol is known on
    capabilities: tuple[type, ...] = ()  # from CAPABILITIES (a per-connection decoder's)
    # the decoder is built with its transport as argument ("tcp" or "udp": DNS)
    takes_transport: bool = False
    tracker: Callable[[], FlowTracker] | None = None
    link: Callable[[], LinkDecoder] | None = None

    def __post_init__(self) -> None:
        unknown = [c for c in self.capabilities if c not in CAPABILITIES]
        if unknown or not self.transports:
            raise TypeError(f"protocol spec {self.name!r}: unknown capabilities {unknown} or no transport")
        if [self.decoder, self.tracker, self.link].count(None) != 2:
            raise TypeError(f"protocol spec {self.name!r}: give exactly one of decoder, tracker, link")
        if (self.link is not None) != (self.transports == ("link",)):
            raise TypeError(f"protocol spec {self.name!r}: a link decoder has the one transport 'link'")
