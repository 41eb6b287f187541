"""Tests for agent.filter.patterns: PatternSet over buffers, StreamScan over split streams, with
each engine (Vectorscan and the reference Aho-Corasick): every test runs with both, so both
give the same answers (matches are ASCII-case-insensitive except at a pattern's exact
positions)."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.filter.forms import keyword_forms, keyword_patterns
from agent.filter.patterns import MAX_PATTERN_LEN, PatternSet, StreamScan

ENGINES = ("aho-corasick", "vectorscan")
each_engine = pytest.mark.parametrize("engine", ENGINES)


def naive(patterns: list[bytes], data: bytes,
          exact: list[tuple[int, ...]] | None = None) -> list[tuple[int, int]]:
    """Every occurrence, by brute force, ordered as PatternSet reports them (end, then longest
    first): ASCII case ignored, except at the exact positions."""
    found = []
    low = data.lower()
    for pid, p in enumerate(patterns):
        start = low.find(p.lower())
        while start >= 0:
            if all(data[start + i] == p[i] for i in (exact[pid] if exact else ())):
                found.append((start + len(p), -len(p), pid, start))
            start = low.find(p.lower(), start + 1)
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


@each_engine
def test_empty_pattern_set(engine: str) -> None:
    ps = PatternSet([], engine=engine)
    assert len(ps) == 0 and ps.max_len == 0
    assert ps.scan(b"anything at all") == [] and ps.scan(b"") == []
    out, scan = stream(ps, [b"abc", b"", b"def"])
    assert out == [] and scan.scanned == 6


@each_engine
def test_overlapping_patterns(engine: str) -> None:
    patterns = [b"he", b"she", b"his", b"hers"]
    ps = PatternSet(patterns, engine=engine)
    assert len(ps) == 4 and ps.max_len == 4
    assert ps.scan(b"ushers") == [(1, 1), (2, 0), (2, 3)]
    assert ps.scan(b"ushers") == naive(patterns, b"ushers")
    assert [ps.pattern_len(i) for i in range(4)] == [2, 3, 3, 4]


@each_engine
def test_duplicates_each_reported_and_order_by_end(engine: str) -> None:
    patterns = [b"ab", b"b", b"ab", b"abc"]
    ps = PatternSet(patterns, engine=engine)
    assert ps.scan(b"xabcab") == [(1, 0), (1, 2), (2, 1), (1, 3), (4, 0), (4, 2), (5, 1)]
    ends = [start + ps.pattern_len(pid) for start, pid in ps.scan(b"xabcab")]
    assert ends == sorted(ends)


@each_engine
def test_bytes_of_every_value_match_exactly(engine: str) -> None:
    patterns = [bytes(range(256)), b"\x00\x00", b"\xff\xfe", b"\x80"]
    ps = PatternSet(patterns, engine=engine)
    data = b"\x00\x00\x00" + bytes(range(256)) + b"\xff\xfe\x80"
    assert ps.scan(data) == naive(patterns, data)
    # latin-1 mapping is byte-exact: "é" as a byte never matches its UTF-8 or any case variant
    assert PatternSet([b"\xe9"], engine=engine).scan("é".encode() + b"\xc9") == []


@each_engine
def test_refused_patterns(engine: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        PatternSet([b"ok", b""], engine=engine)
    with pytest.raises(ValueError, match="MAX_PATTERN_LEN"):
        PatternSet([b"x" * (MAX_PATTERN_LEN + 1)], engine=engine)


@each_engine
def test_ascii_haystack_uses_ascii_patterns_only_with_same_result(engine: str) -> None:
    patterns = [b"%e8%b5%8c", "赌".encode(), b"abc", "赌".encode("gbk")]
    ps = PatternSet(patterns, engine=engine)
    for data in (b"x%e8%b5%8c abc", "赌%e8%b5%8c abc".encode(), "abc赌".encode("gbk")):
        assert ps.scan(data) == naive(patterns, data)
    only_high = PatternSet(["赌".encode()], engine=engine)
    assert only_high.scan(b"pure ascii") == []


@each_engine
def test_many_patterns(engine: str) -> None:
    rng = random.Random(7)
    cjk = [chr(c) for c in range(0x4E00, 0x9FA5)]
    keywords = ["".join(rng.choice(cjk) for _ in range(rng.randint(2, 4))) for _ in range(5000)]
    patterns = [p for k in keywords for p, _ in keyword_forms(k)]
    t0 = time.perf_counter()
    ps = PatternSet(patterns, engine=engine)
    assert time.perf_counter() - t0 < 5  # ~20k patterns build in well under a second
    assert len(ps) == len(patterns) > 15000
    sample = rng.sample(keywords, 50)
    owner = keywords_of(patterns, keywords)
    for encoding in ("utf-8", "gbk"):
        data = ("<p>" + "。".join(sample) + "</p>").encode(encoding).lower()
        found = ps.scan(data)
        for start, pid in found:  # no exact positions given: case-insensitive everywhere
            assert data[start : start + ps.pattern_len(pid)].lower() == patterns[pid].lower()
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


@each_engine
def test_split_at_every_boundary_found_once(engine: str) -> None:
    ps = PatternSet([KEYWORD, b"x"], engine=engine)
    data = b"ab" + KEYWORD + b"cd" + KEYWORD
    whole = ps.scan(data)
    assert [pid for _, pid in whole].count(0) == 2
    for i in range(len(data) + 1):
        assert stream(ps, [data[:i], data[i:]])[0] == whole
        for j in range(i, len(data) + 1):
            assert stream(ps, [data[:i], data[i:j], data[j:]])[0] == whole
    # one byte at a time
    assert stream(ps, [data[i : i + 1] for i in range(len(data))])[0] == whole


@each_engine
def test_offsets_are_absolute_and_carry_is_bounded(engine: str) -> None:
    ps = PatternSet([KEYWORD], engine=engine)
    scan = StreamScan(ps, 1 << 20)
    assert scan.feed(b"z" * 1000) == []
    assert scan.feed(KEYWORD[:4]) == []
    assert scan.feed(KEYWORD[4:] + b"z" * 5000) == [(1000, 0)]
    assert len(scan.window) == ps.max_len - 1
    assert scan.feed(b"") == []
    assert scan.scanned == 1000 + len(KEYWORD) + 5000 and scan.beyond == 0


@each_engine
def test_limit_and_beyond(engine: str) -> None:
    ps = PatternSet([KEYWORD], engine=engine)
    data = b"." * 10 + KEYWORD + b"." * 10  # keyword at 10..16
    # the limit falls inside the keyword: the bytes past it are not scanned
    out, scan = stream(ps, [data[:12], data[12:]], limit=14)
    assert out == [] and scan.scanned == 14 and scan.beyond == len(data) - 14
    out, scan = stream(ps, [data[:12], data[12:]], limit=16)
    assert out == [(10, 0)] and scan.scanned == 16 and scan.beyond == len(data) - 16
    out, scan = stream(ps, [data], limit=0)
    assert out == [] and scan.scanned == 0 and scan.beyond == len(data)
    assert scan.feed(b"more") == [] and scan.beyond == len(data) + 4


ALPHABET = b"aAb\xe8\xb5"


@settings(max_examples=300, deadline=None)
@given(
    patterns=st.lists(st.binary(min_size=1, max_size=5).map(lambda b: bytes(ALPHABET[x % 5] for x in b)),
                      min_size=1, max_size=6),
    data=st.binary(max_size=80).map(lambda b: bytes(ALPHABET[x % 5] for x in b)),
    cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=8),
    limit=st.integers(min_value=0, max_value=100),
)
@each_engine
def test_stream_equals_whole_buffer(patterns: list[bytes], data: bytes, cuts: list[int], limit: int,
                                    engine: str) -> None:
    """Any split of a stream reports what a scan of its first `limit` bytes reports, each once."""
    ps = PatternSet(patterns, engine=engine)
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    out, scan = stream(ps, pieces, limit)
    assert out == ps.scan(data[:limit]) == naive(patterns, data[:limit])
    assert len(set(out)) == len(out)
    assert scan.scanned == min(limit, len(data)) and scan.beyond == len(data) - scan.scanned
    # the window: the bytes just before the last piece, as many as a match can reach back (or more)
    before = data[: scan.scanned - len(scan.piece)]
    assert before.endswith(scan.window) and len(scan.window) >= min(max(ps.max_len - 1, 0), len(before))


@settings(max_examples=200, deadline=None)
@given(split=st.integers(min_value=0, max_value=60), prefix=st.integers(min_value=0, max_value=40))
@each_engine
def test_keyword_forms_split_anywhere(split: int, prefix: int, engine: str) -> None:
    patterns = [p for p, _ in keyword_forms("六合彩")]
    ps = PatternSet(patterns, engine=engine)
    for pattern in patterns:
        data = b"-" * prefix + pattern + b"-"
        cut = min(split, len(data))
        out, _ = stream(ps, [data[:cut], data[cut:]])
        assert out == [(prefix, patterns.index(pattern))]


@each_engine
@settings(max_examples=200, deadline=None)
@given(
    patterns=st.lists(st.binary(min_size=1, max_size=5).map(lambda b: bytes(b"aAbB\x81"[x % 5] for x in b)),
                      min_size=1, max_size=6),
    data=st.binary(max_size=60).map(lambda b: bytes(b"aAbB\x81"[x % 5] for x in b)),
    marks=st.lists(st.integers(min_value=0, max_value=4), max_size=3),
    cut=st.integers(min_value=0, max_value=60),
)
def test_exact_positions_match_as_written(patterns: list[bytes], data: bytes, marks: list[int], cut: int,
                                          engine: str) -> None:
    """Letters at a pattern's exact positions match only as written, the others in either case,
    in a buffer and in a stream cut anywhere."""
    exact = [tuple(sorted({m for m in marks if m < len(p)})) for p in patterns]
    ps = PatternSet(patterns, exact, engine=engine)
    want = naive(patterns, data, exact)
    assert ps.scan(data) == want
    out, _ = stream(ps, [data[:cut], data[cut:]])
    assert out == want


@each_engine
def test_gbk_trail_letters_are_not_folded(engine: str) -> None:
    """丅丅测试 (GBK 81 42 81 42 ...) is not 乥乥测试 (81 62 81 62 ...); ASCII around them still folds."""
    forms = keyword_patterns("丅丅测试") + keyword_patterns("QQ群")
    ps = PatternSet([p for p, _, _ in forms], [e for _, _, e in forms], engine=engine)
    encodings = [enc for _, enc, _ in forms]
    def found(text: str, charset: str) -> list[str]:
        return [encodings[pid] for _, pid in ps.scan(text.encode(charset))]
    assert found("丅丅测试", "gbk") == ["gbk"]
    assert found("乥乥测试", "gbk") == []
    assert found("乥乥测试", "gb18030") == []
    assert found("qq群", "gbk") == ["gbk"] and found("Qq群", "gbk") == ["gbk"]
    assert found("%81B%81B%b2%e2%CA%D4", "ascii") == ["url-gbk"]  # hex digits in either case
    assert found("%81b%81b%b2%e2%ca%d4", "ascii") == []  # 乥乥测试 percent-encoded


@each_engine
def test_memory_the_engine_holds_grows_with_the_patterns(engine: str) -> None:
    small = PatternSet([b"abc"], engine=engine).memory_bytes()
    large = PatternSet([b"k%05d" % i for i in range(2000)], engine=engine).memory_bytes()
    assert 0 < small < large
    assert PatternSet([], engine=engine).memory_bytes() == 0


@each_engine
@settings(max_examples=60, deadline=None)
@given(words=st.lists(st.sampled_from(["ab", "abc", "bca", "测试", "QQ群", "丅丅测试", "xn--"]),
                      min_size=1, max_size=4),
       values=st.lists(st.binary(max_size=24) | st.sampled_from(
           [b"ab", "测试".encode(), "丅丅测试".encode("gbk"), "乥乥测试".encode("gbk"), b"xABCab", b""]),
           max_size=8))
def test_values_in_one_call_find_what_each_finds_alone(words: list[str], values: list[bytes],
                                                       engine: str) -> None:
    """`scan_values` (the filter's whole values of a batch, joined by NULs in one engine call)
    gives each value the matches `scan` gives it alone, offsets its own, GBK letters exact."""
    forms = [f for w in dict.fromkeys(words) for f in keyword_patterns(w)]
    ps = PatternSet([p for p, _, _ in forms], [e for _, _, e in forms], engine=engine)
    assert ps.nul_free
    assert ps.scan_values(values) == [ps.scan(v) for v in values]


@each_engine
def test_values_with_a_nul_pattern_are_scanned_one_by_one(engine: str) -> None:
    ps = PatternSet([b"a\x00b", b"ab"], engine=engine)
    assert not ps.nul_free  # a joined scan could match across two values: each is scanned alone
    assert ps.scan_values([b"a", b"b", b"xa\x00by"]) == [[], [], [(1, 0)]]
