"""Units: each agent's registration profile (备案) and its compliance status.

What (issue 5 "Units and rulesets"): an agent uploads its unit's profile
(`PUT /api/v1/units/self`, agent token; `wire.unit.validate_unit_profile`); operators list the
units (`GET /api/v1/units`) with the profile, when it was last updated, and per agent of the
unit: when it last uploaded records, and its status — `online` when it uploaded within
`ONLINE_WITHIN` seconds, `silent` after that, `revoked` when its token was revoked. Ingest
calls `seen(agent, unit, records)` after each committed batch, which also counts the unit's
records per hour (`hourly`, the dashboard's chart).

Storage: one small SQLite file (`units.sqlite`, WAL) in the data directory.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

#: What the units listing shows of an agent's newest `stats` record.
HEALTH_FIELDS: Final = ("ts", "spool_records", "spool_bytes", "upload_lag_s", "ruleset_version",
                        "kernel_drops", "records_dropped", "quarantined_records")
ONLINE_WITHIN: Final = 300.0  # seconds since the last batch for an agent to count as online

_SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (unit TEXT PRIMARY KEY, profile TEXT NOT NULL, agent TEXT NOT NULL,
                                     updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS seen (agent TEXT PRIMARY KEY, unit TEXT NOT NULL, last_batch REAL NOT NULL);
-- per unit and record type: records per UTC day of their ts, and the latest ts (compliance evidence)
CREATE TABLE IF NOT EXISTS daily (unit TEXT NOT NULL, day INTEGER NOT NULL, type TEXT NOT NULL,
                                  records INTEGER NOT NULL, PRIMARY KEY (unit, day, type)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS latest (unit TEXT NOT NULL, type TEXT NOT NULL, ts REAL NOT NULL,
                                   PRIMARY KEY (unit, type)) WITHOUT ROWID;
-- each agent's newest `stats` record (spool, upload lag, ruleset version, drops), JSON
CREATE TABLE IF NOT EXISTS agent_stats (agent TEXT PRIMARY KEY, ts REAL NOT NULL, stats TEXT NOT NULL);
-- the ruleset bundle (its ETag) each agent last fetched or confirmed, and when
CREATE TABLE IF NOT EXISTS rulesets (agent TEXT PRIMARY KEY, etag TEXT NOT NULL, fetched REAL NOT NULL);
-- records stored per unit and hour (hour = unix seconds // 3600), for the dashboard's chart
CREATE TABLE IF NOT EXISTS hourly (unit TEXT NOT NULL, hour INTEGER NOT NULL, records INTEGER NOT NULL,
                                   PRIMARY KEY (unit, hour)) WITHOUT ROWID;
"""


