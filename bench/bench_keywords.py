#!/usr/bin/env python3
"""Keyword matching cost of the edgeaudit agent against Hyperscan, and the filtering agent against argus.

What (issue 4): two measurements.

1. **Matcher.** For 1,000, 10,000 and 100,000 keywords (40% Chinese, 60% ASCII), the
   agent's matcher (``agent.filter.forms.keyword_forms`` -> every byte form of every
   keyword -> ``agent.filter.automaton.PatternSet``, pyahocorasick) against Hyperscan
   (the ``hyperscan`` PyPI package, a bench-only dependency) compiled from the *same*
   byte patterns as literals. Both scan the same payloads, one call per packet
   payload, as the agent calls its matcher. Reported: build seconds, scan MB/s, the
   ratio (how many times faster Hyperscan is) and the matches each engine found.
2. **Pipeline.** The compiled agent (``bench/agent_compiled.py``, ``make compiled``)
   replaying the 1,000,000-packet capture with a 10,000-keyword ruleset at the default
   inspection depth, against argus on the same capture: CPU seconds, target
   agent ≤ 3.5 × argus. The compiled agent without a ruleset (the issue-3
   configuration) and with a one-keyword ruleset that never matches run alongside, so
   the filter's own CPU is measured, split into its fixed plumbing and what the
   10,000 keywords add.

Why: a gateway filter must keep up with line rate on a small CPU, and its cost grows
with the ruleset; Hyperscan (Intel's SIMD multi-literal engine, what Suricata uses) is
the yardstick for "as fast as a matcher can be", argus for "what a mature flow
monitor costs per packet". The agent matches every encoding a keyword travels in
(UTF-8, GBK, GB18030, percent-encoded), so a Chinese keyword becomes 4–5 byte patterns
(10,000 keywords: ~22,000 patterns); the pattern counts are in the table.

How:

* Keywords are generated deterministically (``KEYWORD_SEED``): Chinese ones are 2–6
  characters drawn by their frequency in the generator's own text corpus
  (``agent.synth.content.make_text_corpus``, rebuilt here from the capture seed: the
  very text every HTTP and SMTP body is sliced from), or phrases of two or three of
  the generator's real Chinese words; ASCII ones are lower-case pseudo-English words
  and two-word phrases of 4–16 characters. 1% of each kind is cut out of the payload
  text itself (distinct words and CJK runs), so the match path is exercised; the
  other 99% are redrawn until they do not occur in that corpus: they stand for the
  rules ordinary traffic does not trigger (a few still occur in headers and names:
  "host", "leng"...). Without that check, random 2-character Chinese words and
  4-letter fragments of the corpus' most frequent words ("coun" in "account") made a
  handful of keywords produce most of the matches. No duplicates; the sets are nested
  (1k ⊂ 10k ⊂ 100k) and the same with ``--quick`` except for the sampled 1%.
* Payloads: the TCP/UDP payload of every HTTP (TCP/80), SMTP (TCP/25) and DNS (53)
  packet of the project's generated capture (``python -m agent.synth``, 200,000
  packets by default, cached in ``bench/out/`` as by ``bench_sessions.py``), read with
  dpkt, one byte string per packet, folded once with ``agent.filter.normalize.fold``
  (the agent folds before matching) outside the timing.
* The agent's matcher runs in this process, imported from ``build/compiled`` (mypyc,
  the build a gateway runs) when that tree holds a compiled ``agent/filter/automaton``,
  else from the sources (``--matcher compiled|pure`` forces one); the table says which.
* Build time: best of ``BUILD_ROUNDS`` wall times (``time.perf_counter``); the agent's
  is ``PatternSet(patterns)`` (the keyword forms are computed once beforehand and
  shown in their own column), Hyperscan's is ``Database.compile(literal=True)``
  (``hs_compile_lit_multi``) plus the scratch allocation. Scan: total payload bytes
  / best of ``SCAN_ROUNDS`` wall times of the loop over all payloads; the agent's
  loop calls ``PatternSet.scan`` (a list of matches per payload), Hyperscan's calls
  ``Database.scan`` with a callback counting matches. The cyclic GC is off while
  timing (the agent runs it rarely: ``agent.cli.tune_gc``).
* Agreement: an untimed pass compares, payload by payload, the multiset of
  (end offset, pattern id) each engine reports (Hyperscan's ``to``; the agent's
  start + pattern length). Any difference is printed and fails the run.
* Pipeline: ``bench_sessions``' measurement (``RUSAGE_CHILDREN`` CPU deltas around
  each child, tools round-robin, best of ``--repeat``), its capture cache, argus
  lookup and bytecode compilation are reused by import.

Results: tables on stdout and ``bench/out/bench_keywords.json``; tool logs, outputs
and the generated ruleset under ``bench/out/keywords/``. Exit status 0 = the pipeline
target is met and the engines agree, 1 = the target is missed or the engines
disagree, 2 = not measurable (compiled agent, argus or Hyperscan missing, a tool
failed; the reason is printed). Last results: ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
for _p in (str(BENCH_DIR), str(REPO)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import bench_sessions as bs  # noqa: E402  (the bench directory is not a package)
import dpkt  # noqa: E402

if TYPE_CHECKING:
    from agent.filter.patterns import PatternSet
# The agent's modules (agent.*, rulesets.*) are imported inside the functions, after
# `select_agent_build` chose between the compiled tree and the interpreted sources.

OUT_DIR = bs.OUT_DIR
WORK_DIR = OUT_DIR / "keywords"  # tool logs and outputs, the generated ruleset
JSON_PATH = OUT_DIR / "bench_keywords.json"

KEYWORD_COUNTS = (1_000, 10_000, 100_000)
QUICK_KEYWORD_COUNTS = (1_000, 10_000)
CHINESE_SHARE = 0.4
SAMPLED_SHARE = 0.01  # keywords taken from the payload text, so that matches happen
KEYWORD_SEED = 4  # issue 4
DEFAULT_PAYLOAD_PACKETS = 200_000
QUICK_PAYLOAD_PACKETS = 20_000
PIPELINE_PACKETS = 1_000_000
QUICK_PIPELINE_PACKETS = 100_000
PIPELINE_KEYWORDS = 10_000
NEVER_KEYWORD = "qzxjv-never-occurs"  # agent-1rule: the filter on, matching nothing
TARGET_PIPELINE_RATIO = 3.5  # agent (compiled, 10k keywords, default depth) CPU / argus CPU (aim: 3.0)
TARGET_10K_NORULES = 1.25  # agent with 10k keywords / the agent without rules
TARGET_100K_ARGUS = 4.0  # agent with 100k keywords / argus
TARGET_1RULE_NORULES = 1.10  # one never-matching keyword: within 10% of no rules
TARGET_STARTUP_S = 1.0  # load + check + compile 100k keywords with a cached database
STARTUP_PACKETS = 1_000  # --instructions: the capture each agent runs once more on, to count its start-up
SCAN_ROUNDS = 3
BUILD_ROUNDS = 1
MISMATCH_EXAMPLES = 5

# (transport, server port) -> the protocol whose payloads are scanned
PAYLOAD_PORTS: dict[tuple[str, int], str] = {("tcp", 80): "http", ("tcp", 25): "smtp", ("udp", 53): "dns",
                                             ("tcp", 53): "dns"}

# ---------------------------------------------------------------- the agent's build


def _compiled_matcher_ready() -> bool:
    """build/compiled is built and holds the matcher as machine code (setup.py COMPILED_MODULES)."""
    tree = bs.COMPILED_TREE
    return (tree / ".built").exists() and any((tree / "agent" / "filter").glob("patterns.*.so"))


def select_agent_build(which: str) -> str:
    """Import `agent` and `rulesets` from build/compiled or from the sources; call before any import.

    "auto" takes the compiled tree when it holds a compiled matcher: that is the build a
    gateway runs (`pip install .`). As in bench/agent_compiled.py, the editable install's
    import hook is taken out, or it would keep serving the interpreted modules."""
    if which == "pure" or (which == "auto" and not _compiled_matcher_ready()):
        return "interpreted (the sources)"
    if not _compiled_matcher_ready():
        sys.exit(f"--matcher compiled: {bs.COMPILED_TREE} has no compiled agent/filter/patterns "
                 "(run `make compiled`)")
    sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("__editable__")]
    sys.path.insert(0, str(bs.COMPILED_TREE))
    return f"compiled by mypyc ({bs.COMPILED_TREE.relative_to(REPO)})"


# ---------------------------------------------------------------- payloads


@dataclass
class Payloads:
    pcap: Path
    packets: int  # packets in the capture
    items: list[bytes]  # as sent, one per packet with a non-empty payload
    by_proto: dict[str, list[int]]  # protocol -> [packets, bytes]
    extract_s: float

    @property
    def total_bytes(self) -> int:
        return sum(len(p) for p in self.items)


def extract_payloads(pcap: Path, packets: int) -> Payloads:
    """Every non-empty HTTP/SMTP/DNS TCP or UDP payload of `pcap`, one per packet, as sent."""
    t0 = time.perf_counter()
    items: list[bytes] = []
    by_proto: dict[str, list[int]] = {}
    with pcap.open("rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if not isinstance(ip, dpkt.ip.IP):
                continue
            l4 = ip.data
            if isinstance(l4, dpkt.tcp.TCP):
                kind = "tcp"
            elif isinstance(l4, dpkt.udp.UDP):
                kind = "udp"
            else:
                continue
            proto = PAYLOAD_PORTS.get((kind, l4.dport)) or PAYLOAD_PORTS.get((kind, l4.sport))
            data = bytes(l4.data)
            if proto is None or not data:
                continue
            items.append(data)
            counts = by_proto.setdefault(proto, [0, 0])
            counts[0] += 1
            counts[1] += len(data)
    return Payloads(pcap, packets, items, by_proto, time.perf_counter() - t0)


# ---------------------------------------------------------------- keywords

_ONSETS = ("b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "y", "z",
           "bl", "br", "ch", "cl", "cr", "dr", "fl", "fr", "gl", "gr", "pl", "pr", "sc", "sh", "sl", "sp",
           "st", "th", "tr", "wh", "")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "i", "o", "ai", "ea", "ee", "io", "ou", "oo", "y")
_CODAS = ("", "", "", "", "n", "r", "s", "t", "l", "m", "ck", "ng", "st", "nd", "rt", "x")
_CJK_RUN = re.compile("[\u4e00-\u9fff]{2,}")
_ASCII_TOKEN = re.compile(rb"\b[a-z]{4,16}\b(?: [a-z]{2,8}\b)?")


@dataclass
class KeywordPools:
    """Disjoint pools the sets of every size are prefixes of (so 1k ⊂ 10k ⊂ 100k)."""

    chinese: list[str]
    ascii: list[str]
    sampled_chinese: list[str]
    sampled_ascii: list[str]

    def keyword_set(self, n: int) -> list[str]:
        n_cn = round(n * CHINESE_SHARE)
        n_as = n - n_cn
        s_cn = min(round(n_cn * SAMPLED_SHARE), len(self.sampled_chinese))
        s_as = min(round(n_as * SAMPLED_SHARE), len(self.sampled_ascii))
        out = (self.sampled_chinese[:s_cn] + self.chinese[: n_cn - s_cn]
               + self.sampled_ascii[:s_as] + self.ascii[: n_as - s_as])
        random.Random(KEYWORD_SEED * 1_000_003 + n).shuffle(out)
        return out


def generator_text(seed: int) -> str:
    """The text corpus every generated HTTP and SMTP body of capture seed `seed` is sliced from.

    ``agent.synth.generate`` builds it first thing from ``random.Random(seed)``, so
    this is the very same text."""
    from agent.synth.content import TEXT_CORPUS_BYTES, make_text_corpus

    return make_text_corpus(random.Random(seed), TEXT_CORPUS_BYTES).decode("utf-8", "ignore")


def chinese_frequencies(text: str) -> tuple[list[str], list[float]]:
    """CJK characters of `text`, most frequent first, with cumulative weights."""
    counts = Counter("".join(_CJK_RUN.findall(text)))
    chars = sorted(counts, key=lambda c: (-counts[c], c))
    return chars, list(accumulate(float(counts[c]) for c in chars))


def _occurring(candidates: list[str], text: str) -> set[str]:
    """The candidates that occur in `text` (one Aho-Corasick pass)."""
    import ahocorasick

    automaton = ahocorasick.Automaton(ahocorasick.STORE_ANY, ahocorasick.KEY_STRING)
    for c in candidates:
        automaton.add_word(c, c)
    automaton.make_automaton()
    found: set[str] = set()
    for _end, c in automaton.iter(text):
        found.add(c)
    return found


def _absent_keywords(make: Callable[[], str], n: int, seen: set[str], text: str) -> list[str]:
    """`n` new keywords from `make` that do not occur in `text`, in the order drawn (deterministic)."""
    out: list[str] = []
    while len(out) < n:
        batch: list[str] = []
        fresh: set[str] = set()
        want = (n - len(out)) * 5 // 4 + 16
        while len(batch) < want:
            cand = make()
            if cand not in seen and cand not in fresh:
                fresh.add(cand)
                batch.append(cand)
        found = _occurring(batch, text)
        for cand in batch:
            if cand not in found and len(out) < n:
                seen.add(cand)
                out.append(cand)
    return out


def _chinese_keyword(rng: random.Random, chars: list[str], cum: list[float], words: list[str]) -> str:
    if rng.random() < 0.3:  # a phrase of two or three real words ("网络安全", "翻墙代理"...)
        text = rng.choice(words) + rng.choice(words)
        if len(text) <= 4 and rng.random() < 0.3:
            text += rng.choice(words)
        if len(text) <= 6:
            return text
    return "".join(rng.choices(chars, cum_weights=cum, k=rng.randint(2, 6)))


def _ascii_word(rng: random.Random) -> str:
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                   for _ in range(rng.randint(1, 4)))


def _ascii_keyword(rng: random.Random) -> str:
    text = _ascii_word(rng)
    if rng.random() < 0.25:
        text += " " + _ascii_word(rng)
    return text


def _sample_from_payloads(rng: random.Random, payloads: list[bytes], n_cn: int, n_as: int,
                          seen: set[str]) -> tuple[list[str], list[str]]:
    """Keywords cut out of the payload text: `n_cn` Chinese (2-6 characters) and `n_as` ASCII."""
    texts = [p for p in payloads if len(p) >= 64]
    rng.shuffle(texts)
    runs: list[str] = []
    tokens: list[str] = []
    for p in texts[:4000]:
        runs.extend(_CJK_RUN.findall(p.decode("utf-8", "ignore")))
        tokens.extend(t.decode() for t in _ASCII_TOKEN.findall(p) if len(t) <= 16)
    # distinct spellings, sorted for determinism: each occurs at least once; drawing by
    # occurrence instead would pick the corpus' few most frequent words again and again
    runs = sorted(set(runs))
    tokens = sorted(set(tokens))
    cn: list[str] = []
    asc: list[str] = []
    for _ in range(50 * (n_cn + n_as) + 1000):
        if len(cn) >= n_cn and len(asc) >= n_as:
            break
        if len(cn) < n_cn and runs:
            run = rng.choice(runs)
            k = rng.randint(2, min(6, len(run)))
            i = rng.randint(0, len(run) - k)
            text = run[i : i + k]
            if text not in seen:
                seen.add(text)
                cn.append(text)
        if len(asc) < n_as and tokens:
            text = rng.choice(tokens)
            if text not in seen:
                seen.add(text)
                asc.append(text)
    return cn, asc


def make_pools(max_n: int, payloads: list[bytes], seed: int) -> KeywordPools:
    """Keywords for sets of up to `max_n`; `payloads` and the corpus of capture seed `seed` decide
    which occur: 1% are sampled from the payloads, the others are drawn until they do not occur
    in the generator's text corpus (they stand for the rules ordinary traffic does not trigger;
    they may still occur in headers, names or binary bodies, and a few do)."""
    from agent.synth.content import CN_WORDS

    rng = random.Random(KEYWORD_SEED)
    n_cn = round(max_n * CHINESE_SHARE)
    n_as = max_n - n_cn
    seen: set[str] = set()
    s_cn, s_as = _sample_from_payloads(rng, payloads, round(n_cn * SAMPLED_SHARE),
                                       round(n_as * SAMPLED_SHARE), seen)
    text = generator_text(seed)
    chars, cum = chinese_frequencies(text)
    words = [w for w in CN_WORDS if _CJK_RUN.fullmatch(w)]
    cn = _absent_keywords(lambda: _chinese_keyword(rng, chars, cum, words), n_cn - len(s_cn), seen, text)

    def ascii_keyword() -> str:
        while True:
            kw = _ascii_keyword(rng)
            if 4 <= len(kw) <= 16:
                return kw

    asc = _absent_keywords(ascii_keyword, n_as - len(s_as), seen, text)
    return KeywordPools(cn, asc, s_cn, s_as)


def write_ruleset(keywords: Sequence[str], directory: Path) -> Path:
    """A ruleset directory (rulesets.model format): one alert-only category holding every keyword."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "keywords.txt").write_text(
        f"# {len(keywords)} generated benchmark keywords (bench/bench_keywords.py)\n"
        + "".join(k + "\n" for k in keywords), encoding="utf-8")
    (directory / "ruleset.toml").write_text(
        'name = "bench-keywords"\nversion = 1\n\n[[categories]]\nid = "bench"\naction = "alert"\n'
        'severity = 3\nkeywords = "keywords.txt"\n', encoding="utf-8")
    return directory


