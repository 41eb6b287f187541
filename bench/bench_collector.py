#!/usr/bin/env python3
"""The collector's ingest rate and traceback latency, on SQLite and ClickHouse (issue 5).

What: two measurements per storage backend (``--storage sqlite,clickhouse``).

1. **Ingest.** ``edgeaudit-collector serve`` runs as a child process on loopback (a fresh
   data directory; ClickHouse: a throwaway ``clickhouse-server`` started as the storage
   tests start it, ``tests/collector/storage/clickhouse_server.py``). ``--agents K``
   agents (each registered with ``edgeaudit-collector agents add``, each its own bearer
   token) upload pre-encoded batches of ``--batch`` records (5,000, the uploader's
   default; ``wire.envelope.encode_batch``, zstd level 3 as the uploader sends) over
   one aiohttp client session, one batch in flight per agent as the uploader does, all
   agents at once. Reported: records/s from the first request until the last batch
   is acknowledged (the collector acknowledges after the commit), and the collector
   process' CPU seconds (``/proc/PID/stat`` utime + stime deltas, the process and its
   decode workers; the main process alone beside it).
   Beside it, the same records into the same store in this process, no HTTP:
   * ``backend``: the Storage backend's ``insert_batch`` (one thread);
   * ``raw``: the store's own insert cost for the same records. SQLite: packing them
     into the store's layout (``collector.storage.granules.prepare``: zstd and the
     lookup keys, the work SQLite's indexes did in a row-per-record layout) plus the
     backend's SQL (``SqliteStorage._insert_chunk``), one thread, one transaction per
     file per batch, ``synchronous=FULL`` as the backend; also printed: the SQL alone
     (granules packed before the clock). ClickHouse: one HTTP ``INSERT ... FORMAT
     JSONEachRow`` per batch of the rows exactly as the backend writes them (bodies
     built before the clock starts) into a table of the backend's schema; the server
     parses, compresses and indexes them.
   The ratio ``collector / raw`` is raw records/s over collector records/s: how many
   times the store's own cost the whole ingest path (HTTP, authentication, zstd,
   msgpack, validation, hand-off to the decode workers, commit) costs (target ≤ 1.5×);
   for SQLite also against the SQL alone. The absolute SQLite target is ≥ 100,000
   records/s. With ``--repeat N`` the three run
   round-robin N times (a fresh store each time) and the best of each is reported, as
   ``bench_sessions.py`` does: this 2-vCPU VM's speed moves between runs.
2. **Traceback.** The store is filled with ``--fill`` records (10,000,000; ``--quick``:
   200,000) **by direct backend inserts** (``insert_batch`` in this process, batches of
   ``--batch``; the fastest loading path the backends offer, not the HTTP path), then
   the collector is started on it and ``--queries`` ``GET /api/v1/query/traceback``
   requests (HTTP Basic, an operator made with ``edgeaudit-collector users add --role
   operator``) are sent one at a time for public (ip, port, ts) triples of random NAT
   mappings. Reported: p50/p95/p99/max latency and how many answers found the inside
   address and the account the generator put behind it. Each question is also asked
   with an API token of the same operator (order alternating): a Basic request pays the
   password KDF (scrypt, ~50 ms by design, ``collector/auth/accounts.py``), a token
   request does not, so the two columns separate the login cost from the lookup. Then
   ``--searches`` first pages (100 records) of ``GET /api/v1/query/records`` of each kind
   an operator's screen asks for (``search_latency``), with the token.

Build: the collector runs as ``pip install .`` builds it, its ingest workers' modules
(validation, the generated checks and scanners, packing into granules) compiled by mypyc
(setup.py; ``make compiled`` unpacks the wheel pip builds into ``build/compiled``), in the served
collector and in this process' backend and raw inserts alike; ``--build pure`` measures the
sources instead (``auto``, the default: compiled when built). The table says which.

Records: the project's generated capture (``bench/out/edge-200000p-s1.pcap``, built
with ``python -m agent.synth`` when missing) replayed by ``edgeaudit-agent replay``
(session, http, dns, tls, smtp... ~10,700 records over 2 s of traffic), plus what a
gateway's identity and NAT sources would add so traceback has something to find: one
``login`` (source radius, an account per inside host) per inside address, and a NAT
``create``/``destroy`` pair per TCP/UDP session (outside address from 203.0.113.0/24,
outside port derived from the inside one). More records than that cycle through the
set with ``ts`` shifted by a whole period and ``uid`` suffixed with the cycle number;
the fill spreads its cycles over ``--days`` days (default 1: a day of a busy site),
the ingest set packs them back to back. Every generated record passes
``wire.validate``.

Results: a table on stdout and ``bench/out/bench_collector.json`` (``--out``); scratch data in
``bench/out/collector/`` (removed after each phase unless ``--keep``). Exit status 0 =
the SQLite targets are met, 1 = missed, 2 = not measured (the reason is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
COMPILED_TREE = REPO / "build" / "compiled"


def _compiled_collector_ready() -> bool:
    """build/compiled is built and holds the ingest workers' modules as machine code."""
    return (COMPILED_TREE / ".built").exists() and any(
        (COMPILED_TREE / "collector" / "storage").glob("granules.*.so"))


