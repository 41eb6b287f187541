"""IPv4 and IPv6 fragment reassembly (RFC 791 §3.2, RFC 8200 §4.5, RFC 6946).

What: `Defragmenter` collects the fragments of one datagram, keyed by
(src, dst, IP id, protocol, key_extra) for IPv4 and (src, dst, Identification,
key_extra) for IPv6 — `key_extra` is whatever else must keep datagrams apart,
e.g. the VLAN tags — and hands back the whole packet once every byte has been
seen: the IPv4 header of the offset-0 fragment with MF cleared, offset 0, total
length and header checksum recomputed; or the IPv6 per-fragment headers of the
offset-0 fragment with the Fragment header spliced out and the payload length
fixed. IPv6 atomic fragments (offset 0, M=0) are returned at once and never
mixed with other fragments (RFC 6946 §4).

Why: a fragmented DNS answer, TCP segment or HTTP request is invisible to the
protocol decoders until it is whole, and fragmentation is the classic IDS
evasion, so each anomaly is reported as a Zeek-named weird for the caller to
log (`weirds`, drained by the caller).

Semantics follow Zeek's FragReassembler, so the weird names and their order
match Zeek's on the same input:

- overlap, policy "first" (default, as Zeek): the data seen first wins; each
  already-held piece a new fragment overlaps yields `fragment_overlap` when the
  bytes agree and `fragment_inconsistency` when they differ, and only the new
  bytes are kept. For an audit system this is the safe choice: whatever a
  receiver makes of overlapping data, we keep content to record and match, and
  the weird flags the attempt. Policy "discard" abandons the datagram on any
  overlap that is not an exact duplicate, as RFC 5722 asks of IPv6 hosts and
  Linux does for both versions since 4.19 (counted as `dropped_overlap`).
- total size: set by the last fragment (MF/M=0). A later last fragment with a
  different end, or any fragment reaching beyond the known end, is
  `fragment_size_inconsistency`, and the larger end wins (Zeek grows the
  datagram too; Linux would drop it). Unlike Zeek, a hole left behind by such
  growth is waited for, not cut off.
- per-fragment weirds as Zeek: `fragment_with_DF` (IPv4 DF set on a fragment),
  `excessively_small_fragment` (a non-last fragment shorter than 64 bytes in
  all), `fragment_protocol_inconsistency` (IPv6 fragments of one datagram with
  a different Next Header or per-fragment header length; in IPv4 the protocol
  is part of the key, and header lengths differ legitimately because options
  without the copy flag ride only in the first fragment).
- `excessively_large_fragment`: the datagram would exceed what its length
  field can express (65535 total for IPv4, 65535 payload for IPv6) or
  `max_datagram_size`. Zeek only warns past 64000 bytes; we drop the datagram,
  since the result could not be a valid packet.

Time comes only from packet timestamps. A datagram expires `timeout` seconds
after its first fragment (as Zeek and Linux time them); expiry runs from the
oldest entry on every call, so it assumes timestamps roughly in order.

Limits (standard 3): `max_datagrams` pending datagrams and `max_bytes` held
(payload plus a per-piece overhead estimate); past either, the oldest datagram
is evicted (`dropped_limit`). `max_pieces` bounds the pieces of one datagram
(tiny fragments cost a list slot each and make insertion quadratic); past it
the datagram is dropped (`dropped_pieces`). A datagram dropped for size,
overlap or piece count leaves a tombstone until its timeout so its remaining
fragments are absorbed (`dropped_dead`) instead of starting a doomed datagram.
`weirds` holds at most `max_weirds` entries until drained (`weirds_dropped`).

Only fragments should be passed in: the caller's fast path never calls this
for whole packets, and this module adds nothing to their cost.
"""

from __future__ import annotations

import socket
import struct
from bisect import bisect_right
from collections import OrderedDict
from typing import Final, Literal

__all__ = ["Defragmenter", "OverlapPolicy"]

OverlapPolicy = Literal["first", "discard"]

