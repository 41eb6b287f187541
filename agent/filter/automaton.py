"""The Aho-Corasick keyword engine: pyahocorasick over latin-1-mapped, case-folded bytes.

What: ``AhoCorasick`` holds every byte pattern of a ruleset in one pyahocorasick automaton
(plus an ASCII-only one, below) and reports every case-insensitive occurrence in a buffer as
``(start offset, pattern id)``; its streams find a keyword split across pieces by keeping
the last longest-pattern - 1 bytes. It is the reference engine (``agent.filter.patterns``:
``engine = "aho-corasick"``, and the fallback when Vectorscan is unavailable); the exact
positions of GBK patterns are checked by ``patterns.PatternSet`` for every engine alike.
Haystack and keys are ASCII-case-folded here (``bytes.lower``: only A-Z change).

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
feed that holds its last byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ahocorasick

from agent.filter.patterns import EngineStream, Match


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


class AhoCorasick:
    """The patterns (checked by `patterns.check_patterns`) in pyahocorasick automata."""

    name = "aho-corasick"

    def __init__(self, patterns: Sequence[bytes]) -> None:
        # identical folded patterns share one automaton key whose value lists every id
        groups: dict[bytes, list[int]] = {}
        for pid, pattern in enumerate(patterns):
            key = pattern.lower()
            ids = groups.get(key)
            if ids is None:
                groups[key] = [pid]
            else:
                ids.append(pid)
        self._lengths: list[int] = [len(p) for p in patterns]
        self.max_len: int = max(self._lengths) if self._lengths else 0
        self._automaton: Any = _build(groups, False)  # every pattern
        self._ascii_automaton: Any = _build(groups, True)  # the ASCII patterns, for ASCII haystacks

    def candidates(self, data: bytes) -> list[Match]:
        return self.scan_text(data.lower().decode("latin-1"), 0, 0)

    def memory_bytes(self) -> int:
        total = 0
        for automaton in (self._automaton, self._ascii_automaton):
            if automaton is not None:
                total += int(automaton.get_stats()["total_size"])
        return total

    def open_stream(self) -> EngineStream:
        return _AhoStream(self)

    def scan_text(self, text: str, min_end: int, base: int) -> list[Match]:
        """Occurrences in `text` whose last character is at index >= `min_end`; starts offset by `base`."""
        out: list[Match] = []
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


class _AhoStream:
    """One stream: the carry of the last `max_len - 1` bytes, folded."""

    __slots__ = ("engine", "keep", "carry")

    def __init__(self, engine: AhoCorasick) -> None:
        self.engine = engine
        self.keep = max(engine.max_len - 1, 0)
        self.carry = b""

    def feed(self, data: bytes, base: int) -> list[Match]:
        carry = self.carry
        haystack = carry + data.lower() if carry else data.lower()
        found = self.engine.scan_text(haystack.decode("latin-1"), len(carry), base - len(carry))
        keep = self.keep
        if keep:
            self.carry = haystack[-keep:] if len(haystack) > keep else haystack
        return found

    def close(self) -> None:
        self.carry = b""
