"""Per-protocol session scripts and the traffic mix they are drawn from.

:data:`MIX` is the share of *new sessions* of each kind (not of packets or
bytes): DNS lookups are the most numerous but tiny, while HTTP and TLS carry
most of the bytes through their lognormal response sizes. The weights are
those of the reference generator (``../shared/tools/gen_edge_pcap.py``).
"""

from __future__ import annotations

from agent.synth.sessions.base import Client, SessionContext, SessionScript
from agent.synth.sessions.dns import dns_session
from agent.synth.sessions.http import http_session
from agent.synth.sessions.quic import quic_session
from agent.synth.sessions.smtp import smtp_session
from agent.synth.sessions.tls import tls_session

MIX: tuple[tuple[str, SessionScript, float], ...] = (
    ("http", http_session, 0.22),
    ("tls", tls_session, 0.30),
    ("dns", dns_session, 0.40),
    ("smtp", smtp_session, 0.01),
    ("quic", quic_session, 0.07),
)
KINDS: tuple[str, ...] = tuple(kind for kind, _, _ in MIX)

__all__ = ["KINDS", "MIX", "Client", "SessionContext", "SessionScript"]