# ---------------------------------------------------------------- matchers


ENGINES = ("aho-corasick", "vectorscan")


def _rss_bytes() -> int:
    """This process' resident set size now (/proc/self/statm), for a matcher's memory."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Mismatch:
    payload: int
    only_reference: list[tuple[int, int]]  # (start offset, pattern id), Aho-Corasick only
    only_other: list[tuple[int, int]]


@dataclass
class EngineResult:
    keywords: int
    engine: str
    chinese: int
    sampled: int
    patterns: int
    pattern_bytes: int
    forms_s: float
    build_s: float  # PatternSet built from the patterns, no cache
    cached_load_s: float | None  # the same from a cached database (Vectorscan)
    rss_mb: float  # resident memory the process gained while building (includes a compiler's heap)
    engine_mb: float  # what the engine holds: the automaton, or the compiled database
    scan_s: float
    mb_s: float
    stream_mb_s: float  # the same payloads fed to one stream each (the body path)
    matches: int
    agree: bool | None = None  # identical matches to the reference engine, payload by payload
    payloads_differing: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)


def _best(fn: Callable[[], int], rounds: int) -> tuple[float, int]:
    """Best wall time of `rounds` calls of `fn` with the cyclic GC off; and what the last call returned."""
    best = float("inf")
    result = 0
    for _ in range(rounds):
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            result = fn()
            best = min(best, time.perf_counter() - t0)
        finally:
            gc.enable()
    return best, result


def _scan_all(ps: PatternSet, payloads: list[bytes]) -> int:
    scan = ps.scan
    n = 0
    for p in payloads:
        n += len(scan(p))
    return n


def _stream_all(ps: PatternSet, payloads: list[bytes]) -> int:
    from agent.filter.patterns import StreamScan

    n = 0
    for p in payloads:
        s = StreamScan(ps, 1 << 30)
        n += len(s.feed(p))
        s.close()
    return n


def _measure_engine(engine: str, patterns: list[bytes], exact: list[tuple[int, ...]],
                    payloads: list[bytes]) -> tuple[dict[str, Any], list[list[tuple[int, int]]]]:
    """One engine's build, cached load, memory and scan figures; and what it found, per payload."""
    import tempfile

    from agent.filter.patterns import PatternSet

    total_mb = sum(len(p) for p in payloads) / 1e6
    gc.collect()
    rss0 = _rss_bytes()
    holder: list[PatternSet] = []

    def build() -> int:
        holder[:] = []
        holder.append(PatternSet(patterns, exact, engine=engine))
        return 0

    build_s, _ = _best(build, BUILD_ROUNDS)
    ps = holder[0]
    rss_mb = max(0, _rss_bytes() - rss0) / 1e6
    cached_s = None
    if engine == "vectorscan":
        with tempfile.TemporaryDirectory() as cache:
            PatternSet(patterns, exact, engine=engine, cache_dir=Path(cache))  # compiles and saves
            t1 = time.perf_counter()
            again = PatternSet(patterns, exact, engine=engine, cache_dir=Path(cache))
            cached_s = time.perf_counter() - t1
            assert "loaded" in again.engine_reason, again.engine_reason
    print("    scan ...", file=sys.stderr, flush=True)
    scan_s, matches = _best(lambda: _scan_all(ps, payloads), SCAN_ROUNDS)
    stream_s, _ = _best(lambda: _stream_all(ps, payloads), SCAN_ROUNDS)
    figures = {"build_s": build_s, "cached_load_s": cached_s, "rss_mb": rss_mb,
               "engine_mb": ps.memory_bytes() / 1e6, "scan_s": scan_s,
               "mb_s": total_mb / scan_s, "stream_mb_s": total_mb / stream_s, "matches": matches}
    return figures, [ps.scan(p) for p in payloads]  # untimed: for the comparison


