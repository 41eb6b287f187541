"""Multi-pattern matching over bytes: one Aho-Corasick automaton, whole buffers or streams.

What: ``PatternSet`` holds every byte pattern of a ruleset (each keyword in each of
its encodings, ``forms.keyword_forms``) in one pyahocorasick automaton and reports
every occurrence in a buffer as ``(start offset, pattern id)``. ``StreamScan`` runs
the same search over one byte stream fed in pieces (TCP payload as it is
reassembled), so a keyword split across segments is found, exactly once.

Why pyahocorasick over latin-1 text: pyahocorasick matches ``str`` keys. Mapping
bytes to ``str`` through latin-1 is a bijection (byte n <-> U+00nn), so matching
the latin-1 text of the haystack against the latin-1 text of the patterns is
exactly byte matching, and 12-20x faster than decoding the haystack to real text
(DESIGN.md step 7). Latin-1 strings are always of 1-byte character width, which
also keeps clear of pyahocorasick issue #221 (``AutomatonSearchIter.set()`` with
strings of mixed width); this module only uses ``Automaton.iter`` anyway. The
search itself is C code: the only Python work is per match, never per byte.

Speed: pyahocorasick finds a node's child by a linear search of its children, so
the cost per haystack byte grows with the fan-out of the nodes it passes, above
all the root's: the GBK forms of Chinese keywords alone give the root ~126
children (every GBK lead byte). ASCII haystacks (HTTP headers, URIs, most
scripts and markup) are therefore searched with a second automaton holding only
the ASCII patterns (percent-encoded forms, ASCII keywords): a pattern with a byte
>= 0x80 cannot occur in them, and that root has a few dozen children. Measured
(one core, pure Python build; numbers vary with the machine's load):

=================================  ==========  ===========  ===========  =======
patterns (keywords)                ASCII HTML  UTF-8 zh     GBK zh       build
=================================  ==========  ===========  ===========  =======
13k (3.4k), full automaton only    11-15 MB/s  13-16 MB/s   11-14 MB/s
13k (3.4k), with ASCII automaton   32-45 MB/s  13-16 MB/s   11-14 MB/s   0.1 s
300k (77k), with ASCII automaton   ~50 MB/s    ~7 MB/s      ~3 MB/s      3.5 s
=================================  ==========  ===========  ===========  =======

Memory for 300k patterns: ~180 MB for the full automaton, ~100 MB more for the
ASCII one (percent-encoded forms are long). Large tries are slow on non-ASCII
text because every step is a cache miss; the inspection depth bounds the bytes.

Streams: between two ``feed`` calls only the last ``max_len - 1`` bytes are kept
(the carry). Each feed scans ``carry + data`` once and keeps the matches that end
inside ``data``: a match ending in the carry was reported by the previous feed,
and a match ending in ``data`` cannot start before the carry (it would be longer
than the longest pattern). So every occurrence is reported exactly once, by the
feed that holds its last byte. Only the first ``limit`` bytes of a stream are
scanned (the inspection depth); the rest is counted in ``beyond``.

Limits: the carry is < ``max_len`` bytes per stream (``MAX_PATTERN_LEN`` bounds
it); an empty pattern is refused (it would match at every offset). Offsets are
0-based; a match's end offset is ``start + pattern_len(id)`` (exclusive).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import ahocorasick

# Longest pattern accepted: bounds the per-stream carry (a keyword of 256 CJK
# characters in percent-encoded UTF-8 is 2304 bytes; rulesets hold words and phrases).
MAX_PATTERN_LEN: Final = 4096


def _build(groups: dict[bytes, list[int]], ascii_only: bool) -> Any:
    """An automaton of the keys of `groups` (all, or only the ASCII ones); None when it would be empty."""
    automaton = ahocorasick.Automaton(ahocorasick.STORE_ANY, ahocorasick.KEY_STRING)
    empty = True
    for key, id_list in groups.items():
        if ascii_only and not key.isascii():
            continue
        automaton.add_word(key.decode("latin-1"), tuple(id_list))
        empty = False
    if empty:
        return None  # pyahocorasick refuses to search with an automaton of no keys
    automaton.make_automaton()
    return automaton


class PatternSet:
    """An immutable set of byte patterns; pattern id = index in the sequence given."""

    def __init__(self, patterns: Sequence[bytes]) -> None:
        # identical patterns share one automaton key whose value lists every id
        groups: dict[bytes, list[int]] = {}
        lengths: list[int] = []
        for pid, pattern in enumerate(patterns):
            n = len(pattern)
            if n == 0:
                raise ValueError(f"pattern {pid} is empty (it would match at every offset)")
            if n > MAX_PATTERN_LEN:
                raise ValueError(f"pattern {pid} is {n} bytes, longer than MAX_PATTERN_LEN={MAX_PATTERN_LEN}")
            lengths.append(n)
            ids = groups.get(pattern)
            if ids is None:
                groups[pattern] = [pid]
            else:
                ids.append(pid)
        self._lengths: list[int] = lengths
        self.max_len: int = max(lengths) if lengths else 0
        self._automaton: Any = _build(groups, False)  # every pattern
        self._ascii_automaton: Any = _build(groups, True)  # the ASCII patterns, for ASCII haystacks

    def __len__(self) -> int:
        return len(self._lengths)

    def pattern_len(self, pid: int) -> int:
        """Length in bytes of pattern `pid`."""
        return self._lengths[pid]

    def scan(self, data: bytes) -> list[tuple[int, int]]:
        """Every occurrence in `data` as (start offset, pattern id), in order of end position."""
        return self._scan_text(data.decode("latin-1"), 0, 0)

    def _scan_text(self, text: str, min_end: int, base: int) -> list[tuple[int, int]]:
        """Occurrences in `text` whose last character is at index >= `min_end`; starts offset by `base`."""
        out: list[tuple[int, int]] = []
        # str.isascii() is O(1) (CPython keeps the flag); a pattern with a byte >= 0x80
        # cannot occur in an ASCII haystack, so the smaller automaton finds the same matches
        automaton = self._ascii_automaton if text.isascii() else self._automaton
        if automaton is None or not text:
            return out
        lengths = self._lengths
        end: int
        ids: tuple[int, ...]
        for end, ids in automaton.iter(text):
            if end < min_end:
                continue
            start = base + end + 1 - lengths[ids[0]]
            for pid in ids:
                out.append((start, pid))
        return out


class StreamScan:
    """Incremental search of one byte stream; each occurrence is reported once, by the feed it ends in."""

    def __init__(self, patterns: PatternSet, limit: int) -> None:
        self.patterns: PatternSet = patterns
        self.limit: int = limit  # stream bytes scanned at most (inspection depth)
        self.scanned: int = 0  # stream bytes scanned so far (= stream offset of the next byte scanned)
        self.beyond: int = 0  # stream bytes past `limit`, counted and not scanned
        self._keep: int = max(patterns.max_len - 1, 0)
        self._carry: bytes = b""  # the last `_keep` bytes scanned

    def feed(self, data: bytes) -> list[tuple[int, int]]:
        """(absolute stream offset of the start, pattern id) of each occurrence ending in `data`."""
        n = len(data)
        if n == 0:
            return []
        room = self.limit - self.scanned
        if room <= 0:
            self.beyond += n
            return []
        if n > room:
            self.beyond += n - room
            data = data[:room]
            n = room
        carry = self._carry
        haystack = carry + data if carry else data
        found = self.patterns._scan_text(haystack.decode("latin-1"), len(carry), self.scanned - len(carry))
        self.scanned += n
        keep = self._keep
        if keep:
            self._carry = haystack[-keep:] if len(haystack) > keep else haystack
        return found
