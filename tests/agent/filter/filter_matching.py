"""Helpers the filter tests share: keywords -> one PatternSet, and what it finds in a haystack."""

from __future__ import annotations

from agent.filter.forms import keyword_patterns
from agent.filter.normalize import body_views
from agent.filter.patterns import PatternSet

Hit = tuple[str, str, str]  # (keyword, alert.encoding, view: "raw" or the body_views transform)


class Matcher:
    """Every form of every keyword in one automaton, as the filter will hold them."""

    def __init__(self, keywords: list[str], engine: str = "auto") -> None:
        self.owner: list[tuple[str, str]] = []
        patterns: list[bytes] = []
        exact: list[tuple[int, ...]] = []
        for keyword in keywords:
            for pattern, encoding, positions in keyword_patterns(keyword):
                patterns.append(pattern)
                exact.append(positions)
                self.owner.append((keyword, encoding))
        self.patterns = PatternSet(patterns, exact, engine=engine)

    def hits(self, haystack: bytes, view: str = "raw") -> set[Hit]:
        """What matches in `haystack` (as sent: the matcher ignores ASCII case itself)."""
        return {(*self.owner[pid], view) for _, pid in self.patterns.scan(haystack)}

    def body_hits(
        self, body: bytes, content_type: str | None, transfer_encoding: str | None = None
    ) -> set[Hit]:
        """Hits in the raw body and in each of its views."""
        out = self.hits(body)
        for view, transform in body_views(body, content_type, transfer_encoding):
            out |= {(*self.owner[pid], transform) for _, pid in self.patterns.scan(view)}
        return out

    def keywords_in(self, haystack: bytes) -> set[str]:
        return {keyword for keyword, _, _ in self.hits(haystack)}