def measure_matchers(n: int, keywords: list[str], n_chinese: int, n_sampled: int,
                     payloads: list[bytes]) -> list[EngineResult]:
    """Each engine built from every form of `keywords` and run over `payloads`; the results
    compared payload by payload with the reference engine's."""
    from agent.filter.forms import keyword_patterns

    t0 = time.perf_counter()
    forms = [f for kw in keywords for f in keyword_patterns(kw)]
    forms_s = time.perf_counter() - t0
    patterns = [p for p, _, _ in forms]
    exact = [e for _, _, e in forms]
    out: list[EngineResult] = []
    reference: list[list[tuple[int, int]]] = []
    for engine in ENGINES:
        print(f"  {n:,} keywords, {engine}: {len(patterns):,} patterns ...", file=sys.stderr, flush=True)
        figures, found = _measure_engine(engine, patterns, exact, payloads)
        res = EngineResult(keywords=n, engine=engine, chinese=n_chinese, sampled=n_sampled,
                           patterns=len(patterns), pattern_bytes=sum(len(p) for p in patterns),
                           forms_s=forms_s, **figures)
        if not reference:
            reference = found
        else:
            res.agree = True
            for i, (a, b) in enumerate(zip(reference, found, strict=True)):
                if a != b:
                    res.agree = False
                    res.payloads_differing += 1
                    if len(res.mismatches) < MISMATCH_EXAMPLES:
                        ca, cb = Counter(a), Counter(b)
                        res.mismatches.append(Mismatch(i, sorted((ca - cb).elements())[:10],
                                                       sorted((cb - ca).elements())[:10]))
        out.append(res)
    return out