# Zeek's MIN_ACCEPTABLE_FRAG_SIZE: real stacks fragment at the path MTU (>= 576
# for IPv4, >= 1280 for IPv6), so a non-last fragment this short is crafted.
MIN_FRAGMENT_SIZE: Final = 64
# The largest packets the length fields can describe.
MAX_IPV4_PACKET: Final = 65535
MAX_IPV6_PACKET: Final = 40 + 65535  # Payload Length excludes the 40-byte fixed header
# Rough CPython cost of one held piece (bytes object header, three list slots,
# two ints) and of one pending datagram; only used to bound memory, so an
# overestimate is fine.
_PIECE_OVERHEAD: Final = 128
_DATAGRAM_OVERHEAD: Final = 512

_V4_HDR = struct.Struct("!BxHHHBBH4s4s")
_H = struct.Struct("!H")

Weird = tuple[float, str, str, str, str]


class _Datagram:
    """One datagram under reassembly: sorted, non-overlapping pieces."""

    __slots__ = (
        "first_ts",
        "v6",
        "src",
        "dst",
        "header",
        "nh_offset",
        "next_header",
        "first_next_header",
        "first_unfrag_len",
        "total",
        "starts",
        "ends",
        "datas",
        "covered",
        "mem",
        "dead",
    )

    def __init__(self, first_ts: float, v6: bool, src: bytes, dst: bytes) -> None:
        self.first_ts = first_ts
        self.v6 = v6
        self.src = src
        self.dst = dst
        # IPv4 header / IPv6 per-fragment headers of the offset-0 fragment.
        self.header: bytes | None = None
        self.nh_offset = 0  # IPv6: where in `header` the byte naming the Fragment header is
        self.next_header = 0  # IPv6: the offset-0 fragment's Fragment-header Next Header
        self.first_next_header = -1  # IPv6: as first seen, for the inconsistency check
        self.first_unfrag_len = -1
        self.total = -1  # payload size once a last fragment was seen, else -1
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.datas: list[bytes] = []
        self.covered = 0  # sum of piece lengths
        self.mem = _DATAGRAM_OVERHEAD
        self.dead = False  # dropped; absorbs its remaining fragments until timeout


