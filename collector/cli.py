"""edgeaudit-collector: the police-center collector (issue 5, being built).

    edgeaudit-collector serve --data DIR --listen HOST:PORT [--storage sqlite]
        [--checkpoint-interval S] [--witness-file PATH] [--witness-syslog HOST:PORT]
    edgeaudit-collector agents add NAME --unit UNIT_ID [--data DIR]   # prints the agent's token
    edgeaudit-collector agents revoke NAME [--data DIR]
    edgeaudit-collector users add NAME --role operator|auditor|admin [--data DIR]  # prints a password once
    edgeaudit-collector users disable NAME [--data DIR]
    edgeaudit-collector audit verify [--data DIR] [--anchor SEQ:HASH] [--checkpoints FILE --pubkey PUB]
    edgeaudit-collector audit pubkey [--data DIR]   # the checkpoint key, to keep elsewhere

The data directory (0700; every file in it 0600) holds `accounts.sqlite` (users, agent and
API tokens: hashes only), `audit.log` (hash-chained), `audit-checkpoint.key`/`.pub` (signs
the log's checkpoints), `cli.sock` (while serving) and `records/` (the storage). `--data`
defaults to $EDGEAUDIT_COLLECTOR_DATA, else ./collector-data.

Every change the commands make (agents, users, holds, retention) is in the audit log as
actor `cli:<OS user>`; while a collector runs they write it through that collector
(collector.auth.cli_channel), and `retention run` refuses (the collector runs its own).

Built so far: batch ingest, queries (traceback, records), retention with legal holds, ruleset
publication, units' profiles and status, /metrics, TLS; the SQLite store, accounts and the
audit log. ClickHouse and the web UI follow (issue 5).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from wire.build import VersionAction

EXIT_USAGE = 2
# Files the commands create are the collector's user's alone (records name people; the
# accounts, the audit log and the checkpoint key are what an intruder wants).
UMASK: Final = 0o077
DATA_DIR_MODE: Final = 0o700


def _say(message: str) -> None:
    print(f"edgeaudit-collector: {message}", file=sys.stderr, flush=True)


def _data_dir(a: Any) -> Path:
    """The data directory, made 0700; one that others may enter is closed to them (it holds
    the records, the accounts, the audit log and the checkpoint key)."""
    d = Path(a.data or os.environ.get("EDGEAUDIT_COLLECTOR_DATA") or "collector-data")
    d.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
    st = d.stat()
    if st.st_mode & 0o077 and st.st_uid == os.geteuid():
        os.chmod(d, DATA_DIR_MODE)
        _say(f"{d}: was mode {st.st_mode & 0o777:o}, now {DATA_DIR_MODE:o} (only the collector's user)")
    return d


def _witnesses(a: Any, data: Path) -> list[Any]:
    """The witnesses the serve flags name (WitnessError for a bad one)."""
    from collector.auth.witness import FileWitness, SyslogWitness

    witnesses: list[Any] = []
    for path in a.witness_file:
        witness = FileWitness(Path(path).absolute())
        if witness.same_device_as(data):
            _say(f"--witness-file {path} is on the data directory's file system: whoever can rewrite "
                 "the audit log there can rewrite this copy too; put it on another mount")
        witnesses.append(witness)
    witnesses.extend(SyslogWitness(address) for address in a.witness_syslog)
    return witnesses


def cmd_serve(a: Any) -> int:
    from aiohttp import web

    from collector.app import AUTO_DECOMPRESS, SHUTDOWN_TIMEOUT, create_app
    from collector.auth.accounts import Accounts
    from collector.auth.audit import AuditError, AuditLog
    from collector.auth.checkpoints import CheckpointError, key_paths, load_or_create_key
    from collector.auth.cli_channel import Channel
    from collector.auth.witness import MAX_INTERVAL, Checkpointer, WitnessError
    from collector.ingest.decoding import DEFAULT_WORKERS
    from collector.retention import RetentionError, check_days
    from collector.rules.bundle_store import BundleStore
    from collector.storage.sqlite import LayoutError, SqliteStorage
    from collector.units.registry import Units
    from rulesets.keys import KeyFileError, key_id, load_public_key, public_key_text

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
    if not 0 < a.checkpoint_interval <= MAX_INTERVAL:
        _say(f"--checkpoint-interval wants seconds in (0, {MAX_INTERVAL:.0f}]")
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
    try:
        witnesses = _witnesses(a, data)
        checkpoint_key, created = load_or_create_key(data)
    except (WitnessError, CheckpointError) as e:
        _say(str(e))
        return EXIT_USAGE
    if created:
        public = checkpoint_key.public_key()
        _say(f"made the audit checkpoint key {key_id(public)}; keep a copy of its public key off this "
             f"machine (`audit pubkey`), to verify the log with:\n" + public_key_text(public).rstrip())
    # The audit log first: its lock is what makes this the one collector of this data directory.
    try:
        audit = AuditLog(data / "audit.log")
    except AuditError as e:
        _say(f"{e} (another collector, or an edgeaudit-collector command running now)")
        return EXIT_USAGE
    storage: Any = None
    try:
        if a.storage == "clickhouse":
            from collector.storage.clickhouse import ClickHouseStorage

            storage = ClickHouseStorage(a.clickhouse_url, a.clickhouse_database, cluster=a.clickhouse_cluster)
        else:
            try:
                storage = SqliteStorage(data / "records")
            except LayoutError as e:
                print(f"edgeaudit-collector: {e}", file=sys.stderr)
                return EXIT_USAGE
    finally:
        if storage is None:
            audit.close()
    accounts = Accounts(data / "accounts.sqlite")
    units = Units(data / "units.sqlite")
    checkpointer = Checkpointer(audit, checkpoint_key, witnesses)
    try:
        app = create_app(storage, accounts, audit, BundleStore(data / "rulesets"), keys, units,
                         decode_workers=DEFAULT_WORKERS if a.decode_workers is None else a.decode_workers,
                         retention_days=a.retention_days, max_future_s=a.max_future_seconds,
                         max_batch_days=a.max_batch_days)
        if not a.no_retention_pass:
            _schedule_retention(app, storage, data, audit, a.retention_days)
        _serve_channel(app, Channel(data, audit))
        _every(app, a.checkpoint_interval, checkpointer.checkpoint, "audit checkpoint")
        _say(f"audit checkpoints signed by key {key_id(checkpoint_key.public_key())} ({key_paths(data)[1]}) "
             f"every {a.checkpoint_interval:g} s, to stderr"
             + "".join(f", {w.name}" for w in witnesses))
        print(f"edgeaudit-collector: listening on {host}:{port}, data in {data}", file=sys.stderr, flush=True)
        web.run_app(app, host=host.strip("[]"), port=int(port), print=None, ssl_context=ssl_context,
                    auto_decompress=AUTO_DECOMPRESS, shutdown_timeout=SHUTDOWN_TIMEOUT)
    finally:
        checkpointer.checkpoint()  # the log as this collector leaves it
        storage.close()
        accounts.close()
        audit.close()
        units.close()
    return 0


def _every(app: Any, interval: float, work: Callable[[], object], what: str) -> None:
    """``work()`` in a worker thread when the server starts, then every ``interval`` seconds;
    a failure is said in one line and tried again at the next turn."""
    import asyncio

    from collector.auth.audit import AuditError

    async def ctx(app_: Any) -> Any:
        async def turns() -> None:
            loop = asyncio.get_running_loop()
            while True:
                try:
                    await loop.run_in_executor(None, work)
                except (ValueError, OSError, AuditError) as e:  # RetentionError is a ValueError
                    _say(f"{what}: {e}")
                await asyncio.sleep(interval)

        task = asyncio.create_task(turns())
        yield
        task.cancel()

    app.cleanup_ctx.append(ctx)


def _serve_channel(app: Any, channel: Any) -> None:
    """The CLI's way to the audit log while this collector holds it (collector.auth.cli_channel)."""

    async def ctx(app_: Any) -> Any:
        await channel.start()
        yield
        await channel.stop()

    app.cleanup_ctx.append(ctx)


