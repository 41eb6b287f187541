"""Ingest integrity against a hostile or broken agent (issue 18, part B), on a real collector.

Each test reproduces one fault found on a collector on loopback and fails on the code before
issue 18:
- a batch dated far in the future, or spread over more days than an agent's backup holds,
  was stored (1,500 records on 1,500 days: 1,500 day files, 11.6 s under the storage lock);
  it gets 422 and stores nothing;
- one agent's batch over many day files held the storage lock until all of them were
  written, while another agent's 20 records waited: the others now wait a turn, not the batch;
- other records under a used ``batch_seq`` were answered ``duplicate`` and lost (19 of 20
  concurrent uploads sharing a number); they get 409 and are not stored, a resend of the
  same records is still a duplicate, on SQLite and on a real ClickHouse, across a restart,
  after a commit that failed half-way, and with markers written before digests were kept;
- a record map holding a key twice, a negative duration, a NUL in a string were stored; 400.
"""

from __future__ import annotations

import base64
import json
import random
import sqlite3
import string
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
import zstandard
from collector_server import post, serve

from collector.storage.base import InsertResult
from collector.storage.sqlite import SqliteStorage
from wire.envelope import encode_batch

sys.path.insert(0, str(Path(__file__).parent / "storage"))
from clickhouse_server import ClickHouseServer, find_binary  # noqa: E402

