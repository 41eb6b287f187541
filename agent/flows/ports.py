"""Likely server ports: who is the originator when the first packet is not a SYN.

`LIKELY_SERVER_TCP`/`LIKELY_SERVER_UDP` decide who the originator is when the
first packet of a connection is not a SYN (Zeek's `likely_server_ports`, which
Zeek fills from the ports its analyzers register; this is the union of the
analyzers in Zeek's default script set plus the services an edge gateway
commonly carries).

Port 68 (DHCP client) is deliberately absent: Zeek lists only 67 as a likely
server port, so a server's unicast reply opens a flipped flow.

`never_flip(dst)`: traffic to broadcast and multicast addresses keeps the
sender as originator whatever its port (a DHCP server's broadcast OFFER).

ICMP "ports" come from `agent.flows.community_id.icmp_port_equivalents`.
"""

from __future__ import annotations

LIKELY_SERVER_TCP = frozenset({
    21, 22, 23, 25, 53, 80, 81, 88, 110, 111, 135, 139, 143, 389, 443, 445, 465, 502, 563,
    585, 587, 614, 631, 636, 853, 989, 990, 992, 993, 995, 1080, 1433, 1434, 1723, 1883, 2811,
    3128, 3268, 3306, 3389, 5060, 5222, 5223, 5269, 5432, 5900, 6379, 6666, 6667, 6668, 6669,
    7000, 8000, 8080, 8443, 8888, 20000,
})
LIKELY_SERVER_UDP = frozenset({
    53, 67, 69, 88, 123, 137, 138, 161, 162, 443, 500, 514, 546, 547, 1701, 1812, 1813,
    2123, 2152, 3544, 4500, 4789, 5060, 5072, 5353, 5355, 6081,
})


_BROADCAST4 = b"\xff\xff\xff\xff"


def never_flip(dst: bytes) -> bool:
    """True for broadcast and multicast destinations (224.0.0.0/4, ff00::/8, 255.255.255.255)."""
    first = dst[0]
    if len(dst) == 4:
        return 224 <= first <= 239 or dst == _BROADCAST4
    return first == 0xFF