def _schedule_retention(app: Any, storage: Any, data: Path, audit: Any, days: int) -> None:
    """A retention pass at start, then every RETENTION_INTERVAL, in a worker thread."""
    from collector.retention import RETENTION_INTERVAL, Holds, run_retention

    holds = Holds(data / "holds.json")
    _every(app, RETENTION_INTERVAL, lambda: run_retention(storage, holds, audit, days), "retention")


def _audited(data: Path, action: str, target: str, detail: dict[str, Any], change: Callable[[], Any],
             undo: Callable[[], object] | None = None) -> tuple[int, Any]:
    """(exit status, what ``change()`` returned): the change made only once its audit entry can
    be written, its result (refusals too) audited, and undone by ``undo`` when that write fails
    (collector.auth.cli_channel, "Order")."""
    from collector.auth.accounts import AccountError
    from collector.auth.audit import AuditError
    from collector.auth.cli_channel import open_admin_audit
    from collector.retention import RetentionError

    try:
        audit = open_admin_audit(data)
    except AuditError as e:
        _say(f"{e}; nothing changed")
        return EXIT_USAGE, None
    with audit:
        try:
            value = change()
        except (AccountError, RetentionError) as e:
            try:
                audit.record(action, target, detail, f"refused: {e}"[:200])
            except AuditError as not_audited:
                _say(f"the refusal was not audited: {not_audited}")
            _say(str(e))
            return 1, None
        try:
            audit.record(action, target, detail, "ok")
        except AuditError as e:
            if undo is None:
                _say(f"done, but not audited: {e}")
            else:
                undo()
                _say(f"not audited, so undone: {e}")
            return 1, None
    return 0, value