DAY = 86_400.0
#: A well-behaved upload's answer while another agent's batch is being committed, seconds.
#: A turn of that batch lasts ~0.05 s plus one file's transaction (~0.04 s to create a day
#: file here); the rest is HTTP and decoding on a busy 2-core machine.
LATENCY_BOUND = 1.0


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One collector for the module (starting one costs seconds): each test uses its own
    batch numbers and record tags."""
    yield from serve(tmp_path_factory.mktemp("hostile"))


def weird(ts: float, tag: str) -> dict[str, Any]:
    return {"type": "weird", "ts": ts, "name": "hostile_test", "detail": tag}


def recent(n: int, tag: str, t0: float | None = None) -> list[dict[str, Any]]:
    """``n`` records of the last hour, each detail ``tag`` and its index."""
    start = time.time() - 3600 if t0 is None else t0
    return [weird(start + i, f"{tag}{i}") for i in range(n)]


def details(c: dict[str, Any], tag: str) -> list[str]:
    """The details starting with ``tag`` of the stored weird records, as an operator's search
    finds them."""
    user, password = c["operator"]
    req = urllib.request.Request(c["url"] + "/api/v1/query/records?type=weird&limit=1000")
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    with urllib.request.urlopen(req, timeout=30) as resp:
        return sorted(r["detail"] for r in json.loads(resp.read())["records"] if r["detail"].startswith(tag))


def day_files(c: dict[str, Any]) -> list[str]:
    return sorted(p.name for p in (c["data"] / "records").glob("records-*.sqlite"))


def conflict() -> Any:
    """``pytest.raises`` for ``collector.storage.BatchConflict``, by its message: the module
    must load on the code before issue 18 (no such class), where these tests fail."""
    return pytest.raises(Exception, match="a batch number is used once")


def refused(answer: tuple[int, dict[str, Any]], status: int, error: str) -> None:
    code, body = answer
    assert (code, body.get("error")) == (status, error), answer
    assert body["detail"]


# --- 2: times ------------------------------------------------------------------------------


def test_records_dated_in_the_future_are_refused(collector: dict[str, Any]) -> None:
    c = collector
    files = day_files(c)
    late = [*recent(3, "future"), weird(4_102_444_000.0, "future-2099")]  # the wire bound allows it
    refused(post(c["url"], encode_batch("gw1", "unit-42", 101, late), c["token"]), 422, "records_in_future")
    assert day_files(c) == files
    # a clock a little ahead (no NTP) is tolerated: the default allows a day
    ahead = [weird(time.time() + 3 * 3600, "future-ahead")]
    assert post(c["url"], encode_batch("gw1", "unit-42", 102, ahead), c["token"]) == (
        200, {"accepted": 1, "duplicate": False})
    assert details(c, "future") == ["future-ahead"]


def test_a_batch_spread_over_more_days_than_a_backup_holds_is_refused(collector: dict[str, Any]) -> None:
    """The issue's case: 1,500 records on 1,500 days. Refused before the store sees it: no
    day file is made (there were 1,500, and retention never reached the future ones)."""
    c = collector
    now = time.time()
    files = day_files(c)
    spread = [weird(now - i * DAY, f"span{i}") for i in range(1500)]
    t = time.monotonic()
    answer = post(c["url"], encode_batch("gw1", "unit-42", 201, spread), c["token"])
    refused(answer, 422, "batch_span_too_long")
    assert time.monotonic() - t < 5
    assert "180 days" in answer[1]["detail"]  # the default: the collector's retention
    assert day_files(c) == files and details(c, "span") == []
    # just within: 180 days apart
    edge = [weird(now - 180 * DAY, "span-first"), weird(now, "span-last")]
    assert post(c["url"], encode_batch("gw1", "unit-42", 202, edge), c["token"])[0] == 200
    assert details(c, "span") == ["span-first", "span-last"]


def test_the_limits_are_set_by_serve_flags(tmp_path: Path) -> None:
    """``serve --max-future-seconds 60 --max-batch-days 2``: what the defaults (a day ahead,
    the 180 retention days) accept is refused."""
    gen = serve(tmp_path, extra=("--max-future-seconds", "60", "--max-batch-days", "2"))
    c = next(gen)
    try:
        now = time.time()
        ahead = encode_batch("gw1", "unit-42", 1, [weird(now + 3600, "flags-ahead")])
        refused(post(c["url"], ahead, c["token"]), 422, "records_in_future")
        spread = [weird(now - 3 * DAY, "flags-old"), weird(now, "flags-new")]
        answer = post(c["url"], encode_batch("gw1", "unit-42", 2, spread), c["token"])
        refused(answer, 422, "batch_span_too_long")
        assert "more than the 2 days" in answer[1]["detail"]
        within = [weird(now - 2 * DAY + 60, "flags-old"), weird(now + 30, "flags-new")]
        assert post(c["url"], encode_batch("gw1", "unit-42", 3, within), c["token"])[0] == 200
    finally:
        next(gen, None)


def test_another_agents_upload_is_not_stalled_by_a_batch_over_many_days(collector: dict[str, Any]) -> None:
    """A hostile but accepted batch (records on 100 days: 100 day files to create) from gw1;
    while it is being committed, gw2's 20-record upload is answered within LATENCY_BOUND,
    long before the big one, which is stored too. Before, gw2 waited for the whole batch."""
    c = collector
    now = time.time()
    # days before any other test's records (-181 .. -280 days): every file is new
    spread = [weird(now - (181 + i) * DAY, f"big{i}") for i in range(100)]
    files = len(day_files(c))
    big: dict[str, Any] = {}

    def upload_big() -> None:
        big["answer"] = post(c["url"], encode_batch("gw1", "unit-42", 301, spread), c["token"])
        big["done"] = time.monotonic()

    thread = threading.Thread(target=upload_big)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while len(day_files(c)) < files + 5:  # the big batch is being committed: its files appear
            assert time.monotonic() < deadline and thread.is_alive(), big
            time.sleep(0.01)
        t = time.monotonic()
        small = post(c["url"], encode_batch("gw2", "unit-7", 301, recent(20, "small")), c["other"])
        answered = time.monotonic()
        files_then = len(day_files(c))
        assert small == (200, {"accepted": 20, "duplicate": False})
        assert answered - t < LATENCY_BOUND, f"gw2 waited {answered - t:.2f} s"
        # it overtook the big batch: files of that one were still to be written
        assert files_then < files + len(spread), "gw2 was answered only once the big batch was stored"
    finally:
        thread.join(60)
    assert big["answer"] == (200, {"accepted": 100, "duplicate": False})
    assert len(day_files(c)) >= files + 100
    assert len(details(c, "big")) == 100 and len(details(c, "small")) == 20


# --- 5: a batch number used again ------------------------------------------------------------


def test_other_records_under_a_used_batch_seq_get_409_and_are_kept_out(collector: dict[str, Any]) -> None:
    c = collector
    records = recent(3, "reuse-a")
    first = encode_batch("gw1", "unit-42", 5, records)
    assert post(c["url"], first, c["token"]) == (200, {"accepted": 3, "duplicate": False})
    # the same records, rebuilt by the agent to send them again (another `created`): a duplicate
    again = encode_batch("gw1", "unit-42", 5, records, created=time.time() + 5)
    assert again != first
    assert post(c["url"], again, c["token"]) == (200, {"accepted": 3, "duplicate": True})
    other = encode_batch("gw1", "unit-42", 5, recent(4, "reuse-b"))
    code, body = post(c["url"], other, c["token"])
    assert code == 409 and body["error"] == "batch_seq_reused" and "used once" in body["detail"]
    assert details(c, "reuse") == ["reuse-a0", "reuse-a1", "reuse-a2"]
    # another agent may use the number
    assert post(c["url"], encode_batch("gw2", "unit-7", 5, recent(1, "reuse-g")), c["other"])[0] == 200
    metrics = urllib.request.urlopen(c["url"] + "/metrics", timeout=10).read().decode()
    assert 'edgeaudit_ingest_refused_total{reason="batch_seq_reused"} 1' in metrics


def test_concurrent_uploads_sharing_a_batch_seq(collector: dict[str, Any]) -> None:
    """20 uploads at once under one number with different records: one is stored, 19 refused
    (they were 19 "duplicates" whose records were lost); 20 copies of one batch at once: one
    stored, 19 duplicates."""
    c = collector
    bodies = [encode_batch("gw1", "unit-42", 9, recent(2, f"race{i}-")) for i in range(20)]
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda b: post(c["url"], b, c["token"]), bodies))
    stored = [i for i, (code, _) in enumerate(answers) if code == 200]
    assert len(stored) == 1 and sorted(code for code, _ in answers) == [200] + [409] * 19, answers
    assert details(c, "race") == [f"race{stored[0]}-0", f"race{stored[0]}-1"]
    same = encode_batch("gw1", "unit-42", 10, recent(2, "race-same"))
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: post(c["url"], same, c["token"]), range(20)))
    assert sorted(a[1]["duplicate"] for a in answers) == [False] + [True] * 19, answers
    assert len(details(c, "race")) == 4


# --- 5, 6: records the schema refuses -----------------------------------------------------------


def _with_key_twice(key: str, first: Any, second: Any) -> bytes:
    """A batch whose one weird record's msgpack map holds ``key`` twice."""
    rec = {k: v for k, v in weird(time.time(), "twice").items() if k != key}
    entries = [*rec.items(), (key, first), (key, second)]
    raw = bytes([0x80 | len(entries)]) + b"".join(msgpack.packb(k) + msgpack.packb(v) for k, v in entries)
    head = msgpack.packb({"v": "1.1", "agent_id": "gw1", "unit_id": "unit-42", "batch_seq": 3,
                          "created": time.time(), "records": []})
    return bytes(zstandard.ZstdCompressor().compress(head[:-1] + b"\x91" + raw))


