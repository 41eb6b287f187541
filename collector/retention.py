"""Retention: records are kept the legal period, then deleted, except under a legal hold.

What (DESIGN.md "Retention", issue 5): the default period is 180 days (the network logs'
six months); a period under 60 days (the law's minimum for the usage records) is refused
when the collector starts, with the reason. Legal holds — on a unit, an account, a time
range, or a combination — exempt the records they match from deletion; they live in
`holds.json` in the data directory, managed with `edgeaudit-collector holds`. Every
retention pass that deletes anything (and every hold change) is written to the audit log.

The server runs a pass at start and then every `RETENTION_INTERVAL` seconds, in a worker
thread; `edgeaudit-collector retention run` runs one by hand.

Limits: `MAX_HOLDS` holds (a hold list is read on every pass); periods over
`MAX_RETENTION_DAYS` (a century) are refused as mistakes rather than computed into dates
before year 1.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

from collector.auth.audit import AuditLog
from collector.storage.base import ExpireResult, Hold, Storage
from wire.files import write_atomically

DEFAULT_RETENTION_DAYS: Final = 180
MIN_RETENTION_DAYS: Final = 60
MAX_RETENTION_DAYS: Final = 36_525
RETENTION_INTERVAL: Final = 3600.0
MAX_HOLDS: Final = 10_000


class RetentionError(ValueError):
    pass


def check_days(days: int) -> int:
    if days < MIN_RETENTION_DAYS:
        raise RetentionError(f"a retention of {days} days is under the legal minimum of "
                             f"{MIN_RETENTION_DAYS} days (network logs: keep at least 6 months, 180 days)")
    if days > MAX_RETENTION_DAYS:
        raise RetentionError(f"a retention of {days} days is more than a century (at most "
                             f"{MAX_RETENTION_DAYS}); keep records longer with a legal hold")
    return days


class Holds:
    """The legal holds, in a JSON file replaced atomically on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[Hold]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as e:
            # a hold file we cannot read must stop deletion, not be taken as "no holds"
            raise RetentionError(f"{self.path}: cannot read the legal holds: {e}") from None
        if not isinstance(raw, list):
            raise RetentionError(f"{self.path}: not a list of holds")
        return [Hold(unit=h.get("unit"), account=h.get("account"), start=h.get("start"), end=h.get("end"))
                for h in raw]

    def add(self, hold: Hold) -> list[Hold]:
        if all(v is None for v in (hold.unit, hold.account, hold.start, hold.end)):
            raise RetentionError("a hold needs a unit, an account or a time range")
        holds = self.load()
        if len(holds) >= MAX_HOLDS:
            raise RetentionError(f"more than {MAX_HOLDS} holds")
        if hold not in holds:
            holds.append(hold)
            self._save(holds)
        return holds

    def remove(self, hold: Hold) -> list[Hold]:
        holds = self.load()
        if hold not in holds:
            raise RetentionError("no such hold")
        holds.remove(hold)
        self._save(holds)
        return holds

    def _save(self, holds: list[Hold]) -> None:
        write_atomically(self.path, json.dumps([asdict(h) for h in holds], indent=1).encode(), 0o600)


def run_retention(storage: Storage, holds: Holds, audit: AuditLog, days: int,
                  now: float | None = None, actor: str = "system", extra: dict[str, Any] | None = None
                  ) -> ExpireResult:
    """Delete what is older than `days` and not held; audit it (before returning). The
    scheduled pass ("system") is audited when it deleted something; a pass someone asked for
    (another `actor`, with `extra` detail) always is."""
    now = time.time() if now is None else now
    before = now - check_days(days) * 86400.0
    current = holds.load()
    result = storage.expire(before, current)
    if result.deleted or result.days_dropped or actor != "system":
        audit.append(actor, "retention", f"records before {before:.0f}",
                     {"days": days, "deleted": result.deleted, "days_dropped": result.days_dropped,
                      "held": result.held, "holds": [asdict(h) for h in current], **(extra or {})}, "ok")
    return result