def cmd_holds(a: Any) -> int:
    from collector.retention import Holds, RetentionError
    from collector.storage.base import Hold

    data = _data_dir(a)
    holds = Holds(data / "holds.json")
    if a.action == "list":
        try:
            for h in holds.load():
                print(f"unit={h.unit} account={h.account} from={h.start} to={h.end}")
        except RetentionError as e:
            _say(str(e))
            return 1
        return 0
    hold = Hold(unit=a.unit, account=a.account, start=a.start, end=a.end)
    detail: dict[str, Any] = {"unit": a.unit, "account": a.account, "start": a.start, "end": a.end}
    if a.actor:
        detail["requested_by"] = a.actor
    if a.action == "add":
        try:
            existed = hold in holds.load()
        except RetentionError as e:
            _say(str(e))
            return 1
        rc, _ = _audited(data, "hold_add", "legal hold", detail, lambda: holds.add(hold),
                         None if existed else lambda: holds.remove(hold))
    else:
        rc, _ = _audited(data, "hold_remove", "legal hold", detail, lambda: holds.remove(hold),
                         lambda: holds.add(hold))
    return rc


def cmd_retention(a: Any) -> int:
    from collector.auth.audit import AuditBusy, AuditError, AuditLog
    from collector.auth.cli_channel import cli_actor
    from collector.retention import Holds, RetentionError, check_days, run_retention
    from collector.storage.sqlite import LayoutError, SqliteStorage

    try:
        check_days(a.retention_days)
    except RetentionError as e:
        _say(f"--retention-days: {e}")
        return EXIT_USAGE
    data = _data_dir(a)
    try:
        audit = AuditLog(data / "audit.log")
    except AuditBusy:
        _say(f"a collector is running on {data} (it holds the audit log) and runs retention itself, "
             "at start and hourly; stop it to run a pass by hand")
        return EXIT_USAGE
    except AuditError as e:
        _say(f"{e}; nothing deleted")
        return EXIT_USAGE
    with audit:
        try:
            storage = SqliteStorage(data / "records")
        except LayoutError as e:
            _say(str(e))
            return EXIT_USAGE
        actor, extra = cli_actor(os.geteuid(), os.getpid())
        try:
            res = run_retention(storage, Holds(data / "holds.json"), audit, a.retention_days, a.now,
                                actor=actor, extra=extra)
        except (RetentionError, AuditError) as e:
            _say(str(e))
            return 1
        finally:
            storage.close()
    print(f"deleted {res.deleted} records, dropped {len(res.days_dropped)} day files, kept {res.held} held")
    return 0


