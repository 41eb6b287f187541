"""What a running agent says about itself: one small JSON status file per process.

What: every process of a running agent (the supervisor and each capture worker) keeps
``<spool dir>/status/<name>.json`` current with ``StatusFile.write(doc)``: its pid, start and
update times, counters, records produced by type and the time of the last record of each
type, and whatever its part knows (kernel drops, NAT events, ruleset version, last upload).
``read_status(dir)`` returns every process's document, marking those not updated for
``STALE_AFTER`` seconds or whose pid is gone as not running.

Why files: ``edgeaudit-agent selfcheck`` (the compliance self-check receipt) must show
evidence from the *running* agent without talking to it, and must still say something useful
when the agent is down (when it last ran, what it had done). Files written atomically
(``wire.files.write_atomically``) are readable at any moment by any tool, need no socket, and
survive the agent.

Limits: counters are per process since its start; the supervisor sums the workers' for the
``stats`` record. Documents are small (tens of keys); ``MAX_STATUS_BYTES`` bounds what is read.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Final

from wire.files import write_atomically

#: A status not rewritten for this long (seconds) belongs to a process that is not running.
STALE_AFTER: Final = 90.0
#: How often processes rewrite their status (seconds).
WRITE_EVERY: Final = 5.0
MAX_STATUS_BYTES: Final = 1 << 20


def status_dir(spool_dir: Path) -> Path:
    return spool_dir / "status"


class StatusFile:
    """One process's status document, rewritten whole on each ``write``."""

    def __init__(self, spool_dir: Path, name: str) -> None:
        self.dir = status_dir(spool_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f"{name}.json"
        self.started = time.time()

    def write(self, doc: dict[str, Any]) -> None:
        full = {"pid": os.getpid(), "started": self.started, "updated": time.time(), **doc}
        write_atomically(self.path, json.dumps(full, sort_keys=True).encode(), 0o640)


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def read_status(spool_dir: Path, now: float | None = None) -> dict[str, dict[str, Any]]:
    """Every process's status by name, each with ``running`` (fresh and its pid alive)."""
    now = time.time() if now is None else now
    out: dict[str, dict[str, Any]] = {}
    d = status_dir(spool_dir)
    if not d.is_dir():
        return out
    for p in sorted(d.glob("*.json")):
        try:
            with p.open("rb") as f:
                doc = json.loads(f.read(MAX_STATUS_BYTES))
        except (OSError, ValueError):
            continue  # being replaced, or damaged: the next write fixes it
        if not isinstance(doc, dict):
            continue
        updated = doc.get("updated")
        fresh = isinstance(updated, (int, float)) and now - updated <= STALE_AFTER
        doc["running"] = bool(fresh and _alive(doc.get("pid")))
        out[p.stem] = doc
    return out


def merge_counts(docs: list[dict[str, Any]], key: str) -> dict[str, int]:
    """The per-type (or per-counter) dict ``key`` of several documents, summed."""
    total: dict[str, int] = {}
    for doc in docs:
        part = doc.get(key)
        if isinstance(part, dict):
            for k, v in part.items():
                if isinstance(v, int):
                    total[k] = total.get(k, 0) + v
    return total


def merge_latest(docs: list[dict[str, Any]], key: str) -> dict[str, float]:
    """The per-type "last seen" dict ``key`` of several documents: the latest of each."""
    latest: dict[str, float] = {}
    for doc in docs:
        part = doc.get(key)
        if isinstance(part, dict):
            for k, v in part.items():
                if isinstance(v, (int, float)) and v > latest.get(k, float("-inf")):
                    latest[k] = float(v)
    return latest