def select_build(argv: list[str]) -> tuple[str, Path]:
    """The build the collector (served and in-process) runs, from ``--build`` in ``argv``
    (read here, before any import of the project: the imports below depend on it), and the
    tree to import it from. "auto" takes the compiled tree when built: that is what
    ``pip install .`` gives a police center (setup.py). As in bench/agent_compiled.py, the
    editable install's import hook is taken out, or it would keep serving the sources."""
    which = "auto"
    for i, a in enumerate(argv):
        if a == "--build" and i + 1 < len(argv):
            which = argv[i + 1]
        elif a.startswith("--build="):
            which = a.split("=", 1)[1]
    if which == "pure" or (which == "auto" and not _compiled_collector_ready()):
        return "interpreted (the sources)", REPO
    if not _compiled_collector_ready():
        sys.exit(f"--build compiled: {COMPILED_TREE} holds no compiled collector (run `make compiled`)")
    sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("__editable__")]
    return f"compiled by mypyc ({COMPILED_TREE.relative_to(REPO)})", COMPILED_TREE


BUILD, TREE = select_build(sys.argv[1:]) if __name__ == "__main__" else ("interpreted (the sources)", REPO)
sys.path.insert(0, str(TREE))
sys.path.insert(1, str(REPO / "tests" / "collector" / "storage"))

import aiohttp  # noqa: E402
import orjson  # noqa: E402

from wire.envelope import encode_batch  # noqa: E402
from wire.validate import validate_record  # noqa: E402

OUT_DIR = REPO / "bench" / "out"
WORK_DIR = OUT_DIR / "collector"
JSON_PATH = OUT_DIR / "bench_collector.json"
PYTHON = sys.executable
# Children import the same build: the tree first on their path, and run from a directory
# without the sources (sys.path[0] is the working directory under ``python -m``).
ENV = dict(os.environ, PYTHONPATH=str(TREE))
SQLITE_TARGET_RATE = 100_000
OVERHEAD_TARGET = 1.5


# --- records ---------------------------------------------------------------------------------