# ---------------------------------------------------------------- pipeline


@dataclass
class Target:
    name: str  # what is compared: "agent-10k / argus"
    tool: str
    base: str
    limit: float
    best: float | None = None  # the lowest per-round ratio
    median: float | None = None  # the median of the per-round ratios: what "met" is judged on
    rounds: list[float] = field(default_factory=list)

    @property
    def met(self) -> bool | None:
        return None if self.median is None else self.median <= self.limit


@dataclass
class PipelineResult:
    status: str  # "measured" or "not measured"
    reason: str = ""
    capture: dict[str, Any] = field(default_factory=dict)
    keywords: dict[str, int] = field(default_factory=dict)  # tool -> keywords of its ruleset
    engine_note: str = ""  # what `auto` chose, and why
    startup: dict[str, float] = field(default_factory=dict)  # "cold"/"cached" load + compile of 100k, s
    compiled_tree_stale: bool = False
    tools: list[bs.ToolResult] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    alerts: dict[str, int | None] = field(default_factory=dict)
    verdict: str = "NOT MEASURED"
    # --instructions: instructions each tool executed under callgrind, on a smaller capture
    instructions: dict[str, Any] = field(default_factory=dict)


def count_alerts(path: Path) -> int | None:
    """Alert records in a JSON-lines output (None when it is missing)."""
    if not path.exists():
        return None
    n = 0
    with path.open("rb") as f:
        for line in f:
            if b'"type":"alert"' in line or b'"type": "alert"' in line:
                n += 1
    return n


