"""Tests for agent.filter.automaton: PatternSet over buffers, StreamScan over split streams."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.filter.automaton import MAX_PATTERN_LEN, PatternSet, StreamScan
from agent.filter.forms import keyword_forms


def naive(patterns: list[bytes], data: bytes) -> list[tuple[int, int]]:
    """Every occurrence, by brute force, ordered as PatternSet reports them (end, then longest first)."""
    found = []
    for pid, p in enumerate(patterns):
        start = data.find(p)
        while start >= 0:
            found.append((start + len(p), -len(p), pid, start))
            start = data.find(p, start + 1)
    return [(start, pid) for _, _, pid, start in sorted(found)]


def stream(
    patterns: PatternSet, pieces: list[bytes], limit: int = 1 << 40
) -> tuple[list[tuple[int, int]], StreamScan]:
    scan = StreamScan(patterns, limit)
    out: list[tuple[int, int]] = []
    for piece in pieces:
        out += scan.feed(piece)
    return out, scan


# --- PatternSet -----------------------------------------------------------------------------


def test_empty_pattern_set() -> None:
    ps = PatternSet([])
    assert len(ps) == 0 and ps.max_len == 0
    assert ps.scan(b"anything at all") == [] and ps.scan(b"") == []
    out, scan = stream(ps, [b"abc", b"", b"def"])
    assert out == [] and scan.scanned == 6


def test_overlapping_patterns() -> None:
    patterns = [b"he", b"she", b"his", b"hers"]
    ps = PatternSet(patterns)
    assert len(ps) == 4 and ps.max_len == 4
    assert ps.scan(b"ushers") == [(1, 1), (2, 0), (2, 3)]
    assert ps.scan(b"ushers") == naive(patterns, b"ushers")
    assert [ps.pattern_len(i) for i in range(4)] == [2, 3, 3, 4]


def test_duplicates_each_reported_and_order_by_end() -> None:
    patterns = [b"ab", b"b", b"ab", b"abc"]
    ps = PatternSet(patterns)
    assert ps.scan(b"xabcab") == [(1, 0), (1, 2), (2, 1), (1, 3), (4, 0), (4, 2), (5, 1)]
    ends = [start + ps.pattern_len(pid) for start, pid in ps.scan(b"xabcab")]
    assert ends == sorted(ends)


def test_bytes_of_every_value_match_exactly() -> None:
    patterns = [bytes(range(256)), b"\x00\x00", b"\xff\xfe", b"\x80"]
    ps = PatternSet(patterns)
    data = b"\x00\x00\x00" + bytes(range(256)) + b"\xff\xfe\x80"
    assert ps.scan(data) == naive(patterns, data)
    # latin-1 mapping is byte-exact: "é" as a byte never matches its UTF-8 or any case variant
    assert PatternSet([b"\xe9"]).scan("é".encode() + b"\xc9") == []


def test_refused_patterns() -> None:
    with pytest.raises(ValueError, match="empty"):
        PatternSet([b"ok", b""])
    with pytest.raises(ValueError, match="MAX_PATTERN_LEN"):
        PatternSet([b"x" * (MAX_PATTERN_LEN + 1)])


def test_ascii_haystack_uses_ascii_patterns_only_with_same_result() -> None:
    patterns = [b"%e8%b5%8c", "赌".encode(), b"abc", "赌".encode("gbk")]
    ps = PatternSet(patterns)
    for data in (b"x%e8%b5%8c abc", "赌%e8%b5%8c abc".encode(), "abc赌".encode("gbk")):
        assert ps.scan(data) == naive(patterns, data)
    only_high = PatternSet(["赌".encode()])
    assert only_high.scan(b"pure ascii") == []


def test_many_patterns() -> None:
    rng = random.Random(7)
    cjk = [chr(c) for c in range(0x4E00, 0x9FA5)]
    keywords = ["".join(rng.choice(cjk) for _ in range(rng.randint(2, 4))) for _ in range(5000)]
    patterns = [p for k in keywords for p, _ in keyword_forms(k)]
    t0 = time.perf_counter()
    ps = PatternSet(patterns)
    assert time.perf_counter() - t0 < 5  # ~20k patterns build in well under a second
    assert len(ps) == len(patterns) > 15000
    sample = rng.sample(keywords, 50)
    owner = keywords_of(patterns, keywords)
    for encoding in ("utf-8", "gbk"):
        # folded, as the filter folds every haystack (GBK trail bytes may be A-Z)
        data = ("<p>" + "。".join(sample) + "</p>").encode(encoding).lower()
        found = ps.scan(data)
        for start, pid in found:
            assert data[start : start + ps.pattern_len(pid)] == patterns[pid]
        hit_keywords = {owner[pid] for _, pid in found}
        assert set(sample) <= hit_keywords
        assert hit_keywords == {k for k in keywords if k.encode(encoding).lower() in data}


def keywords_of(patterns: list[bytes], keywords: list[str]) -> list[str]:
    owner: list[str] = []
    for k in keywords:
        owner += [k] * len(keyword_forms(k))
    assert len(owner) == len(patterns)
    return owner


# --- StreamScan -----------------------------------------------------------------------------

KEYWORD = "赌博".encode()


def test_split_at_every_boundary_found_once() -> None:
    ps = PatternSet([KEYWORD, b"x"])
    data = b"ab" + KEYWORD + b"cd" + KEYWORD
    whole = ps.scan(data)
    assert [pid for _, pid in whole].count(0) == 2
    for i in range(len(data) + 1):
        assert stream(ps, [data[:i], data[i:]])[0] == whole
        for j in range(i, len(data) + 1):
            assert stream(ps, [data[:i], data[i:j], data[j:]])[0] == whole
    # one byte at a time
    assert stream(ps, [data[i : i + 1] for i in range(len(data))])[0] == whole


def test_offsets_are_absolute_and_carry_is_bounded() -> None:
    ps = PatternSet([KEYWORD])
    scan = StreamScan(ps, 1 << 20)
    assert scan.feed(b"z" * 1000) == []
    assert scan.feed(KEYWORD[:4]) == []
    assert scan.feed(KEYWORD[4:] + b"z" * 5000) == [(1000, 0)]
    assert len(scan._carry) == ps.max_len - 1
    assert scan.feed(b"") == []
    assert scan.scanned == 1000 + len(KEYWORD) + 5000 and scan.beyond == 0


def test_limit_and_beyond() -> None:
    ps = PatternSet([KEYWORD])
    data = b"." * 10 + KEYWORD + b"." * 10  # keyword at 10..16
    # the limit falls inside the keyword: the bytes past it are not scanned
    out, scan = stream(ps, [data[:12], data[12:]], limit=14)
    assert out == [] and scan.scanned == 14 and scan.beyond == len(data) - 14
    out, scan = stream(ps, [data[:12], data[12:]], limit=16)
    assert out == [(10, 0)] and scan.scanned == 16 and scan.beyond == len(data) - 16
    out, scan = stream(ps, [data], limit=0)
    assert out == [] and scan.scanned == 0 and scan.beyond == len(data)
    assert scan.feed(b"more") == [] and scan.beyond == len(data) + 4


ALPHABET = b"ab\xe8\xb5"


@settings(max_examples=300, deadline=None)
@given(
    patterns=st.lists(st.binary(min_size=1, max_size=5).map(lambda b: bytes(ALPHABET[x % 4] for x in b)),
                      min_size=1, max_size=6),
    data=st.binary(max_size=80).map(lambda b: bytes(ALPHABET[x % 4] for x in b)),
    cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=8),
    limit=st.integers(min_value=0, max_value=100),
)
def test_stream_equals_whole_buffer(patterns: list[bytes], data: bytes, cuts: list[int], limit: int) -> None:
    """Any split of a stream reports what a scan of its first `limit` bytes reports, each once."""
    ps = PatternSet(patterns)
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    out, scan = stream(ps, pieces, limit)
    assert out == ps.scan(data[:limit]) == naive(patterns, data[:limit])
    assert len(set(out)) == len(out)
    assert scan.scanned == min(limit, len(data)) and scan.beyond == len(data) - scan.scanned
    assert len(scan._carry) <= max(ps.max_len - 1, 0)


@settings(max_examples=200, deadline=None)
@given(split=st.integers(min_value=0, max_value=60), prefix=st.integers(min_value=0, max_value=40))
def test_keyword_forms_split_anywhere(split: int, prefix: int) -> None:
    patterns = [p for p, _ in keyword_forms("六合彩")]
    ps = PatternSet(patterns)
    for pattern in patterns:
        data = b"-" * prefix + pattern + b"-"
        cut = min(split, len(data))
        out, _ = stream(ps, [data[:cut], data[cut:]])
        assert out == [(prefix, patterns.index(pattern))]
