"""Bounded TCP stream reassembly for one direction of a connection.

What: `StreamReassembler` turns the payloads of TCP segments of ONE direction,
as they come off the wire (out of order, retransmitted, overlapping, with
loss), into the in-order event list a sans-IO protocol decoder wants
(`agent/protocols/base.py`, DESIGN.md data path steps 3-4):

- ``("data", bytes)``: the next bytes of the stream, in order, each byte once;
- ``("gap", n)``: the next `n` bytes of the stream will never be delivered
  (capture loss, or given up on to stay within the buffer limits).

Why: decoders must not see duplicated or reordered bytes, and must be told
about holes rather than silently handed spliced data. Keeping this pure (no
clocks, no sockets, no packets) makes it testable with property tests and
lets the flow table own the policy of when to call `ack` and `flush`.

Semantics follow Zeek's `TCP_Reassembler` / `Reassembler`:

- overlaps: the FIRST copy of a byte wins (Zeek keeps the data already in its
  block list and only inserts the parts of a new segment that are not
  covered). Overlapping buffered data is counted in ``overlaps``; when the
  retransmitted bytes differ from the kept ones, also in
  ``inconsistent_overlaps`` (Zeek's ``rexmit_inconsistency`` event).
- retransmissions of bytes already delivered are dropped and counted in
  ``retransmitted_bytes``. Unlike Zeek, delivered bytes are not kept, so they
  cannot be checked for consistency (a limit of this module).
- gaps: when the peer acknowledges bytes this side never showed us, they are
  reported as a gap (Zeek's ``content_gap`` from ``TCP_Reassembler::
  AckReceived``), then buffered data that became contiguous is delivered. At
  connection end `flush` delivers everything buffered, holes as gaps (Zeek's
  ``TCP_Reassembler::Done`` / ``FlushToAck``).
- sequence numbers are 32 bits; they are widened to 64-bit stream offsets
  relative to the highest offset seen so far, so wrap-around at 2**32 (and
  streams longer than 4 GiB) work as long as segments are within 2**31 bytes
  of that point.

- skips: a decoder that only needs to COUNT the next bytes of a direction
  (an HTTP body of known length whose kept prefix is full) says so with
  `skip(n)`; those bytes come out as ``("skip", n)`` events instead of data
  and do not count toward the depth, so a 40 MB download still ends with
  the right body length and the next request on the connection is seen,
  while only ``depth`` bytes of content were ever handed over.
- following: a command protocol (SMTP, POP3, IMAP, FTP: every command of
  the connection is a record, as in Zeek's logs) is followed to the end of
  the stream (`follow`): no depth; its decoder makes the bytes it only counts
  cheap (message bodies: skipped when their length is known, scanned for
  their end otherwise). `limit` puts a depth back, counted from where the
  stream is (the TLS part of a connection after STARTTLS).
- exemptions: bytes a content filter scans on its own budget (the first
  bytes of each HTTP body, bounded by the filter's depth per message) are
  delivered as data but given back to the depth with `exempt(n)`, so
  scanning bodies does not starve the rest of the connection: its later
  requests and replies, and the body lengths past the scanned prefix.

Limits (every buffer is bounded, the reason beside it):

- ``max_buffered`` (64 KiB) bytes and ``max_segments`` (64) blocks of
  out-of-order data are kept: a peer (or capture loss) must not make us hold
  an unbounded amount of memory waiting for a hole that never fills. Beyond
  either limit the hole before the oldest buffered block is declared a gap
  (``overflow_gaps``) and the data after it is delivered. Adjacent and
  overlapping blocks are merged, so a block is a contiguous run of bytes.
- ``depth`` (16 KiB, DESIGN.md step 3 inspection depth): the stream is
  followed up to offset ``depth`` (data delivered plus gaps reported); then
  `done` is True, nothing more is kept or delivered, and the highest stream
  offset seen beyond it is counted in ``beyond_depth`` (bytes, counted once,
  not per retransmission). For a stream without loss exactly ``depth`` bytes
  of data are delivered. Gaps count toward the depth because the depth bounds
  how far into the stream we inspect, not how much work we do.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Final

Event = tuple[str, int | bytes]

# counters kept besides `segments` and `beyond_depth` (see StreamReassembler.counters)
_COUNTER_NAMES = (
    "ooo_segments",  # segments (partly) buffered out of order
    "retransmitted_bytes",  # bytes already delivered (or gapped), dropped
    "overlaps",  # segment/buffered-block overlaps
    "inconsistent_overlaps",  # ... where the bytes differed (first copy kept)
    "gaps",  # gap events emitted
    "gap_bytes",  # bytes reported as gaps
    "overflow_gaps",  # gaps declared because a buffer limit was hit
    "skipped_bytes",  # bytes the caller asked to skip (counted, not delivered)
    "exempted_bytes",  # depth given back for a content filter's own budget
)
_MOD: Final = 1 << 32
# the depth of a stream followed to its end (`follow`): an exabyte, still a machine integer
# when compiled (mypyc's short ints hold 62 bits and a sign)
UNBOUNDED: Final = 1 << 60
_HALF: Final = 1 << 31


class StreamReassembler:
    """Reassemble one direction of a TCP connection into data/gap events."""

    def __init__(self, *, depth: int = 16384, max_buffered: int = 65536, max_segments: int = 64) -> None:
        if depth < 0 or max_buffered < 0 or max_segments < 0:
            raise ValueError("limits must be non-negative")
        self.depth = depth
        self.max_buffered = max_buffered
        self.max_segments = max_segments
        self.delivered = 0  # bytes of data delivered so far
        self.done = depth == 0
        # the two counters every segment touches are plain attributes (no dict update per packet)
        self._segments = 0  # segments with payload passed to segment()
        # the rarer counters (what the module docstring lists), created on first use: most
        # streams never retransmit, overlap or lose anything, and a dict per direction adds up
        self._counts: dict[str, int] | None = None
        self._started = False
        self._isn = 0  # sequence number of stream offset 0
        self._next = 0  # stream offset of the next byte to deliver (data + gaps)
        self._high = 0  # highest stream offset seen (end of a segment or ack)
        # out-of-order blocks above _next, sorted, non-overlapping, non-adjacent
        self._starts: list[int] = []
        self._datas: list[bytes] = []
        self._buffered = 0
        self._skip_end = 0  # stream offset up to which bytes are skipped, not delivered
        self._fin: int | None = None  # stream offset of the FIN, once seen

    # -- public API -------------------------------------------------------

    @property
    def position(self) -> int:
        """Stream offset reached: data delivered plus gap bytes reported."""
        return self._next

    @property
    def counters(self) -> dict[str, int]:
        """What was seen and dropped: segments, ooo_segments, retransmitted_bytes, overlaps,
        inconsistent_overlaps, gaps, gap_bytes, overflow_gaps, skipped_bytes, and beyond_depth
        (the highest stream offset seen minus the depth: bytes not inspected)."""
        c = dict.fromkeys(_COUNTER_NAMES, 0)
        if self._counts is not None:
            c.update(self._counts)
        c["segments"] = self._segments
        c["beyond_depth"] = max(0, self._high - self.depth)
        return c

    def tally(self, into: dict[str, int]) -> None:
        """Add this stream's gap, retransmission, overflow, skip and beyond-depth counts to `into`
        (keys as in `counters`, beyond_depth as ``beyond_depth_bytes``), without building a dict."""
        counts = self._counts
        if counts is not None:
            for k, v in counts.items():
                if k in into:
                    into[k] += v
        beyond = self._high - self.depth
        if beyond > 0:
            into["beyond_depth_bytes"] += beyond

    def _count(self, name: str, n: int) -> None:
        counts = self._counts
        if counts is None:
            counts = self._counts = {}
        counts[name] = counts.get(name, 0) + n

    @property
    def started(self) -> bool:
        """The stream's first sequence number is known (from `start` or a first segment)."""
        return self._started

    @property
    def buffered(self) -> int:
        """Bytes of out-of-order data currently held."""
        return self._buffered

    @property
    def skipping(self) -> bool:
        """A skip window is still open."""
        return self._next < self._skip_end

    @property
    def skip_left(self) -> int:
        """Bytes of the open skip window not yet passed."""
        return max(0, self._skip_end - self._next)

    def skipped(self, n: int) -> None:
        """`n` bytes of the open skip window arrived in order and were counted by the caller.

        Only valid with nothing buffered (the caller checked `buffered == 0`): it
        moves the stream position as if those bytes had come through `segment`.
        """
        if n <= 0:
            return
        if self._starts or n > self._skip_end - self._next:
            raise ValueError("skipped() past the skip window or with data buffered")
        self._segments += 1
        self._next += n
        self._see(self._next)
        self._check_done()

    def skip(self, n: int) -> None:
        """The `n` bytes after those delivered so far are only to be counted (see module doc)."""
        if n <= 0 or self.done:
            return
        start = max(self._next, self._skip_end)
        self._skip_end = start + n
        self.depth += n
        self._count("skipped_bytes", n)

    def follow(self) -> None:
        """Follow the stream to its end: no depth (see the module docstring). A stream that
        reached its depth already stays done: what went past it was not kept."""
        if not self.done:
            self.depth = UNBOUNDED

    def limit(self, more: int) -> None:
        """Inspect at most `more` bytes past those handed over so far (a depth again)."""
        end = max(self._next, self._skip_end) + more
        if not self.done and end < self.depth:
            self.depth = end
            self._check_done()

    def exempt(self, n: int) -> None:
        """`n` more bytes may be delivered beyond the depth: a filter's own budget (module doc)."""
        if n > 0 and not self.done:
            self.depth += n
            self._count("exempted_bytes", n)

    def start(self, isn_next: int) -> None:
        """Begin the stream: `isn_next` is the sequence number of its first byte."""
        self._isn = isn_next % _MOD
        self._started = True

    def segment(self, seq: int, payload: bytes) -> list[Event]:
        """A segment of this direction: `seq` is the number of its first payload byte.

        Without a prior `start` the first segment starts the stream (a
        connection picked up mid-way).
        """
        if not payload:
            return []
        if not self._started:
            self.start(seq)
        self._segments += 1
        off = self._widen(seq)
        end = off + len(payload)
        self._see(end)
        if self.done:
            return []
        if off < self._next:
            drop = min(end, self._next) - off
            self._count("retransmitted_bytes", drop)
            if end <= self._next:
                return []
            payload = payload[drop:]
            off = self._next
        if off >= self.depth:
            return []
        if end > self.depth:
            payload = payload[: self.depth - off]
            end = self.depth
        if off == self._next and not self._starts:
            # the common case: the next bytes, nothing buffered — deliver without the block list
            if off >= self._skip_end:
                self._next = end
                self.delivered += len(payload)
                self._check_done()
                return [("data", payload)]
            ev: list[Event] = []
            self._out(payload, ev)
            self._check_done()
            return ev
        if off > self._next:
            self._count("ooo_segments", 1)
        self._insert(off, payload)
        events: list[Event] = []
        self._deliver_contiguous(events)
        self._enforce_limits(events)
        return events

    def fin(self, seq_end: int) -> None:
        """This side sent its FIN after the byte before `seq_end`: the FIN's own sequence number,
        which the peer acknowledges too, is not a byte of the stream (so not a gap)."""
        if self._started:
            self._fin = self._widen(seq_end)

    def ack(self, ack: int) -> list[Event]:
        """The peer acknowledged everything below sequence number `ack`."""
        if not self._started or self.done:
            return []
        off = self._widen(ack)
        if self._fin is not None and off > self._fin:
            off = self._fin
        if off <= self._next:
            return []
        self._see(off)
        events: list[Event] = []
        self._advance_to(min(off, self.depth), events)
        return events

    def flush(self) -> list[Event]:
        """Connection end: deliver everything buffered, holes as gaps."""
        events: list[Event] = []
        if self._starts:
            last = self._starts[-1] + len(self._datas[-1])
            self._advance_to(last, events)
        return events

    # -- internals --------------------------------------------------------

    def _widen(self, seq: int) -> int:
        """32-bit sequence number -> stream offset, nearest to the highest seen."""
        ref = self._high
        delta = (seq - self._isn - ref) % _MOD
        if delta >= _HALF:
            delta -= _MOD
        return ref + delta

    def _see(self, end: int) -> None:
        if end > self._high:
            self._high = end

    def _insert(self, off: int, payload: bytes) -> None:
        """Add [off, off+len) keeping existing bytes (first copy wins), merging blocks."""
        end = off + len(payload)
        # blocks overlapping or touching [off, end]
        i = bisect_right(self._starts, off)
        if i > 0 and self._starts[i - 1] + len(self._datas[i - 1]) >= off:
            i -= 1
        j = bisect_left(self._starts, end + 1)
        if i == j:
            self._starts.insert(i, off)
            self._datas.insert(i, payload)
            self._buffered += len(payload)
            return
        parts: list[bytes] = []
        pos = min(off, self._starts[i])
        for k in range(i, j):
            s, d = self._starts[k], self._datas[k]
            e = s + len(d)
            if pos < s:  # new bytes fill the space before this block
                parts.append(payload[pos - off : s - off])
            lo, hi = max(off, s), min(end, e)
            if lo < hi:
                self._count("overlaps", 1)
                if payload[lo - off : hi - off] != d[lo - s : hi - s]:
                    self._count("inconsistent_overlaps", 1)
            parts.append(d)
            pos = e
        if pos < end:
            parts.append(payload[pos - off :])
        merged = b"".join(parts)
        new_start = min(off, self._starts[i])
        self._buffered += len(merged) - sum(len(d) for d in self._datas[i:j])
        self._starts[i:j] = [new_start]
        self._datas[i:j] = [merged]

    def _deliver_contiguous(self, events: list[Event]) -> None:
        while self._starts and self._starts[0] <= self._next:
            s = self._starts.pop(0)
            d = self._datas.pop(0)
            self._buffered -= len(d)
            d = d[self._next - s :]
            if d:
                self._out(d, events)
        self._check_done()

    def _out(self, d: bytes, events: list[Event]) -> None:
        """Hand over the next bytes `d`: the part inside a skip window as a skip, the rest as data."""
        if self._next < self._skip_end:
            k = min(len(d), self._skip_end - self._next)
            if events and events[-1][0] == "skip":
                prev = events[-1][1]
                assert isinstance(prev, int)
                events[-1] = ("skip", prev + k)
            else:
                events.append(("skip", k))
            self._next += k
            d = d[k:]
            if not d:
                return
        events.append(("data", d))
        self._next += len(d)
        self.delivered += len(d)

    def _gap(self, n: int, events: list[Event]) -> None:
        if events and events[-1][0] == "gap":
            prev = events[-1][1]
            assert isinstance(prev, int)
            events[-1] = ("gap", prev + n)
        else:
            events.append(("gap", n))
            self._count("gaps", 1)
        self._count("gap_bytes", n)
        self._next += n

    def _advance_to(self, target: int, events: list[Event]) -> None:
        """Deliver/gap up to stream offset `target`, then what became contiguous."""
        while self._next < target and not self.done:
            if self._starts and self._starts[0] <= self._next:
                self._deliver_contiguous(events)
                continue
            hole_end = target if not self._starts else min(target, self._starts[0])
            self._gap(hole_end - self._next, events)
            self._deliver_contiguous(events)

    def _enforce_limits(self, events: list[Event]) -> None:
        while self._starts and (self._buffered > self.max_buffered or len(self._starts) > self.max_segments):
            self._count("overflow_gaps", 1)
            self._gap(self._starts[0] - self._next, events)
            self._deliver_contiguous(events)

    def _check_done(self) -> None:
        if self._next >= self.depth and not self.done:
            self.done = True
            self._starts.clear()
            self._datas.clear()
            self._buffered = 0
