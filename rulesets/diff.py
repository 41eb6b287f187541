"""What changed between two rulesets, for review before signing (`edgeaudit-rules diff`).

`diff_rulesets(old, new)` gives one line per change, empty when the rulesets would behave the same:

    ~ name example -> production
    ~ version 3 -> 4
    - category old
    + category drugs (block, severity 5, 120 keywords)
    ~ category gambling: action alert -> block
    ~ category gambling: fields http.uri, dns.query -> http.uri
    ~ category gambling: enabled true -> false
    + gambling keyword 赌球
    - gambling keyword xyz
    + gambling exception 反对赌博
    - gambling combination 下注 & 返水

Keywords, exceptions and combinations are compared by their text, not by file or line: moving a
keyword to another line or file is no change. A combination is the same rule whatever the order
of its parts. An added category is one summary line, not one line per keyword: a new list may
hold a million of them. Lines come in a stable order (old order for removals, new order for
additions) so two runs print the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable

from rulesets.model import FIELDS, Category, Combination, Phrase, Ruleset


def _fields(fields: frozenset[str]) -> str:
    if fields == frozenset(FIELDS):
        return "(all)"
    return ", ".join(f for f in FIELDS if f in fields) or "(none)"


def _phrase_changes(category: str, kind: str, old: Iterable[Phrase], new: Iterable[Phrase]) -> list[str]:
    old_texts = [p.text for p in old]
    new_texts = [p.text for p in new]
    old_set, new_set = set(old_texts), set(new_texts)
    lines = [f"- {category} {kind} {t}" for t in dict.fromkeys(old_texts) if t not in new_set]
    lines += [f"+ {category} {kind} {t}" for t in dict.fromkeys(new_texts) if t not in old_set]
    return lines


def _combination_changes(category: str, old: Iterable[Combination], new: Iterable[Combination]) -> list[str]:
    old_by = {frozenset(c.parts): c.text for c in old}
    new_by = {frozenset(c.parts): c.text for c in new}
    lines = [f"- {category} combination {text}" for key, text in old_by.items() if key not in new_by]
    lines += [f"+ {category} combination {text}" for key, text in new_by.items() if key not in old_by]
    return lines


def _category_changes(old: Category, new: Category) -> list[str]:
    head = f"~ category {new.id}:"
    lines: list[str] = []
    if old.action != new.action:
        lines.append(f"{head} action {old.action} -> {new.action}")
    if old.severity != new.severity:
        lines.append(f"{head} severity {old.severity} -> {new.severity}")
    if old.fields != new.fields:
        lines.append(f"{head} fields {_fields(old.fields)} -> {_fields(new.fields)}")
    if old.enabled != new.enabled:
        lines.append(f"{head} enabled {str(old.enabled).lower()} -> {str(new.enabled).lower()}")
    lines += _phrase_changes(new.id, "keyword", old.keywords, new.keywords)
    lines += _phrase_changes(new.id, "exception", old.exceptions, new.exceptions)
    lines += _combination_changes(new.id, old.combinations, new.combinations)
    return lines


def _summary(category: Category) -> str:
    parts = [category.action, f"severity {category.severity}", f"{len(category.keywords)} keywords"]
    if category.exceptions:
        parts.append(f"{len(category.exceptions)} exceptions")
    if category.combinations:
        parts.append(f"{len(category.combinations)} combinations")
    if category.fields != frozenset(FIELDS):
        parts.append(f"fields {_fields(category.fields)}")
    if not category.enabled:
        parts.append("disabled")
    return f"+ category {category.id} ({', '.join(parts)})"


def diff_rulesets(old: Ruleset, new: Ruleset) -> list[str]:
    """The changes from `old` to `new`, one line each; [] when there is no difference."""
    lines: list[str] = []
    if old.name != new.name:
        lines.append(f"~ name {old.name} -> {new.name}")
    if old.version != new.version:
        lines.append(f"~ version {old.version} -> {new.version}")
    old_by_id = {c.id: c for c in old.categories}
    new_by_id = {c.id: c for c in new.categories}
    lines += [f"- category {c.id}" for c in old.categories if c.id not in new_by_id]
    for category in new.categories:
        before = old_by_id.get(category.id)
        lines += [_summary(category)] if before is None else _category_changes(before, category)
    return lines
