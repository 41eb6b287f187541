"""Value constraints attached to record fields with ``typing.Annotated``.

What: the markers ``Range``, ``MaxLen`` and ``Format`` and the aliases built from them
(``IPAddr``, ``MacAddr``, ``Port``, ``VlanId``, ``Count``, ``Timestamp``, ...). The TypedDicts in
``wire.records`` use the aliases, ``wire.spec`` reads the markers back to build the field spec
table, and ``wire.validate`` enforces it.

Why ``Annotated``: mypy sees a plain ``str``/``int``/``float``, so producers get ordinary type
checking, while one declaration per field carries both the type and its rule; there is no
second table to keep in step.

Defaults applied by ``wire.spec`` when a field has no marker: every ``int`` must fit int64,
every ``float`` must be finite, every ``str`` is at most ``MAX_STRING_LEN`` characters, every
list at most ``MAX_LIST_LEN`` items of at most ``MAX_LIST_ITEM_LEN`` characters.
"""

from __future__ import annotations

import enum
import sys
from dataclasses import dataclass
from typing import Annotated, TypeAlias

from wire.limits import INT64_MAX, MAX_SNIPPET_LEN, MAX_TS, MIN_TS


@dataclass(frozen=True, slots=True)
class Range:
    """Inclusive numeric bounds for an ``int`` or ``float`` field."""

    lo: float
    hi: float


@dataclass(frozen=True, slots=True)
class MaxLen:
    """A tighter length limit for a ``str`` field, in characters."""

    n: int


class Format(enum.Enum):
    """A text syntax a ``str`` field must follow."""

    IP = "ip"  # canonical IPv4/IPv6 text, see wire.addresses
    MAC = "mac"  # aa:bb:cc:dd:ee:ff, lower case
    PROTO = "proto"  # tcp|udp|icmp|icmp6 or another IP protocol number 0..255 as decimal text
    COMMUNITY_ID = "community_id"  # Community ID v1: "1:" + base64 of a SHA-1 (28 characters)


IPAddr: TypeAlias = Annotated[str, Format.IP]
MacAddr: TypeAlias = Annotated[str, Format.MAC]
Proto: TypeAlias = Annotated[str, Format.PROTO]
CommunityId: TypeAlias = Annotated[str, Format.COMMUNITY_ID]
Port: TypeAlias = Annotated[int, Range(0, 65535)]
VlanId: TypeAlias = Annotated[int, Range(0, 4095)]
Count: TypeAlias = Annotated[int, Range(0, INT64_MAX)]
Depth: TypeAlias = Annotated[int, Range(1, INT64_MAX)]
U16: TypeAlias = Annotated[int, Range(0, 65535)]
Timestamp: TypeAlias = Annotated[float, Range(MIN_TS, MAX_TS)]
#: Seconds between two moments of one record (last packet - first, logout - login): never
#: negative (SCHEMA.md), and finite like every float.
Duration: TypeAlias = Annotated[float, Range(0.0, sys.float_info.max)]
Snippet: TypeAlias = Annotated[str, MaxLen(MAX_SNIPPET_LEN)]