def test_a_record_holding_a_key_twice_is_refused(collector: dict[str, Any]) -> None:
    """Stored as sent, the record carried both values and readers pick one (msgpack's last)."""
    c = collector
    answer = post(c["url"], _with_key_twice("detail", "twice: the filter saw", "twice: stored"), c["token"])
    refused(answer, 400, "invalid_batch")
    assert "'detail' twice" in answer[1]["detail"]
    assert details(c, "twice") == []


@pytest.mark.parametrize(("record", "field", "seq"), [
    ({"type": "session", "ts": 1_700_000_000.0, "uid": "C1", "proto": "tcp", "src_ip": "10.0.0.1",
      "src_port": 1, "dst_ip": "10.0.0.2", "dst_port": 80, "vlan": None, "inner_vlan": None, "src_mac": None,
      "dst_mac": None, "service": None, "duration": -5.0, "orig_bytes": 0, "resp_bytes": 0, "orig_pkts": 1,
      "resp_pkts": 0, "orig_ip_bytes": 40, "resp_ip_bytes": 0, "missed_bytes": 0,
      "community_id": "1:" + "A" * 27 + "=", "conn_state": "S0", "history": "S", "nat_ip": None,
      "nat_port": None, "account": None, "blocked": False, "interim": False}, "duration", 401),
    ({"type": "weird", "ts": 1_700_000_000.0, "name": "x", "detail": "refused/admin\x00.jpg"}, "detail", 402),
], ids=["negative duration", "NUL"])
def test_negative_durations_and_nul_characters_are_refused(collector: dict[str, Any], record: dict[str, Any],
                                                            field: str, seq: int) -> None:
    """SCHEMA.md: a duration is last packet - first, never negative; a NUL cuts the stored
    text short for C-string readers (the agent writes a NUL byte as \\x00)."""
    c = collector
    answer = post(c["url"], encode_batch("gw1", "unit-42", seq, [record], validate=False), c["token"])
    refused(answer, 400, "invalid_batch")
    assert f"'{field}'" in answer[1]["detail"]
    assert details(c, "refused") == []


# --- the digest in the stores -------------------------------------------------------------


def test_sqlite_keeps_the_digest_across_a_restart_and_reads_older_markers(tmp_path: Path) -> None:
    """Markers written before digests (an older meta.sqlite) stay readable and match any
    content; a batch stored now is compared after a restart."""
    where = tmp_path / "records"
    where.mkdir()
    with sqlite3.connect(where / "meta.sqlite") as old:  # the layout before issue 18
        old.execute("CREATE TABLE batches (agent TEXT NOT NULL, batch_seq INTEGER NOT NULL,"
                    " unit TEXT NOT NULL, count INTEGER NOT NULL, stored_at REAL NOT NULL,"
                    " PRIMARY KEY (agent, batch_seq)) WITHOUT ROWID")
        old.execute("INSERT INTO batches VALUES ('a', 1, 'u', 7, 0)")
    x = recent(2, "x")
    store = SqliteStorage(where)
    try:
        assert store.insert_batch("a", "u", 1, x) == InsertResult(7, duplicate=True)
        assert store.insert_batch("a", "u", 2, x) == InsertResult(2, duplicate=False)
    finally:
        store.close()
    store = SqliteStorage(where)
    try:
        with conflict():
            store.insert_batch("a", "u", 2, recent(3, "y"))
        assert store.insert_batch("a", "u", 2, x).duplicate is True
        assert store.count() == 2
    finally:
        store.close()


