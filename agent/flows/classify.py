"""Service detection from the first bytes of a flow: the registered protocols' probes.

What: a `Classifier` names a flow's application protocol from the start of its payload. For TCP
it is given the in-order prefix of one direction (`stream`), then both (`pair`: a shared "220"
greeting answered by an FTP or an SMTP command); for UDP one datagram (`datagram`). The
probes are the protocols' own: each protocol module's spec carries a `Probe`
(`agent.protocols.spec`): literal prefixes for each side, a greeting shared with other
protocols, and small structural tests (a TLS hello, a DNS header). They are tried in the
registry's order (`agent.protocols.registry.MODULES`); services no decoder handles (NTP,
SNMP, SIP, syslog, QUIC) are named here only so that `session.service` says them. Content
decides; ports break ties and gate the tests that would otherwise guess (FTP's USER, DNS).

Why a prefix: the flow table gathers each direction's first `PROBE_BYTES` in sequence order
(`agent.flows.table`), so a request split into one-byte segments, sent out of order or
overlapped by a retransmission is named as the one written in a single segment, and with it
decoded and filtered. Probing ends when a protocol matches, when both directions' openings
are in (full, or answered by the other side: a client that waits for a reply has sent its
opening), or after `MAX_PROBE_SEGMENTS` payload segments, Zeek's `dpd_max_packets`.

Cost: the probes are indexed by the stream's first byte (`Classifier`), so naming a flow is
one table lookup and a short test or two; a structural test says which first bytes it can
accept, or that it is asked only on its protocol's ports, so it is not called for the rest.
"""

from __future__ import annotations

from typing import Final

from agent.protocols.registry import specs
from agent.protocols.spec import DatagramTest, ProtocolSpec, StreamTest

PROBE_BYTES: Final = 256  # of each TCP direction: enough for every probe (a greeting's 200)
MAX_PROBE_SEGMENTS: Final = 100  # TCP payload segments, both directions (Zeek's dpd_max_packets)
MAX_PROBES: Final = 3  # UDP datagrams looked at per flow before giving up


class _TcpProbe:
    """One protocol's TCP probe, flattened for the loop in `Classifier.stream`."""

    __slots__ = ("name", "ports", "client", "client_on_port", "server", "stream", "stream_starts",
                 "stream_on_port", "greeting", "names", "answers")

    def __init__(self, spec: ProtocolSpec) -> None:
        probe = spec.probe
        assert probe is not None
        self.name = spec.name
        self.ports = spec.ports
        self.client = probe.client
        self.client_on_port = probe.client_on_port
        self.server = probe.server
        self.stream: StreamTest | None = probe.stream
        self.stream_starts = probe.stream_starts
        self.stream_on_port = probe.stream_on_port
        self.greeting = probe.greeting
        self.names = probe.greeting_names
        self.answers = probe.greeting_answers


#: One row of a first-byte table: a protocol's probe and its literal prefixes starting with that byte.
_Row = tuple[_TcpProbe, tuple[bytes, ...]]


class Classifier:
    """The probes of the registered protocols (`agent.protocols.registry.specs()`), in order.

    For each side and each possible first byte, the protocols that could match a stream
    starting with it, with just their literal prefixes that start with it: a probe is one
    table lookup and, for the usual stream, one or two short tests.
    """

    def __init__(self, protocols: list[ProtocolSpec]) -> None:
        self.tcp: list[_TcpProbe] = []
        self.udp: list[tuple[str, frozenset[int], DatagramTest]] = []
        for spec in protocols:
            probe = spec.probe
            if probe is None:
                continue
            if "tcp" in spec.transports:
                self.tcp.append(_TcpProbe(spec))
            if probe.datagram is not None:
                self.udp.append((spec.name, spec.ports, probe.datagram))
        self.orig_rows = [self._rows(b, True) for b in range(256)]
        self.resp_rows = [self._rows(b, False) for b in range(256)]

    def _rows(self, first: int, is_orig: bool) -> list[_Row]:
        rows: list[_Row] = []
        for e in self.tcp:
            literals = tuple(x for x in (e.client if is_orig else e.server) if x[0] == first)
            tested = e.stream is not None and (not e.stream_starts or first in e.stream_starts)
            greeted = not is_orig and e.greeting[:1] == bytes([first])
            if literals or tested or greeted:
                rows.append((e, literals))
        return rows

    def stream(self, p: bytes, is_orig: bool, resp_port: int) -> str | None:
        """The protocol whose probe the start `p` of one direction of a TCP flow matches, if any."""
        if not p:
            return None
        for e, literals in (self.orig_rows if is_orig else self.resp_rows)[p[0]]:
            if literals and p.startswith(literals) and (not is_orig or not e.client_on_port
                                                        or resp_port in e.ports):
                return e.name
            test = e.stream
            if test is not None and (not e.stream_on_port or resp_port in e.ports) \
                    and test(p, is_orig, resp_port):
                return e.name
            if not is_orig and e.greeting and p.startswith(e.greeting):
                if resp_port in e.ports:
                    return e.name
                head = p[:200].upper()
                for word in e.names:
                    # find, not "in": a bytes needle in "in" costs an exception inside CPython
                    if head.find(word) >= 0:
                        return e.name
        return None

    def pair(self, orig: bytes, resp: bytes) -> str | None:
        """Both directions have started and neither named the protocol alone: a greeting
        several protocols share, answered the way one of them is."""
        for e in self.tcp:
            if e.greeting and resp.startswith(e.greeting) and orig.startswith(e.answers):
                return e.name
        return None

    def datagram(self, p: bytes, orig_port: int, resp_port: int) -> str | None:
        """The protocol of one UDP datagram, if a probe recognizes it."""
        for name, ports, test in self.udp:
            if (resp_port in ports or orig_port in ports) and test(p):
                return name
        return _unregistered_udp(p, orig_port, resp_port)


def _unregistered_udp(p: bytes, orig_port: int, resp_port: int) -> str | None:
    """Services without a decoder, named for the session record."""
    n = len(p)
    if (resp_port == 123 or orig_port == 123) and n >= 48 and 1 <= (p[0] >> 3) & 7 <= 4:
        return "ntp"
    if (resp_port in (161, 162) or orig_port in (161, 162)) and n >= 2 and p[0] == 0x30:
        return "snmp"
    if (resp_port == 5060 or orig_port == 5060) and (p.startswith(b"SIP/2.0") or p[:64].find(b" sip:") >= 0):
        return "sip"
    if resp_port == 514 and p.startswith(b"<"):
        return "syslog"
    if (resp_port == 443 or orig_port == 443) and n >= 1200 and p[0] & 0xC0 == 0xC0 \
            and p[1:5] in (b"\x00\x00\x00\x01", b"\x6b\x33\x43\xcf", b"\xff\x00\x00\x1d"):
        return "quic"
    return None


_classifier: Classifier | None = None


def classifier() -> Classifier:
    """The classifier of the registered protocols (made on first use: it imports their modules)."""
    global _classifier
    if _classifier is None:
        _classifier = Classifier(specs())
    return _classifier
