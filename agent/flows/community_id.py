"""Community ID v1 flow hashing (https://github.com/corelight/community-id-spec).

What: `community_id(proto, src_ip, dst_ip, src_port, dst_port, seed=0)` returns
"1:" + base64(SHA-1(seed . addr_a . addr_b . proto . 0 . port_a . port_b)),
the string Zeek, Suricata, Arkime, Elastic and others log for a flow, so our
records can be joined with theirs by plain string comparison.

How, per the spec and its reference implementation (pycommunityid):
- addresses are packed network-order bytes (4 or 16), ports 16-bit big-endian,
  the seed 16-bit big-endian, the protocol one byte followed by a zero pad byte;
- the endpoints are ordered so the smaller (address, port) pair comes first,
  comparing the packed addresses bytewise and then the ports, so both
  directions of a flow hash alike;
- ports are hashed only for TCP, UDP, SCTP, ICMP and ICMPv6; for every other
  protocol they are ignored (the input is then 2 + 2×addr + 2 bytes);
- ICMP/ICMPv6: pass the message type as `src_port` and the code as `dst_port`
  (Zeek's conn-id convention). A type with a request/response counterpart
  (echo, timestamp, information, router solicitation/advertisement, address
  mask; ICMPv6 echo, MLD query/report, router and neighbour discovery, node
  information, home-agent discovery) hashes as (type, counterpart type) and is
  ordered like any flow, so request and reply share an ID; every other type is
  one-way, hashes as (type, code) and keeps its direction. The mapping is
  idempotent, so ports a flow table already mapped with
  `icmp_port_equivalents` give the same ID as the raw type and code.

Limits: version 1 with base64 output only (the spec's sole version); no VLAN
or tunnel context, which v1 does not cover. ValueError on addresses of unequal
or wrong length and on out-of-range numbers — the caller's bug, not peer input.
"""

from __future__ import annotations

import hashlib
import struct
from binascii import b2a_base64
from typing import Final

__all__ = ["ICMP4_COUNTERPART", "ICMP6_COUNTERPART", "community_id", "icmp_port_equivalents"]

PROTO_ICMP: Final = 1
PROTO_TCP: Final = 6
PROTO_UDP: Final = 17
PROTO_ICMP6: Final = 58
PROTO_SCTP: Final = 132

# Protocols whose ports (or ICMP type/code) are part of the hashed tuple.
_PORT_PROTOS: Final = frozenset((PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMP6, PROTO_SCTP))

# Type -> counterpart type, as Zeek's ICMP4_counterpart()/ICMP6_counterpart()
# and pycommunityid's icmp.py/icmp6.py. Types not listed are one-way.
ICMP4_COUNTERPART: dict[int, int] = {
    8: 0,  # echo request -> echo reply
    0: 8,
    13: 14,  # timestamp
    14: 13,
    15: 16,  # information
    16: 15,
    10: 9,  # router solicitation -> advertisement
    9: 10,
    17: 18,  # address mask
    18: 17,
}
ICMP6_COUNTERPART: dict[int, int] = {
    128: 129,  # echo request -> reply
    129: 128,
    130: 131,  # MLD listener query -> report
    131: 130,
    133: 134,  # router solicitation -> advertisement
    134: 133,
    135: 136,  # neighbour solicitation -> advertisement
    136: 135,
    139: 140,  # node information query -> reply (the old "who are you")
    140: 139,
    144: 145,  # home agent address discovery request -> reply
    145: 144,
}

_SEED: Final = struct.Struct("!H")
_PORTS: Final = struct.Struct("!HH")


def icmp_port_equivalents(proto: int, icmp_type: int, icmp_code: int) -> tuple[int, int, bool]:
    """(port-like source, port-like destination, is_one_way) for an ICMP message."""
    table = ICMP6_COUNTERPART if proto == PROTO_ICMP6 else ICMP4_COUNTERPART
    counterpart = table.get(icmp_type)
    if counterpart is None:
        return icmp_type, icmp_code, True
    return icmp_type, counterpart, False


def community_id(
    proto: int,
    src_ip: bytes,
    dst_ip: bytes,
    src_port: int,
    dst_port: int,
    seed: int = 0,
) -> str:
    """Community ID v1 of a flow; for ICMP/ICMPv6 the ports are (type, code)."""
    if len(src_ip) != len(dst_ip) or len(src_ip) not in (4, 16):
        raise ValueError("addresses must both be packed IPv4 (4 bytes) or IPv6 (16 bytes)")
    if not (
        0 <= proto <= 255 and 0 <= seed <= 0xFFFF and 0 <= src_port <= 0xFFFF and 0 <= dst_port <= 0xFFFF
    ):
        raise ValueError("protocol, port or seed out of range")
    one_way = False
    if proto in (PROTO_ICMP, PROTO_ICMP6):
        src_port, dst_port, one_way = icmp_port_equivalents(proto, src_port, dst_port)
    has_ports = proto in _PORT_PROTOS
    if not has_ports:
        src_port = dst_port = 0  # not hashed; zero so ordering looks at addresses only
    # One-way ICMP keeps its direction; everything else puts the smaller
    # (address, port) endpoint first so both directions hash alike.
    if not one_way and (src_ip > dst_ip or (src_ip == dst_ip and src_port > dst_port)):
        src_ip, dst_ip = dst_ip, src_ip
        src_port, dst_port = dst_port, src_port
    data = _SEED.pack(seed) + src_ip + dst_ip + bytes((proto, 0))
    if has_ports:
        data += _PORTS.pack(src_port, dst_port)
    # A flow label, not a security control: allowed on FIPS-restricted builds.
    digest = hashlib.sha1(data, usedforsecurity=False).digest()
    # binascii directly: base64.b64encode is a Python wrapper around this call
    return "1:" + b2a_base64(digest, newline=False).decode("ascii")
