"""Spool → uploader → a real collector: every record stored exactly once, whatever crashes.

- the drain sends what is spooled; a batch sent but not marked (a crash between the
  collector's answer and `mark_sent`) is resent under its number and stored once;
- the collector down: the spool holds everything, and drains when it is back;
- the issue's reliability run on the data path alone: 100,000 records written by a stand-in
  agent process (the spool and the real drain) while it drains them; it and the collector
  are each killed with SIGKILL 5 times at random moments and restarted; then the collector
  holds each record number exactly once. The same run against the whole ``edgeaudit-agent
  run`` is tests/e2e/test_agent_run_reliability.py.
- batches the collector refuses (a record it does not take in each of them) while the agent
  is killed at random moments: every record is once either at the collector or in the
  spool's quarantine, never both, never neither (the move to the quarantine is one
  transaction with leaving the queue).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import IO, Any

import msgpack  # type: ignore[import-untyped]
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "collector"))
from collector_server import ENV, REPO, cli, free_port  # noqa: E402

from agent.spool.store import Spool  # noqa: E402
from agent.uploader.client import CollectorClient  # noqa: E402
from agent.uploader.drain import SpoolDrain, build_body  # noqa: E402
from collector.storage.sqlite import SqliteStorage  # noqa: E402

AGENT = Path(__file__).with_name("spool_agent.py")


def record(n: int) -> dict[str, Any]:
    return {"type": "weird", "ts": time.time(), "name": "spool_test", "detail": str(n)}


def stored_numbers(data: Path, agent: str = "gw1") -> list[int]:
    """Record numbers the collector committed (read from its store after it stopped)."""
    out: list[int] = []
    store = SqliteStorage(data / "records")
    try:
        cursor = None
        while True:
            page = store.records(type="weird", cursor=cursor)
            out += [int(r["detail"]) for r in page.records if r["_agent"] == agent]
            if (cursor := page.cursor) is None:
                return out
    finally:
        store.close()


def assert_exactly_once(numbers: list[int], total: int) -> None:
    dups = [n for n, c in Counter(numbers).items() if c > 1]
    missing = set(range(total)) - set(numbers)
    assert not dups, f"{len(dups)} records stored more than once, e.g. {sorted(dups)[:5]}"
    assert not missing, f"{len(missing)} records never stored, e.g. {sorted(missing)[:5]}"
    assert len(numbers) == total


def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)  # polling a condition with a deadline


class Collector:
    """`edgeaudit-collector serve` on a fixed port and data directory that can be killed and restarted."""

    def __init__(self, tmp: Path) -> None:
        self.data = tmp / "data"
        self.token = cli("agents", "add", "gw1", "--unit", "unit-42", "--data", str(self.data))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log: IO[bytes] = (tmp / "serve.log").open("ab")
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra: list[str] = []  # more `serve` options (bench/soak_reliability.py: witnesses)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "collector.cli", "serve", "--data", str(self.data), "--listen",
             f"127.0.0.1:{self.port}", *self.extra], stdout=self.log, stderr=subprocess.STDOUT, env=ENV,
            cwd=REPO)
        proc = self.proc

        def ready() -> bool:
            assert proc.poll() is None, "collector exited"
            try:
                urllib.request.urlopen(self.url + "/metrics", timeout=1).read()
                return True
            except OSError:
                return False
        wait_for(ready, 30, "the collector to answer")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(30)
        self.log.close()


class Agent:
    def __init__(self, tmp: Path, url: str, token: str, total: int, chunk: int, rate: float,
                 bad_every: int = 0) -> None:
        self.args = [sys.executable, str(AGENT), str(tmp / "spool.db"), url, token, str(total), str(chunk),
                     str(rate), str(bad_every)]
        self.log: IO[bytes] = (tmp / "agent.log").open("ab")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT, env=ENV, cwd=REPO)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def all_done(spool: Spool, agent: Agent, total: int) -> bool:
    """The stand-in agent wrote its last record and nothing is left in the upload queue."""
    newest = spool.newest()
    assert agent.alive(), Path(agent.log.name).read_text()[-3000:]
    return newest is not None and newest["detail"] == str(total - 1) and spool.stats().unsent_records == 0


def test_drain_sends_everything_once_and_a_resend_is_a_duplicate(tmp_path: Path) -> None:
    c = Collector(tmp_path)
    c.start()
    try:
        spool = Spool(tmp_path / "spool.db", sync="NORMAL")
        assert spool.append(record(n) for n in range(0, 2500)) == 2500
        client = CollectorClient(c.url, c.token)
        # a crash after the collector's commit and before mark_sent: the batch was sent, not marked
        b = spool.next_batch(1000)
        assert b is not None
        agent, unit = client.whoami()
        assert client.post_batch(build_body(agent, unit, b.batch_seq, b.bodies, time.time())) == {
            "accepted": 1000, "duplicate": False}
        spool.close()
        spool = Spool(tmp_path / "spool.db", sync="NORMAL")
        drain = SpoolDrain(spool, client, batch_records=1000)
        drain.drain()
    finally:
        c.stop()
    assert drain.counters["duplicates"] == 1 and drain.counters["resent"] == 1
    assert drain.counters["records"] == 2500 and drain.counters["batches"] == 3
    st = spool.stats()
    assert (st.unsent_records, st.spool_records, st.upload_lag_s) == (0, 2500, None)  # sent ones are kept
    assert_exactly_once(stored_numbers(c.data), 2500)


def test_collector_down_the_spool_holds_everything_and_drains_when_it_returns(tmp_path: Path) -> None:
    c = Collector(tmp_path)
    total = 20_000
    agent = Agent(tmp_path, c.url, c.token, total, 1000, 1e9)
    agent.start()
    spool = Spool(tmp_path / "spool.db")
    try:
        def written() -> bool:
            newest = spool.newest()
            return newest is not None and newest["detail"] == str(total - 1)
        wait_for(written, 60, "the writer")
        st = spool.stats()
        assert st.unsent_records == total and st.spool_records == total
        assert agent.alive()
        c.start()
        wait_for(lambda: spool.stats().unsent_records == 0, 60, "the spool to drain")
    finally:
        agent.kill()
        c.stop()
    assert spool.stats().spool_records == total  # the local backup keeps them
    assert_exactly_once(stored_numbers(c.data), total)


def test_kill_agent_and_collector_5_times_each_every_record_stored_exactly_once(tmp_path: Path) -> None:
    total, chunk, rate = 100_000, 250, 5000.0  # about 20 s of writing
    seed = int(os.environ.get("SPOOL_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    c = Collector(tmp_path)
    c.start()
    agent = Agent(tmp_path, c.url, c.token, total, chunk, rate)
    agent.start()
    spool = Spool(tmp_path / "spool.db")
    kills = ["agent"] * 5 + ["collector"] * 5
    rng.shuffle(kills)
    t0 = time.monotonic()
    try:
        for kind in kills:
            time.sleep(rng.uniform(0.3, 2.0))  # a random moment (not synchronization)
            if kind == "agent":
                agent.kill()
                time.sleep(rng.uniform(0, 0.5))
                agent.start()
            else:
                c.kill()
                time.sleep(rng.uniform(0, 0.5))
                c.start()
        kills_done = time.monotonic() - t0
        wait_for(lambda: all_done(spool, agent, total), 90, "every record written and acknowledged")
        elapsed = time.monotonic() - t0
    finally:
        agent.kill()
        c.stop()
    st = spool.stats()
    log = (tmp_path / "agent.log").read_text()
    print(f"seed {seed}: kills {kills} in {kills_done:.1f}s, all acknowledged after {elapsed:.1f}s; "
          f"resent batches {log.count('resending batch')}, collector-down episodes "
          f"{log.count('not answering')}; spool: {st}")
    assert st.spool_records == total and st.records_dropped == 0
    assert_exactly_once(stored_numbers(c.data), total)


def test_refused_batches_are_quarantined_exactly_once_while_the_agent_is_killed(tmp_path: Path) -> None:
    total, chunk, rate, bad_every = 8000, 100, 4000.0, 2000  # about 2 s of writing
    seed = int(os.environ.get("SPOOL_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    c = Collector(tmp_path)
    c.start()
    agent = Agent(tmp_path, c.url, c.token, total, chunk, rate, bad_every)
    agent.start()
    spool = Spool(tmp_path / "spool.db")
    try:
        for _ in range(5):
            time.sleep(rng.uniform(0.2, 0.8))  # a random moment (not synchronization)
            agent.kill()
            agent.start()
        wait_for(lambda: all_done(spool, agent, total), 60, "every record acknowledged or quarantined")
    finally:
        agent.kill()
        c.stop()
    quarantined: list[int] = []
    for q in spool.quarantined():
        rows = spool._conn.execute(  # test-only peek at the quarantined records
            "SELECT body FROM records WHERE id BETWEEN (SELECT first_id FROM quarantine WHERE batch_seq = ?)"
            " AND (SELECT last_id FROM quarantine WHERE batch_seq = ?)", (q.batch_seq, q.batch_seq)
        ).fetchall()
        numbers = [int(msgpack.unpackb(r[0])["detail"]) for r in rows]
        assert len(numbers) == q.records and (q.status, q.error) == (400, "invalid_batch")
        assert any(n % bad_every == 0 for n in numbers)  # only batches the collector had to refuse
        quarantined += numbers
    stored = stored_numbers(c.data)
    st = spool.stats()
    print(f"seed {seed}: {st.quarantined_batches} batches ({st.quarantined_records} records) quarantined")
    assert not set(stored) & set(quarantined)
    assert {n for n in range(total) if n % bad_every == 0} <= set(quarantined)
    assert st.quarantined_records == len(quarantined) and st.records_lost == 0
    assert len(stored) > total / 2  # the batches after a refused one went on
    assert_exactly_once(stored + quarantined, total)


def test_the_drain_stops_promptly_while_the_collector_is_down(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    spool.append(record(n) for n in range(10))
    drain = SpoolDrain(spool, CollectorClient(f"http://127.0.0.1:{free_port()}", "t", timeout=2),
                       backoff_cap_s=0.2)
    stop = threading.Event()
    t = threading.Thread(target=drain.run, args=(stop,))
    t.start()
    wait_for(lambda: drain.counters["retries"] >= 3, 30, "a few retries")
    stop.set()
    t.join(5)
    assert not t.is_alive()
    assert drain.counters["last_error"] and spool.stats().unsent_records == 10
