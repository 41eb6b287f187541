"""What a protocol module says about itself: one typed `ProtocolSpec`, listed by the registry.

What: each module in `agent/protocols/` that decodes connections exports `SPEC`: the service
it decodes (the name `agent.flows.classify` gives the flow, which `session.service` carries),
the transports, the decoder class, the record types it makes (`wire.records.RECORDS`), the
server ports it is known on, how its traffic is recognized (`Probe`), and the optional
capabilities its decoder offers besides feed/gap/close (`agent.protocols.base`:
`ContentSource`, `Finishing`, `StartTls`, `DataChannels`, `BodySkipping`, `Addressed`, `MailSteps`).
Whether the inspection depth applies is the spec's too (`whole_connection`): a command protocol
(SMTP, POP3, IMAP, FTP) is followed to the end of the connection, because each of its
transactions is a record (Zeek logs them all) and a mass mailer's 150th message comes long
after the first 16 KiB; its decoder keeps that cheap (see `ProtocolSpec.whole_connection`).
`agent.protocols.registry` turns the specs into the `DecoderKind`s the inspector builds
decoders from, and `agent.flows.classify` the probes into its service detection.

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
    MailSteps,
    StartTls,
    StreamDecoder,
)

Transport: TypeAlias = Literal["tcp", "udp", "link"]
#: A structural test of the start of one direction of a TCP stream: (the in-order prefix,
#: whether it is the originator's, the responder's port) -> this protocol's?
StreamTest: TypeAlias = Callable[[bytes, bool, int], bool]
#: A structural test of one UDP datagram, asked only when either port is one of the spec's.
DatagramTest: TypeAlias = Callable[[bytes], bool]


@dataclass(frozen=True)
class Probe:
    """How `agent.flows.classify` recognizes the protocol from the first bytes of a flow.

    TCP probes see the in-order prefix of each direction (up to `classify.PROBE_BYTES`, however
    it was segmented); the registry's order decides between protocols that both match. Literal
    prefixes are data, so classify can test all protocols' at once; only what literals cannot
    say is a function (`stream`, `datagram`), and those are kept small and cheap.
    """

    client: tuple[bytes, ...] = ()  # what the originator's stream may start with
    client_on_port: bool = False  # ... which counts only to one of the spec's ports (FTP's USER)
    server: tuple[bytes, ...] = ()  # what the responder's stream may start with
    # a greeting more than one protocol opens with (FTP and SMTP: "220"): this protocol's when it
    # comes from one of the spec's ports, names one of `greeting_names` (upper case) in its
    # first 200 bytes, or is answered by the originator with one of `greeting_answers`
    greeting: bytes = b""
    greeting_names: tuple[bytes, ...] = ()
    greeting_answers: tuple[bytes, ...] = ()
    stream: StreamTest | None = None
    # the first bytes a direction `stream` may accept can start with (empty: any), so classify
    # asks it only for those; and whether it is asked only to one of the spec's ports (DNS)
    stream_starts: bytes = b""
    stream_on_port: bool = False
    datagram: DatagramTest | None = None
#: The capability types a spec may declare.
CAPABILITIES: tuple[type, ...] = (ContentSource, Finishing, StartTls, DataChannels, BodySkipping, Addressed,
                                  MailSteps)


@dataclass(frozen=True)
class ProtocolSpec:
    """One protocol. Exactly one of `decoder` (one per connection), `tracker` (one for all
    flows of the service: DHCP) and `link` (link layer, "link" transport: PPPoE) is given."""

    name: str  # the service ("http", "dns", ...): what classify names and session.service says
    transports: tuple[Transport, ...]
    decoder: Callable[..., StreamDecoder] | None  # its class; called with no argument, or see below
    records: tuple[str, ...]  # the record types it makes (besides weird)
    ports: frozenset[int] = frozenset()  # server ports the protocol is known on
    probe: Probe | None = None  # how a flow is recognized as this protocol (None: never by content)
    capabilities: tuple[type, ...] = ()  # from CAPABILITIES (a per-connection decoder's)
    # the decoder is built with its transport as argument ("tcp" or "udp": DNS)
    takes_transport: bool = False
    tracker: Callable[[], FlowTracker] | None = None
    link: Callable[[], LinkDecoder] | None = None
    # followed to the end of the connection, not to the inspection depth (a command protocol:
    # every command is a record). Its decoder must make what it does not decode cheap: message
    # bodies skipped by length (`BodySkipping`) or only searched for their end, never kept
    # past a bounded prefix; and it says when it stops decoding (`Finishing`: STARTTLS...)
    whole_connection: bool = False

    def __post_init__(self) -> None:
        unknown = [c for c in self.capabilities if c not in CAPABILITIES]
        if unknown or not self.transports:
            raise TypeError(f"protocol spec {self.name!r}: unknown capabilities {unknown} or no transport")
        if [self.decoder, self.tracker, self.link].count(None) != 2:
            raise TypeError(f"protocol spec {self.name!r}: give exactly one of decoder, tracker, link")
        if (self.link is not None) != (self.transports == ("link",)):
            raise TypeError(f"protocol spec {self.name!r}: a link decoder has the one transport 'link'")
        if self.whole_connection and (self.decoder is None or Finishing not in self.capabilities):
            # followed past the depth, a decoder that stopped (TLS, a decode error...) must say so,
            # or the rest of a long connection would still be handed to it
            raise TypeError(f"protocol spec {self.name!r}: a decoder followed to the connection's end "
                            "says when it is finished (Finishing)")
