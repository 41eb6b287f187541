"""Every record the agent makes from every corpus capture is one the wire accepts: the spool
validates each record before it keeps it, so a record the wire refuses is a record lost (a long
DNS TXT answer was, until its items were cut to the wire's limit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_no_secrets import CAPTURES, CORPUS, needs_corpus

from agent.capture import CaptureError, open_capture
from agent.pipeline import Pipeline
from wire.errors import ValidationError
from wire.validate import validate_record


@needs_corpus
def test_every_record_of_every_capture_is_valid() -> None:
    assert len(CAPTURES) > 100
    bad: list[str] = []
    records = 0
    for rel in CAPTURES:
        out: list[dict[str, Any]] = []
        p = Pipeline(out.extend)
        try:
            with open_capture(Path(CORPUS / rel)) as cap:
                for batch in cap.batches():
                    p.feed(batch)
        except CaptureError:
            pass  # a damaged capture: what came before the damage is checked all the same
        p.finish()
        records += len(out)
        for r in out:
            try:
                validate_record(r)
            except ValidationError as e:
                bad.append(f"{rel}: {e}")
    assert records > 800
    assert not bad, bad[:10]


