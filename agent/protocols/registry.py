"""Which decoder handles which service: one line per protocol (DESIGN.md "Adding a protocol").

The flow table names a connection's service (`agent.flows.classify`); the
inspector asks this registry for a decoder for that service and transport.
A service with no entry is only counted (its `session` record still names it).
Factories are imported lazily so a run that never sees, say, RADIUS does not
pay for importing its decoder.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Final

from agent.protocols.base import StreamDecoder

Factory = Callable[[], StreamDecoder]

# (service, transport) -> (module, class, constructor arguments)
_TABLE: dict[tuple[str, str], tuple[str, str, tuple[object, ...]]] = {
    ("http", "tcp"): ("agent.protocols.http", "HttpDecoder", ()),
    ("tls", "tcp"): ("agent.protocols.tls", "TlsDecoder", ()),
    ("smtp", "tcp"): ("agent.protocols.smtp", "SmtpDecoder", ()),
    ("ftp", "tcp"): ("agent.protocols.ftp", "FtpDecoder", ()),
    ("pop3", "tcp"): ("agent.protocols.pop3", "Pop3Decoder", ()),
    ("imap", "tcp"): ("agent.protocols.imap", "ImapDecoder", ()),
    ("dns", "tcp"): ("agent.protocols.dns", "DnsDecoder", ("tcp",)),
    ("dns", "udp"): ("agent.protocols.dns", "DnsDecoder", ("udp",)),
    ("radius", "udp"): ("agent.protocols.radius", "RadiusDecoder", ()),
}

# decoders that keep a prefix of each message body for a content filter (`body_keep`)
_BODY_KEEPERS = frozenset({("http", "tcp")})

# services whose STARTTLS (or STLS) hands the rest of the connection to TLS
STARTTLS_SERVICES = frozenset({"smtp", "pop3", "imap"})

_cache: dict[tuple[str, str, int], Factory | None] = {}
DEFAULT_BODY_KEEP: Final = -1  # the decoder's own default prefix


def decoder_factory(service: str, transport: str, body_keep: int = DEFAULT_BODY_KEEP) -> Factory | None:
    """The constructor of the decoder for `service` over `transport` ("tcp"/"udp"), or None.

    `body_keep`: bytes of each message body a decoder that keeps body prefixes (HTTP) keeps
    for a content filter: 0 when no filter reads bodies (they are then only counted, which
    lets the inspector skip them), the filter's depth when one does.
    """
    key = (service, transport, body_keep)
    if key in _cache:
        return _cache[key]
    entry = _TABLE.get((service, transport))
    factory: Factory | None = None
    if entry is not None:
        module, cls_name, args = entry
        cls = getattr(importlib.import_module(module), cls_name)
        # the class itself, or a C-level partial: no Python-level wrapper call per connection
        if body_keep >= 0 and (service, transport) in _BODY_KEEPERS:
            factory = functools.partial(cls, *args, body_keep=body_keep)
        else:
            factory = cls if not args else functools.partial(cls, *args)
    _cache[key] = factory
    return factory


def tls_factory() -> Factory:
    factory = decoder_factory("tls", "tcp")
    assert factory is not None
    return factory
