"""Accounts: scrypt passwords, roles, agent and API tokens stored only as hashes.

Every password check runs a real scrypt (~50 ms), so the password tests share
one store and stay few.
"""

from __future__ import annotations

import base64
import hashlib
import sqlite3
import time
from pathlib import Path

import pytest

from collector.auth.accounts import (
    AGENT_TOKEN_PREFIX,
    API_TOKEN_PREFIX,
    ROLES,
    SALT_BYTES,
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
    AccountError,
    Accounts,
    User,
)


@pytest.fixture
def store(tmp_path: Path) -> Accounts:
    return Accounts(tmp_path / "accounts.db")


def _dump(path: Path) -> str:
    """Every value in every table, as one string."""
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return repr([conn.execute(f"SELECT * FROM {t}").fetchall() for t in tables])
    finally:
        conn.close()


def test_password_round_trip_wrong_password_and_disable(tmp_path: Path) -> None:
    db = tmp_path / "accounts.db"
    with Accounts(db) as store:
        password = store.add_user("alice", "operator")
        assert len(password) >= 24
        assert store.verify_password("alice", password) == User("alice", "operator", False)
        assert store.verify_password("alice", password + "x") is None
        store.disable_user("alice")
        assert store.verify_password("alice", password) is None
        assert store.list_users() == [User("alice", "operator", True)]
    # only the hash is stored, with its parameters
    dump = _dump(db)
    assert password not in dump
    with sqlite3.connect(db) as conn:
        (stored,) = conn.execute("SELECT password_hash FROM users WHERE name = 'alice'").fetchone()
    scheme, n, r, p, salt, _digest = stored.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", SCRYPT_N, SCRYPT_R, SCRYPT_P)
    assert SCRYPT_N >= 2**14

    assert len(base64.b64decode(salt)) == SALT_BYTES


def test_unknown_user_still_runs_the_kdf(store: Accounts) -> None:
    password = store.add_user("bob", "auditor")
    known = unknown = float("inf")
    for _ in range(3):  # best of three: robust against a busy machine
        t0 = time.perf_counter()
        store.verify_password("bob", "wrong-password")
        known = min(known, time.perf_counter() - t0)
        t0 = time.perf_counter()
        assert store.verify_password("nobody", password) is None
        unknown = min(unknown, time.perf_counter() - t0)
    # without the KDF the unknown-user path would take microseconds
    assert unknown > known * 0.5


def test_duplicate_user_bad_role_bad_name(store: Accounts) -> None:
    store.add_user("carol", "admin")
    with pytest.raises(AccountError, match="exists"):
        store.add_user("carol", "operator")
    with pytest.raises(AccountError, match="role"):
        store.add_user("dave", "root")
    with pytest.raises(AccountError, match="invalid name"):
        store.add_user("", "operator")
    with pytest.raises(AccountError, match="role"):
        store.set_role("carol", "superuser")
    store.set_role("carol", "auditor")
    assert store.get_user("carol") == User("carol", "auditor", False)
    with pytest.raises(AccountError, match="no user"):
        store.disable_user("dave")
    assert [u.name for u in store.list_users()] == ["carol"]
    assert set(ROLES) == {"operator", "auditor", "admin"}


def test_agent_token_verify_revoke_unknown(tmp_path: Path) -> None:
    db = tmp_path / "accounts.db"
    store = Accounts(db)
    token = store.add_agent("gw-01", "unit-42")
    other = store.add_agent("gw-02", "unit-42")
    assert token.startswith(AGENT_TOKEN_PREFIX) and token != other
    agent = store.agent_for_token(token)
    assert agent is not None and (agent.name, agent.unit, agent.revoked) == ("gw-01", "unit-42", False)
    assert store.agent_for_token(token + "x") is None
    assert store.agent_for_token("") is None
    with pytest.raises(AccountError, match="exists"):
        store.add_agent("gw-01", "unit-7")

    store.revoke_agent("gw-01")
    assert store.agent_for_token(token) is None
    assert store.agent_for_token(other) is not None
    assert [(a.name, a.revoked) for a in store.list_agents()] == [("gw-01", True), ("gw-02", False)]
    with pytest.raises(AccountError, match="no agent"):
        store.revoke_agent("gw-99")
    store.close()

    # a reopened store still knows the token; the file holds only its SHA-256
    with Accounts(db) as again:
        assert again.agent_for_token(other) is not None
    dump = _dump(db)
    assert token not in dump and other not in dump
    assert token[len(AGENT_TOKEN_PREFIX) :] not in dump

    assert hashlib.sha256(other.encode()).hexdigest() in dump


def test_api_tokens(store: Accounts) -> None:
    store.add_user("erin", "operator")
    token = store.add_api_token("erin")
    assert token.startswith(API_TOKEN_PREFIX)
    assert store.user_for_api_token(token) == User("erin", "operator", False)
    # token kinds do not cross
    assert store.agent_for_token(token) is None
    with pytest.raises(AccountError, match="no user"):
        store.add_api_token("nobody")
    assert store.revoke_api_tokens("erin") == 1
    assert store.user_for_api_token(token) is None
    second = store.add_api_token("erin")
    store.disable_user("erin")
    assert store.user_for_api_token(second) is None


def test_old_parameters_are_upgraded_on_login(tmp_path: Path) -> None:
    db = tmp_path / "accounts.db"
    store = Accounts(db)
    store.add_user("frank", "operator")
    # as if the hash had been made when the cost was lower
    salt = b"s" * SALT_BYTES
    weak = hashlib.scrypt(b"old-password", salt=salt, n=2**10, r=8, p=1, dklen=32)
    encoded = f"scrypt${2**10}$8$1${base64.b64encode(salt).decode()}${base64.b64encode(weak).decode()}"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE users SET password_hash = ? WHERE name = 'frank'", (encoded,))
    conn.close()
    assert store.verify_password("frank", "old-password") == User("frank", "operator", False)
    with sqlite3.connect(db) as conn:
        (stored,) = conn.execute("SELECT password_hash FROM users WHERE name = 'frank'").fetchone()
    conn.close()
    assert stored.startswith(f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}$")
    assert store.verify_password("frank", "old-password") is not None
    store.close()
