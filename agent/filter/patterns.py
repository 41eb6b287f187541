"""Multi-pattern matching over bytes, whatever the engine: whole buffers or streams.

What: ``PatternSet`` holds every byte pattern of a ruleset (each keyword in each of its
encodings, ``forms.keyword_patterns``) and reports every occurrence in a buffer as
``(start offset, pattern id)``. ``StreamScan`` runs the same search over one byte stream fed
in pieces (TCP payload as it is reassembled, a body as it is decoded), so a keyword split
across pieces is found, exactly once.

Engines (DESIGN.md step 7; ``[filter] engine`` in agent.toml, ``--engine``):

* ``vectorscan``: Vectorscan through the ``hyperscan`` PyPI package (``agent.filter.
  vectorscan``), one stream-mode literal database: a keyword cut across pieces is found by
  Vectorscan's stream state, no carry.
* ``aho-corasick``: pyahocorasick (``agent.filter.automaton``), the reference every engine is
  tested against and the fallback. Streams keep the last longest-pattern - 1 bytes.
* ``auto`` (the default), like Suricata's ``mpm-algo: auto``: Vectorscan when it imports and
  compiles, else Aho-Corasick; ``engine_reason`` says why.

Same answers: both engines report candidates ASCII-case-insensitively, in the same order
(end offset, then longest first, then pattern id); this module then keeps a candidate only
when the pattern's *exact* positions (letter bytes of multi-byte GBK characters, see
``forms``) equal the haystack's bytes. So both engines give the same matches by
construction, and a GBK keyword never matches the different text whose bytes fold to its
own (丅丅测试 ``81 42 81 42 ...`` against 乥乥测试 ``81 62 81 62 ...``).

Streams keep ``window``: the raw bytes just before the current piece, at least as many as the
longest pattern needs (to check exact positions of a match that began in an earlier piece)
plus ``context`` bytes for the alert's snippet. A previous piece that long is the window by
reference; only shorter pieces are joined, a copy of at most a few hundred bytes.

Limits: ``MAX_PATTERN_LEN`` bytes per pattern (bounds the window); an empty pattern is
refused (it would match at every offset). Offsets are 0-based; a match's end offset is
``start + pattern_len(id)`` (exclusive).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Protocol

# Longest pattern accepted: bounds each stream's window (a keyword of 256 CJK characters in
# percent-encoded UTF-8 is 2304 bytes; rulesets hold words and phrases).
MAX_PATTERN_LEN: Final = 4096
ENGINES: Final = ("auto", "vectorscan", "aho-corasick")
# The engine a PatternSet gets when none is named (the tests run every filter test with each).
DEFAULT_ENGINE = "auto"

Match = tuple[int, int]  # (start offset, pattern id)


class EngineStream(Protocol):
    def feed(self, data: bytes, base: int) -> list[Match]:
        """Candidates ending in `data` (stream offset `base`), starts as stream offsets, ordered."""
        ...

    def close(self) -> None:
        """Free the stream's state (the engine's memory); no more feeds."""
        ...


class Engine(Protocol):
    name: str

    def memory_bytes(self) -> int:
        """The engine's own structures, in bytes (the automaton; the compiled database)."""
        ...

    def candidates(self, data: bytes) -> list[Match]:
        """Every case-insensitive occurrence in `data`, ordered (end, longest first, id)."""
        ...

    def open_stream(self) -> EngineStream:
        ...


class EngineUnavailable(Exception):
    """The engine asked for cannot run here (not installed, or it refused the patterns)."""


def check_patterns(patterns: Sequence[bytes]) -> None:
    for pid, pattern in enumerate(patterns):
        n = len(pattern)
        if n == 0:
            raise ValueError(f"pattern {pid} is empty (it would match at every offset)")
        if n > MAX_PATTERN_LEN:
            raise ValueError(f"pattern {pid} is {n} bytes, longer than MAX_PATTERN_LEN={MAX_PATTERN_LEN}")


