"""Users, agent tokens and API tokens of the collector, in one SQLite file.

What: `Accounts(path)` keeps
  - users (name, role in ROLES, disabled flag, scrypt password hash),
  - agents (name, unit, SHA-256 of the agent's bearer token, revoked flag),
  - personal API tokens of users (SHA-256 of the token, revoked flag).

Why this way:
  - Passwords are chosen by the collector (`add_user` returns a random one,
    printed once by `edgeaudit-collector users add`), but may later be typed,
    copied or reused, so they get a memory-hard KDF (scrypt, `hashlib.scrypt`).
    The parameters (n, r, p) and the salt are stored with each hash, so the
    cost can be raised later: a successful login with old parameters rehashes.
  - `verify_password` runs the KDF even for an unknown or disabled user, so the
    response time does not tell which user names exist.
  - Tokens are `secrets.token_urlsafe(32)` (256 bits): nobody can guess or
    brute-force them, so a fast SHA-256 is enough to make a stolen database
    useless, and it lets every request be authenticated with an index lookup
    instead of a ~50 ms KDF run (which would also be a denial-of-service lever).
  - Secrets never leave this module except as the one-time return value of
    `add_user` / `add_agent` / `add_api_token`; nothing here logs.

Limits:
  - Single SQLite file (WAL, so readers do not block the writer); one
    connection shared behind a lock, enough for the collector's login and
    token-check rate, not meant for many processes writing at once.
  - No password change by the user, no token expiry: revocation is explicit
    (`revoke_agent`, `revoke_api_tokens`). Failed logins are throttled by the HTTP layer
    (`collector.auth.throttle`), which also runs `verify_password` in a pool of its own
    (`collector.auth.password_pool`); this module counts nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Final

ROLES: Final = ("operator", "auditor", "admin")

# scrypt cost: n=2**14, r=8 needs 16 MiB and ~50 ms per hash (OWASP's
# minimum for scrypt); p=1 since the server runs logins in parallel anyway.
SCRYPT_N: Final = 2**14
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
SCRYPT_DKLEN: Final = 32
SALT_BYTES: Final = 16
# scrypt needs 128*n*r*p bytes; OpenSSL refuses above maxmem (default 32 MiB),
# so allow twice the need and raised parameters keep working.
SCRYPT_MEM_FACTOR: Final = 2 * 128
PASSWORD_SCHEME: Final = "scrypt"

# 18 random bytes = 24 URL-safe characters, 144 bits: unguessable, still typable.
PASSWORD_BYTES: Final = 18
TOKEN_BYTES: Final = 32
# Prefixes tell the token kinds apart (and make leaked tokens easy to grep for).
AGENT_TOKEN_PREFIX: Final = "eaa_"
API_TOKEN_PREFIX: Final = "eau_"
SESSION_PREFIX: Final = "eas_"
#: A web UI session ends after this long without a request, and this long after its login.
SESSION_IDLE_S: Final = 30 * 60
SESSION_MAX_S: Final = 12 * 3600

NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    password_hash TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS agents (
    name TEXT PRIMARY KEY,
    unit TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    revoked INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_tokens (
    token_sha256 TEXT PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users(name),
    revoked INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL
);
-- web UI sessions (the cookie holds the token; only its hash is kept), unix seconds
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 TEXT PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users(name),
    started REAL NOT NULL,
    seen REAL NOT NULL
);
"""


