"""Service detection from the first payload bytes of a flow (port hint + content probe).

What: `probe_tcp` and `probe_udp` look at the first payload of a direction and
name the application protocol (`http`, `tls`, `ssh`, `smtp`, `ftp`, `pop3`,
`imap`, `dns`, `dhcp`, `ntp`, `radius`, `snmp`, `sip`, `syslog`, `quic`) or say
nothing. Content decides; ports only break ties (an FTP and an SMTP server
both greet with "220"), so HTTP on port 8000 and SMTP on 587 are found.

Why here: a flow is classified once (DESIGN.md, data path step 3), on at most
`MAX_PROBES` payload packets per direction, so flows with no interested decoder
cost only counters afterwards. The protocol decoders confirm and refine this.

Ports: the server ports of the protocols with a decoder come from their specs
(`agent.protocols.spec.ProtocolSpec.ports`, through the registry). The content probes
themselves still live here (moving each into its protocol's spec is the next step).

Limits: only the start of each direction is looked at; protocols that need
both directions (a "220" banner) are decided by the other side's first bytes
or the server port.
"""

from __future__ import annotations

import struct
from typing import Final

from agent.protocols.registry import spec_of

MAX_PROBES: Final = 3  # payload packets looked at per direction before giving up

_HTTP_METHODS = (
    b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"CONNECT ", b"TRACE ", b"PATCH ",
    b"PROPFIND ", b"PROPPATCH ", b"MKCOL ", b"COPY ", b"MOVE ", b"LOCK ", b"UNLOCK ", b"SEARCH ",
    b"REPORT ", b"SUBSCRIBE ", b"NOTIFY ", b"MKACTIVITY ", b"CHECKOUT ", b"MERGE ", b"BPROPFIND ",
)
_SMTP_CMDS = (b"EHLO", b"HELO", b"ehlo", b"helo")
_FTP_CMDS = (b"USER ", b"user ", b"AUTH TLS", b"AUTH SSL", b"FEAT", b"SYST")
_POP3_CMDS = (b"CAPA", b"USER ", b"APOP ", b"AUTH ", b"STLS")


def _ports(service: str) -> frozenset[int]:
    """The server ports the protocol's spec names (agent.protocols.registry): tie-breakers here."""
    spec = spec_of(service)
    return spec.ports if spec is not None else frozenset()


_SMTP_PORTS: Final = _ports("smtp")
_FTP_PORTS: Final = _ports("ftp")
_DNS_PORTS: Final = _ports("dns")
_RADIUS_PORTS: Final = _ports("radius")
_DHCP_PORTS: Final = _ports("dhcp")
_H = struct.Struct("!H")


def _tls_hello(p: bytes, client: bool) -> bool:
    if len(p) >= 6 and p[0] == 0x16 and p[1] == 3 and p[2] <= 4:
        return p[5] == (1 if client else 2)
    # SSLv2-compatible ClientHello (RFC 6101 appendix E.2): 2-byte length with the high bit, type 1
    return client and len(p) >= 3 and bool(p[0] & 0x80) and p[2] == 1 and len(p) >= 11 and p[3] in (2, 3)


def probe_tcp(p: bytes, is_orig: bool, resp_port: int) -> str | None:
    if is_orig:
        if p.startswith(_HTTP_METHODS):
            return "http"
        if _tls_hello(p, True):
            return "tls"
        if p.startswith(b"SSH-"):
            return "ssh"
        if p.startswith(_SMTP_CMDS):
            return "smtp"
        if p.startswith(_FTP_CMDS) and resp_port in _FTP_PORTS:
            return "ftp"
        if resp_port in _DNS_PORTS and _dns_tcp(p):
            return "dns"
        return None
    if p.startswith(b"HTTP/1.") or p.startswith(b"HTTP/0.9"):
        return "http"
    if _tls_hello(p, False):
        return "tls"
    if p.startswith(b"SSH-"):
        return "ssh"
    if p.startswith(b"+OK"):
        return "pop3"
    if p.startswith(b"* OK") or p.startswith(b"* PREAUTH"):
        return "imap"
    if p.startswith(b"220"):
        head = p[:200].upper()
        # find, not "in": a bytes needle in "in" costs an exception inside CPython
        if resp_port in _FTP_PORTS or head.find(b"FTP") >= 0:
            return "ftp"
        if resp_port in _SMTP_PORTS or head.find(b"SMTP") >= 0 or head.find(b"MAIL") >= 0:
            return "smtp"
    return None


def probe_tcp_pair(orig_first: bytes, resp_first: bytes) -> str | None:
    """Both directions seen and neither decided alone: a '220' greeting answered by a command."""
    if resp_first.startswith(b"220"):
        if orig_first.startswith(_SMTP_CMDS):
            return "smtp"
        if orig_first.startswith(_FTP_CMDS):
            return "ftp"
    if resp_first.startswith(b"+OK") and orig_first.startswith(_POP3_CMDS):
        return "pop3"
    return None


def _dns_tcp(p: bytes) -> bool:
    return len(p) >= 14 and _H.unpack_from(p, 0)[0] == len(p) - 2 and _dns_header(p, 2)


def _dns_header(p: bytes, off: int) -> bool:
    if len(p) - off < 12:
        return False
    flags = _H.unpack_from(p, off + 2)[0]
    opcode = (flags >> 11) & 0xF
    qd = _H.unpack_from(p, off + 4)[0]
    return opcode in (0, 1, 2, 4, 5) and qd <= 16


def probe_udp(p: bytes, orig_port: int, resp_port: int) -> str | None:
    n = len(p)
    if (resp_port in _DNS_PORTS or orig_port in _DNS_PORTS) and _dns_header(p, 0):
        return "dns"
    if (resp_port in _DHCP_PORTS or orig_port in _DHCP_PORTS) and n >= 240 \
            and p[236:240] == b"\x63\x82\x53\x63":  # the DHCP magic cookie
        return "dhcp"
    if (resp_port == 123 or orig_port == 123) and n >= 48 and 1 <= (p[0] >> 3) & 7 <= 4:
        return "ntp"
    # authentication/accounting (RFC 2865/2866, and the old 1645/1646), dynamic authorization
    # (CoA/Disconnect, RFC 5176: 3799, and 1700 as Cisco and others use it)
    if (resp_port in _RADIUS_PORTS or orig_port in _RADIUS_PORTS) and n >= 20 \
            and p[0] in (1, 2, 3, 4, 5, 11, 12, 13, 40, 41, 42, 43, 44, 45) and _H.unpack_from(p, 2)[0] == n:
        return "radius"
    if (resp_port in (161, 162) or orig_port in (161, 162)) and n >= 2 and p[0] == 0x30:
        return "snmp"
    if (resp_port == 5060 or orig_port == 5060) and (p.startswith(b"SIP/2.0") or b" sip:" in p[:64]):
        return "sip"
    if resp_port == 514 and p.startswith(b"<"):
        return "syslog"
    if (resp_port == 443 or orig_port == 443) and n >= 1200 and p[0] & 0xC0 == 0xC0 \
            and p[1:5] in (b"\x00\x00\x00\x01", b"\x6b\x33\x43\xcf", b"\xff\x00\x00\x1d"):
        return "quic"
    return None
