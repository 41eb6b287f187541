"""The portal's state file (``<spool>/portal.sqlite``, mode 0600): what must outlive a restart.

Tables:
- ``meta``: the portal's HMAC key (random, made once) and the next guest number;
- ``guests``: account (``guest-NNNNNN``), method, keyed hash of the phone number (so the same
  number keeps its account), valid until, who registered it at the desk;
- ``devices``: MAC -> account and until when the device is let back in without registering
  (a returning guest's device is recognised within the registration's validity);
- ``sessions``: admissions (session id, account, MAC, IP, since, hard end, ended);
- ``codes``: per keyed phone hash, the keyed hash of the one-time code, its expiry, tries left;
- ``vouchers``: keyed hash of each voucher code, its account, validity and devices used;
- ``events``: (kind, key, ts) rows counted over sliding windows for the send and try limits.

What it never holds: names, ID numbers, phone numbers, codes, vouchers or passwords in clear
(DESIGN.md standard 11; the issue: registration data stays in the spool only). The
``registration`` record, with those, goes to the spool and the collector.

One connection, used under the service's lock (the HTTP handlers run on one event loop thread
and the sweep on another): SQLite in WAL mode, ``synchronous=FULL``: an admission recorded is
an admission that gets its logout after a crash.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Final

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS guests (account TEXT PRIMARY KEY, method TEXT NOT NULL, phone_key TEXT,
    created REAL NOT NULL, valid_until REAL NOT NULL, desk_user TEXT);
CREATE INDEX IF NOT EXISTS guests_phone ON guests(phone_key);
CREATE TABLE IF NOT EXISTS devices (mac TEXT PRIMARY KEY, account TEXT NOT NULL, valid_until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, account TEXT NOT NULL, mac TEXT NOT NULL,
    ip TEXT NOT NULL, since REAL NOT NULL, hard_end REAL NOT NULL, ended REAL);
CREATE INDEX IF NOT EXISTS sessions_open ON sessions(ended, ip);
CREATE TABLE IF NOT EXISTS codes (phone_key TEXT PRIMARY KEY, code_key TEXT NOT NULL, expires REAL NOT NULL,
    tries_left INTEGER NOT NULL, sent REAL NOT NULL);
CREATE TABLE IF NOT EXISTS vouchers (code_key TEXT PRIMARY KEY, account TEXT NOT NULL,
    valid_until REAL NOT NULL, devices INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS events (kind TEXT NOT NULL, key TEXT NOT NULL, ts REAL NOT NULL);
CREATE INDEX IF NOT EXISTS events_key ON events(kind, key, ts);
"""


@dataclass(frozen=True)
class Session:
    id: str
    account: str
    mac: str
    ip: str
    since: float
    hard_end: float


class PortalStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # personal-adjacent: owner only
        os.close(fd)
        os.chmod(path, 0o600)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        row = self.db.execute("SELECT v FROM meta WHERE k='key'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('key', ?)", (secrets.token_bytes(32),))
            row = self.db.execute("SELECT v FROM meta WHERE k='key'").fetchone()
        self.key: bytes = bytes(row[0])

    def close(self) -> None:
        self.db.close()

    # -- guests and devices --

    def new_account(self, method: str, phone_key: str | None, now: float, valid_until: float,
                    desk_user: str | None) -> str:
        with self.db:
            row = self.db.execute("SELECT v FROM meta WHERE k='next_guest'").fetchone()
            n = int(row[0]) if row is not None else 1
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('next_guest', ?)", (str(n + 1),))
            account = f"guest-{n:06d}"
            self.db.execute("INSERT INTO guests VALUES (?,?,?,?,?,?)",
                            (account, method, phone_key, now, valid_until, desk_user))
        return account

    def account_of_phone(self, phone_key: str) -> str | None:
        row = self.db.execute("SELECT account FROM guests WHERE phone_key=? ORDER BY created DESC LIMIT 1",
                              (phone_key,)).fetchone()
        return str(row[0]) if row else None

    def extend_guest(self, account: str, valid_until: float) -> None:
        self.db.execute("UPDATE guests SET valid_until=max(valid_until, ?) WHERE account=?",
                        (valid_until, account))

    def remember_device(self, mac: str, account: str, valid_until: float) -> None:
        self.db.execute("INSERT OR REPLACE INTO devices VALUES (?,?,?)", (mac, account, valid_until))

    def forget_device(self, mac: str) -> None:
        self.db.execute("DELETE FROM devices WHERE mac=?", (mac,))

    def device(self, mac: str, now: float) -> str | None:
        row = self.db.execute("SELECT account FROM devices WHERE mac=? AND valid_until>?",
                              (mac, now)).fetchone()
        return str(row[0]) if row else None

    def device_valid_until(self, mac: str) -> float:
        row = self.db.execute("SELECT valid_until FROM devices WHERE mac=?", (mac,)).fetchone()
        return float(row[0]) if row else 0.0

    def devices_of(self, account: str, now: float) -> int:
        row = self.db.execute("SELECT count(*) FROM devices WHERE account=? AND valid_until>?",
                              (account, now)).fetchone()
        return int(row[0])

    # -- sessions --

    def open_session(self, s: Session) -> None:
        self.db.execute("INSERT INTO sessions VALUES (?,?,?,?,?,?,NULL)",
                        (s.id, s.account, s.mac, s.ip, s.since, s.hard_end))

    def end_session(self, sid: str, ts: float) -> None:
        self.db.execute("UPDATE sessions SET ended=? WHERE id=? AND ended IS NULL", (ts, sid))

    def open_sessions(self) -> list[Session]:
        rows = self.db.execute("SELECT id, account, mac, ip, since, hard_end FROM sessions "
                               "WHERE ended IS NULL")
        return [Session(*r) for r in rows]

    # -- codes --

    def put_code(self, phone_key: str, code_key: str, expires: float, tries: int, now: float) -> None:
        self.db.execute("INSERT OR REPLACE INTO codes VALUES (?,?,?,?,?)",
                        (phone_key, code_key, expires, tries, now))

    def code(self, phone_key: str) -> tuple[str, float, int, float] | None:
        row = self.db.execute("SELECT code_key, expires, tries_left, sent FROM codes WHERE phone_key=?",
                              (phone_key,)).fetchone()
        return (str(row[0]), float(row[1]), int(row[2]), float(row[3])) if row else None

    def spend_try(self, phone_key: str) -> None:
        self.db.execute("UPDATE codes SET tries_left=tries_left-1 WHERE phone_key=?", (phone_key,))

    def drop_code(self, phone_key: str) -> None:
        self.db.execute("DELETE FROM codes WHERE phone_key=?", (phone_key,))

    # -- vouchers --

    def put_voucher(self, code_key: str, account: str, valid_until: float) -> None:
        self.db.execute("INSERT INTO vouchers VALUES (?,?,?,0)", (code_key, account, valid_until))

    def voucher(self, code_key: str) -> tuple[str, float, int] | None:
        row = self.db.execute("SELECT account, valid_until, devices FROM vouchers WHERE code_key=?",
                              (code_key,)).fetchone()
        return (str(row[0]), float(row[1]), int(row[2])) if row else None

    def use_voucher(self, code_key: str) -> None:
        self.db.execute("UPDATE vouchers SET devices=devices+1 WHERE code_key=?", (code_key,))

    # -- sliding-window counts --

    def note(self, kind: str, key: str, ts: float) -> None:
        self.db.execute("INSERT INTO events VALUES (?,?,?)", (kind, key, ts))

    def count(self, kind: str, key: str, since: float) -> int:
        row = self.db.execute("SELECT count(*) FROM events WHERE kind=? AND key=? AND ts>=?",
                              (kind, key, since)).fetchone()
        return int(row[0])

    def last(self, kind: str, key: str) -> float | None:
        row = self.db.execute("SELECT max(ts) FROM events WHERE kind=? AND key=?", (kind, key)).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def prune(self, now: float) -> None:
        """Forget what no limit or recognition can use any more."""
        with self.db:
            self.db.execute("DELETE FROM events WHERE ts<?", (now - 86400,))
            self.db.execute("DELETE FROM codes WHERE expires<?", (now,))
            self.db.execute("DELETE FROM devices WHERE valid_until<?", (now,))
            self.db.execute("DELETE FROM vouchers WHERE valid_until<?", (now,))
            self.db.execute("DELETE FROM sessions WHERE ended IS NOT NULL AND ended<?", (now - 86400,))