def _list(rows: Sequence[Sequence[object]]) -> int:
    for row in rows:
        print("\t".join(map(str, row)))
    return 0


def _credentials(a: Any, kind: str, option: str, value: str | None,
                 rows: Callable[[Any], list[tuple[object, ...]]],
                 make: Callable[[Any], str], take_back: Callable[[Any], None]) -> int:
    """`list`, `add` (the new credential printed once its audit entry is written) and the
    action that takes one back (agents revoke, users disable); all but `list` audited."""
    from collector.auth.accounts import Accounts

    data = _data_dir(a)
    with Accounts(data / "accounts.sqlite") as accounts:
        if a.action == "list":
            return _list(rows(accounts))
        if not a.name:
            _say(f"{kind}s {a.action} needs the {kind}'s NAME")
            return EXIT_USAGE
        if a.action != "add":
            return _audited(data, f"{kind}_{a.action}", f"{kind} {a.name}", {"name": a.name},
                            lambda: take_back(accounts))[0]
        if not value:
            _say(f"{kind}s add needs --{option}")
            return EXIT_USAGE
        rc, secret = _audited(data, f"{kind}_add", f"{kind} {a.name}", {"name": a.name, option: value},
                              lambda: make(accounts), lambda: take_back(accounts))
        if rc == 0:
            print(secret)  # only now: an unaudited credential is never handed out (nor logged)
        return rc


def cmd_agents(a: Any) -> int:
    return _credentials(a, "agent", "unit", a.unit,
                        lambda accounts: [(g.name, g.unit, "revoked" if g.revoked else "active", g.created)
                                          for g in accounts.list_agents()],
                        lambda accounts: accounts.add_agent(a.name, a.unit),
                        lambda accounts: accounts.revoke_agent(a.name))


def cmd_users(a: Any) -> int:
    return _credentials(a, "user", "role", a.role,
                        lambda accounts: [(u.name, u.role, "disabled" if u.disabled else "active")
                                          for u in accounts.list_users()],
                        lambda accounts: accounts.add_user(a.name, a.role),
                        lambda accounts: accounts.disable_user(a.name))