def _compiled_tree_state() -> tuple[bool, bool, str]:
    """(built with the filter, stale, note) for build/compiled."""
    tree = bs.COMPILED_TREE
    stamp = tree / ".built"
    if not stamp.exists():
        return False, False, f"{tree} is not built: run `make compiled` (~2 min)"
    if not (tree / "agent" / "filter" / "patterns.py").exists():
        return False, True, f"{tree} predates the keyword engines: run `make compiled` (~2 min)"
    built = stamp.stat().st_mtime
    sources = [p for d in ("agent", "wire", "rulesets") for p in (REPO / d).rglob("*.py")]
    sources += [REPO / "pyproject.toml", REPO / "setup.py"]
    newer = sorted(str(p.relative_to(REPO)) for p in sources if p.exists() and p.stat().st_mtime > built)
    if newer:
        more = f" (+{len(newer) - 3} more)" if len(newer) > 3 else ""
        return True, True, (f"warning: {tree} is older than {', '.join(newer[:3])}{more}: it measures the "
                            "code as of `make compiled`")
    return True, False, ""


def measure_startup(rules_dir: Path, cache: Path) -> dict[str, float]:
    """What `edgeaudit-agent run` does with a ruleset at start (load, check, compile for the
    default engine): once compiling the database, once loading it from the cache."""
    import shutil

    from agent.filter.compiled import compile_rules
    from rulesets.load import load_ruleset

    shutil.rmtree(cache, ignore_errors=True)
    out: dict[str, float] = {}
    for kind in ("cold", "cached"):
        gc.collect()
        t0 = time.perf_counter()
        rules = compile_rules(load_ruleset(rules_dir), cache_dir=cache)
        out[kind] = time.perf_counter() - t0
        out[f"{kind}_engine"] = 1.0 if rules.engine == "vectorscan" else 0.0
        del rules
    return out


def run_pipeline(packets: int, seed: int, pools: KeywordPools, repeat: int, install: bool,
                 timeout: float, keep: bool, instr_packets: int = 0) -> PipelineResult:
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    res = PipelineResult("not measured")
    ok, stale, note = _compiled_tree_state()
    res.compiled_tree_stale = stale
    if not ok:
        res.reason = note
        return res
    if note:
        print(note, file=sys.stderr, flush=True)
    argus, argus_note = bs.locate_argus(install=install)
    if argus is None:
        res.reason = argus_note
        return res
    dirs = {
        "agent-1rule": write_ruleset([NEVER_KEYWORD], WORK_DIR / "ruleset-1"),
        "agent-10k": write_ruleset(pools.keyword_set(10_000), WORK_DIR / "ruleset-10000"),
        "agent-100k": write_ruleset(pools.keyword_set(100_000), WORK_DIR / "ruleset-100000"),
    }
    dirs["agent-10k-ac"] = dirs["agent-10k"]
    res.keywords = {"agent-norules": 0, "agent-1rule": 1, "agent-10k": 10_000, "agent-10k-ac": 10_000,
                    "agent-100k": 100_000}
    cache = WORK_DIR / "engine-cache"
    print("start-up with 100,000 keywords ...", file=sys.stderr, flush=True)
    res.startup = measure_startup(dirs["agent-100k"], cache)
    from agent.filter.compiled import compile_rules
    from rulesets.load import load_ruleset

    # every ruleset's database compiled into the cache before the rounds: each run loads it, as an
    # agent restarting with an unchanged ruleset does (the compile time is in the start-up line)
    for name in ("agent-1rule", "agent-10k"):
        warm = compile_rules(load_ruleset(dirs[name]), cache_dir=cache)
        res.engine_note = f"default engine: {warm.engine} ({warm.patterns.engine_reason})"
        del warm
    cap = bs.ensure_capture(packets, seed, OUT_DIR, regenerate=False)
    res.capture = {"path": str(cap.path), "packets": cap.packets, "file_bytes": cap.bytes, "seed": cap.seed,
                   "reused": cap.reused, "generator": cap.generator}
    bs.warm_page_cache(cap.path)
    bs.compile_bytecode()
    launcher = str(BENCH_DIR / "agent_compiled.py")

    def agent_cmd(name: str, engine: str = "auto") -> Callable[[Path, Path], list[str]]:
        def cmd(c: Path, out: Path) -> list[str]:
            argv = [bs._python(), launcher, "replay", str(c), "--jsonl", str(out)]
            if name in dirs:
                # the compiled database is cached: every run after the first loads it, as a restart does
                argv += ["--rules", str(dirs[name]), "--engine", engine, "--engine-cache", str(cache)]
            return argv
        return cmd

    agent = bs.locate_agent_mypyc
    tools = [
        bs.Tool("argus", True, bs._argus_cmd, ".argus", bs.no_count, lambda: argus),
        bs.Tool("agent-norules", True, agent_cmd("agent-norules"), ".jsonl", bs.count_lines, agent),
        bs.Tool("agent-1rule", True, agent_cmd("agent-1rule"), ".jsonl", count_alerts, agent),
        bs.Tool("agent-10k", True, agent_cmd("agent-10k"), ".jsonl", count_alerts, agent),
        bs.Tool("agent-100k", True, agent_cmd("agent-100k"), ".jsonl", count_alerts, agent),
        bs.Tool("agent-10k-ac", False, agent_cmd("agent-10k-ac", "aho-corasick"), ".jsonl", count_alerts,
                agent),
    ]
    measuring: list[bs.Measurement] = []
    for tool in tools:
        exe = tool.locate()
        assert exe is not None  # checked above
        measuring.append(bs.start_measurement(tool, exe, cap, WORK_DIR))
    print(f"pipeline: {cap.packets:,} packets, {repeat} round(s)", file=sys.stderr, flush=True)
    for i in range(repeat):
        for m in measuring:
            bs.run_round(m, i, repeat, timeout)
    res.tools = [bs.finish_measurement(m, cap, keep) for m in measuring]
    by = {r.name: r for r in res.tools}
    res.alerts = {r.name: r.output_records for r in res.tools
                  if r.name.startswith("agent-") and r.name != "agent-norules"}
    res.targets = [
        Target("agent, 10k keywords / agent without rules", "agent-10k", "agent-norules", TARGET_10K_NORULES),
        Target("agent, 10k keywords / argus", "agent-10k", "argus", TARGET_PIPELINE_RATIO),
        Target("agent, 100k keywords / argus", "agent-100k", "argus", TARGET_100K_ARGUS),
        Target("agent, 1 keyword / agent without rules", "agent-1rule", "agent-norules",
               TARGET_1RULE_NORULES),
    ]
    for t in res.targets:
        a, b = by[t.tool].runs, by[t.base].runs
        t.rounds = [x.cpu_s / y.cpu_s for x, y in zip(a, b, strict=False)
                    if y.cpu_s > 0 and x.returncode == 0]
        if t.rounds:
            t.best = min(t.rounds)
            t.median = statistics.median(t.rounds)
    failed = [f"{r.name} {r.status}: {r.note}" for r in res.tools if r.best_cpu_s is None]
    if any(t.median is None for t in res.targets):
        res.reason = "; ".join(failed) or "no complete round"
        return res
    res.status = "measured"
    res.verdict = "PASS" if all(t.met for t in res.targets) else "FAIL"
    if instr_packets:
        icap = bs.ensure_capture(instr_packets, seed, OUT_DIR, regenerate=False)
        tiny = bs.ensure_capture(STARTUP_PACKETS, seed, OUT_DIR, regenerate=False)
        res.instructions = measure_instructions(icap, tiny, tools, res.targets, cap.packets)
    return res