def capture_records(packets: int, seed: int) -> list[dict[str, Any]]:
    """The agent's records for the generated capture (replayed once, cached as JSONL)."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    jsonl = WORK_DIR / f"records-{packets}p-s{seed}.jsonl"
    pcap = OUT_DIR / f"edge-{packets}p-s{seed}.pcap"
    if not jsonl.exists():
        if not pcap.exists():
            subprocess.run([PYTHON, "-m", "agent.synth", "--packets", str(packets), "--seed", str(seed),
                            "-o", str(pcap)], check=True, cwd=REPO, env=ENV)
        agent = REPO / ".venv" / "bin" / "edgeaudit-agent"
        cmd = [str(agent)] if agent.exists() else [PYTHON, "-m", "agent.cli"]
        tmp = jsonl.with_suffix(".tmp")
        subprocess.run([*cmd, "replay", str(pcap), "--jsonl", str(tmp)], check=True, cwd=REPO, env=ENV,
                       stdout=subprocess.DEVNULL)
        tmp.rename(jsonl)
    return [orjson.loads(line) for line in jsonl.read_bytes().splitlines() if line.strip()]


def _outside(inside_ip: str, inside_port: int) -> tuple[str, int]:
    h = sum(int(x) for x in inside_ip.split(".")) if "." in inside_ip else len(inside_ip)
    return f"203.0.113.{1 + h % 32}", 1024 + (inside_port * 7 + h) % 64000


def base_records(captured: list[dict[str, Any]], start: float) -> list[dict[str, Any]]:
    """The capture's records plus a login per inside host and a NAT pair per session, by ts.

    Moved in time to begin at ``start``: the collector's retention pass (180 days by default)
    would otherwise delete the capture's 2024 records as soon as ``serve`` starts.
    """
    dt = start - min(float(r["ts"]) for r in captured)
    captured = [{**r, "ts": r["ts"] + dt} for r in captured]
    out = list(captured)
    t0 = start
    hosts: dict[str, str] = {}
    for r in captured:
        ip = r.get("src_ip")
        if isinstance(ip, str) and ip.startswith("192.168.") and ip not in hosts:
            hosts[ip] = r.get("src_mac") or f"02:00:00:00:{len(hosts) >> 8 & 255:02x}:{len(hosts) & 255:02x}"
    for i, (ip, mac) in enumerate(sorted(hosts.items())):
        out.append({"type": "login", "ts": t0 - 1.0 + i * 1e-4, "event": "login", "account": f"user{i:05d}",
                    "ip": ip, "mac": mac, "calling_station": mac.replace(":", "-").upper(),
                    "source": "radius", "session_id": f"rad-{i:05d}", "duration": None})
    for r in captured:
        if r["type"] != "session" or r.get("proto") not in ("tcp", "udp") or r.get("src_ip") not in hosts:
            continue
        oip, oport = _outside(r["src_ip"], r["src_port"])
        common = {"type": "nat", "proto": r["proto"], "inside_ip": r["src_ip"], "inside_port": r["src_port"],
                  "outside_ip": oip, "outside_port": oport,
                  "remote_ip": r["dst_ip"], "remote_port": r["dst_port"]}
        out.append({**common, "ts": float(r["ts"]) - 0.0005, "event": "create"})
        end = float(r["ts"]) + float(r.get("duration") or 0.0)
        out.append({**common, "ts": end + 0.5, "event": "destroy"})
    out.sort(key=lambda r: float(r["ts"]))
    for r in out:
        validate_record(r)
    return out


def cycle(base: list[dict[str, Any]], c: int, shift: float) -> Iterator[dict[str, Any]]:
    """Cycle ``c`` of the base set: ts moved by ``c * shift``, uids made unique per cycle."""
    if c == 0:
        yield from base
        return
    dt = c * shift
    suffix = f"-{c:x}"
    for r in base:
        r2 = dict(r)
        r2["ts"] = r["ts"] + dt
        uid = r2.get("uid")
        if uid is not None:
            r2["uid"] = uid + suffix
        yield r2


def record_stream(base: list[dict[str, Any]], n: int, shift: float) -> Iterator[dict[str, Any]]:
    c = 0
    while True:
        for r in cycle(base, c, shift):
            if n <= 0:
                return
            n -= 1
            yield r
        c += 1


def batches_of(stream: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for r in stream:
        batch.append(r)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(data: Path, *args: str) -> str:
    res = subprocess.run([PYTHON, "-m", "collector.cli", *args, "--data", str(data)], capture_output=True,
                         text=True, env=ENV, cwd=WORK_DIR, timeout=120, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"edgeaudit-collector {' '.join(args)}: {res.stderr}")
    return res.stdout.strip()


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int, *, tree: bool = True) -> float:
    """CPU seconds of ``pid`` and (``tree``) every live process under it (the collector's
    decode workers run in a forkserver's children)."""
    if not tree:
        fields = _stat(pid)
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int(_stat(int(d.name))[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, grew = {pid}, True
    while grew:
        more = {p for p, pp in parent.items() if pp in tree} - tree
        tree |= more
        grew = bool(more)
    total = 0.0
    for p in tree:
        try:
            fields = _stat(p)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class Collector:
    """``edgeaudit-collector serve`` as a child process; stopped by SIGINT to its PID."""

    def __init__(self, data: Path, storage_args: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data.parent / f"serve-{self.port}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "collector.cli", "serve", "--data", str(data), "--listen",
                 f"127.0.0.1:{self.port}", *storage_args],
                stdout=log, stderr=subprocess.STDOUT, env=ENV, cwd=WORK_DIR)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.url + "/metrics", timeout=1).read()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"collector did not start: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.05)

    def index_catchup(self, timeout: float = 60.0) -> float | None:
        """Seconds until the store's key index has caught up (``/metrics``
        ``edgeaudit_storage_unindexed_key_bytes`` 0; SQLite indexes a file's last keys once
        it is idle, ``collector.storage.sqlite.INDEX_IDLE``); None for a store without it."""
        t0 = time.perf_counter()
        while True:
            text = urllib.request.urlopen(self.url + "/metrics", timeout=5).read().decode()
            values = [line.split()[1] for line in text.splitlines()
                      if line.startswith("edgeaudit_storage_unindexed_key_bytes ")]
            if not values:
                return None
            if values[0] == "0" or time.perf_counter() - t0 > timeout:
                return time.perf_counter() - t0
            time.sleep(0.02)

    def cpu(self) -> tuple[float, float]:
        """CPU seconds of the whole collector, and of its main process alone."""
        return cpu_seconds(self.proc.pid), cpu_seconds(self.proc.pid, tree=False)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# --- backends --------------------------------------------------------------------------------


class Backend:
    """One storage backend: how to open it in-process, how serve is told to use it, raw inserts."""

    name = ""

    def serve_args(self) -> list[str]:
        return []

    def open(self, data: Path) -> Any:
        raise NotImplementedError

    def raw_insert(self, scratch: Path, batches: list[tuple[str, str, int, list[dict[str, Any]]]]) -> float:
        """Seconds the store itself takes for these batches' rows (rows built before timing)."""
        raise NotImplementedError

    def drop(self) -> None:
        """Forget the store ``open`` made last (ClickHouse: its database), so it stops costing."""

    def close(self) -> None:
        pass


class SqliteBackend(Backend):
    name = "sqlite"
    sql_only_s = 0.0
    index_tail_s = 0.0

    def open(self, data: Path) -> Any:
        from collector.storage.sqlite import SqliteStorage

        return SqliteStorage(data / "records")

    def raw_insert(self, scratch: Path, batches: list[tuple[str, str, int, list[dict[str, Any]]]]) -> float:
        """The store's own work for these records: packing them into the SQLite layout
        (``granules.prepare``: compression and lookup keys, SQLite's "indexing" here) and the
        backend's SQL, one thread, one transaction per file per batch, a file's fresh keys
        indexed whenever it gathered ``INDEX_BATCH_BYTES`` (the backend's rule). The SQL
        alone (the granules packed before the clock) is kept in ``sql_only_s``. As for the
        collector, whose rate ends at the last acknowledgement, the indexing of the last
        keys (under ``INDEX_BATCH_BYTES`` per file) is off the clock: ``index_tail_s``."""
        from collector.storage import sqlite as backend
        from collector.storage.granules import Granule, prepare

        scratch.mkdir(parents=True, exist_ok=True)
        conns: dict[tuple[str, str], sqlite3.Connection] = {}
        fresh: dict[tuple[str, str], int] = {}  # bytes of fresh keys per file
        pack_s = sql_s = 0.0
        for agent, unit, seq, recs in batches:
            t0 = time.perf_counter()
            by_file: dict[tuple[str, str], list[Granule]] = {}
            for g in prepare(recs):
                by_file.setdefault((g.day, g.family), []).append(g)
            t1 = time.perf_counter()
            for f in by_file:  # a file is opened (and created) off the clock
                if f not in conns:
                    conns[f] = backend.SqliteStorage._connect(
                        scratch / f"raw-{f[0]}.{f[1]}.sqlite", "FULL", backend._DAY_SCHEMA)
            t2 = time.perf_counter()
            for f, granules in sorted(by_file.items()):
                c = conns[f]
                c.execute("BEGIN IMMEDIATE")
                fresh[f] = fresh.get(f, 0) + backend.SqliteStorage._insert_chunk(  # the backend's SQL
                    c, agent, unit, seq, granules)
                c.execute("COMMIT")
                if fresh[f] >= backend.INDEX_BATCH_BYTES:
                    backend.SqliteStorage._index_fresh(c)
                    fresh[f] = 0
            pack_s += t1 - t0
            sql_s += time.perf_counter() - t2
        t3 = time.perf_counter()
        for f, c in conns.items():
            if fresh.get(f):
                backend.SqliteStorage._index_fresh(c)
        self.index_tail_s = time.perf_counter() - t3
        for c in conns.values():
            c.close()
        self.sql_only_s = sql_s
        return pack_s + sql_s


class ClickHouseBackend(Backend):
    name = "clickhouse"

    def __init__(self, scratch: Path) -> None:
        from clickhouse_server import ClickHouseServer  # type: ignore[import-not-found]  # tests/…/storage

        self.server = ClickHouseServer.start(scratch / "clickhouse")
        self.n = 0
        self.database = ""

    def serve_args(self) -> list[str]:
        return ["--storage", "clickhouse", "--clickhouse-url", self.server.url,
                "--clickhouse-database", self.database]

    def open(self, data: Path) -> Any:
        from collector.storage.clickhouse import ClickHouseStorage

        self.n += 1
        self.database = f"bench{self.n}"
        return ClickHouseStorage(self.server.url, self.database)

    def drop(self) -> None:
        # merges of old benchmark databases would otherwise take CPU from the next runs
        if self.database:
            self._post(f"DROP DATABASE IF EXISTS {self.database}", b"")

    def _post(self, query: str, body: bytes) -> None:
        url = self.server.url + "?" + urllib.parse.urlencode({"query": query})
        request = urllib.request.Request(url, data=body, method="POST")
        with urllib.request.urlopen(request, timeout=600) as resp:
            resp.read()

    def raw_insert(self, scratch: Path, batches: list[tuple[str, str, int, list[dict[str, Any]]]]) -> float:
        from collector.storage import clickhouse as backend
        from collector.storage.rows import record_row

        self.n += 1
        db = f"raw{self.n}"
        # The backend's own DDL (records, and the lookup tables its materialized views fill):
        # an INSERT into ``records`` costs the server what the backend's costs it.
        for stmt in backend.schema_ddl(db):
            self._post(stmt, b"")
        bodies = []
        ins = time.time_ns()
        for agent, unit, seq, recs in batches:
            ins += 1
            rows = []
            for i, r in enumerate(recs):
                row = dict(zip(backend._COLUMNS, record_row(agent, unit, seq, i, r), strict=True))
                for port in ("src_port", "dst_port", "nat_port"):
                    row[port] = backend._int64_or_none(row[port])
                row["day"] = backend._day_num(row["ts"])
                row["ins"] = ins
                rows.append(row)
            bodies.append(b"\n".join(orjson.dumps(r) for r in rows))
        query = f"INSERT INTO {db}.records FORMAT JSONEachRow"

        async def send() -> None:
            async with aiohttp.ClientSession() as s:
                for body in bodies:
                    async with s.post(self.server.url, params={"query": query}, data=body) as resp:
                        await resp.read()
                        if resp.status != 200:
                            raise RuntimeError(f"ClickHouse: {resp.status}")

        t0 = time.perf_counter()
        asyncio.run(send())
        elapsed = time.perf_counter() - t0
        self._post(f"DROP DATABASE {db}", b"")
        return elapsed

    def close(self) -> None:
        self.server.stop()


# --- phases ----------------------------------------------------------------------------------


def setup_accounts(data: Path, agents: int) -> tuple[list[tuple[str, str, str]], tuple[str, str]]:
    creds = []
    for i in range(agents):
        name, unit = f"gw{i}", f"unit-{i}"
        creds.append((name, unit, cli(data, "agents", "add", name, "--unit", unit)))
    password = cli(data, "users", "add", "olga", "--role", "operator")
    return creds, ("olga", password)


async def upload(url: str, per_agent: list[list[tuple[str, bytes, int]]]) -> float:
    """Every agent's batches, one in flight per agent, all agents at once; seconds until the last ack."""
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=600)) as s:

        async def agent(batches: list[tuple[str, bytes, int]]) -> None:
            for token, body, n in batches:
                headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/msgpack",
                           "Content-Encoding": "zstd"}
                async with s.post(url + "/api/v1/batches", data=body, headers=headers) as resp:
                    answer = await resp.json()
                    if resp.status != 200 or answer.get("accepted") != n or answer.get("duplicate"):
                        raise RuntimeError(f"batch refused: {resp.status} {answer}")

        t0 = time.perf_counter()
        await asyncio.gather(*(agent(b) for b in per_agent))
        return time.perf_counter() - t0


