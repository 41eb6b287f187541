"""What the ingest stage saw, for ``/metrics``: batches and records in, stored, repeated, refused.

Refusals are counted by the reason the agent was answered with (the JSON ``error``), so a
rising ``edgeaudit_ingest_refused_total{reason="..."}`` says which check turns uploads away.
"""

from __future__ import annotations

from collections import Counter


class IngestCounters:
    """What the ingest stage saw: batches and records in, stored, duplicates, refusals by reason."""

    def __init__(self) -> None:
        self.batches = 0
        self.records = 0
        self.stored_batches = 0
        self.stored_records = 0
        self.duplicate_batches = 0
        self.refused: Counter[str] = Counter()

    def prometheus(self) -> list[str]:
        lines = [
            "# TYPE edgeaudit_ingest_batches_total counter",
            f"edgeaudit_ingest_batches_total {self.batches}",
            "# TYPE edgeaudit_ingest_records_total counter",
            f"edgeaudit_ingest_records_total {self.records}",
            "# TYPE edgeaudit_ingest_stored_batches_total counter",
            f"edgeaudit_ingest_stored_batches_total {self.stored_batches}",
            "# TYPE edgeaudit_ingest_stored_records_total counter",
            f"edgeaudit_ingest_stored_records_total {self.stored_records}",
            "# TYPE edgeaudit_ingest_duplicate_batches_total counter",
            f"edgeaudit_ingest_duplicate_batches_total {self.duplicate_batches}",
            "# TYPE edgeaudit_ingest_refused_total counter",
        ]
        for reason, n in sorted(self.refused.items()):
            lines.append(f'edgeaudit_ingest_refused_total{{reason="{reason}"}} {n}')
        return lines
