"""Predicates for the text formats of ``wire.constraints.Format``, shared by both validators.

What: ``FORMAT_CHECKS`` maps each ``Format`` to ``(predicate, description)``; ``PROTO_VALUES``
is the set of allowed ``proto`` values. ``wire.validate`` (the readable reference) and
``wire.fastpath`` (the generated hot path) both call these, so they cannot disagree on a format.

Why ``proto`` is a closed set: the four names are the only spelling of TCP, UDP, ICMP and
ICMPv6 (``"6"`` would split a query for ``tcp`` in two); any other protocol is its number.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from wire.addresses import is_canonical_ip, is_canonical_mac
from wire.constraints import Format

_NAMED_PROTOS: Final = {"tcp": 6, "udp": 17, "icmp": 1, "icmp6": 58}
#: Values allowed in a ``proto`` field: the four names, or any other protocol number as text.
PROTO_VALUES: Final = frozenset(_NAMED_PROTOS) | frozenset(
    str(n) for n in range(256) if n not in _NAMED_PROTOS.values()
)
_COMMUNITY_ID_RE: Final = re.compile(r"1:[A-Za-z0-9+/]{27}=")


def is_proto(text: str) -> bool:
    """True if ``text`` is an allowed ``proto`` value."""
    return text in PROTO_VALUES


def is_community_id(text: str) -> bool:
    """True if ``text`` looks like a Community ID v1 hash: ``1:`` + base64 of 20 bytes."""
    return _COMMUNITY_ID_RE.fullmatch(text) is not None


FORMAT_CHECKS: Final[dict[Format, tuple[Callable[[str], bool], str]]] = {
    Format.IP: (is_canonical_ip, "an IP address in canonical text form"),
    Format.MAC: (is_canonical_mac, "a lower-case MAC address aa:bb:cc:dd:ee:ff"),
    Format.PROTO: (is_proto, "tcp, udp, icmp, icmp6 or another IP protocol number 0..255"),
    Format.COMMUNITY_ID: (is_community_id, "a Community ID v1 hash ('1:' + 28 base64 characters)"),
}
