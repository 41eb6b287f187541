"""edgeaudit-collector: the police-center collector (issue 5, being built).

    edgeaudit-collector serve --data DIR --listen HOST:PORT [--storage sqlite]
    edgeaudit-collector agents add NAME --unit UNIT_ID [--data DIR]   # prints the agent's token
    edgeaudit-collector agents revoke NAME [--data DIR]
    edgeaudit-collector users add NAME --role operator|auditor|admin [--data DIR]  # prints a password once
    edgeaudit-collector audit verify [--data DIR] [--anchor SEQ:HASH]

The data directory holds `accounts.sqlite` (users, agent and API tokens: hashes only),
`audit.log` (hash-chained) and `records/` (the storage). `--data` defaults to
$EDGEAUDIT_COLLECTOR_DATA, else ./collector-data.

Built so far: batch ingest (`POST /api/v1/batches`), `GET /api/v1/agent`, `/metrics`, the
SQLite store, accounts and the audit log. Queries, retention, ClickHouse, units, rulesets
and the web UI follow (issue 5).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_USAGE = 2


def _data_dir(a: Any) -> Path:
    d = Path(a.data or os.environ.get("EDGEAUDIT_COLLECTOR_DATA") or "collector-data")
    d.mkdir(parents=True, exist_ok=True)
    return d


def cmd_serve(a: Any) -> int:
    from aiohttp import web

    from collector.app import AUTO_DECOMPRESS, SHUTDOWN_TIMEOUT, create_app
    from collector.auth.accounts import Accounts
    from collector.auth.audit import AuditLog
    from collector.storage.sqlite import SqliteStorage

    if a.storage != "sqlite":
        print("edgeaudit-collector: only --storage sqlite is available in this version", file=sys.stderr)
        return EXIT_USAGE
    host, _, port = a.listen.rpartition(":")
    if not host or not port.isdigit():
        print(f"edgeaudit-collector: --listen wants HOST:PORT, not {a.listen!r}", file=sys.stderr)
        return EXIT_USAGE
    data = _data_dir(a)
    storage = SqliteStorage(data / "records")
    accounts = Accounts(data / "accounts.sqlite")
    audit = AuditLog(data / "audit.log")
    try:
        app = create_app(storage, accounts, audit)
        print(f"edgeaudit-collector: listening on {host}:{port}, data in {data}", file=sys.stderr, flush=True)
        web.run_app(app, host=host.strip("[]"), port=int(port), print=None,
                    auto_decompress=AUTO_DECOMPRESS, shutdown_timeout=SHUTDOWN_TIMEOUT)
    finally:
        storage.close()
        accounts.close()
        audit.close()
    return 0


def cmd_agents(a: Any) -> int:
    from collector.auth.accounts import AccountError, Accounts

    with Accounts(_data_dir(a) / "accounts.sqlite") as accounts:
        try:
            if a.action == "add":
                if not a.unit:
                    print("edgeaudit-collector: agents add needs --unit UNIT_ID", file=sys.stderr)
                    return EXIT_USAGE
                print(accounts.add_agent(a.name, a.unit))
            elif a.action == "revoke":
                accounts.revoke_agent(a.name)
            else:
                for ag in accounts.list_agents():
                    print(f"{ag.name}\t{ag.unit}\t{'revoked' if ag.revoked else 'active'}\t{ag.created}")
        except AccountError as e:
            print(f"edgeaudit-collector: {e}", file=sys.stderr)
            return 1
    return 0


def cmd_users(a: Any) -> int:
    from collector.auth.accounts import AccountError, Accounts

    with Accounts(_data_dir(a) / "accounts.sqlite") as accounts:
        try:
            if a.action == "add":
                if not a.role:
                    print("edgeaudit-collector: users add needs --role operator|auditor|admin",
                          file=sys.stderr)
                    return EXIT_USAGE
                print(accounts.add_user(a.name, a.role))
            else:
                for u in accounts.list_users():
                    print(f"{u.name}\t{u.role}\t{'disabled' if u.disabled else 'active'}")
        except AccountError as e:
            print(f"edgeaudit-collector: {e}", file=sys.stderr)
            return 1
    return 0


def cmd_audit(a: Any) -> int:
    from collector.auth.audit import verify

    path = _data_dir(a) / "audit.log"
    if not path.exists():
        print(f"edgeaudit-collector: {path}: no audit log yet", file=sys.stderr)
        return 1
    res = verify(path, a.anchor)
    if res.ok:
        print(f"audit log intact: {res.entries} entries; anchor {res.anchor}")
        return 0
    print(f"audit log damaged at line {res.line}: {res.problem}", file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="edgeaudit-collector", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)
    s = sub.add_parser("serve", help="run the collector")
    s.add_argument("--data", help="data directory")
    s.add_argument("--listen", default="127.0.0.1:8443", help="HOST:PORT (default 127.0.0.1:8443)")
    s.add_argument("--storage", choices=["sqlite", "clickhouse"], default="sqlite")
    s.add_argument("--clickhouse-url")
    s.set_defaults(func=cmd_serve)
    g = sub.add_parser("agents", help="agent credentials")
    g.add_argument("action", choices=["add", "revoke", "list"])
    g.add_argument("name", nargs="?", default="")
    g.add_argument("--unit")
    g.add_argument("--data", help="data directory")
    g.set_defaults(func=cmd_agents)
    u = sub.add_parser("users", help="operator accounts")
    u.add_argument("action", choices=["add", "list"])
    u.add_argument("name", nargs="?", default="")
    u.add_argument("--role", choices=["operator", "auditor", "admin"])
    u.add_argument("--data", help="data directory")
    u.set_defaults(func=cmd_users)
    v = sub.add_parser("audit", help="the audit log")
    v.add_argument("action", choices=["verify"])
    v.add_argument("--anchor", help="SEQ:HASH printed by an earlier verify: detects removed newest entries")
    v.add_argument("--data", help="data directory")
    v.set_defaults(func=cmd_audit)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    rc: int = a.func(a)
    return rc


if __name__ == "__main__":
    sys.exit(main())
