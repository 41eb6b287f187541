"""Which decoder handles which service: one line per protocol (DESIGN.md "Adding a protocol").

The flow table names a connection's service (`agent.flows.classify`); the inspector asks
this registry for the `DecoderKind` of that service and transport: the decoder's
constructor and the optional capabilities its module's `SPEC` declares
(`agent.protocols.spec`). A service with no entry is only counted (its `session` record
still names it). Protocols followed across flows (DHCP: `trackers`) and link-layer ones
(PPPoE: `link_decoders`) are registered the same way; the pipeline makes one of each.

`specs()` imports every protocol module: classify needs all their probes before the first
flow is named.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Final

from agent.protocols.base import (
    Addressed,
    BodySkipping,
    ContentSource,
    DataChannels,
    DecoderKind,
    Finishing,
    FlowTracker,
    LinkDecoder,
    MailSteps,
    StartTls,
    StreamDecoder,
)
from agent.protocols.spec import ProtocolSpec

#: service -> the module whose SPEC decodes it: the one line a new protocol adds. The order is
#: the order classify tries the content probes in (FTP before SMTP: a "220" greeting naming FTP
#: is FTP's even on a mail port).
MODULES: Final = {
    "http": "agent.protocols.http",
    "tls": "agent.protocols.tls",
    "ssh": "agent.protocols.ssh",
    "ftp": "agent.protocols.ftp",
    "smtp": "agent.protocols.smtp",
    "pop3": "agent.protocols.pop3",
    "imap": "agent.protocols.imap",
    "dns": "agent.protocols.dns",
    "radius": "agent.protocols.radius",
    "dhcp": "agent.protocols.dhcp",
    "pppoe": "agent.protocols.pppoe",
}

_cache: dict[tuple[str, str, int], DecoderKind | None] = {}
DEFAULT_BODY_KEEP: Final = -1  # the decoder's own default prefix


def spec_of(service: str) -> ProtocolSpec | None:
    """The spec of the module decoding `service` (imported now if need be), or None."""
    module = MODULES.get(service)
    if module is None:
        return None
    spec = importlib.import_module(module).SPEC
    if not isinstance(spec, ProtocolSpec) or spec.name != service:
        raise TypeError(f"{module}.SPEC must be the ProtocolSpec of {service!r}")
    return spec


def specs() -> list[ProtocolSpec]:
    """Every registered protocol's spec (imports every protocol module)."""
    return [s for s in map(spec_of, MODULES) if s is not None]


def decoder_kind(service: str, transport: str, body_keep: int = DEFAULT_BODY_KEEP) -> DecoderKind | None:
    """How to decode `service` over `transport` ("tcp"/"udp"), or None.

    `body_keep`: bytes of each message body a decoder that skips bodies (`BodySkipping`:
    HTTP, SMTP) and hands content to a filter (`ContentSource`) keeps for a content filter: 0
    when no filter reads bodies (they are then only counted, which lets the inspector skip
    them), the filter's depth when one does.
    """
    key = (service, transport, body_keep)
    if key in _cache:
        return _cache[key]
    spec = spec_of(service)
    kind: DecoderKind | None = None
    if spec is not None and spec.decoder is not None and transport in spec.transports:
        caps = spec.capabilities
        args: tuple[object, ...] = (transport,) if spec.takes_transport else ()
        skipping = BodySkipping in caps
        factory: Callable[[], StreamDecoder]
        # the class itself, or a C-level partial: no Python-level wrapper call per connection
        if body_keep >= 0 and skipping and ContentSource in caps:
            factory = functools.partial(spec.decoder, *args, body_keep=body_keep)
        else:
            factory = spec.decoder if not args else functools.partial(spec.decoder, *args)
        kind = DecoderKind(service, factory, content=ContentSource in caps, finishes=Finishing in caps,
                           starttls=StartTls in caps, data_channels=DataChannels in caps,
                           skipping=skipping, addressed=Addressed in caps, whole=spec.whole_connection,
                           mail=MailSteps in caps)
    _cache[key] = kind
    return kind


def trackers() -> dict[str, FlowTracker]:
    """A new tracker for each service followed across flows (DHCP), by service."""
    return {s.name: s.tracker() for s in specs() if s.tracker is not None}


def link_decoders() -> list[LinkDecoder]:
    """A new decoder for each link-layer protocol (PPPoE)."""
    return [s.link() for s in specs() if s.link is not None]


def tls_kind() -> DecoderKind:
    """The TLS decoder, for a connection a mail protocol switched to TLS (STARTTLS)."""
    kind = decoder_kind("tls", "tcp")
    assert kind is not None
    return kind
