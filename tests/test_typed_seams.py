"""The seams between the parts are declared, not discovered: the inspector reaches a decoder's
capabilities and the collector its storage's optional methods through types, never by looking
attributes up by name (issue 17). A use that is really needed says why on its line, after
``# by name:``."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_LOOKUP = re.compile(r"\b(getattr|hasattr)\(")


def test_no_undocumented_attribute_lookups_by_name() -> None:
    found = []
    for part in ("agent/flows", "collector"):
        for path in sorted((REPO / part).rglob("*.py")):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if _LOOKUP.search(line) and "# by name:" not in line:
                    found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)