def test_sqlite_a_batch_that_failed_half_way_is_finished_by_its_resend_only(tmp_path: Path) -> None:
    """A commit that fails after some files leaves granules and a pending marker: other
    records under that number are refused (they would have been mixed with the remains, and
    the resend then taken for a duplicate); the resend of the same records completes it."""
    store = SqliteStorage(tmp_path / "records")
    try:
        now = time.time()
        batch = [weird(now - DAY, "first day"), weird(now, "second day")]
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        blocker = tmp_path / "records" / f"records-{day}.event.sqlite"
        blocker.mkdir()  # the second day's file cannot be made: its commit fails
        with pytest.raises(sqlite3.Error):
            store.insert_batch("a", "u", 1, batch)
        blocker.rmdir()
        assert store.count() == 1  # the first day's file was committed
        with conflict():
            store.insert_batch("a", "u", 1, [weird(now - DAY, "other"), weird(now, "records")])
        assert store.insert_batch("a", "u", 1, batch) == InsertResult(2, duplicate=False)
        assert sorted(r["detail"] for r in store.records().records) == ["first day", "second day"]
    finally:
        store.close()


def test_clickhouse_refuses_other_records_under_a_used_batch_seq(tmp_path: Path) -> None:
    """On a real clickhouse-server, over HTTP: 409 and nothing stored; a store whose markers
    predate digests (no digest column) gets the column at open and reads them as before."""
    if find_binary() is None:
        pytest.skip("clickhouse-server is not installed (apt-get install clickhouse-server)")
    from collector.storage.clickhouse import ClickHouseStorage

    ch = ClickHouseServer.start(tmp_path / "ch")
    try:
        gen = serve(tmp_path, extra=("--storage", "clickhouse", "--clickhouse-url", ch.url,
                                     "--clickhouse-database", "hostile"))
        c = next(gen)
        try:
            body = encode_batch("gw1", "unit-42", 5, recent(3, "a"))
            assert post(c["url"], body, c["token"]) == (200, {"accepted": 3, "duplicate": False})
            assert post(c["url"], body, c["token"]) == (200, {"accepted": 3, "duplicate": True})
            refused(post(c["url"], encode_batch("gw1", "unit-42", 5, recent(3, "b")), c["token"]), 409,
                    "batch_seq_reused")
            assert details(c, "") == ["a0", "a1", "a2"]
        finally:
            next(gen, None)
        x = recent(2, "x")
        old = ClickHouseStorage(ch.url, "older")
        old.insert_batch("a", "u", 1, x)
        old._execute("ALTER TABLE batches DROP COLUMN digest")  # as a store made before issue 18
        old.close()
        store = ClickHouseStorage(ch.url, "older")
        try:
            assert store.insert_batch("a", "u", 1, recent(5, "other")) == InsertResult(2, duplicate=True)
            store.insert_batch("a", "u", 2, x)
            assert store.insert_batch("a", "u", 2, x).duplicate is True
            with conflict():
                store.insert_batch("a", "u", 2, recent(2, "y"))
            assert store.count() == 4
        finally:
            store.close()
    finally:
        ch.stop()


def test_a_full_disk_is_a_503_the_agent_retries_not_a_500(tmp_path: Path) -> None:
    """The collector's data on a 4 MiB file system: once the store cannot commit (SQLite:
    "database or disk is full"), uploads get 503 storage_unavailable with a JSON body (the
    agent keeps the batch and retries), not aiohttp's text 500; nothing half-stored is acked."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    try:
        gen = serve(mnt)
        c = next(gen)
        answers: list[int] = []
        try:
            rng = random.Random(7)
            for seq in range(1, 60):
                recs = [{"type": "weird", "ts": time.time() - 3600, "name": "fill",
                         "detail": "".join(rng.choices(string.ascii_letters, k=900))} for _ in range(500)]
                status, ans = post(c["url"], encode_batch("gw1", "unit-42", seq, recs), c["token"])
                answers.append(status)
                if status != 200:
                    assert (status, ans["error"]) == (503, "storage_unavailable"), ans
                    assert "full" in ans["detail"]
                    break
        finally:
            next(gen, None)
        assert answers[0] == 200 and answers[-1] == 503, answers
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