def ingest_phase(backend: Backend, base: list[dict[str, Any]], args: argparse.Namespace, shift: float,
                 scratch: Path) -> dict[str, Any]:
    """Collector, backend and raw insert of the same batches, ``--repeat`` times round-robin, best of each."""
    n = args.records
    batches = list(batches_of(record_stream(base, n, shift), args.batch))
    names = [(f"gw{i}", f"unit-{i}") for i in range(args.agents)]
    encoded: list[list[tuple[bytes, int]]] = [[] for _ in names]
    plain: list[tuple[str, str, int, list[dict[str, Any]]]] = []
    seqs = [0] * len(names)
    for i, recs in enumerate(batches):  # round-robin over the agents, each with its own seq
        a = i % len(names)
        name, unit = names[a]
        seqs[a] += 1
        encoded[a].append((encode_batch(name, unit, seqs[a], recs), len(recs)))
        plain.append((name, unit, seqs[a], recs))
    body_bytes = sum(len(b) for pa in encoded for b, _ in pa)
    print(f"  [{backend.name}] ingest: {n:,} records in {len(batches)} batches of {args.batch}, "
          f"{args.agents} agents, {body_bytes / 1e6:.1f} MB compressed", flush=True)
    runs: list[dict[str, float]] = []
    stored = 0
    for r in range(args.repeat):
        # 1. through the collector (a fresh data directory and fresh agents every run)
        data = scratch / f"ingest-{backend.name}-{r}"
        data.mkdir(parents=True)
        creds, _ = setup_accounts(data, args.agents)
        per_agent = [[(creds[a][2], body, k) for body, k in encoded[a]] for a in range(len(names))]
        if backend.name == "clickhouse":
            backend.open(data).close()  # a fresh database, the one serve is told to use
        coll = Collector(data, backend.serve_args())
        try:
            cpu0, main0 = coll.cpu()
            wall = asyncio.run(upload(coll.url, per_agent))
            catchup = coll.index_catchup()
            cpu1, main1 = coll.cpu()  # with the index catching up: its work is the collector's
            cpu, main_cpu = cpu1 - cpu0, main1 - main0
        finally:
            coll.stop()
        backend.drop()
        # 2. the backend's insert_batch in-process, into a fresh store
        direct_dir = scratch / f"direct-{backend.name}-{r}"
        store = backend.open(direct_dir)
        try:
            t0 = time.perf_counter()
            for agent, unit, seq, recs in plain:
                store.insert_batch(agent, unit, seq, recs)
            direct = time.perf_counter() - t0
            stored = store.count()
        finally:
            store.close()
        backend.drop()
        # 3. raw store inserts of the same rows
        raw_dir = scratch / f"raw-{backend.name}-{r}"
        raw = backend.raw_insert(raw_dir, plain)
        if not args.keep:
            for d in (data, direct_dir, raw_dir):
                shutil.rmtree(d, ignore_errors=True)
        runs.append({"collector_s": wall, "collector_cpu_s": cpu, "collector_main_cpu_s": main_cpu,
                     "index_catchup_s": -1.0 if catchup is None else catchup,
                     "backend_s": direct, "raw_s": raw, "sql_only_s": getattr(backend, "sql_only_s", 0.0),
                     "raw_index_tail_s": getattr(backend, "index_tail_s", 0.0)})
        print(f"  [{backend.name}] run {r + 1}: collector {n / wall:,.0f}/s (CPU {cpu:.1f} s of which main"
              f" process {main_cpu:.1f} s, {wall:.1f} s"
              + (f"; keys all indexed {catchup:.2f} s after the last ack" if catchup is not None else "")
              + "),"
              f" backend {n / direct:,.0f}/s, raw {n / raw:,.0f}/s, collector/raw {wall / raw:.2f}x"
              + (f", SQL alone {n / runs[-1]['sql_only_s']:,.0f}/s" if runs[-1]["sql_only_s"] else ""),
              flush=True)
    wall = min(x["collector_s"] for x in runs)
    direct = min(x["backend_s"] for x in runs)
    raw = min(x["raw_s"] for x in runs)
    cpu = min(x["collector_cpu_s"] for x in runs)
    return {
        "records": n, "batches": len(batches), "agents": args.agents, "batch_records": args.batch,
        "compressed_bytes": body_bytes, "runs": runs,
        "collector_s": wall, "collector_rate": n / wall, "collector_cpu_s": cpu,
        "backend_s": direct, "backend_rate": n / direct, "backend_stored": stored,
        "raw_s": raw, "raw_rate": n / raw,
        "collector_over_raw": wall / raw, "collector_over_backend": wall / direct,
        **({"sql_only_rate": n / sql_only, "collector_over_sql_only": wall / sql_only}
           if (sql_only := min(x["sql_only_s"] for x in runs)) else {}),
    }


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def search_latency(url: str, auth: str, base: list[dict[str, Any]], questions: list[tuple[Any, ...]],
                   rng: random.Random, per_kind: int) -> dict[str, Any]:
    """First pages (100 records) of the record search, as an operator's screen asks for them,
    around the traceback questions' times: by type in a 10-minute window, by inside address
    over an hour, by account over a day, by text over an hour, NAT records of a public
    address over a day. Latency percentiles per kind (API token) and the records returned."""
    hosts = [r["host"] for r in base if r["type"] == "http" and r.get("host")]
    kinds: dict[str, list[float]] = {}
    counts: dict[str, int] = {}

    def params_for(kind: str, q: tuple[Any, ...]) -> dict[str, str]:
        ip, _, ts, in_ip, _, account = q
        if kind == "type, 10 min":
            return {"type": "http", "from": repr(ts - 300), "to": repr(ts + 300)}
        if kind == "inside address, 1 h":
            return {"ip": in_ip, "from": repr(ts - 1800), "to": repr(ts + 1800)}
        if kind == "account, 1 day":
            return {"account": account or "nobody", "from": repr(ts - 43200), "to": repr(ts + 43200)}
        if kind == "text, 1 h":
            return {"q": rng.choice(hosts)[:8], "from": repr(ts - 1800), "to": repr(ts + 1800)}
        return {"type": "nat", "ip": ip, "from": repr(ts - 43200), "to": repr(ts + 43200)}

    async def run() -> None:
        async with aiohttp.ClientSession() as s:
            for kind in ("type, 10 min", "inside address, 1 h", "account, 1 day", "text, 1 h",
                         "NAT of a public address, 1 day"):
                lat = kinds.setdefault(kind, [])
                for i, q in enumerate(questions[:per_kind + 2]):
                    t = time.perf_counter()
                    async with s.get(url + "/api/v1/query/records",
                                     params={**params_for(kind, q), "limit": "100"},
                                     headers={"Authorization": auth}) as resp:
                        page = await resp.json()
                    if resp.status != 200:
                        raise RuntimeError(f"records: {resp.status} {page}")
                    if i >= 2:  # the first two warm the caches
                        lat.append(time.perf_counter() - t)
                        counts[kind] = counts.get(kind, 0) + len(page["records"])

    asyncio.run(run())
    out: dict[str, Any] = {}
    for kind, xs in kinds.items():
        out[kind] = {"queries": len(xs), "p50_ms": pct(xs, 50) * 1e3, "p95_ms": pct(xs, 95) * 1e3,
                     "max_ms": max(xs) * 1e3, "records_per_page": counts.get(kind, 0) / max(len(xs), 1)}
        print(f"  search {kind}: p50 {out[kind]['p50_ms']:.0f} ms, p95 {out[kind]['p95_ms']:.0f} ms, "
              f"max {out[kind]['max_ms']:.0f} ms, {out[kind]['records_per_page']:.0f} records per page",
              flush=True)
    return out