def _checksum(data: bytes | bytearray) -> int:
    """RFC 1071 Internet checksum of an even-length header."""
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class Defragmenter:
    """Reassembles IPv4 and IPv6 fragments; see the module docstring."""

    def __init__(
        self,
        *,
        timeout: float = 60.0,
        max_datagrams: int = 4096,
        max_bytes: int = 64 << 20,
        max_datagram_size: int = MAX_IPV6_PACKET,
        max_pieces: int = 1024,
        max_weirds: int = 10_000,
        overlap: OverlapPolicy = "first",
    ) -> None:
        # 60 s: RFC 8200 §4.5's reassembly time for IPv6; Linux uses 30 s for
        # IPv4, and a longer wait only costs memory that max_bytes bounds.
        self.timeout = timeout
        # 4096 datagrams / 64 MiB: far above a gateway's legitimate fragment
        # load (a few per second), small enough that a fragment flood cannot
        # exhaust the agent's memory.
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.max_datagram_size = max_datagram_size
        # 1024 pieces: a 64 KiB datagram at the IPv4 minimum MTU is ~120
        # fragments; more means tiny crafted fragments.
        self.max_pieces = max_pieces
        self.max_weirds = max_weirds
        if overlap not in ("first", "discard"):
            raise ValueError(f"unknown overlap policy {overlap!r}")
        self.overlap: OverlapPolicy = overlap
        self.weirds: list[Weird] = []
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "fragments",
                "atomic",
                "not_fragment",
                "reassembled",
                "timeouts",
                "overlaps",
                "dropped_overlap",
                "dropped_limit",
                "dropped_pieces",
                "oversized",
                "dropped_dead",
                "weirds_dropped",
            ),
            0,
        )
        # Insertion order is age order, so the oldest datagram is always first:
        # both expiry and eviction pop from the front in O(1).
        self._pending: OrderedDict[tuple[object, ...], _Datagram] = OrderedDict()
        self._bytes = 0

    # -- public API -------------------------------------------------------

    @property
    def pending(self) -> int:
        """Datagrams held (including tombstones of dropped ones)."""
        return len(self._pending)

    @property
    def bytes_held(self) -> int:
        """Memory charged against `max_bytes`."""
        return self._bytes

    def add_v4(self, ts: float, key_extra: object, packet: bytes) -> bytes | None:
        """Add one IPv4 fragment (the packet from its IP header, trimmed to total length).

        `key_extra` (any hashable, e.g. the VLAN tuple) keeps apart datagrams
        that share addresses and id but not the link. Returns the reassembled
        packet when this fragment completes it, else None. A packet that is not
        a fragment (offset 0, MF clear) is returned as is.
        """
        if len(packet) < 20:
            raise ValueError("IPv4 packet shorter than its header")
        vihl, _tot, ident, flags_off, _ttl, proto, _csum, src, dst = _V4_HDR.unpack_from(packet)
        hl = (vihl & 0x0F) * 4
        if vihl >> 4 != 4 or hl < 20 or hl > len(packet):
            raise ValueError("not a valid IPv4 header")
        offset = (flags_off & 0x1FFF) << 3
        more = bool(flags_off & 0x2000)
        if offset == 0 and not more:
            self.counters["not_fragment"] += 1
            return packet
        self.counters["fragments"] += 1
        if self._pending:
            self._expire_head(ts)
        key = (src, dst, ident, proto, key_extra)
        d = self._lookup(ts, key, False, src, dst)
        if flags_off & 0x4000:
            # Linux path-MTU discovery for UDP does this; worth knowing, harmless.
            self._weird(ts, d, "fragment_with_DF", f"id={ident} offset={offset}")
        if d.dead:
            self.counters["dropped_dead"] += 1
            return None
        if offset == 0 and d.header is None:
            d.header = packet[:hl]
        payload = packet[hl:]
        if not self._add(ts, key, d, offset, more, payload, len(packet), hl, MAX_IPV4_PACKET):
            return None
        if d.header is None or d.total < 0 or d.covered != d.total:
            return None
        return self._finish_v4(ts, key, d)

    def add_v6(
        self,
        ts: float,
        key_extra: object,
        unfrag: bytes,
        nh_offset: int,
        next_header: int,
        frag_offset_bytes: int,
        more: bool,
        ident: int,
        payload: bytes,
    ) -> bytes | None:
        """Add one IPv6 fragment.

        `unfrag` is the fixed header plus the extension headers before the
        Fragment header, as on the wire; `nh_offset` is the offset in `unfrag` of
        the Next Header byte that names the Fragment header (6 when the Fragment
        header follows the fixed header); `next_header`, `frag_offset_bytes`
        (already multiplied by 8), `more` and `ident` come from the Fragment
        header; `payload` is what follows it, trimmed to the Payload Length.
        Returns the reassembled packet without the Fragment header when complete.
        """
        if len(unfrag) < 40 or not 6 <= nh_offset < len(unfrag):
            raise ValueError("bad IPv6 per-fragment headers or next-header offset")
        if frag_offset_bytes == 0 and not more:
            # RFC 6946: an atomic fragment is a whole packet; never queue it.
            self.counters["atomic"] += 1
            return self._build_v6(unfrag, nh_offset, next_header, payload, len(payload))
        self.counters["fragments"] += 1
        if self._pending:
            self._expire_head(ts)
        src = unfrag[8:24]
        dst = unfrag[24:40]
        key = (src, dst, ident, key_extra)
        d = self._lookup(ts, key, True, src, dst)
        if d.first_next_header < 0:
            d.first_next_header = next_header
            d.first_unfrag_len = len(unfrag)
        elif next_header != d.first_next_header or len(unfrag) != d.first_unfrag_len:
            self._weird(ts, d, "fragment_protocol_inconsistency", f"id={ident} nh={next_header}")
        if d.dead:
            self.counters["dropped_dead"] += 1
            return None
        if frag_offset_bytes == 0 and d.header is None:
            # RFC 8200 §4.5: per-fragment headers and Next Header come from the
            # offset-0 fragment.
            d.header = unfrag
            d.nh_offset = nh_offset
            d.next_header = next_header
        size = len(unfrag) + 8 + len(payload)
        if not self._add(ts, key, d, frag_offset_bytes, more, payload, size, len(unfrag), MAX_IPV6_PACKET):
            return None
        if d.header is None or d.total < 0 or d.covered != d.total:
            return None
        return self._finish_v6(ts, key, d)

    def expire(self, now: float) -> None:
        """Drop datagrams whose first fragment is more than `timeout` before `now`."""
        self._expire_head(now)

    # -- internals --------------------------------------------------------

    def _lookup(self, ts: float, key: tuple[object, ...], v6: bool, src: bytes, dst: bytes) -> _Datagram:
        d = self._pending.get(key)
        if d is None:
            while len(self._pending) >= self.max_datagrams:
                self._evict_oldest()
            d = _Datagram(ts, v6, src, dst)
            self._pending[key] = d
            self._bytes += d.mem
        return d

    def _add(
        self,
        ts: float,
        key: tuple[object, ...],
        d: _Datagram,
        offset: int,
        more: bool,
        payload: bytes,
        size: int,
        hdr_len: int,
        max_packet: int,
    ) -> bool:
        """Zeek's AddFragment checks, then insert. False when `d` was dropped."""
        end = offset + len(payload)
        if not more:
            if d.total < 0:
                d.total = end
                if d.ends and d.ends[-1] > end:
                    # Earlier fragments reach past this "last" one.
                    self._weird(ts, d, "fragment_size_inconsistency", f"end={end} seen={d.ends[-1]}")
                    d.total = d.ends[-1]
            elif end != d.total:
                self._weird(ts, d, "fragment_size_inconsistency", f"end={end} expected={d.total}")
                d.total = max(d.total, end)
        elif size < MIN_FRAGMENT_SIZE:
            self._weird(ts, d, "excessively_small_fragment", f"offset={offset} size={size}")
        header_len = len(d.header) if d.header is not None else hdr_len
        if header_len + end > min(max_packet, self.max_datagram_size):
            self._weird(ts, d, "excessively_large_fragment", f"offset={offset} end={end}")
            self.counters["oversized"] += 1
            self._kill(d)
            return False
        if d.total >= 0 and end > d.total:
            # A non-last fragment beyond the end a last fragment announced.
            self._weird(ts, d, "fragment_size_inconsistency", f"end={end} expected={d.total}")
            d.total = end
        if payload and not self._insert(ts, d, offset, payload):
            return False
        if len(d.starts) > self.max_pieces:
            self.counters["dropped_pieces"] += 1
            self._kill(d)
            return False
        if self._bytes > self.max_bytes:
            while self._bytes > self.max_bytes and self._pending:
                # Completing datagrams free memory, so finish this one first if
                # it just became whole; the caller checks `covered` next.
                if d.header is not None and d.total >= 0 and d.covered == d.total:
                    break
                self._evict_oldest()
            if key not in self._pending:
                return False
        return True

    def _insert(self, ts: float, d: _Datagram, offset: int, data: bytes) -> bool:
        """Keep the bytes of `data` not already held; report overlaps as Zeek."""
        end = offset + len(data)
        starts, ends, datas = d.starts, d.ends, d.datas
        if not ends or offset >= ends[-1]:
            # In-order (or gap-leaving) arrival: the common case, no search.
            starts.append(offset)
            ends.append(end)
            datas.append(data)
            self._charge(d, len(data))
            return True
        i = bisect_right(ends, offset)  # first piece ending after our start
        n = len(starts)
        if i < n and starts[i] < end:
            self.counters["overlaps"] += 1
        pos = offset
        new: list[tuple[int, int, bytes]] = []
        while i < n and starts[i] < end:
            s, e = starts[i], ends[i]
            if pos < s:
                new.append((i, pos, data[pos - offset : s - offset]))
            lo = pos if pos > s else s
            hi = end if end < e else e
            same = datas[i][lo - s : hi - s] == data[lo - offset : hi - offset]
            if self.overlap == "discard":
                # RFC 5722 (with erratum 3089): only an exact duplicate is
                # harmless; any other overlap abandons the datagram.
                if not (same and s == offset and e == end):
                    self._weird(
                        ts,
                        d,
                        "fragment_overlap" if same else "fragment_inconsistency",
                        f"offset={offset} end={end}",
                    )
                    self.counters["dropped_overlap"] += 1
                    self._kill(d)
                    return False
            else:
                # One weird per held piece, as Zeek's CheckOverlap does.
                self._weird(
                    ts,
                    d,
                    "fragment_overlap" if same else "fragment_inconsistency",
                    f"offset={lo} len={hi - lo}",
                )
            pos = e
            i += 1
        if pos < end:
            new.append((i, pos, data[pos - offset :]))
        # Insert back to front so the recorded indices stay valid.
        for idx, s, b in reversed(new):
            starts.insert(idx, s)
            ends.insert(idx, s + len(b))
            datas.insert(idx, b)
            self._charge(d, len(b))
        return True

    def _charge(self, d: _Datagram, n: int) -> None:
        d.covered += n
        cost = n + _PIECE_OVERHEAD
        d.mem += cost
        self._bytes += cost

    def _kill(self, d: _Datagram) -> None:
        """Free a dropped datagram's data; its tombstone stays until timeout."""
        self._bytes -= d.mem - _DATAGRAM_OVERHEAD
        d.mem = _DATAGRAM_OVERHEAD
        d.dead = True
        d.header = None
        d.starts, d.ends, d.datas = [], [], []
        d.covered = 0

    def _remove(self, key: tuple[object, ...]) -> _Datagram:
        d = self._pending.pop(key)
        self._bytes -= d.mem
        return d

    def _evict_oldest(self) -> None:
        _key, d = self._pending.popitem(last=False)
        self._bytes -= d.mem
        if not d.dead:
            self.counters["dropped_limit"] += 1

    def _expire_head(self, now: float) -> None:
        deadline = now - self.timeout
        pending = self._pending
        while pending:
            d = next(iter(pending.values()))
            if d.first_ts >= deadline:
                break
            pending.popitem(last=False)
            self._bytes -= d.mem
            if not d.dead:
                self.counters["timeouts"] += 1

    def _finish_v4(self, ts: float, key: tuple[object, ...], d: _Datagram) -> bytes | None:
        self._remove(key)
        assert d.header is not None
        hdr = bytearray(d.header)
        total_len = len(hdr) + d.total
        if total_len > min(MAX_IPV4_PACKET, self.max_datagram_size):
            # Possible only when the offset-0 header is longer than the one
            # the size check used.
            self._weird(ts, d, "excessively_large_fragment", f"size={total_len}")
            self.counters["oversized"] += 1
            return None
        _H.pack_into(hdr, 2, total_len)
        hdr[6] &= 0xC0  # keep the reserved and DF bits; clear MF and the offset
        hdr[7] = 0
        hdr[10] = hdr[11] = 0
        _H.pack_into(hdr, 10, _checksum(hdr))
        self.counters["reassembled"] += 1
        return bytes(hdr) + b"".join(d.datas)

    def _finish_v6(self, ts: float, key: tuple[object, ...], d: _Datagram) -> bytes | None:
        self._remove(key)
        assert d.header is not None
        if len(d.header) + d.total > min(MAX_IPV6_PACKET, self.max_datagram_size):
            self._weird(ts, d, "excessively_large_fragment", f"size={len(d.header) + d.total}")
            self.counters["oversized"] += 1
            return None
        self.counters["reassembled"] += 1
        return self._build_v6(d.header, d.nh_offset, d.next_header, b"".join(d.datas), d.total)

    @staticmethod
    def _build_v6(unfrag: bytes, nh_offset: int, next_header: int, payload: bytes, size: int) -> bytes:
        out = bytearray(unfrag)
        out[nh_offset] = next_header  # splice the Fragment header out of the chain
        _H.pack_into(out, 4, len(unfrag) - 40 + size)
        out += payload
        return bytes(out)

    def _weird(self, ts: float, d: _Datagram, name: str, detail: str) -> None:
        if len(self.weirds) >= self.max_weirds:
            self.counters["weirds_dropped"] += 1
            return
        af = socket.AF_INET6 if d.v6 else socket.AF_INET
        self.weirds.append((ts, socket.inet_ntop(af, d.src), socket.inet_ntop(af, d.dst), name, detail))