class AccountError(ValueError):
    """A refused account operation: duplicate or unknown name, unknown role."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    disabled: bool


@dataclass(frozen=True)
class Agent:
    name: str
    unit: str
    revoked: bool
    created: datetime


@dataclass(frozen=True)
class _ScryptHash:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def encode(self) -> str:
        salt = base64.b64encode(self.salt).decode("ascii")
        digest = base64.b64encode(self.digest).decode("ascii")
        return f"{PASSWORD_SCHEME}${self.n}${self.r}${self.p}${salt}${digest}"

    @staticmethod
    def decode(text: str) -> _ScryptHash:
        scheme, n, r, p, salt, digest = text.split("$")
        if scheme != PASSWORD_SCHEME:
            raise AccountError(f"unknown password hash scheme {scheme!r}")
        return _ScryptHash(int(n), int(r), int(p), base64.b64decode(salt), base64.b64decode(digest))

    def is_current(self) -> bool:
        return (self.n, self.r, self.p) >= (SCRYPT_N, SCRYPT_R, SCRYPT_P) and len(self.salt) >= SALT_BYTES


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=SCRYPT_MEM_FACTOR * n * r * p,
        dklen=SCRYPT_DKLEN,
    )


def _hash_password(password: str) -> _ScryptHash:
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return _ScryptHash(SCRYPT_N, SCRYPT_R, SCRYPT_P, salt, digest)


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _check_name(name: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise AccountError(f"invalid name {name!r} (letters, digits, . _ @ -, at most 64)")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r} (one of {', '.join(ROLES)})")


class Accounts:
    """The account store in one SQLite file; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        # check_same_thread=False: the HTTP server's threads share this
        # connection, serialised by self._lock.
        self._conn = sqlite3.connect(path, check_same_thread=False)
        self._lock = threading.Lock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        with self._conn:
            self._conn.executescript(_SCHEMA)
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        # A fixed, valid hash to burn the same KDF time on for unknown users.
        self._dummy = _hash_password(secrets.token_urlsafe(PASSWORD_BYTES))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Accounts:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- users ---------------------------------------------------------------

    def add_user(self, name: str, role: str) -> str:
        """Create a user; return its generated password (shown once, never stored)."""
        _check_name(name)
        _check_role(role)
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        encoded = _hash_password(password).encode()
        with self._lock, self._conn:
            try:
                self._conn.execute(
                    "INSERT INTO users (name, role, password_hash, created) VALUES (?, ?, ?, ?)",
                    (name, role, encoded, _now()),
                )
            except sqlite3.IntegrityError:
                raise AccountError(f"user {name!r} exists") from None
        return password

    def verify_password(self, name: str, password: str) -> User | None:
        """The user if `password` is theirs and they are enabled, else None.

        The KDF runs whether or not the user exists, so timing does not reveal
        user names; the digest comparison is constant-time.
        """
        with self._lock:
            row = self._conn.execute(
                "SELECT role, disabled, password_hash FROM users WHERE name = ?", (name,)
            ).fetchone()
        stored = _ScryptHash.decode(row[2]) if row is not None else self._dummy
        candidate = _scrypt(password, stored.salt, stored.n, stored.r, stored.p)
        matches = hmac.compare_digest(candidate, stored.digest)
        if row is None or not matches or row[1]:
            return None
        if not stored.is_current():
            # Cost was raised since this hash was made: upgrade it now that we
            # know the password.
            with self._lock, self._conn:
                self._conn.execute(
                    "UPDATE users SET password_hash = ? WHERE name = ?",
                    (_hash_password(password).encode(), name),
                )
        return User(name, str(row[0]), False)

    def set_role(self, name: str, role: str) -> None:
        _check_role(role)
        self._update_user(name, "role", role)

    def disable_user(self, name: str) -> None:
        """Disable a user (kept, for the audit log's sake); their API tokens stop working too."""
        self._update_user(name, "disabled", 1)

    def _update_user(self, name: str, column: str, value: str | int) -> None:
        # column is one of our literals, never caller input.
        with self._lock, self._conn:
            cur = self._conn.execute(f"UPDATE users SET {column} = ? WHERE name = ?", (value, name))
        if cur.rowcount == 0:
            raise AccountError(f"no user {name!r}")

    def get_user(self, name: str) -> User | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT name, role, disabled FROM users WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else User(row[0], row[1], bool(row[2]))

    def list_users(self) -> list[User]:
        with self._lock:
            rows = self._conn.execute("SELECT name, role, disabled FROM users ORDER BY name").fetchall()
        return [User(r[0], r[1], bool(r[2])) for r in rows]

    # -- agents --------------------------------------------------------------

    def add_agent(self, name: str, unit: str) -> str:
        """Register an agent of `unit`; return its bearer token (shown once, never stored)."""
        _check_name(name)
        if not unit:
            raise AccountError("unit must not be empty")
        token = AGENT_TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
        with self._lock, self._conn:
            try:
                self._conn.execute(
                    "INSERT INTO agents (name, unit, token_sha256, created) VALUES (?, ?, ?, ?)",
                    (name, unit, _token_digest(token), _now()),
                )
            except sqlite3.IntegrityError:
                raise AccountError(f"agent {name!r} exists") from None
        return token

    def agent_for_token(self, token: str) -> Agent | None:
        """The agent holding `token`, or None when unknown or revoked.

        Looking up by the token's SHA-256 through an index is not a timing
        leak worth closing: at most it reveals a prefix of a hash whose
        preimage is a 256-bit random string.
        """
        if not token.startswith(AGENT_TOKEN_PREFIX):
            return None
        with self._lock:
            row = self._conn.execute(
                "SELECT name, unit, revoked, created FROM agents WHERE token_sha256 = ?",
                (_token_digest(token),),
            ).fetchone()
        if row is None or row[2]:
            return None
        return Agent(row[0], row[1], False, datetime.fromisoformat(row[3]))

    def revoke_agent(self, name: str) -> None:
        """Revoke an agent's token for good (register a new agent to replace it)."""
        with self._lock, self._conn:
            cur = self._conn.execute("UPDATE agents SET revoked = 1 WHERE name = ?", (name,))
        if cur.rowcount == 0:
            raise AccountError(f"no agent {name!r}")

    def list_agents(self) -> list[Agent]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, unit, revoked, created FROM agents ORDER BY name"
            ).fetchall()
        return [Agent(r[0], r[1], bool(r[2]), datetime.fromisoformat(r[3])) for r in rows]

    # -- personal API tokens ---------------------------------------------------

    def add_api_token(self, user: str) -> str:
        """A new API token acting as `user` (shown once, never stored)."""
        token = API_TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
        with self._lock, self._conn:
            if self._conn.execute("SELECT 1 FROM users WHERE name = ?", (user,)).fetchone() is None:
                raise AccountError(f"no user {user!r}")
            self._conn.execute(
                "INSERT INTO api_tokens (token_sha256, user, created) VALUES (?, ?, ?)",
                (_token_digest(token), user, _now()),
            )
        return token

    def user_for_api_token(self, token: str) -> User | None:
        """The (enabled) user an unrevoked API token belongs to, else None."""
        if not token.startswith(API_TOKEN_PREFIX):
            return None
        with self._lock:
            row = self._conn.execute(
                "SELECT u.name, u.role, u.disabled FROM api_tokens t JOIN users u ON u.name = t.user"
                " WHERE t.token_sha256 = ? AND t.revoked = 0",
                (_token_digest(token),),
            ).fetchone()
        if row is None or row[2]:
            return None
        return User(row[0], row[1], False)

    # -- web UI sessions ---------------------------------------------------------

    def add_session(self, user: str, now: float | None = None) -> str:
        """A new session token for `user` (for the UI's cookie; only its hash is stored)."""
        now = time.time() if now is None else now
        token = SESSION_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
        with self._lock, self._conn:
            # ended sessions go as new ones start: the table holds only live ones (and a few)
            self._conn.execute("DELETE FROM sessions WHERE seen < ? OR started < ?",
                               (now - SESSION_IDLE_S, now - SESSION_MAX_S))
            self._conn.execute("INSERT INTO sessions (token_sha256, user, started, seen) VALUES (?, ?, ?, ?)",
                               (_token_digest(token), user, now, now))
        return token

    def user_for_session(self, token: str, now: float | None = None) -> User | None:
        """The (enabled) user of a live session, which this request keeps alive; else None."""
        if not token.startswith(SESSION_PREFIX):
            return None
        now = time.time() if now is None else now
        digest = _token_digest(token)
        with self._lock, self._conn:
            row = self._conn.execute(
                "SELECT u.name, u.role, u.disabled FROM sessions s JOIN users u ON u.name = s.user"
                " WHERE s.token_sha256 = ? AND s.seen >= ? AND s.started >= ?",
                (digest, now - SESSION_IDLE_S, now - SESSION_MAX_S)).fetchone()
            if row is None or row[2]:
                return None
            self._conn.execute("UPDATE sessions SET seen = ? WHERE token_sha256 = ?", (now, digest))
        return User(row[0], row[1], False)

    def end_session(self, token: str) -> None:
        with self._lock, self._conn:
            self._conn.execute("DELETE FROM sessions WHERE token_sha256 = ?", (_token_digest(token),))

    def revoke_api_tokens(self, user: str) -> int:
        """Revoke every API token of `user`; return how many were active."""
        with self._lock, self._conn:
            cur = self._conn.execute(
                "UPDATE api_tokens SET revoked = 1 WHERE user = ? AND revoked = 0", (user,)
            )
        return cur.rowcount