class Units:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def put_profile(self, unit: str, agent: str, profile: dict[str, Any], now: float | None = None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO profiles(unit, profile, agent, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(unit) DO UPDATE SET profile=excluded.profile, agent=excluded.agent, "
                "updated=excluded.updated",
                (unit, json.dumps(profile, ensure_ascii=False), agent, time.time() if now is None else now))

    def seen(self, agent: str, unit: str, records: int = 0,
             summary: Mapping[str, tuple[int, float]] | None = None, stats: dict[str, Any] | None = None,
             now: float | None = None) -> None:
        """``agent`` of ``unit`` committed a batch of ``records`` new records (0: a repeat),
        ``summary`` giving per record type their count and latest ts (the day counted is the
        latest record's: a batch spans seconds)."""
        now = time.time() if now is None else now
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO seen(agent, unit, last_batch) VALUES (?, ?, ?) "
                "ON CONFLICT(agent) DO UPDATE SET unit=excluded.unit, last_batch=excluded.last_batch",
                (agent, unit, now))
            if records:
                self._db.execute(
                    "INSERT INTO hourly(unit, hour, records) VALUES (?, ?, ?) "
                    "ON CONFLICT(unit, hour) DO UPDATE SET records = records + excluded.records",
                    (unit, int(now // 3600), records))
            if stats is not None:
                self._db.execute(
                    "INSERT INTO agent_stats(agent, ts, stats) VALUES (?, ?, ?) ON CONFLICT(agent) DO UPDATE "
                    "SET ts = excluded.ts, stats = excluded.stats WHERE excluded.ts >= agent_stats.ts",
                    (agent, float(stats["ts"]), json.dumps(stats, ensure_ascii=False)))
            for rtype, (n, latest) in (summary or {}).items():
                self._db.execute(
                    "INSERT INTO daily(unit, day, type, records) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(unit, day, type) DO UPDATE SET records = records + excluded.records",
                    (unit, int(latest // 86400), rtype, n))
                self._db.execute(
                    "INSERT INTO latest(unit, type, ts) VALUES (?, ?, ?) "
                    "ON CONFLICT(unit, type) DO UPDATE SET ts = max(ts, excluded.ts)", (unit, rtype, latest))
            self._db.execute("COMMIT")

    def evidence(self, unit: str, first_day: int, last_day: int
                 ) -> tuple[dict[str, float], dict[str, dict[int, int]]]:
        """For ``unit``: the latest ts per record type, and per type its records per day
        (UTC day numbers ``first_day``..``last_day``; days without any are absent)."""
        with self._lock:
            latest = dict(self._db.execute("SELECT type, ts FROM latest WHERE unit = ?", (unit,)).fetchall())
            days: dict[str, dict[int, int]] = {}
            for day, rtype, n in self._db.execute(
                    "SELECT day, type, records FROM daily WHERE unit = ? AND day BETWEEN ? AND ?",
                    (unit, first_day, last_day)):
                days.setdefault(rtype, {})[day] = n
        return latest, days

    def ruleset_fetched(self, agent: str, etag: str, now: float | None = None) -> None:
        with self._lock:
            self._db.execute("INSERT INTO rulesets(agent, etag, fetched) VALUES (?, ?, ?) ON CONFLICT(agent) "
                             "DO UPDATE SET etag = excluded.etag, fetched = excluded.fetched",
                             (agent, etag, time.time() if now is None else now))

    def rulesets(self) -> dict[str, tuple[str, float]]:
        """Agent -> (ETag of the bundle it last fetched or confirmed, when)."""
        with self._lock:
            return {a: (e, f) for a, e, f in self._db.execute("SELECT agent, etag, fetched FROM rulesets")}

    def profile(self, unit: str) -> tuple[dict[str, Any] | None, float | None]:
        """The unit's registration profile and when it was last uploaded (None, None: never)."""
        with self._lock:
            row = self._db.execute("SELECT profile, updated FROM profiles WHERE unit = ?", (unit,)).fetchone()
        return (None, None) if row is None else (json.loads(row[0]), float(row[1]))

    def hourly(self, hours: int = 24, now: float | None = None) -> list[dict[str, Any]]:
        """Records stored per hour (when they arrived) over the last ``hours``, every hour
        listed (0 when none), oldest first: ``{"hour": unix seconds, "records", "units": {unit: n}}``."""
        now = time.time() if now is None else now
        last = int(now // 3600)
        first = last - hours + 1
        out = [{"hour": h * 3600, "records": 0, "units": {}} for h in range(first, last + 1)]
        with self._lock:
            rows = self._db.execute("SELECT unit, hour, records FROM hourly WHERE hour >= ? AND hour <= ?",
                                    (first, last)).fetchall()
        for unit, hour, n in rows:
            slot = out[hour - first]
            slot["records"] += n
            slot["units"][unit] = n
        return out

    def listing(self, agents: list[tuple[str, str, bool]], now: float | None = None) -> list[dict[str, Any]]:
        """Every unit known by a profile or an agent: `agents` is (name, unit, revoked) per agent."""
        now = time.time() if now is None else now
        with self._lock:
            profiles = {u: (json.loads(p), upd) for u, p, upd in
                        self._db.execute("SELECT unit, profile, updated FROM profiles")}
            last = {a: t for a, t in self._db.execute("SELECT agent, last_batch FROM seen")}
            health = {a: json.loads(j) for a, j in self._db.execute("SELECT agent, stats FROM agent_stats")}
        units: dict[str, dict[str, Any]] = {}
        for unit, (profile, updated) in profiles.items():
            units[unit] = {"unit": unit, "profile": profile, "profile_updated": updated, "agents": []}
        for name, unit, revoked in agents:
            u = units.setdefault(unit, {"unit": unit, "profile": None, "profile_updated": None, "agents": []})
            t = last.get(name)
            status = "revoked" if revoked else ("online" if t is not None and now - t <= ONLINE_WITHIN
                                                else "silent")
            st = health.get(name)
            u["agents"].append({"agent": name, "last_upload": t, "status": status,
                                "health": None if st is None else {k: st.get(k) for k in HEALTH_FIELDS}})
        for u in units.values():
            times = [a["last_upload"] for a in u["agents"] if a["last_upload"] is not None]
            u["last_upload"] = max(times) if times else None
        return [units[k] for k in sorted(units)]

    def close(self) -> None:
        self._db.close()
