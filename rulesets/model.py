"""The ruleset model: what `rulesets.load` reads from a ruleset directory and what the agent's
filter (`agent.filter`) compiles. Plain data, no IO.

A ruleset is a directory with ``ruleset.toml`` and keyword files (DESIGN.md "Rulesets"):

    name = "example"
    version = 3
    [[categories]]
    id = "gambling"
    action = "alert"            # or "block"
    severity = 3
    keywords = "gambling.txt"   # UTF-8, one keyword per line, '#' starts a comment
    fields = ["http.uri", "http.request_body", "dns.query"]   # optional; default: every field
    enabled = true              # optional, default true
    exceptions = "gambling-exceptions.txt"   # optional: phrases that suppress a match inside them
    combinations = "gambling-combos.txt"     # optional: one rule per line, keywords joined by " & "

Every keyword, exception and combination keeps the file and line it came from, so
problems and alerts can name them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal, NamedTuple

from wire.records import RECORDS

# The fields a keyword can be matched in (SCHEMA.md `alert.field`): every record type's content
# fields (wire.records.RECORDS), in the order declared there.
FIELDS: Final = tuple(c.name for m in RECORDS.values() for c in m.content)
Action = Literal["alert", "block"]
ACTIONS: Final = ("alert", "block")


class Phrase(NamedTuple):
    """A keyword or an exception phrase as written, with where it was written (a named tuple:
    immutable and comparable like a frozen dataclass, and made three times faster, which
    counts for a list of a million)."""

    text: str
    file: str  # path relative to the ruleset directory
    line: int  # 1-based


@dataclass(frozen=True)
class Combination:
    """All of `parts` in one message (one field value, or one message body) make a match."""

    parts: tuple[str, ...]
    file: str
    line: int

    @property
    def text(self) -> str:
        return " & ".join(self.parts)


@dataclass
class Category:
    id: str
    action: Action
    severity: int
    keywords: list[Phrase] = field(default_factory=list)
    fields: frozenset[str] = frozenset(FIELDS)  # where its keywords are matched
    enabled: bool = True
    exceptions: list[Phrase] = field(default_factory=list)
    combinations: list[Combination] = field(default_factory=list)


@dataclass
class Ruleset:
    name: str
    version: int
    categories: list[Category] = field(default_factory=list)

    def rule_count(self) -> int:
        return sum(len(c.keywords) + len(c.combinations) for c in self.categories if c.enabled)
