"""Tests for agent.flows.reassembly (bounded one-direction TCP reassembly)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.flows.reassembly import Event, StreamReassembler

ISN = 1000


def new(**kw: int) -> StreamReassembler:
    r = StreamReassembler(**kw)
    r.start(ISN)
    return r


def data_of(events: list[Event]) -> bytes:
    out = b""
    for kind, v in events:
        assert kind == "data"
        assert isinstance(v, bytes)
        out += v
    return out


def test_in_order() -> None:
    r = new()
    assert r.segment(ISN, b"hello ") == [("data", b"hello ")]
    assert r.segment(ISN + 6, b"world") == [("data", b"world")]
    assert r.delivered == 11
    assert not r.done
    assert r.counters["gaps"] == 0


def test_empty_payload_is_ignored() -> None:
    r = new()
    assert r.segment(ISN, b"") == []
    assert r.counters["segments"] == 0


def test_out_of_order_buffered_then_delivered() -> None:
    r = new()
    assert r.segment(ISN + 5, b"56789") == []
    assert r.segment(ISN + 10, b"abc") == []
    assert r.buffered == 8
    assert r.counters["ooo_segments"] == 2
    ev = r.segment(ISN, b"01234")
    assert data_of(ev) == b"0123456789abc"
    assert r.buffered == 0
    assert r.delivered == 13


def test_retransmission_dropped() -> None:
    r = new()
    r.segment(ISN, b"abcdef")
    assert r.segment(ISN, b"abcdef") == []
    assert r.segment(ISN + 2, b"cd") == []
    assert r.counters["retransmitted_bytes"] == 8
    # partly new: only the new tail is delivered
    assert r.segment(ISN + 4, b"efgh") == [("data", b"gh")]
    assert r.delivered == 8


def test_overlap_first_wins_consistent() -> None:
    r = new()
    r.segment(ISN + 4, b"EFGH")
    assert r.segment(ISN + 2, b"CDEFGHIJ") == []
    assert r.counters["overlaps"] == 1
    assert r.counters["inconsistent_overlaps"] == 0
    assert data_of(r.segment(ISN, b"AB")) == b"ABCDEFGHIJ"


def test_overlap_first_wins_inconsistent() -> None:
    r = new()
    r.segment(ISN + 4, b"EFGH")
    r.segment(ISN + 2, b"cdXXXXij")  # differs from the buffered EFGH
    assert r.counters["overlaps"] == 1
    assert r.counters["inconsistent_overlaps"] == 1
    assert data_of(r.segment(ISN, b"ab")) == b"abcdEFGHij"


def test_new_segment_spanning_several_blocks_is_merged() -> None:
    r = new()
    r.segment(ISN + 10, b"K" * 10)
    r.segment(ISN + 30, b"M" * 10)
    r.segment(ISN + 5, b"x" * 40)
    assert r.counters["overlaps"] == 2
    assert r.buffered == 40
    ev = r.segment(ISN, b"y" * 5)
    assert data_of(ev) == b"y" * 5 + b"x" * 5 + b"K" * 10 + b"x" * 10 + b"M" * 10 + b"x" * 5


def test_gap_revealed_by_ack() -> None:
    r = new()
    r.segment(ISN, b"abc")
    r.segment(ISN + 10, b"klm")
    assert r.ack(ISN + 3) == []  # nothing missing below 3
    ev = r.ack(ISN + 13)
    assert ev == [("gap", 7), ("data", b"klm")]
    assert r.counters["gaps"] == 1
    assert r.counters["gap_bytes"] == 7
    assert r.position == 13
    assert r.delivered == 6
    # a late copy of the lost bytes is dropped
    assert r.segment(ISN + 3, b"defghij") == []


def test_ack_partially_into_hole() -> None:
    r = new()
    r.segment(ISN + 10, b"klm")
    assert r.ack(ISN + 4) == [("gap", 4)]
    assert r.segment(ISN + 4, b"efghij") == [("data", b"efghijklm")]


def test_ack_beyond_buffered_data() -> None:
    r = new()
    r.segment(ISN + 2, b"cd")
    assert r.ack(ISN + 10) == [("gap", 2), ("data", b"cd"), ("gap", 6)]
    assert r.counters["gaps"] == 2


def test_old_ack_ignored() -> None:
    r = new()
    r.segment(ISN, b"abcdef")
    assert r.ack(ISN + 2) == []
    assert r.ack(ISN - 5) == []


def test_ack_before_start_ignored() -> None:
    r = StreamReassembler()
    assert r.ack(12345) == []


def test_gap_at_flush() -> None:
    r = new()
    r.segment(ISN, b"ab")
    r.segment(ISN + 5, b"fg")
    r.segment(ISN + 9, b"j")
    ev = r.flush()
    assert ev == [("gap", 3), ("data", b"fg"), ("gap", 2), ("data", b"j")]
    assert r.buffered == 0
    assert r.flush() == []


def test_no_start_first_segment_starts_stream() -> None:
    r = StreamReassembler()
    assert r.segment(777, b"abc") == [("data", b"abc")]
    assert r.segment(780, b"d") == [("data", b"d")]


def test_wraparound() -> None:
    isn = (1 << 32) - 4
    r = StreamReassembler()
    r.start(isn)
    assert r.segment(isn, b"abcd") == [("data", b"abcd")]
    assert r.segment(0, b"efgh") == [("data", b"efgh")]
    # out of order across the wrap
    r2 = StreamReassembler()
    r2.start(isn)
    assert r2.segment(2, b"ghij") == []
    assert data_of(r2.segment(isn, b"abcdef")) == b"abcdefghij"
    # ack across the wrap
    r3 = StreamReassembler()
    r3.start(isn)
    r3.segment(isn, b"ab")
    assert r3.ack(3) == [("gap", 5)]


def test_long_stream_across_several_wraps() -> None:
    # offsets widen to 64 bits: advance by acks (cheap gaps) past 2**33
    r = StreamReassembler(depth=1 << 40)
    r.start(5)
    step = 1 << 30
    pos = 0
    for _ in range(10):
        pos += step
        assert r.ack((5 + pos) % (1 << 32)) == [("gap", step)]
    assert r.position == 10 * step
    assert r.segment((5 + pos) % (1 << 32), b"x") == [("data", b"x")]


def test_depth_exact() -> None:
    r = new(depth=10)
    assert r.segment(ISN, b"0123456") == [("data", b"0123456")]
    assert not r.done
    assert r.segment(ISN + 7, b"789abc") == [("data", b"789")]
    assert r.done
    assert r.delivered == 10
    assert r.counters["beyond_depth"] == 3
    assert r.segment(ISN + 13, b"defg") == []
    assert r.counters["beyond_depth"] == 7
    # retransmission beyond depth is not counted twice
    r.segment(ISN + 13, b"defg")
    assert r.counters["beyond_depth"] == 7
    assert r.ack(ISN + 100) == []
    assert r.flush() == []
    assert r.delivered == 10


def test_depth_buffered_data_beyond_is_not_kept() -> None:
    r = new(depth=10)
    assert r.segment(ISN + 8, b"89abcdef") == []
    assert r.buffered == 2
    assert r.segment(ISN + 20, b"zz") == []  # entirely beyond depth
    assert r.buffered == 2
    assert data_of(r.segment(ISN, b"01234567")) == b"0123456789"
    assert r.done
    assert r.buffered == 0


def test_depth_reached_by_gap() -> None:
    r = new(depth=10)
    r.segment(ISN, b"abc")
    assert r.ack(ISN + 50) == [("gap", 7)]
    assert r.done
    assert r.position == 10


def test_depth_zero() -> None:
    r = new(depth=0)
    assert r.done
    assert r.segment(ISN, b"abc") == []
    assert r.counters["beyond_depth"] == 3


def test_follow_lifts_the_depth_and_limit_puts_one_back() -> None:
    """A command protocol's stream is followed to its end (`follow`); the buffer limits stay.
    `limit` gives a depth again, counted from where the stream is (TLS after STARTTLS)."""
    r = new(depth=10, max_buffered=8)
    assert data_of(r.segment(ISN, b"0123")) == b"0123"
    r.follow()
    assert data_of(r.segment(ISN + 4, b"x" * 100)) == b"x" * 100
    assert not r.done and r.counters["beyond_depth"] == 0
    r.segment(ISN + 200, b"y" * 9)  # out of order, over max_buffered: the hole is given up on
    assert r.counters["overflow_gaps"] == 1 and r.buffered == 0 and r.position == 209
    r.limit(5)
    assert data_of(r.segment(ISN + 209, b"abcdefgh")) == b"abcde" and r.done
    assert r.counters["beyond_depth"] == 3


def test_follow_does_not_revive_a_done_stream() -> None:
    r = new(depth=4)
    r.segment(ISN, b"abcdef")
    assert r.done
    r.follow()
    assert r.done and r.segment(ISN + 6, b"gh") == []
    r = new(depth=100)
    r.follow()
    r.limit(0)  # nothing more
    assert r.done and r.segment(ISN, b"a") == []


def test_max_segments_overflow_declares_gap() -> None:
    r = new(max_segments=3)
    r.segment(ISN + 10, b"a")
    r.segment(ISN + 20, b"b")
    r.segment(ISN + 30, b"c")
    assert r.counters["overflow_gaps"] == 0
    ev = r.segment(ISN + 40, b"d")
    assert ev == [("gap", 10), ("data", b"a")]
    assert r.counters["overflow_gaps"] == 1
    assert len(r._starts) == 3
    assert r.position == 11


def test_max_buffered_overflow_declares_gap() -> None:
    r = new(max_buffered=10)
    r.segment(ISN + 5, b"x" * 6)  # [5, 11)
    ev = r.segment(ISN + 20, b"y" * 6)  # [20, 26): 12 bytes > 10
    assert ev == [("gap", 5), ("data", b"x" * 6)]
    assert r.buffered == 6
    assert r.counters["overflow_gaps"] == 1


def test_oversized_out_of_order_segment() -> None:
    r = new(max_buffered=4)
    ev = r.segment(ISN + 3, b"0123456789")
    assert ev == [("gap", 3), ("data", b"0123456789")]
    assert r.buffered == 0


def test_adjacent_blocks_merge_and_count_once() -> None:
    r = new(max_segments=2)
    for i in range(10):
        r.segment(ISN + 10 + i, bytes([65 + i]))
    assert len(r._starts) == 1
    assert r.counters["overflow_gaps"] == 0
    assert data_of(r.segment(ISN, b"0123456789")) == b"0123456789ABCDEFGHIJ"


@settings(max_examples=300, deadline=None)
@given(
    stream=st.binary(min_size=0, max_size=3000),
    isn=st.integers(min_value=0, max_value=(1 << 32) - 1),
    seed=st.integers(min_value=0, max_value=2**32),
    dup_ratio=st.floats(min_value=0.0, max_value=1.0),
)
def test_property_lossless_reorder_dup(stream: bytes, isn: int, seed: int, dup_ratio: float) -> None:
    """Random cuts, shuffled, with duplicates and overlapping retransmissions: exact stream."""
    rng = random.Random(seed)
    segs: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(stream):
        n = rng.randint(1, 200)
        segs.append((pos, stream[pos : pos + n]))
        pos += n
    extra: list[tuple[int, bytes]] = []
    for off, d in segs:
        if rng.random() < dup_ratio:
            extra.append((off, d))
        if rng.random() < dup_ratio / 2 and stream:  # a retransmission with other boundaries
            a = rng.randrange(len(stream))
            b = min(len(stream), a + rng.randint(1, 300))
            extra.append((a, stream[a:b]))
    allsegs = segs + extra
    rng.shuffle(allsegs)
    # the window never holds more than the whole stream
    r = StreamReassembler(depth=1 << 20, max_buffered=1 << 20, max_segments=10_000)
    r.start(isn)
    out = bytearray()
    for off, d in allsegs:
        for kind, v in r.segment((isn + off) % (1 << 32), d):
            assert kind == "data"
            assert isinstance(v, bytes)
            out += v
    assert bytes(out) == stream
    assert r.delivered == len(stream)
    assert r.counters["inconsistent_overlaps"] == 0
    assert r.counters["gaps"] == 0
    assert r.buffered == 0
    assert r.flush() == []


@settings(max_examples=200, deadline=None)
@given(
    stream=st.binary(min_size=1, max_size=2000),
    isn=st.integers(min_value=0, max_value=(1 << 32) - 1),
    seed=st.integers(min_value=0, max_value=2**32),
    depth=st.integers(min_value=1, max_value=2500),
    max_buffered=st.integers(min_value=1, max_value=600),
    max_segments=st.integers(min_value=1, max_value=8),
    loss=st.floats(min_value=0.0, max_value=0.5),
)
def test_property_lossy_bounded(
    stream: bytes, isn: int, seed: int, depth: int, max_buffered: int, max_segments: int, loss: float
) -> None:
    """With loss and tight limits: events tile the stream prefix, data is correct, buffers bounded."""
    rng = random.Random(seed)
    segs: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(stream):
        n = rng.randint(1, 100)
        if rng.random() >= loss:
            segs.append((pos, stream[pos : pos + n]))
        pos += n
    rng.shuffle(segs)
    r = StreamReassembler(depth=depth, max_buffered=max_buffered, max_segments=max_segments)
    r.start(isn)
    events: list[Event] = []
    for off, d in segs:
        events += r.segment((isn + off) % (1 << 32), d)
        assert r.buffered <= max_buffered
        assert len(r._starts) <= max_segments
        if rng.random() < 0.1:
            events += r.ack((isn + off) % (1 << 32))
    events += r.ack((isn + len(stream)) % (1 << 32))
    events += r.flush()
    cursor = 0
    delivered = 0
    for kind, v in events:
        if kind == "data":
            assert isinstance(v, bytes)
            assert v
            assert v == stream[cursor : cursor + len(v)]
            cursor += len(v)
            delivered += len(v)
        else:
            assert kind == "gap"
            assert isinstance(v, int)
            assert v > 0
            cursor += v
    expected_end = min(depth, len(stream))
    assert cursor == expected_end == r.position
    assert delivered == r.delivered
    assert r.done == (depth <= len(stream))


@settings(max_examples=100, deadline=None)
@given(stream=st.binary(min_size=1, max_size=500), depth=st.integers(min_value=1, max_value=600))
def test_property_depth_lossless(stream: bytes, depth: int) -> None:
    r = new(depth=depth)
    out = bytearray()
    for i in range(0, len(stream), 7):
        out += data_of(r.segment(ISN + i, stream[i : i + 7]))
    assert bytes(out) == stream[:depth]
    assert r.delivered == min(depth, len(stream))
    assert r.done == (len(stream) >= depth)
    assert r.counters["beyond_depth"] == max(0, len(stream) - depth)


# -- skip windows: bytes a decoder only counts ---------------------------------------------


def test_skip_turns_the_next_bytes_into_skip_events_beyond_the_depth() -> None:
    r = new(depth=10)
    assert r.segment(ISN, b"head") == [("data", b"head")]
    r.skip(100)
    assert r.skipping and r.counters["skipped_bytes"] == 100
    # in order: a segment inside the window, one straddling its end, then data after it
    assert r.segment(ISN + 4, b"x" * 60) == [("skip", 60)]
    assert r.segment(ISN + 64, b"y" * 40 + b"next") == [("skip", 40), ("data", b"next")]
    assert not r.skipping
    # the 100 skipped bytes did not use up the depth: 8 of 10 inspected so far
    assert r.delivered == 8 and not r.done
    assert r.segment(ISN + 108, b"abcdef") == [("data", b"ab")]
    assert r.done


def test_skip_with_out_of_order_data_and_a_hole() -> None:
    r = new()
    r.skip(10)
    assert r.segment(ISN + 5, b"56789AB") == []  # buffered above the hole
    assert r.segment(ISN, b"01234") == [("skip", 10), ("data", b"AB")]
    r.skip(4)
    assert r.ack(ISN + 14) == [("gap", 2)]  # a hole inside a window is still a gap: it was never seen
    assert r.segment(ISN + 14, b"CDEF") == [("skip", 2), ("data", b"EF")]


def test_skip_is_ignored_when_done_or_empty() -> None:
    r = new(depth=3)
    r.skip(0)
    assert not r.skipping
    assert r.segment(ISN, b"abc") == [("data", b"abc")]
    r.skip(5)
    assert not r.skipping and r.counters["skipped_bytes"] == 0