def _callgrind_instructions(argv: list[str]) -> tuple[int | None, str]:
    """Instructions the whole process executed (callgrind's "I refs"), or None and why."""
    vg = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", "--trace-children=no", *argv]
    proc = subprocess.run(vg, capture_output=True, text=True, timeout=7200)
    m = re.search(r"I\s+refs:\s+([\d,]+)", proc.stderr)
    if proc.returncode != 0 or m is None:
        return None, f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"
    return int(m.group(1).replace(",", "")), ""


def _count_all(cap: bs.Capture, tools: list[bs.Tool]) -> tuple[dict[str, int | None], dict[str, str]]:
    """Each tool once under callgrind on `cap`, two at a time (one per core)."""
    from concurrent.futures import ThreadPoolExecutor

    outputs = {tool.name: WORK_DIR / f"instr_{tool.name}{tool.output_suffix}" for tool in tools}
    jobs = {tool.name: tool.build(cap.path, outputs[tool.name]) for tool in tools}
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = dict(zip(jobs, pool.map(_callgrind_instructions, jobs.values()), strict=True))
    for out in outputs.values():
        out.unlink(missing_ok=True)
    return ({name: n for name, (n, _) in done.items()},
            {name: note for name, (_, note) in done.items() if note})


def measure_instructions(cap: bs.Capture, tiny: bs.Capture, tools: list[bs.Tool], targets: list[Target],
                         scale_to: int) -> dict[str, Any]:
    """Each tool once under valgrind's callgrind on `cap`: the instructions it executed, which do
    not move with the machine's load as CPU seconds do on a shared VM (±30% between rounds
    here), and the targets' ratios on them. Instructions are not time (a cache miss costs
    hundreds of cycles, an instruction one or less): they say how much work each tool does,
    the CPU medians say what it costs.

    A run on `cap` weighs start-up (100k keywords: most of the count) far more than the
    `scale_to`-packet runs the targets are about, so each tool also runs on `tiny` (start-up
    and a few packets): the targets are judged on the count scaled to `scale_to` packets,
    start-up + (count - start-up) per packet of `cap` x `scale_to`."""
    if shutil.which("valgrind") is None:
        return {"status": "skipped", "note": "valgrind is not installed (apt-get install valgrind)"}
    agents = [t for t in tools if t.name != "argus"]
    print(f"instructions under callgrind: {cap.packets:,} packets, {len(tools)} tools; start-up "
          f"({tiny.packets:,} packets), {len(agents)} tools ...", file=sys.stderr, flush=True)
    counts, notes = _count_all(cap, tools)
    startup, snotes = _count_all(tiny, agents)
    scaled: dict[str, float | None] = {}
    for name, n in counts.items():
        s0 = startup.get(name)
        if n is None or s0 is None or name == "argus":
            scaled[name] = None
            continue
        per_packet = max(n - s0, 0) / max(cap.packets - tiny.packets, 1)
        scaled[name] = s0 + per_packet * scale_to
    notes.update({f"{k} (start-up)": v for k, v in snotes.items()})
    ratios = {}
    for t in targets:
        if t.base == "argus":
            continue  # argus works mostly in the kernel (read(2) of the capture): callgrind sees none
        a, b = counts.get(t.tool), counts.get(t.base)
        sa, sb = scaled.get(t.tool), scaled.get(t.base)
        ratios[t.name] = {"ratio": a / b if a and b else None, "scaled": sa / sb if sa and sb else None,
                          "limit": t.limit}
    return {"status": "measured", "capture": str(cap.path), "packets": cap.packets,
            "startup_packets": tiny.packets, "scaled_to": scale_to, "instructions": counts,
            "startup": startup, "scaled": scaled, "notes": notes, "ratios": ratios}


# ---------------------------------------------------------------- report


def _f(v: float | int | None, spec: str, width: int) -> str:
    return ("—" if v is None else format(v, spec)).rjust(width)


def _x(v: float | None, width: int) -> str:
    return ("—" if v is None else f"{v:.2f}×").rjust(width)


