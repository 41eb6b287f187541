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

Limits: compiling is bounded by the ruleset loader's limits (`rulesets.load`); the
automaton's memory grows with the total pattern bytes (~100 bytes of automaton per
pattern byte in pyahocorasick; Vectorscan's databases are far smaller, bench/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from agent.filter.forms import keyword_patterns
from agent.filter.patterns import PatternSet
from rulesets.model import Category, Ruleset

ROLE_KEYWORD: Final = 0
ROLE_EXCEPTION: Final = 1
ROLE_PART: Final = 2


@dataclass(frozen=True)
class Rule:
    """Something that makes an alert: one keyword, or one combination of keywords."""

    rule_id: str
    category: int  # index into CompiledRules.categories
    text: str  # the keyword, or the combination's parts joined by " & "
    parts: tuple[int, ...] = ()  # a combination: its part ids (CompiledRules.part_text)


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
    `patterns.DEFAULT_ENGINE`, "auto"), caching
    a compiled Vectorscan database in `cache_dir` when given."""
    patterns: list[bytes] = []
    exact: list[tuple[int, ...]] = []
    role: list[int] = []
    cat_of: list[int] = []
    ref: list[int] = []
    enc: list[str] = []
    rules: list[Rule] = []
    part_text: list[str] = []
    part_rules: list[list[int]] = []
    max_exc = 0
    cats = [c for c in ruleset.categories if c.enabled]

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
            rules.append(Rule(f"{cat.id}:{kw.file}:{kw.line}", ci, kw.text))
            add(kw.text, ROLE_KEYWORD, ci, len(rules) - 1)
        for exc in cat.exceptions:
            add(exc.text, ROLE_EXCEPTION, ci, -1)
        for combo in cat.combinations:
            ids: list[int] = []
            rule_index = len(rules)
            for part in combo.parts:
                pid = len(part_text)
                part_text.append(part)
                part_rules.append([rule_index])
                ids.append(pid)
                add(part, ROLE_PART, ci, pid)
            rules.append(Rule(f"{cat.id}:{combo.file}:{combo.line}", ci, combo.text, tuple(ids)))
    return CompiledRules(
        name=ruleset.name, version=ruleset.version, categories=cats, rules=rules,
        patterns=PatternSet(patterns, exact, engine=engine, cache_dir=cache_dir),
        pat_role=role, pat_cat=cat_of, pat_ref=ref, pat_enc=enc,
        pat_len=[len(p) for p in patterns], part_text=part_text, part_rules=part_rules,
        max_exception_len=max_exc, cat_exceptions=[bool(c.exceptions) for c in cats],
        cat_fields=[c.fields for c in cats],
        fields=frozenset(f for c in cats for f in c.fields), cache_dir=cache_dir,
        version_text=str(ruleset.version),
    )
