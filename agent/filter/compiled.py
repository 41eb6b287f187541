"""A ruleset compiled for matching: every keyword in every encoding in one automaton.

What: `compile_rules(ruleset, engine=..., cache_dir=...)` turns a `rulesets.model.Ruleset`
into `CompiledRules`: one `PatternSet` (`agent.filter.patterns`: Vectorscan or
Aho-Corasick, the `engine` asked for) holding, for every enabled category, each keyword,
each exception phrase and each part of each combination rule in every byte form users send
text in (`agent.filter.forms.keyword_patterns`: UTF-8, GBK/GB18030, percent-encoded forms,
with the GBK letters that must match exactly), plus flat tables saying, per pattern id,
what it is (its role, category, rule or part, and encoding name).

Why one pattern set: the cost of a scan is one pass over the haystack whatever the
number of keywords; the tables make a match's meaning one list index away.

Rules (what an `alert` names as `rule_id`): a keyword is `<category>:<file>:<line>`,
a combination the same with its own file and line. Exceptions are not rules: they
suppress a match of their category lying inside one of their occurrences.

Cache: with a `cache_dir` (the same directory as the Vectorscan database), the tables this
builds from the keywords (every byte form of every keyword, exception and combination part:
half a second for 100,000 keywords) are saved as `<hash>.tables` (marshal, a magic line
first), the hash covering every enabled category's id and phrases with where they were
written and `TABLES_VERSION`; a restart with the same ruleset loads them in a few tens of
milliseconds. A table file that cannot be read, or does not hold what its name promises, is
rebuilt; one that cannot be written is not an error.

Limits: compiling is bounded by the ruleset loader's limits (`rulesets.load`); the
automaton's memory grows with the total pattern bytes (~100 bytes of automaton per
pattern byte in pyahocorasick; Vectorscan's databases are far smaller, bench/README.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from agent.filter.cachefiles import compile_lock, mark_used, store
from agent.filter.forms import keyword_patterns
from agent.filter.patterns import PatternSet
from rulesets.model import Action, Category, Ruleset

ROLE_KEYWORD: Final = 0
ROLE_EXCEPTION: Final = 1
ROLE_PART: Final = 2
# bump when keyword_patterns or the tables below change: cached tables of an older version
# are then never looked up (their hash differs)
TABLES_VERSION: Final = 1
TABLES_KEEP: Final = 8  # table files kept in a cache directory (the newest)
#: A content field whose bytes another field already carries: a category watching both matches
#: only the other, or one keyword in one post would make two alerts. ``publish.text`` is the
#: decoded text of a request body the filter scans as ``http.request_body`` (with its form,
#: JSON and multipart views); a category that names ``publish.text`` and not the body (rules
#: meant for the unit's own publishing services only) matches the text.
COVERED_BY: Final = {"publish.text": "http.request_body"}
_TABLES_MAGIC: Final = b"EATB1\n"


class Rule:
    """Something that makes an alert: one keyword, or one combination of keywords (read-only
    by convention; a plain class: 100,000 of them are made at every start)."""

    def __init__(self, rule_id: str, category: int, text: str, parts: tuple[int, ...] = ()) -> None:
        self.rule_id = rule_id
        self.category = category  # index into CompiledRules.categories
        self.text = text  # the keyword, or the combination's parts joined by " & "
        self.parts = parts  # a combination: its part ids (CompiledRules.part_text)


@dataclass
class CompiledRules:
    name: str
    version: int
    categories: list[Category]
    rules: list[Rule]
    patterns: PatternSet
    # per pattern id
    pat_role: list[int]
    pat_cat: list[int]
    pat_ref: list[int]  # ROLE_KEYWORD: rule index; ROLE_PART: part id; ROLE_EXCEPTION: -1
    pat_enc: list[str]
    pat_len: list[int]
    part_text: list[str] = field(default_factory=list)
    # part id -> the combination rules (indexes) that use it
    part_rules: list[list[int]] = field(default_factory=list)
    max_exception_len: int = 0  # longest exception pattern, in bytes
    # per category: whether it has exception phrases (a match may then be suppressed)
    cat_exceptions: list[bool] = field(default_factory=list)
    cat_fields: list[frozenset[str]] = field(default_factory=list)  # per category: where it matches
    # per category, what its alerts say (read per alert: native lists, not a dataclass' attributes)
    cat_ids: list[str] = field(default_factory=list)
    cat_severity: list[int] = field(default_factory=list)
    cat_action: list[Action] = field(default_factory=list)
    # the fields some enabled category matches in: pieces of other fields are not scanned
    fields: frozenset[str] = frozenset()
    cache_dir: Path | None = None  # where the engine's compiled database is cached
    version_text: str = ""  # the version as alert records carry it (SCHEMA.md: a string)

    @property
    def engine(self) -> str:
        """The keyword engine running: "vectorscan" or "aho-corasick"."""
        return self.patterns.engine

    def rule_count(self) -> int:
        return len(self.rules)


def compile_rules(ruleset: Ruleset, *, engine: str | None = None,
                  cache_dir: Path | None = None) -> CompiledRules:
    """Compile the enabled categories of `ruleset` (it was validated by `rulesets.load`) for
    the keyword `engine` ("auto", "vectorscan", "aho-corasick"; `patterns.ENGINES`; None:
    `patterns.DEFAULT_ENGINE`, "auto"), caching the pattern tables and a compiled Vectorscan
    database in `cache_dir` when given."""
    cats = [c for c in ruleset.categories if c.enabled]
    # under the cache directory's lock: a second process compiling the same ruleset waits,
    # then loads what the first saved (cachefiles.compile_lock)
    with compile_lock(cache_dir):
        key = _tables_key(cats) if cache_dir is not None else ""
        t = _load_tables(cache_dir, key) if cache_dir is not None else None
        if t is None:
            t = _build_tables(cats)
            if cache_dir is not None:
                _save_tables(cache_dir, key, t)
        pattern_set = PatternSet(t[0], t[1], engine=engine, cache_dir=cache_dir)
    patterns, exact, role, cat_of, ref, enc, rule_ids, rule_cats, rule_texts, rule_parts, \
        part_text, part_rules, max_exc = t
    rules = [Rule(rid, ci, text, parts) for rid, ci, text, parts
             in zip(rule_ids, rule_cats, rule_texts, rule_parts, strict=True)]
    return CompiledRules(
        name=ruleset.name, version=ruleset.version, categories=cats, rules=rules,
        patterns=pattern_set,
        pat_role=role, pat_cat=cat_of, pat_ref=ref, pat_enc=enc,
        pat_len=[len(p) for p in patterns], part_text=part_text, part_rules=part_rules,
        max_exception_len=max_exc, cat_exceptions=[bool(c.exceptions) for c in cats],
        cat_fields=[watched(c.fields) for c in cats],
        cat_ids=[c.id for c in cats], cat_severity=[c.severity for c in cats],
        cat_action=[c.action for c in cats],
        fields=frozenset(f for c in cats for f in watched(c.fields)), cache_dir=cache_dir,
        version_text=str(ruleset.version),
    )


def watched(fields: frozenset[str]) -> frozenset[str]:
    """The fields a category with these `fields` is matched in: less those another of them
    covers (``COVERED_BY``)."""
    covered = {f for f, by in COVERED_BY.items() if f in fields and by in fields}
    return fields - covered if covered else fields


# (patterns, exact, role, cat, ref, enc, rule ids, rule categories, rule texts, rule parts,
#  part texts, part rules, longest exception): what `_build_tables` makes and the cache holds
_Tables = tuple[list[bytes], list[tuple[int, ...]], list[int], list[int], list[int], list[str],
                list[str], list[int], list[str], list[tuple[int, ...]], list[str], list[list[int]], int]


def _build_tables(cats: list[Category]) -> _Tables:
    """Every byte form of every phrase of `cats`, with what each pattern id means."""
    patterns: list[bytes] = []
    exact: list[tuple[int, ...]] = []
    role: list[int] = []
    cat_of: list[int] = []
    ref: list[int] = []
    enc: list[str] = []
    rule_ids: list[str] = []
    rule_cats: list[int] = []
    rule_texts: list[str] = []
    rule_parts: list[tuple[int, ...]] = []
    part_text: list[str] = []
    part_rules: list[list[int]] = []
    max_exc = 0

    def add(text: str, r: int, ci: int, rf: int) -> None:
        nonlocal max_exc
        for pattern, encoding, positions in keyword_patterns(text):
            patterns.append(pattern)
            exact.append(positions)
            role.append(r)
            cat_of.append(ci)
            ref.append(rf)
            enc.append(encoding)
            if r == ROLE_EXCEPTION:
                max_exc = max(max_exc, len(pattern))

    for ci, cat in enumerate(cats):
        for kw in cat.keywords:
            rule_ids.append(f"{cat.id}:{kw.file}:{kw.line}")
            rule_cats.append(ci)
            rule_texts.append(kw.text)
            rule_parts.append(())
            add(kw.text, ROLE_KEYWORD, ci, len(rule_ids) - 1)
        for exc in cat.exceptions:
            add(exc.text, ROLE_EXCEPTION, ci, -1)
        for combo in cat.combinations:
            ids: list[int] = []
            rule_index = len(rule_ids)
            for part in combo.parts:
                pid = len(part_text)
                part_text.append(part)
                part_rules.append([rule_index])
                ids.append(pid)
                add(part, ROLE_PART, ci, pid)
            rule_ids.append(f"{cat.id}:{combo.file}:{combo.line}")
            rule_cats.append(ci)
            rule_texts.append(combo.text)
            rule_parts.append(tuple(ids))
    return (patterns, exact, role, cat_of, ref, enc, rule_ids, rule_cats, rule_texts, rule_parts,
            part_text, part_rules, max_exc)


def _tables_key(cats: list[Category]) -> str:
    """A hash of everything the tables are made from: each enabled category's id and its
    phrases, with the file and line each was written on (a rule's id names them)."""
    h = hashlib.sha256(f"edgeaudit-tables {TABLES_VERSION} {len(cats)}\n".encode())
    for cat in cats:
        # fields are separated by NUL and entries by \x1e: a phrase holds neither (rulesets.load
        # refuses control characters), so the encoding is unambiguous
        h.update(f"C\x00{cat.id}\x1e".encode())
        h.update("".join([f"K\x00{p.text}\x00{p.file}\x00{p.line}\x1e" for p in cat.keywords]).encode())
        h.update("".join([f"E\x00{p.text}\x1e" for p in cat.exceptions]).encode())
        h.update("".join([f"M\x00{chr(0).join(c.parts)}\x00{c.file}\x00{c.line}\x1e"
                          for c in cat.combinations]).encode())
    return h.hexdigest()[:40]


def _load_tables(cache_dir: Path, key: str) -> _Tables | None:
    path = cache_dir / f"{key}.tables"
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(_TABLES_MAGIC):
        return None
    try:
        t: Any = marshal.loads(data[len(_TABLES_MAGIC):])
    except (ValueError, EOFError, TypeError):
        return None
    if not _tables_ok(t):
        return None
    mark_used(path)
    return t  # type: ignore[no-any-return]


def _tables_ok(t: Any) -> bool:
    """Whether `t` has the shape `_build_tables` makes (a damaged or foreign file does not)."""
    if not isinstance(t, tuple) or len(t) != 13 or not isinstance(t[12], int):
        return False
    if not all(isinstance(x, list) for x in t[:12]):
        return False
    n = len(t[0])
    return (all(len(x) == n for x in t[1:6]) and all(len(x) == len(t[6]) for x in t[7:10])
            and len(t[10]) == len(t[11]))


def _save_tables(cache_dir: Path, key: str, t: _Tables) -> None:
    with contextlib.suppress(OSError):  # not cached: the next start builds them again
        store(cache_dir, f"{key}.tables", _TABLES_MAGIC + marshal.dumps(t), TABLES_KEEP)
