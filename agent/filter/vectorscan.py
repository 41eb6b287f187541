"""The Vectorscan keyword engine: one stream-mode literal database, cached on disk.

What: ``Vectorscan(patterns, lengths, nul_free, cache_dir)`` compiles every pattern as a case-insensitive
literal (``HS_FLAG_CASELESS``, Vectorscan's literal compiler ``hs_compile_lit_multi``) into
one stream-mode database: a stream (``hs_scan_stream``) carries a keyword cut across pieces
in its state, so no bytes are copied between pieces. Whole values and decoded views go
through one long-lived stream, each followed by a NUL byte: no pattern holds a NUL (rulesets
refuse control characters; see below for other pattern sets), so no match can span two
values, and a value costs one call instead of opening and closing a stream. A block-mode
database would do the same in one call too, but doubles the compile time (10 s per mode at
100k keywords, ~220k patterns, here) and the memory. Through the ``hyperscan`` PyPI package, whose wheels
link Vectorscan statically (x86_64, aarch64): a runtime dependency, no system library.

Why these choices (``../shared/notes/keyword-engines.md``, measured here):

* One flag for every pattern: many different flag combinations in one database slow the
  scan (intel/hyperscan issue 281). ASCII case is ignored everywhere; the letters that must
  match exactly (GBK trail bytes) are checked after the match by ``patterns.PatternSet``,
  the same check the Aho-Corasick engine gets, so both engines answer alike.
* No ``HS_FLAG_SINGLEMATCH``: it would cut the callbacks of repeated matches, but its stream
  state holds a bit per pattern (3 KB per open stream at 10k keywords, against 29 bytes
  without), and the filter needs every occurrence where an exception phrase may cover the
  first one or the exact check refuses it. Matches are rare; streams are many.
* Matches come back through a Python callback (the binding holds the GIL for it), collected
  as (end, id) and put in the order the Aho-Corasick engine reports (end, longest first, id).
* The compiled database is serialized (``hs_serialize_database``) into
  ``cache_dir/<hash>.vsdb`` (the hash covers the Vectorscan version, the flags and every
  pattern), so a restart loads 100k keywords in milliseconds instead of recompiling for
  seconds. A cache file that cannot be read or written is not an error: the engine
  compiles, and ``cache_note`` says what happened. At most ``CACHE_KEEP`` files are kept.
* The binding measures literals with ``strlen``: a pattern holding a NUL byte would be cut
  short, so such a set is compiled with the regex compiler, every byte escaped (rulesets
  refuse control characters in keywords, so this is for direct users of ``PatternSet``).

The binding's stream objects (0.9.1): ``Database.stream`` returns a stream with one extra
reference that ``__enter__`` (returning its object without one) balances, and a stream holds
its callback and context without a reference of its own, so ``_VsStream`` keeps both alive;
``Stream.size()`` crashes, ``len(stream)`` works. Each process needs its own scratch: the
database is compiled before the capture workers fork, and each worker's copy is its own.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from agent.filter.cachefiles import mark_used, store
from agent.filter.patterns import EngineStream, EngineUnavailable, Match


def _import_hyperscan() -> tuple[Any, str]:
    """The `hyperscan` module, or None and why not (the wheel is missing or does not load here)."""
    try:
        import hyperscan
    except ImportError as e:
        return None, f"the hyperscan module does not import: {e}"
    return hyperscan, ""


_hs, _IMPORT_ERROR = _import_hyperscan()

CACHE_KEEP: Final = 8  # database files kept in a cache directory (the newest)
_MAGIC: Final = b"EAVS2\n"  # one stream-mode database follows


def _on_match(pid: int, start: int, end: int, flags: int, found: list[tuple[int, int]]) -> None:
    found.append((end, pid))


def _ordered(found: list[tuple[int, int]], lengths: list[int], base: int) -> list[Match]:
    """(end, id) pairs as (start, id), ordered (end, longest first, id); `base` shifts offsets."""
    if len(found) == 1:
        end, pid = found[0]
        return [(base + end - lengths[pid], pid)]
    keyed = [(end, -lengths[pid], pid) for end, pid in found]  # sorted as tuples: no key function
    keyed.sort()
    return [(base + end + neg, pid) for end, neg, pid in keyed]


class Vectorscan:
    """The patterns (checked by `patterns.check_patterns`) in one Vectorscan stream database."""

    name = "vectorscan"

    def __init__(self, patterns: Sequence[bytes], lengths: list[int], nul_free: bool,
                 cache_dir: Path | None = None) -> None:
        """`lengths` and `nul_free` (no pattern holds a NUL) as `patterns.PatternSet` found them."""
        if _hs is None:
            raise EngineUnavailable(_IMPORT_ERROR)
        hs: Any = _hs
        self.version: str = str(getattr(hs, "__version__", "?"))
        self._lengths = lengths
        self.cache_note: str = ""
        self._stream: Any = None
        self._values: _VsStream | None = None  # the long-lived stream whole values go through
        self._values_at = 0  # its stream offset: the next value's first byte
        literal = nul_free
        self._separated = literal  # a NUL byte ends a value: no pattern can hold one
        if not patterns:
            return
        key = _cache_key(patterns, literal, self.version)
        loaded = self._load(cache_dir, key) if cache_dir is not None else False
        if not loaded:
            try:
                self._stream = _compile(patterns, literal)
            except hs.error as e:
                raise EngineUnavailable(f"vectorscan refused the patterns: {e}") from e
            if cache_dir is not None:
                self._save(cache_dir, key)

    # -- the cache ----------------------------------------------------------------------
    def _load(self, cache_dir: Path, key: str) -> bool:
        hs: Any = _hs
        path = cache_dir / f"{key}.vsdb"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self.cache_note = f"compiled (no cached database in {cache_dir})"
            return False
        except OSError as e:
            self.cache_note = f"compiled (cache unreadable: {e.strerror or e})"
            return False
        try:
            if not data.startswith(_MAGIC):
                raise ValueError("not a database file")
            self._stream = hs.loadb(data[len(_MAGIC):], hs.HS_MODE_STREAM)
            self._stream.scratch = hs.Scratch(self._stream)
        except (ValueError, hs.error) as e:
            self.cache_note = f"compiled (cached database refused: {e})"
            self._stream = None
            return False
        mark_used(path)
        self.cache_note = f"database loaded from {path}"
        return True

    def _save(self, cache_dir: Path, key: str) -> None:
        hs: Any = _hs
        name = f"{key}.vsdb"
        try:
            store(cache_dir, name, _MAGIC + hs.dumpb(self._stream), CACHE_KEEP)
        except OSError as e:
            self.cache_note = f"compiled (cache not written: {e.strerror or e})"
            return
        # why it was compiled (no file yet, or the file was refused) stays in the note
        self.cache_note = f"{self.cache_note or 'compiled'}, database saved to {cache_dir / name}"

    # -- matching -----------------------------------------------------------------------
    def candidates(self, data: bytes) -> list[Match]:
        db = self._stream
        if db is None or not data:
            return []
        if not self._separated:  # a pattern holds a NUL: a stream of its own for this value
            one = _VsStream(db, self._lengths)
            found = one.feed(data, 0)
            one.close()
            return found
        values = self._values
        if values is None:
            values = self._values = _VsStream(db, self._lengths)
        at = self._values_at
        self._values_at = at + len(data) + 1
        return values.feed_shifted(data + b"\x00", -at)

    def open_stream(self) -> EngineStream:
        return _VsStream(self._stream, self._lengths)

    def memory_bytes(self) -> int:
        return int(self._stream.size()) if self._stream is not None else 0


class _VsStream:
    """One Vectorscan stream; keeps its callback's context alive (the binding does not)."""

    __slots__ = ("stream", "found", "lengths")

    def __init__(self, db: Any, lengths: list[int]) -> None:
        self.found: list[tuple[int, int]] = []
        self.lengths = lengths
        self.stream: Any = None
        if db is not None:
            stream = db.stream(_on_match, 0, self.found)
            stream.__enter__()  # hs_open_stream; see the module docstring on references
            self.stream = stream

    def feed(self, data: bytes, base: int) -> list[Match]:
        """Matches ending in `data`. Vectorscan counts offsets from the stream's first byte,
        which is the filter stream's offset 0, so they are stream offsets already (`base`)."""
        return self.feed_shifted(data, 0)

    def feed_shifted(self, data: bytes, shift: int) -> list[Match]:
        """Matches ending in `data`, their starts moved by `shift`."""
        stream = self.stream
        if stream is None:
            return []
        found = self.found
        stream.scan(data)
        if not found:
            return []
        out = _ordered(found, self.lengths, shift)
        found.clear()
        return out

    def close(self) -> None:
        stream = self.stream
        if stream is not None:
            self.stream = None
            stream.close()  # hs_close_stream frees the state (literals have no end-of-data matches)
            self.found.clear()


def _compile(patterns: Sequence[bytes], literal: bool) -> Any:
    hs: Any = _hs
    db = hs.Database(mode=hs.HS_MODE_STREAM)
    if literal:
        expressions = list(patterns)
    else:
        expressions = ["".join(f"\\x{b:02x}" for b in p).encode("ascii") for p in patterns]
    db.compile(expressions=expressions, ids=list(range(len(patterns))), flags=hs.HS_FLAG_CASELESS,
               literal=literal)
    return db


def _cache_key(patterns: Sequence[bytes], literal: bool, version: str) -> str:
    h = hashlib.sha256()
    h.update(f"edgeaudit-vectorscan 2 {version} stream caseless literal={literal} "
             f"n={len(patterns)}\n".encode())
    # every length, then every byte: unambiguous, and two calls instead of two per pattern
    h.update(array("Q", [len(p) for p in patterns]).tobytes())
    h.update(b"".join(patterns))
    return h.hexdigest()[:40]

