"""The collector's access control: accounts, credentials and the audit log.

- `accounts`: operator/auditor/admin users (scrypt-hashed passwords), agent
  tokens and personal API tokens, in one SQLite file; only hashes are stored.
- `audit`: the append-only, hash-chained audit log every query and export is
  written to (durably) before its results are returned, and its verifier.

Nothing here speaks HTTP; the web/ingest handlers and the CLI call these.
"""

from __future__ import annotations

from collector.auth.accounts import (
    ROLES,
    AccountError,
    Accounts,
    Agent,
    User,
)
from collector.auth.audit import AuditEntry, AuditError, AuditLog, VerifyResult, verify

__all__ = [
    "ROLES",
    "AccountError",
    "Accounts",
    "Agent",
    "AuditEntry",
    "AuditError",
    "AuditLog",
    "User",
    "VerifyResult",
    "verify",
]