def cmd_audit(a: Any) -> int:
    from collector.auth.audit import verify
    from collector.auth.checkpoints import (
        CheckpointError,
        key_paths,
        public_key_of,
        read_witness_text,
        verify_with_checkpoints,
    )
    from rulesets.keys import KeyFileError, load_public_key

    data = _data_dir(a)
    if a.action == "pubkey":
        pub = key_paths(data)[1]
        try:
            public_key_of(data)
            print(pub.read_text(encoding="ascii"), end="")
        except (CheckpointError, OSError, UnicodeDecodeError) as e:
            _say(str(e))
            return 1
        return 0
    path = data / "audit.log"
    if not path.exists():
        print(f"edgeaudit-collector: {path}: no audit log yet", file=sys.stderr)
        return 1
    try:
        if not a.checkpoints:
            res = verify(path, a.anchor)
            witnessed = ""
        else:
            public = load_public_key(a.pubkey) if a.pubkey else public_key_of(data)
            texts = {f: read_witness_text(Path(f)) for f in a.checkpoints}
            res, found = verify_with_checkpoints(path, texts, public, a.anchor)
            if found.problems:
                _say(f"checkpoints refused (forged, altered or damaged): {res.problem}")
                return 1
            newest = max(found.checkpoints, key=lambda cp: (cp.seq, cp.ts), default=None)
            witnessed = (f"; holds all {len(found.checkpoints)} checkpoints"
                         + (f" (newest: entry {newest.seq}, {newest.ts})" if newest else "")
                         + (f", ignored {found.other_keys} of other keys" if found.other_keys else "")
                         + ("" if a.pubkey else f"; key from {key_paths(data)[1]}: pass --pubkey with a copy "
                            "kept elsewhere, or whoever rewrote the log may have replaced it too"))
    except (CheckpointError, KeyFileError, ValueError) as e:
        _say(str(e))
        return EXIT_USAGE
    if res.ok:
        print(f"audit log intact: {res.entries} entries; anchor {res.anchor}{witnessed}")
        return 0
    where = f" at line {res.line}" if res.line else ""
    print(f"audit log damaged{where}: {res.problem}", file=sys.stderr)
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
    from collector.ingest.limits import DEFAULT_MAX_FUTURE_S, days_arg, seconds_arg  # no aiohttp
    s.add_argument("--max-future-seconds", type=seconds_arg, default=DEFAULT_MAX_FUTURE_S, metavar="SECONDS",
                   help="refuse (422) a batch with a record dated more than this ahead of this clock "
                        "(agents' clock skew; default 86400)")
    s.add_argument("--max-batch-days", type=days_arg, default=None, metavar="DAYS",
                   help="refuse (422) a batch whose records span more days than this (an agent's backup "
                        "period; default: --retention-days)")
    s.add_argument("--checkpoint-interval", type=float, default=300.0, metavar="SECONDS",
                   help="sign a checkpoint of the audit log this often (and at start and stop; default 300)")
    s.add_argument("--witness-file", action="append", default=[], metavar="PATH",
                   help="append each checkpoint to this file, on another mount (repeatable)")
    s.add_argument("--witness-syslog", action="append", default=[], metavar="HOST:PORT",
                   help="send each checkpoint to this syslog server over TCP (RFC 5424, octet-counted "
                        "RFC 6587; repeatable)")
    s.set_defaults(func=cmd_serve)
    h = sub.add_parser("holds", help="legal holds: records they match are never deleted")
    h.add_argument("action", choices=["add", "remove", "list"])
    h.add_argument("--unit")
    h.add_argument("--account")
    h.add_argument("--from", dest="start", type=float, metavar="TS", help="Unix seconds")
    h.add_argument("--to", dest="end", type=float, metavar="TS", help="Unix seconds (exclusive)")
    h.add_argument("--actor", metavar="WHO", help="on whose request (recorded as requested_by; the audit "
                                                 "log's actor is the OS user running the command)")
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
    u.add_argument("action", choices=["add", "disable", "list"])
    u.add_argument("name", nargs="?", default="")
    u.add_argument("--role", choices=["operator", "auditor", "admin"])
    u.add_argument("--data", help="data directory")
    u.set_defaults(func=cmd_users)
    v = sub.add_parser("audit", help="the audit log")
    v.add_argument("action", choices=["verify", "pubkey"])
    v.add_argument("--anchor", help="SEQ:HASH printed by an earlier verify: detects removed newest entries")
    v.add_argument("--checkpoints", action="append", default=[], metavar="FILE",
                   help="a witness's copy of the signed checkpoints (a --witness-file, or the syslog's "
                        "file): detects a cut tail or a rewritten log (repeatable)")
    v.add_argument("--pubkey", metavar="FILE",
                   help="the checkpoint public key, a copy kept off the collector (default: the one in the "
                        "data directory)")
    v.add_argument("--data", help="data directory")
    v.set_defaults(func=cmd_audit)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    os.umask(UMASK)  # before anything is created; SQLite's files and the workers inherit it
    rc: int = a.func(a)
    return rc


if __name__ == "__main__":
    sys.exit(main())
