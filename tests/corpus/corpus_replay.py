"""What the corpus tests share: a case's captures run through the real Pipeline, like
``edgeaudit-agent replay`` (in order, as one stream), remembered per set of captures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.capture import open_capture
from agent.pipeline import Pipeline

Record = dict[str, Any]
_records: dict[tuple[Path, ...], list[Record]] = {}


def records_of(traces: tuple[Path, ...]) -> list[Record]:
    """Every record of `traces`, replayed once per test session."""
    if traces not in _records:
        out: list[Record] = []
        p = Pipeline(out.extend)
        for t in traces:
            with open_capture(t) as cap:
                for batch in cap.batches():
                    p.feed(batch)
        p.finish()
        _records[traces] = out
    return _records[traces]