def print_matchers(pl: Payloads, results: list[EngineResult], build: str) -> None:
    print()
    protos = ", ".join(f"{k} {v[0]:,} pkts / {v[1] / 1e6:,.1f} MB" for k, v in sorted(pl.by_proto.items()))
    print(f"payloads: {pl.pcap.name} ({pl.packets:,} packets): {len(pl.items):,} payloads, "
          f"{pl.total_bytes / 1e6:,.1f} MB ({protos}), as sent (not case-folded)")
    print(f"agent matcher: {build}; build: best of {BUILD_ROUNDS}, no cache (cached: from a saved "
          f"database); scan: PatternSet.scan, one call per payload, best of {SCAN_ROUNDS}; stream: one "
          "StreamScan per payload (open, feed, close); RSS: resident memory the process gained while "
          "building (a compiler's heap included); held: what the engine reports it holds")
    print()
    head = (f"{'keywords':>9} {'patterns':>9} {'engine':<13} {'forms s':>8} {'build s':>8} {'cached s':>8} "
            f"{'RSS MB':>7} {'held MB':>7} {'scan MB/s':>9} {'stream MB/s':>11} {'matches':>9}  agree")
    print(head)
    print("-" * len(head))
    for r in results:
        agree = "ref" if r.agree is None else ("yes" if r.agree else "NO")
        print(f"{r.keywords:>9,} {r.patterns:>9,} {r.engine:<13} {r.forms_s:>8.2f} {r.build_s:>8.2f} "
              f"{_f(r.cached_load_s, '.3f', 8)} {r.rss_mb:>7.0f} {r.engine_mb:>7.1f} {r.mb_s:>9.1f} "
              f"{r.stream_mb_s:>11.1f} "
              f"{r.matches:>9,}  {agree}")
    for r in results:
        if r.agree is False:
            print(f"\nMISMATCH at {r.keywords:,} keywords ({r.engine}): {r.payloads_differing:,} payloads "
                  "differ ((start, pattern id) lists); first ones:")
            for m in r.mismatches:
                print(f"  payload {m.payload}: only aho-corasick {m.only_reference}; only {r.engine} "
                      f"{m.only_other}")
    if results and all(r.agree is not False for r in results):
        print("\nengines agree: identical (start, pattern id) matches, in the same order, on every payload")


def print_pipeline(p: PipelineResult) -> None:
    print()
    if p.status != "measured" and not p.tools:
        print(f"pipeline: not measured — {p.reason}")
        return
    cap = p.capture
    print(f"pipeline: {cap.get('path')} ({cap.get('packets', 0):,} packets), default depth; "
          "CPU = user+sys (RUSAGE_CHILDREN); tools round-robin, each round's ratios from that round")
    print(p.engine_note)
    if p.compiled_tree_stale:
        print("note: build/compiled is older than the sources (run `make compiled` for current code)")
    print()
    head = (f"{'tool':<14} {'keywords':>9} {'status':<7} {'wall s':>8} {'CPU s best':>10} {'median':>8} "
            f"{'× argus':>8} {'alerts':>9}")
    print(head)
    print("-" * len(head))
    by = {t.name: t for t in p.tools}
    argus = by.get("argus")
    for t in p.tools:
        cpus = [r.cpu_s for r in t.runs if r.returncode == 0]
        med = statistics.median(cpus) if cpus else None
        argus_med = statistics.median([r.cpu_s for r in argus.runs]) if argus and argus.runs else None
        kw = p.keywords.get(t.name)
        print(f"{t.name:<14} {_f(kw, ',', 9)} {t.status:<7} {_f(t.best_wall_s, '.2f', 8)} "
              f"{_f(t.best_cpu_s, '.2f', 10)} {_f(med, '.2f', 8)} {_x(bs.ratio(med, argus_med), 8)} "
              f"{_f(p.alerts.get(t.name), ',', 9)}")
    print("(agent-10k-ac: the same 10k keywords with the reference engine, aho-corasick, for comparison)")
    for t in p.tools:
        if t.note:
            print(f"{t.name}: {t.note}")
    print()
    print(f"{'target':<44} {'limit':>6} {'median':>7} {'best':>7}  rounds")
    for t in p.targets:
        verdict = {True: "met", False: "NOT MET", None: "not measured"}[t.met]
        rounds = ", ".join(f"{r:.2f}" for r in t.rounds)
        print(f"{t.name:<44} {t.limit:>5.2f}× {_x(t.median, 7)} {_x(t.best, 7)}  [{rounds}]  {verdict}")
    if p.startup:
        cached = p.startup.get("cached")
        verdict = "met" if cached is not None and cached < TARGET_STARTUP_S else "NOT MET"
        print(f"start-up, 100k keywords (load + check + compile): {p.startup.get('cold', 0):.2f} s "
              f"compiling the database, {cached or 0:.2f} s with it cached (target < "
              f"{TARGET_STARTUP_S:.0f} s)  {verdict}")
    print(f"verdict: {p.verdict}")