def traceback_phase(backend: Backend, base: list[dict[str, Any]], args: argparse.Namespace,
                    scratch: Path) -> dict[str, Any]:
    n = args.fill
    span = max(float(r["ts"]) for r in base) - min(float(r["ts"]) for r in base)
    cycles = -(-n // len(base))
    shift = max(span + 1.0, args.days * 86_400.0 / cycles)
    data = scratch / f"traceback-{backend.name}"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    _, (user, password) = setup_accounts(data, 1)
    store = backend.open(data)
    print(f"  [{backend.name}] traceback: filling {n:,} records ({cycles} cycles over {args.days} day(s)) "
          "by direct backend inserts", flush=True)
    t0 = time.perf_counter()
    try:
        done = 0
        for seq, recs in enumerate(batches_of(record_stream(base, n, shift), args.batch)):
            store.insert_batch("gw0", "unit-0", seq + 1, recs)
            done += len(recs)
            if done % 1_000_000 < args.batch:
                el = time.perf_counter() - t0
                print(f"    {done:,} records, {el:.0f} s, {done / el:,.0f}/s", flush=True)
        fill_s = time.perf_counter() - t0
    finally:
        store.close()
    # Questions: random NAT mappings of random cycles, asked 0.1 s after the mapping began.
    rng = random.Random(args.seed)
    nats = [r for r in base if r["type"] == "nat" and r["event"] == "create"]
    accounts = {r["ip"]: r["account"] for r in base if r["type"] == "login"}
    questions = []
    for _ in range(args.queries):
        r = rng.choice(nats)
        c = rng.randrange(cycles)
        if c * len(base) + base.index(r) >= n:  # that copy was not stored
            c = 0
        questions.append((r["outside_ip"], r["outside_port"], r["ts"] + c * shift + 0.1,
                          r["inside_ip"], r["inside_port"], accounts.get(r["inside_ip"])))
    # An API token for the same operator (what a script or the UI would hold): the same query
    # without the password KDF that every Basic request pays (scrypt, ~50 ms by design).
    from collector.auth.accounts import Accounts

    accounts_db = Accounts(data / "accounts.sqlite")
    try:
        api_token = accounts_db.add_api_token(user)
    finally:
        accounts_db.close()
    auths = {"basic": aiohttp.encode_basic_auth(user, password), "token": f"Bearer {api_token}"}
    lat: dict[str, list[float]] = {"basic": [], "token": []}
    found = {"basic": 0, "token": 0}
    coll = Collector(data, backend.serve_args())
    try:
        async def ask() -> None:
            async with aiohttp.ClientSession() as s:
                for i, (ip, port, ts, in_ip, in_port, account) in enumerate(questions):
                    # each question with both credentials, the order alternating (cache warmth)
                    for kind in ("basic", "token") if i % 2 == 0 else ("token", "basic"):
                        t = time.perf_counter()
                        async with s.get(coll.url + "/api/v1/query/traceback",
                                         params={"ip": ip, "port": str(port), "ts": repr(ts)},
                                         headers={"Authorization": auths[kind]}) as resp:
                            answer = await resp.json()
                        if i >= 3:  # the first few warm the caches
                            lat[kind].append(time.perf_counter() - t)
                        if resp.status != 200:
                            raise RuntimeError(f"traceback: {resp.status} {answer}")
                        inside, ident = answer.get("inside") or {}, answer.get("identity") or {}
                        if (inside.get("ip"), inside.get("port")) == (in_ip, in_port) \
                                and ident.get("account") == account:
                            found[kind] += 1
                        elif os.environ.get("BENCH_DEBUG"):
                            print("    wrong answer:", ip, port, ts, in_ip, in_port, account, answer,
                                  file=sys.stderr)

        asyncio.run(ask())
        searches = search_latency(coll.url, auths["token"], base, questions, rng, args.searches)
    finally:
        coll.stop()
    if not args.keep:
        backend.drop()
        shutil.rmtree(data, ignore_errors=True)
    res: dict[str, Any] = {"stored": n, "fill_s": fill_s, "fill_rate": n / fill_s,
                           "fill_method": "direct backend insert_batch", "asked": len(questions),
                           "search": searches}
    for kind, xs in lat.items():
        res[kind] = {"queries": len(xs), "p50_ms": pct(xs, 50) * 1e3, "p95_ms": pct(xs, 95) * 1e3,
                     "p99_ms": pct(xs, 99) * 1e3, "max_ms": max(xs) * 1e3, "answered_right": found[kind]}
        print(f"  [{backend.name}] traceback over {n:,}, {kind}: p50 {res[kind]['p50_ms']:.1f} ms, "
              f"p95 {res[kind]['p95_ms']:.1f} ms, p99 {res[kind]['p99_ms']:.1f} ms "
              f"({found[kind]}/{len(questions)} right)", flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    p.add_argument("--storage", default="sqlite,clickhouse")
    p.add_argument("--records", type=int, help="records uploaded in the ingest phase (200,000; quick 40,000)")
    p.add_argument("--fill", type=int, help="records stored for traceback (10,000,000; quick 200,000)")
    p.add_argument("--queries", type=int, help="traceback requests (1,000; quick 100)")
    p.add_argument("--searches", type=int, default=50, help="record searches of each kind (default 50)")
    p.add_argument("--agents", type=int, default=4)
    p.add_argument("--repeat", type=int, default=1, help="ingest runs (round-robin), best of each")
    p.add_argument("--batch", type=int, default=5000)
    p.add_argument("--days", type=float, default=1.0, help="the fill spreads over this many days")
    p.add_argument("--packets", type=int, default=200_000, help="capture the records come from")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--phases", default="ingest,traceback")
    p.add_argument("--out", type=Path, default=JSON_PATH, help="JSON results (default: %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the scratch data under bench/out/collector/")
    p.add_argument("--build", choices=("auto", "compiled", "pure"), default="auto",
                   help="the collector's build: mypyc-compiled (build/compiled, `make compiled`) or the "
                        "sources; auto: compiled when built (read before the imports; see select_build)")
    args = p.parse_args(argv)
    args.records = args.records or (40_000 if args.quick else 200_000)
    args.fill = args.fill or (200_000 if args.quick else 10_000_000)
    args.queries = args.queries or (100 if args.quick else 1000)
    phases = args.phases.split(",")

    # The data ends before today: the fill's --days end at the last midnight before yesterday's.
    start = (time.time() // 86_400 - 1 - math.ceil(args.days)) * 86_400
    base = base_records(capture_records(args.packets, args.seed), start)
    span = max(float(r["ts"]) for r in base) - min(float(r["ts"]) for r in base)
    counts: dict[str, int] = {}
    for r in base:
        counts[r["type"]] = counts.get(r["type"], 0) + 1
    print(f"records: {len(base):,} per cycle over {span:.1f} s ({counts})", flush=True)
    print(f"collector build: {BUILD}", flush=True)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=WORK_DIR))
    results: dict[str, Any] = {
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
                 "kernel": platform.release(), "sqlite": sqlite3.sqlite_version},
        "args": vars(args), "build": BUILD, "records_per_cycle": len(base), "types": counts, "backends": {},
    }
    status = 0
    try:
        for name in args.storage.split(","):
            backend: Backend
            try:
                backend = SqliteBackend() if name == "sqlite" else ClickHouseBackend(scratch)
            except RuntimeError as e:
                print(f"  [{name}] not measured: {e}", flush=True)
                results["backends"][name] = {"error": str(e)}
                status = max(status, 2) if name == "sqlite" else status
                continue
            res: dict[str, Any] = {}
            try:
                if "ingest" in phases:
                    res["ingest"] = ingest_phase(backend, base, args, span + 1.0, scratch)
                if "traceback" in phases:
                    res["traceback"] = traceback_phase(backend, base, args, scratch)
            finally:
                backend.close()
            results["backends"][name] = res
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)

    print()
    print("| store | collector rec/s (CPU s) | backend insert_batch rec/s | raw insert rec/s"
          " | collector / raw |"
          " traceback ms p50 / p95 / p99, Basic | same, API token | stored |")
    print("|---|---|---|---|---|---|---|---|")
    for name, res in results["backends"].items():
        ing, tb = res.get("ingest"), res.get("traceback")
        cols = [name]
        if ing:
            cols += [f"{ing['collector_rate']:,.0f} ({ing['collector_cpu_s']:.1f})",
                     f"{ing['backend_rate']:,.0f}", f"{ing['raw_rate']:,.0f}",
                     f"{ing['collector_over_raw']:.2f}×"]
        else:
            cols += ["-"] * 4
        if tb:
            cols += [" / ".join(f"{tb[kind][q]:.1f}" for q in ("p50_ms", "p95_ms", "p99_ms"))
                     for kind in ("basic", "token")]
            cols.append(f"{tb['stored']:,}")
        else:
            cols += ["-"] * 3
        print("| " + " | ".join(cols) + " |")
    sq = results["backends"].get("sqlite", {}).get("ingest")
    if sq:
        ok_rate = sq["collector_rate"] >= SQLITE_TARGET_RATE
        ok_ratio = sq["collector_over_raw"] <= OVERHEAD_TARGET
        print(f"sqlite ingest {sq['collector_rate']:,.0f} records/s (target ≥ {SQLITE_TARGET_RATE:,}) "
              f"{'PASS' if ok_rate else 'FAIL'}; collector / raw {sq['collector_over_raw']:.2f}× "
              f"(target ≤ {OVERHEAD_TARGET}×) {'PASS' if ok_ratio else 'FAIL'}")
        results["verdict"] = {"rate": ok_rate, "ratio": ok_ratio}
        if status == 0 and not (ok_rate and ok_ratio):
            status = 1
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"written: {args.out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
