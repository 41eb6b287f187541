"""Which record times a batch may carry: the collector's clock and the agent's backup bound them.

What: ``IngestLimits(max_future_s, max_span_days)`` and ``check_times(lo, hi, now)``, which
returns why a batch whose records' ``ts`` run from ``lo`` to ``hi`` is refused (None: it is
not). ``POST /api/v1/batches`` answers such a batch 422 (``collector.ingest.batches``);
``serve --max-future-seconds/--max-batch-days`` set them (``seconds_arg``, ``days_arg``).

Why: every UTC day a batch touches is a file (SQLite: one per day and family) or a partition
(ClickHouse). One batch of 1,500 records on 1,500 days made 1,500 files in 11.6 s, and
records dated up to 2100 (the wire format's bound for a misread clock) would never be
reached by retention. So:
- ``max_future_s`` (default ``DEFAULT_MAX_FUTURE_S``, one day): records come from the agent's
  packet clock; a clock a little ahead (no NTP, a time zone set wrong) is tolerated, a record
  more than this ahead of the collector's clock is refused. The agent keeps the batch and says
  why, and fixing its clock is what helps.
- ``max_span_days`` (default: the collector's retention days): a batch is cut from records
  that follow each other in the agent's spool, which keeps them at most its backup period
  (``keep_days``: at least 60 by law, 180 in ``deploy/agent.toml``, and not beyond what the
  center keeps), so an honest batch spans minutes, or after an outage at most that period.
  The collector's retention is the default bound because it is the longest a center keeps a
  record: a batch spanning more holds records retention deletes as they arrive. With the
  future bound this caps the days one batch may touch at ``max_span_days + 2``.

Limits: a refused batch is refused whole (its good records too): the uploader quarantines it
(a 4xx it cannot fix by retrying), which is what an operator must look at. Records in the past
are not refused (replayed captures are old), only spread out.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

#: Seconds a record's ts may be ahead of the collector's clock (agents' clock skew).
DEFAULT_MAX_FUTURE_S: Final = 86_400.0
_DAY: Final = 86_400.0


@dataclass(frozen=True, slots=True)
class IngestLimits:
    """How far ahead of the collector's clock, and over how many days, a batch's records may lie."""

    max_future_s: float = DEFAULT_MAX_FUTURE_S
    max_span_days: int = 180

    def __post_init__(self) -> None:
        if not self.max_future_s >= 0:
            raise ValueError(f"max_future_s must be 0 or more seconds, got {self.max_future_s!r}")
        if self.max_span_days < 1:
            raise ValueError(f"max_span_days must be 1 or more, got {self.max_span_days}")


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_times(limits: IngestLimits, lo: float, hi: float, now: float) -> tuple[str, str] | None:
    """(error, detail) for a batch whose records run from ``lo`` to ``hi`` (ts), else None."""
    if hi > now + limits.max_future_s:
        return ("records_in_future",
                f"a record is dated {_when(hi)}, more than {limits.max_future_s:g} s after the"
                f" collector's clock ({_when(now)}): check the agent's clock")
    if hi - lo > limits.max_span_days * _DAY:
        return ("batch_span_too_long",
                f"the records span {(hi - lo) / _DAY:.1f} days ({_when(lo)} to {_when(hi)}), more than"
                f" the {limits.max_span_days} days a batch may span (the agent's backup period)")
    return None


def seconds_arg(text: str) -> float:
    """``serve --max-future-seconds``: a number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"wants a number of seconds, 0 or more, not {text!r}")
    return value


def days_arg(text: str) -> int:
    """``serve --max-batch-days``: a whole number of days, 1 or more."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"wants a whole number of days, 1 or more, not {text!r}")
    return int(text)
