"""Canonical text forms of IP and MAC addresses: checks for the validator, formatters for producers.

What: ``is_canonical_ip`` / ``is_canonical_mac`` (used by ``wire.validate`` on every address
field) and ``canonical_ip`` / ``ip_from_packed`` / ``mac_from_bytes`` (for the agent, and for
the collector normalising query input, so both sides produce the same text).

Canonical forms:
- IPv4: dotted quad without leading zeros, ``192.0.2.7``.
- IPv6: RFC 5952 (lower case, longest run of zero groups as ``::``, no ``::`` for one group),
  which is ``str(ipaddress.ip_address(x))``; except IPv4-mapped addresses, which RFC 5952
  section 5 writes in mixed notation, ``::ffff:192.0.2.7``. That is what ``inet_ntop`` and
  Python >= 3.13 print; Python 3.11 would print ``::ffff:c000:207``, so we do not rely on
  the interpreter for that case. Zone ids (``fe80::1%eth0``) are not allowed: they are a
  property of the host that decoded the packet, not of the packet.
- MAC: six lower-case hex pairs joined by colons, ``aa:bb:cc:dd:ee:ff``.

Speed: a gateway sees the same addresses over and over, so strings already found canonical
are remembered in ``KNOWN_GOOD_IPS`` / ``KNOWN_GOOD_MACS`` (sets, emptied when they reach
``KNOWN_GOOD_MAX`` entries; a set lookup is ~10x cheaper than a parse). Otherwise IPv4 is
checked by one regular expression (no ``ipaddress`` object) and IPv6 by ``ipaddress``.
Inputs longer than ``MAX_ADDR_LEN`` are rejected before parsing, so the caches stay small.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from functools import lru_cache
from typing import Final

from wire.limits import MAX_ADDR_LEN

_OCTET: Final = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_RE: Final = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_MAC_RE: Final = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")


def canonical_ip(text: str) -> str:
    """Return the canonical text form of an IPv4 or IPv6 address; ValueError if it is none."""
    if "%" in text:
        raise ValueError(f"zone ids are not allowed in addresses: {text[:MAX_ADDR_LEN]!r}")
    addr = ipaddress.ip_address(text)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return f"::ffff:{addr.ipv4_mapped}"
    return str(addr)


#: Most strings remembered per known-good set (about 100 bytes each).
KNOWN_GOOD_MAX: Final = 1 << 16
KNOWN_GOOD_IPS: Final[set[str]] = set()
KNOWN_GOOD_MACS: Final[set[str]] = set()


def _remember(known: set[str], text: str) -> None:
    if len(known) >= KNOWN_GOOD_MAX:
        known.clear()
    known.add(text)


def is_canonical_ip(text: str) -> bool:
    """True if ``text`` is an IPv4 or IPv6 address in canonical form (see module doc)."""
    if text in KNOWN_GOOD_IPS:
        return True
    if _IPV4_RE.fullmatch(text) is None:
        if ":" not in text or len(text) > MAX_ADDR_LEN:
            return False
        try:
            if canonical_ip(text) != text:
                return False
        except ValueError:
            return False
    _remember(KNOWN_GOOD_IPS, text)
    return True


def is_canonical_mac(text: str) -> bool:
    """True if ``text`` is ``aa:bb:cc:dd:ee:ff`` in lower case."""
    if text in KNOWN_GOOD_MACS:
        return True
    if _MAC_RE.fullmatch(text) is None:
        return False
    _remember(KNOWN_GOOD_MACS, text)
    return True


@lru_cache(maxsize=16384)
def _v6_from_packed(packed: bytes) -> str:
    return canonical_ip(str(ipaddress.IPv6Address(packed)))


_TEXT_CACHE: dict[bytes, str] = {}
_TEXT_CACHE_MAX: Final = 65536  # addresses remembered; the cache is emptied when it is full


def ip_from_packed(packed: bytes) -> str:
    """Canonical text of a 4-byte (IPv4) or 16-byte (IPv6) packed address.

    Results are remembered: a gateway's records name the same few thousand
    addresses over and over, and a dict lookup costs less than formatting.
    """
    text = _TEXT_CACHE.get(packed)
    if text is not None:
        return text
    if len(packed) == 4:
        text = socket.inet_ntoa(packed)
    elif len(packed) == 16:
        text = socket.inet_ntop(socket.AF_INET6, packed)
        # inet_ntop is RFC 5952 except for the deprecated IPv4-compatible form (::a.b.c.d)
        if "." in text and not text.startswith("::ffff:"):
            text = _v6_from_packed(bytes(packed))
    else:
        raise ValueError(f"a packed IP address has 4 or 16 bytes, not {len(packed)}")
    if len(_TEXT_CACHE) >= _TEXT_CACHE_MAX:
        _TEXT_CACHE.clear()
    _TEXT_CACHE[bytes(packed)] = text
    return text


def mac_from_bytes(raw: bytes) -> str:
    """Canonical text of a 6-byte hardware address."""
    if len(raw) != 6:
        raise ValueError(f"a MAC address has 6 bytes, not {len(raw)}")
    return raw.hex(":")