class PatternSet:
    """An immutable set of byte patterns; pattern id = index in the sequence given.

    `exact[id]` lists the offsets in pattern `id` whose byte must match as written (the
    other ASCII letters match either case); None means no exact positions anywhere.
    """

    def __init__(self, patterns: Sequence[bytes], exact: Sequence[tuple[int, ...]] | None = None, *,
                 engine: str | None = None, cache_dir: Path | None = None) -> None:
        if engine is None:
            engine = DEFAULT_ENGINE
        if engine not in ENGINES:
            raise ValueError(f"unknown keyword engine {engine!r} (one of {', '.join(ENGINES)})")
        check_patterns(patterns)
        self._patterns: list[bytes] = list(patterns)
        self._lengths: list[int] = [len(p) for p in patterns]
        self._exact: list[tuple[int, ...]] = list(exact) if exact is not None else [() for _ in patterns]
        if len(self._exact) != len(self._patterns):
            raise ValueError("exact positions must be given for every pattern")
        self.has_exact: bool = any(self._exact)
        self.max_len: int = max(self._lengths) if self._lengths else 0
        # no pattern holds a NUL byte: values joined with NULs between them can be scanned in
        # one call (`scan_values`) without a match spanning two of them
        self.nul_free: bool = b"".join(self._patterns).find(b"\x00") < 0
        self.requested: str = engine
        self.engine_reason: str = ""
        self._engine: Engine = self._choose(engine, cache_dir)
        self.engine: str = self._engine.name

    def _choose(self, engine: str, cache_dir: Path | None) -> Engine:
        from agent.filter.automaton import AhoCorasick

        if engine == "aho-corasick":
            self.engine_reason = "aho-corasick asked for (the reference engine)"
            return AhoCorasick(self._patterns)
        try:
            from agent.filter.vectorscan import Vectorscan

            chosen = Vectorscan(self._patterns, self._lengths, self.nul_free, cache_dir)
        except EngineUnavailable as e:
            if engine == "vectorscan":
                raise
            self.engine_reason = f"auto: vectorscan unavailable ({e}); aho-corasick instead"
            return AhoCorasick(self._patterns)
        self.engine_reason = f"{engine}: vectorscan {chosen.version}"
        if chosen.cache_note:
            self.engine_reason += f", {chosen.cache_note}"
        return chosen

    def __len__(self) -> int:
        return len(self._lengths)

    def pattern_len(self, pid: int) -> int:
        """Length in bytes of pattern `pid`."""
        return self._lengths[pid]

    def scan(self, data: bytes) -> list[Match]:
        """Every occurrence in `data` as (start offset, pattern id), in order of end position."""
        found = self._engine.candidates(data)
        if found and self.has_exact:
            return self.verified(found, data, 0)
        return found

    def scan_values(self, values: list[bytes]) -> list[list[Match]]:
        """`scan` of each of `values`, in one engine call (the values joined with NULs between
        them: `nul_free` patterns cannot match across one); offsets are each value's own."""
        if not self.nul_free:
            return [self.scan(v) for v in values]
        out: list[list[Match]] = [[] for _ in values]
        if not values:
            return out
        buf = b"\x00".join(values)
        found = self._engine.candidates(buf)
        if not found:
            return out
        if self.has_exact:
            found = self.verified(found, buf, 0)
        starts: list[int] = []
        at = 0
        for v in values:
            starts.append(at)
            at += len(v) + 1
        for start, pid in found:  # in order of end: each value's list stays in that order
            i = bisect_right(starts, start) - 1
            out[i].append((start - starts[i], pid))
        return out

    def open_stream(self) -> EngineStream:
        return self._engine.open_stream()

    def memory_bytes(self) -> int:
        """What the engine holds for these patterns, in bytes (as its library reports it)."""
        return self._engine.memory_bytes()

    def verified(self, found: list[Match], buf: bytes, base: int, head: bytes = b"") -> list[Match]:
        """The candidates whose exact positions hold the pattern's bytes in `head + buf`, whose
        first byte is at stream offset `base - len(head)` (two buffers: nothing is joined)."""
        out: list[Match] = []
        patterns = self._patterns
        exacts = self._exact
        nhead = len(head)
        for start, pid in found:
            exact = exacts[pid]
            if exact:
                pattern = patterns[pid]
                off = start - base
                ok = True
                for i in exact:
                    j = off + i
                    if j >= 0:
                        byte = buf[j]
                    elif j >= -nhead:
                        byte = head[nhead + j]
                    else:
                        ok = False
                        break
                    if byte != pattern[i]:
                        ok = False
                        break
                if not ok:
                    continue
            out.append((start, pid))
        return out


class StreamScan:
    """Incremental search of one byte stream; each occurrence is reported once, by the feed it ends in."""

    def __init__(self, patterns: PatternSet, limit: int, context: int = 0) -> None:
        self.patterns: PatternSet = patterns
        self.limit: int = limit  # stream bytes scanned at most (inspection depth)
        self.scanned: int = 0  # stream bytes scanned so far (= stream offset of the next byte scanned)
        self.beyond: int = 0  # stream bytes past `limit`, counted and not scanned
        self._keep: int = max(patterns.max_len - 1, 0) + context
        # raw bytes just before the current piece (at least `_keep` of them when the stream had
        # that many): they end at stream offset `scanned - len(piece)`
        self.window: bytes = b""
        self.piece: bytes = b""  # the piece last scanned
        self._stream: EngineStream | None = None  # opened by the first feed
        self._closed: bool = len(patterns) == 0

    def feed(self, data: bytes) -> list[Match]:
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
        # the window before this piece: what a match may reach back into. A previous piece at
        # least as long is the window itself, by reference; shorter ones are joined (bounded)
        prev = self.piece
        if prev:
            keep = self._keep
            if len(prev) >= keep:
                self.window = prev
            else:
                joined = self.window + prev
                self.window = joined[len(joined) - keep:] if len(joined) > keep else joined
        self.piece = data
        stream = self._stream
        if stream is None and not self._closed:
            stream = self._stream = self.patterns.open_stream()
        found: list[Match] = stream.feed(data, self.scanned) if stream is not None else []
        self.scanned += n
        if n == room:
            self.close()  # the depth is reached: nothing more will be scanned, free the engine's state
        if found and self.patterns.has_exact:
            return self.patterns.verified(found, data, self.scanned - n, self.window)
        return found

    def close(self) -> None:
        """Free the engine's stream state; later feeds count bytes only."""
        self._closed = True
        self.limit = self.scanned
        stream = self._stream
        if stream is not None:
            self._stream = None
            stream.close()
