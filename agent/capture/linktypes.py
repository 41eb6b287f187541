"""Link-layer header types (LINKTYPE_* / DLT_* values) that edgeaudit decodes.

What: named integer constants for the link types found in the ``network``
field of a classic pcap header and the ``LinkType`` field of a pcapng
Interface Description Block, plus a name lookup for logs and stats.

Why: capture sources (pcap/pcapng files, AF_PACKET rings) hand every frame to
the decoder together with its link type; both sides need one shared spelling
of the numbers, and operators need readable names in counters.

Values follow the tcpdump.org LINKTYPE registry
(https://www.tcpdump.org/linktypes.html).  Limits: only the types the decoder
handles are named here; a capture may carry any other value, which the reader
passes through unchanged and the decoder counts as unsupported.
"""

from __future__ import annotations

from typing import Final

NULL: Final = 0
"""BSD loopback: 4-byte address family in the *capturing host's* byte order."""

ETHERNET: Final = 1
"""IEEE 802.3 Ethernet (DLT_EN10MB), including 802.1Q/802.1ad tags."""

PPP: Final = 9
"""PPP (RFC 1661), optionally with the RFC 1662 HDLC-like address/control bytes."""

RAW_DLT12: Final = 12
"""Raw IPv4/IPv6 as DLT_RAW is numbered on most BSDs and old Linux libpcap.

libpcap maps DLT_RAW to LINKTYPE_RAW (101) when writing, but files written by
older or non-libpcap tools carry the platform DLT value, so readers accept it.
"""

RAW_DLT14: Final = 14
"""Raw IPv4/IPv6 as DLT_RAW is numbered on OpenBSD (see RAW_DLT12)."""

PPP_HDLC: Final = 50
"""PPP in HDLC-like framing (RFC 1662), e.g. PPP over serial links."""

PPP_ETHER: Final = 51
"""PPPoE session stage (RFC 2516) without the Ethernet header (NetBSD pppoe)."""

RAW: Final = 101
"""Raw IP: the frame starts with an IPv4 or IPv6 header (version nibble tells)."""

LOOP: Final = 108
"""OpenBSD loopback: 4-byte address family in *network* byte order."""

LINUX_SLL: Final = 113
"""Linux "cooked" capture v1 (16-byte SLL header), e.g. ``tcpdump -i any``."""

NFLOG: Final = 239
"""Linux netfilter NFLOG (TLV header in host byte order, then the IP packet)."""

IPV4: Final = 228
"""Raw IPv4 only."""

IPV6: Final = 229
"""Raw IPv6 only."""

LINUX_SLL2: Final = 276
"""Linux "cooked" capture v2 (20-byte SLL2 header with interface index)."""

RAW_IP: Final = frozenset({RAW, RAW_DLT12, RAW_DLT14})
"""Every value that means "frame starts with an IPv4 or IPv6 header"."""

NAMES: Final[dict[int, str]] = {
    NULL: "NULL",
    ETHERNET: "ETHERNET",
    PPP: "PPP",
    RAW_DLT12: "RAW_DLT12",
    RAW_DLT14: "RAW_DLT14",
    PPP_HDLC: "PPP_HDLC",
    PPP_ETHER: "PPP_ETHER",
    RAW: "RAW",
    LOOP: "LOOP",
    LINUX_SLL: "LINUX_SLL",
    IPV4: "IPV4",
    IPV6: "IPV6",
    NFLOG: "NFLOG",
    LINUX_SLL2: "LINUX_SLL2",
}
"""Link type value -> constant name, for the types the decoder handles."""

SUPPORTED: Final = frozenset(NAMES)
"""Link types the decoder is meant to handle."""


def name(linktype: int) -> str:
    """Return the constant name for ``linktype``, or ``"LINKTYPE_<n>"`` if unnamed."""
    return NAMES.get(linktype, f"LINKTYPE_{linktype}")
