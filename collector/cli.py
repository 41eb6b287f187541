"""edgeaudit-collector: the police-center collector (issue 5, being built).

    edgeaudit-collector serve --data DIR --listen HOST:PORT [--storage sqlite]
    edgeaudit-collector agents add NAME --unit UNIT_ID [--data DIR]   # prints the agent's token
    edgeaudit-collector agents revoke NAME [--data DIR]
    edgeaudit-collector users add NAME --role operator|auditor|admin [--data DIR]  # prints a password once
    edgeaudit-collector audit verify [--data DIR] [--anchor SEQ:HASH]

The data directory holds `accounts.sqlite` (users, agent and API tokens: hashes only),
`audit.log` (hash-chained) and `records/` (the storage). `--data` defaults to
$EDGEAUDIT_COLLECTOR_DATA, else ./collector-data.

Built so far: batch ingest, queries (traceback, records), retention with legal holds, ruleset
publication, units' profiles and status, /metrics, TLS; the SQLite store, accounts and the
audit log. ClickHouse and the web UI follow (issue 5).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wire.build import VersionAction

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
    from collector.ingest.decoding import DEFAULT_WORKERS
    from collector.retention import RetentionError, check_days
    from collector.rules.bundle_store import BundleStore
    from collector.storage.sqlite import LayoutError, SqliteStorage
    from collector.units.registry import Units
    from rulesets.keys import KeyFileError, load_public_key

    try:
        check_days(a.retention_days)
    except RetentionError as e:
        print(f"edgeaudit-collector: --retention-days: {e}", file=sys.stderr)
        return EXIT_USAGE
    if a.storage == "clickhouse" and not a.clickhouse_url:
        print("edgeaudit-collector: --storage clickhouse needs --clickhouse-url URL", file=sys.stderr)
        return EXIT_USAGE
    host, _, port = a.listen.rpartition(":")
    if not host or not port.isdigit():
        print(f"edgeaudit-collector: --listen wants HOST:PORT, not {a.listen!r}", file=sys.stderr)
        return EXIT_USAGE
    ssl_context = None
    if a.tls_cert or a.tls_key:
        import ssl

        if not (a.tls_cert and a.tls_key):
            print("edgeaudit-collector: --tls-cert and --tls-key go together", file=sys.stderr)
            return EXIT_USAGE
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ssl_context.load_cert_chain(a.tls_cert, a.tls_key)
        except (OSError, ssl.SSLError) as e:
            print(f"edgeaudit-collector: cannot load the TLS certificate/key: {e}", file=sys.stderr)
            return EXIT_USAGE
    try:
        keys = [load_public_key(k) for k in a.ruleset_pubkey]
    except KeyFileError as e:
        print(f"edgeaudit-collector: --ruleset-pubkey: {e}", file=sys.stderr)
        return EXIT_USAGE
    if a.decode_workers is not None and a.decode_workers < 0:
        print("edgeaudit-collector: --decode-workers wants 0 or more", file=sys.stderr)
        return EXIT_USAGE
    data = _data_dir(a)
    storage: Any
    if a.storage == "clickhouse":
        from collector.storage.clickhouse import ClickHouseStorage

        storage = ClickHouseStorage(a.clickhouse_url, a.clickhouse_database, cluster=a.clickhouse_cluster)
    else:
        try:
            storage = SqliteStorage(data / "records")
        except LayoutError as e:
            print(f"edgeaudit-collector: {e}", file=sys.stderr)
            return EXIT_USAGE
    accounts = Accounts(data / "accounts.sqlite")
    audit = AuditLog(data / "audit.log")
    units = Units(data / "units.sqlite")
    try:
        app = create_app(storage, accounts, audit, BundleStore(data / "rulesets"), keys, units,
                         decode_workers=DEFAULT_WORKERS if a.decode_workers is None else a.decode_workers,
                         retention_days=a.retention_days)
        if not a.no_retention_pass:
            _schedule_retention(app, storage, data, audit, a.retention_days)
        print(f"edgeaudit-collector: listening on {host}:{port}, data in {data}", file=sys.stderr, flush=True)
        web.run_app(app, host=host.strip("[]"), port=int(port), print=None, ssl_context=ssl_context,
                    auto_decompress=AUTO_DECOMPRESS, shutdown_timeout=SHUTDOWN_TIMEOUT)
    finally:
        storage.close()
        accounts.close()
        audit.close()
        units.close()
    return 0


def _schedule_retention(app: Any, storage: Any, data: Path, audit: Any, days: int) -> None:
    """A retention pass at start, then every RETENTION_INTERVAL, in a worker thread."""
    import asyncio

    from collector.retention import RETENTION_INTERVAL, Holds, RetentionError, run_retention

    holds = Holds(data / "holds.json")

    async def loop_forever(app_: Any) -> Any:
        async def passes() -> None:
            loop = asyncio.get_running_loop()
            while True:
                try:
                    await loop.run_in_executor(None, run_retention, storage, holds, audit, days)
                except (RetentionError, OSError) as e:  # nothing deleted; said, and tried again later
                    print(f"edgeaudit-collector: retention: {e}", file=sys.stderr, flush=True)
                await asyncio.sleep(RETENTION_INTERVAL)

        task = asyncio.create_task(passes())
        yield
        task.cancel()

    app.cleanup_ctx.append(loop_forever)


def cmd_holds(a: Any) -> int:
    from collector.auth.audit import AuditLog
    from collector.retention import Holds, RetentionError
    from collector.storage.base import Hold

    data = _data_dir(a)
    holds = Holds(data / "holds.json")
    try:
        if a.action == "list":
            for h in holds.load():
                print(f"unit={h.unit} account={h.account} from={h.start} to={h.end}")
            return 0
        hold = Hold(unit=a.unit, account=a.account, start=a.start, end=a.end)
        with AuditLog(data / "audit.log") as audit:
            if a.action == "add":
                holds.add(hold)
            else:
                holds.remove(hold)
            audit.append(a.actor, f"hold_{a.action}", "legal hold",
                         {"unit": a.unit, "account": a.account, "start": a.start, "end": a.end}, "ok")
    except RetentionError as e:
        print(f"edgeaudit-collector: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_retention(a: Any) -> int:
    from collector.auth.audit import AuditLog
    from collector.retention import Holds, RetentionError, run_retention
    from collector.storage.sqlite import LayoutError, SqliteStorage

    data = _data_dir(a)
    try:
        storage = SqliteStorage(data / "records")
    except LayoutError as e:
        print(f"edgeaudit-collector: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with AuditLog(data / "audit.log") as audit:
            res = run_retention(storage, Holds(data / "holds.json"), audit, a.retention_days, a.now)
    except RetentionError as e:
        print(f"edgeaudit-collector: {e}", file=sys.stderr)
        return 1
    finally:
        storage.close()
    print(f"deleted {res.deleted} records, dropped {len(res.days_dropped)} day files, kept {res.held} held")
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
    ap.add_argument("--version", action=VersionAction)
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)
    s = sub.add_parser("serve", help="run the collector")
    s.add_argument("--data", help="data directory")
    s.add_argument("--listen", default="127.0.0.1:8443", help="HOST:PORT (default 127.0.0.1:8443)")
    s.add_argument("--storage", choices=["sqlite", "clickhouse"], default="sqlite")
    s.add_argument("--clickhouse-url", help="ClickHouse's HTTP interface, e.g. http://127.0.0.1:8123/")
    s.add_argument("--clickhouse-database", default="edgeaudit", help="database (created if missing)")
    s.add_argument("--clickhouse-cluster", metavar="NAME",
                   help="a ClickHouse cluster (remote_servers NAME) whose tables were created from "
                        "deploy/clickhouse/cluster.sql: the collector creates nothing and writes and reads "
                        "the Distributed tables; run several collectors against it")
    s.add_argument("--ruleset-pubkey", action="append", default=[], metavar="FILE",
                   help="a key ruleset bundles must be signed by to be published (edgeaudit-rules keygen)")
    s.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate (chain)")
    s.add_argument("--tls-key", metavar="PEM", help="... and this private key")
    s.add_argument("--retention-days", type=int, default=180,
                   help="keep records this long (default 180; under 60 is refused)")
    s.add_argument("--no-retention-pass", action="store_true",
                   help="run no hourly retention pass here (another collector of a ClickHouse cluster "
                        "runs it; `retention run` still works)")
    s.add_argument("--decode-workers", type=int, default=None, metavar="N",
                   help="processes decoding and packing uploads for the SQLite store (default: one per "
                        "CPU; 0: decode in threads of this process)")
    s.set_defaults(func=cmd_serve)
    h = sub.add_parser("holds", help="legal holds: records they match are never deleted")
    h.add_argument("action", choices=["add", "remove", "list"])
    h.add_argument("--unit")
    h.add_argument("--account")
    h.add_argument("--from", dest="start", type=float, metavar="TS", help="Unix seconds")
    h.add_argument("--to", dest="end", type=float, metavar="TS", help="Unix seconds (exclusive)")
    h.add_argument("--actor", default=os.environ.get("USER", "admin"), help="who asks (for the audit log)")
    h.add_argument("--data", help="data directory")
    h.set_defaults(func=cmd_holds)
    r = sub.add_parser("retention", help="run one retention pass now")
    r.add_argument("action", choices=["run"])
    r.add_argument("--retention-days", type=int, default=180)
    r.add_argument("--now", type=float, default=None, help=argparse.SUPPRESS)  # tests: a fixed clock
    r.add_argument("--data", help="data directory")
    r.set_defaults(func=cmd_retention)
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
