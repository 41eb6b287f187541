"""Internet checksum (RFC 1071) arithmetic for the synthetic capture builder.

Design: instead of summing 16-bit words one by one, we use the identity that a
byte string read as a big-endian integer ``n`` satisfies
``n ≡ sum of its 16-bit words (mod 0xFFFF)`` because ``2**16 ≡ 1 (mod 0xFFFF)``.
``int.from_bytes(data, "big") % 0xFFFF`` runs in C and is ~6x faster than
``sum(array("H", data))`` for a full-size segment, which matters when we build
a million packets.

We call that value the *residue*. Residues of pieces that start at even
offsets simply add, so a header's constant part (addresses, ports, protocol)
is computed once per flow direction and each packet only adds its variable
fields (length, sequence numbers, IP ID, ...) and its payload residue.

Limit: :func:`checksum_from_residue` assumes the summed data is not all zero
bytes (true for every IPv4/TCP/UDP header: version, protocol and lengths are
non-zero), so a residue of 0 means a ones'-complement sum of 0xFFFF.
"""

from __future__ import annotations

_MOD = 0xFFFF


def residue(data: bytes) -> int:
    """Ones'-complement sum of ``data`` reduced mod 0xFFFF, padding odd length with a zero byte."""
    n = int.from_bytes(data, "big")
    if len(data) & 1:
        # RFC 1071 pads an odd byte count with a trailing zero byte, i.e. n * 256.
        n <<= 8
    return n % _MOD


def checksum_from_residue(r: int) -> int:
    """Turn an accumulated (possibly unreduced) residue into the 16-bit field value."""
    r %= _MOD
    # r == 0 with non-zero data means the folded sum is 0xFFFF, whose complement is 0.
    return _MOD - r if r else 0


def internet_checksum(data: bytes) -> int:
    """Plain RFC 1071 checksum of ``data`` (used by tests and the slow, clear builder paths)."""
    if not any(data):
        return 0xFFFF
    return checksum_from_residue(residue(data))