# ---------------------------------------------------------------- main
    ins = p.instructions
    if ins.get("status") == "measured":
        counts = ins["instructions"]
        base = counts.get("agent-norules")
        print(f"\ninstructions executed in user space (valgrind callgrind, one run each, whole process "
              f"with its start-up, {ins['packets']:,}-packet capture): deterministic, unlike CPU seconds "
              "on this VM; argus's are shown but not compared (its work is mostly the kernel's)")
        startup = ins.get("startup", {})
        scaled = ins.get("scaled", {})
        sbase = scaled.get("agent-norules")
        print(f"  {'tool':<16} {'whole run':>10}   {'':<14} {'start-up':>9} "
              f"{'scaled to ' + format(ins.get('scaled_to', 0), ','):>22}")
        for name, n in counts.items():
            rel = f"{n / base:.2f}× no rules" if n and base and name != "argus" else ""
            s0 = startup.get(name)
            sc = scaled.get(name)
            s0_text = f"{s0 / 1e9:.2f} G" if s0 else ""
            sc_text = f"{sc / 1e9:.2f} G ({sc / sbase:.2f}×)" if sc and sbase else ""
            note = f"  {ins['notes'][name]}" if name in ins["notes"] else ""
            print(f"  {name:<16} {n / 1e9 if n else 0:>8.2f} G   {rel:<14} {s0_text:>9} {sc_text:>22}{note}")
        print(f"  targets on instructions scaled to {ins.get('scaled_to', 0):,} packets "
              f"(on the {ins['packets']:,}-packet run as it is):")
        for name, r in ins["ratios"].items():
            v = r.get("scaled")
            met = "met" if v is not None and v <= r["limit"] else "NOT MET"
            shown = "—" if v is None else f"{v:.2f}×"
            whole = "—" if r["ratio"] is None else f"{r['ratio']:.2f}×"
            print(f"  {name:<44} {r['limit']:.2f}×  {shown} ({whole})  {met} (on instructions)")
    elif ins:
        print(f"\ninstructions: {ins.get('status')}: {ins.get('note', '')}")

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--packets", type=int, default=None,
                    help=f"payload capture size (default {DEFAULT_PAYLOAD_PACKETS}; "
                         f"--quick {QUICK_PAYLOAD_PACKETS})")
    ap.add_argument("--pipeline-packets", type=int, default=None,
                    help=f"pipeline capture size (default {PIPELINE_PACKETS}; "
                         f"--quick {QUICK_PIPELINE_PACKETS})")
    ap.add_argument("--seed", type=int, default=bs.DEFAULT_SEED, help="capture seed (default 1)")
    ap.add_argument("--quick", action="store_true",
                    help="1k and 10k keywords, 20,000-packet payload capture, pipeline on 100,000 packets")
    ap.add_argument("--no-pipeline", action="store_true", help="the matcher comparison only")
    ap.add_argument("--no-matchers", action="store_true", help="the pipeline only")
    ap.add_argument("--repeat", type=int, default=3, help="pipeline rounds; best of N (default 3)")
    ap.add_argument("--matcher", choices=("auto", "compiled", "pure"), default="auto",
                    help="agent modules for the in-process matcher measurement: build/compiled (mypyc) "
                         "or the interpreted sources; auto: compiled when built (default)")
    ap.add_argument("--no-install", action="store_true", help="never apt-get install argus-server")
    ap.add_argument("--keep-outputs", action="store_true", help="keep the pipeline tools' outputs")
    ap.add_argument("--timeout", type=float, default=bs.DEFAULT_TIMEOUT_S, help="seconds per pipeline run")
    ap.add_argument("--instructions", type=int, nargs="?", const=200_000, default=0, metavar="PACKETS",
                    help="also count the instructions each pipeline tool executes under valgrind's "
                         "callgrind, once, on a capture of PACKETS (default 200,000; ~5 min): a "
                         "measure the VM's load does not move")
    args = ap.parse_args(argv)
    if args.packets is None:
        args.packets = QUICK_PAYLOAD_PACKETS if args.quick else DEFAULT_PAYLOAD_PACKETS
    if args.pipeline_packets is None:
        args.pipeline_packets = QUICK_PIPELINE_PACKETS if args.quick else PIPELINE_PACKETS
    if args.packets < 1 or args.pipeline_packets < 1 or args.repeat < 1:
        ap.error("--packets, --pipeline-packets and --repeat must be >= 1")
    if args.no_pipeline and args.no_matchers:
        ap.error("--no-pipeline and --no-matchers leave nothing to measure")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    counts = QUICK_KEYWORD_COUNTS if args.quick else KEYWORD_COUNTS
    build = select_agent_build(args.matcher)
    cap = bs.ensure_capture(args.packets, args.seed, OUT_DIR, regenerate=False)
    print(f"extracting payloads from {cap.path.name} ...", file=sys.stderr, flush=True)
    pl = extract_payloads(cap.path, cap.packets)
    pools = make_pools(max(KEYWORD_COUNTS), pl.items, args.seed)  # the same sets with --quick

    results: list[EngineResult] = []
    if not args.no_matchers:
        print(f"matchers on {len(pl.items):,} payloads, {pl.total_bytes / 1e6:,.1f} MB",
              file=sys.stderr, flush=True)
        for n in counts:
            kws = pools.keyword_set(n)
            n_cn = round(n * CHINESE_SHARE)
            sampled = (min(round(n_cn * SAMPLED_SHARE), len(pools.sampled_chinese))
                       + min(round((n - n_cn) * SAMPLED_SHARE), len(pools.sampled_ascii)))
            results += measure_matchers(n, kws, n_cn, sampled, pl.items)
            gc.collect()
        print_matchers(pl, results, build)

    pipe: PipelineResult | None = None
    if not args.no_pipeline:
        pipe = run_pipeline(args.pipeline_packets, args.seed, pools, args.repeat, not args.no_install,
                            args.timeout, args.keep_outputs, args.instructions)
        print_pipeline(pipe)

    # exit status: the pipeline targets, then the engines' agreement
    code = {"PASS": 0, "FAIL": 1}.get(pipe.verdict, 2) if pipe is not None else 0
    disagree = any(r.agree is False for r in results)
    if disagree and code == 0:
        code = 1

    doc: dict[str, Any] = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
                 "kernel": platform.release(), "loadavg_1m": os.getloadavg()[0]},
        "payloads": {"capture": str(pl.pcap), "packets": pl.packets, "payloads": len(pl.items),
                     "bytes": pl.total_bytes, "by_proto": pl.by_proto, "extract_s": pl.extract_s},
        "keywords": {"seed": KEYWORD_SEED, "chinese_share": CHINESE_SHARE, "sampled_share": SAMPLED_SHARE},
        "agent_build": build,
        "build_rounds": BUILD_ROUNDS,
        "scan_rounds": SCAN_ROUNDS,
        "matchers": [asdict(r) for r in results],
        "engines_agree": None if not results else not disagree,
        "pipeline": None if pipe is None else {**asdict(pipe), "repeat": args.repeat},
        "exit_status": code,
    }
    JSON_PATH.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    print(f"\nresults: {JSON_PATH}")
    return code


if __name__ == "__main__":
    sys.exit(main())
