"""The spool's quarantine on its own (agent.spool.quarantine): a refused batch leaves the queue in
one transaction and the next batch follows; it survives a restart; requeue puts its records back
as a batch of their own under a new number; the quota deletes sent batches first, then
quarantined ones, then refuses new records; the quarantine's own cap; an older spool file opens."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest

from agent.spool.quarantine import Refusal
from agent.spool.store import ROW_OVERHEAD, Spool, SpoolError

T0 = 1_750_000_000.0
TOO_NEW = Refusal(422, "too_far_in_future", "record ts is 3 days ahead of the collector's clock")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def rec(i: int, pad: int = 0) -> dict[str, Any]:
    return {"type": "weird", "ts": T0 + i, "name": "quarantine_test", "detail": f"{i:06d}:" + "x" * pad}


def numbers(bodies: list[bytes]) -> list[int]:
    return [int(msgpack.unpackb(b)["detail"].split(":")[0]) for b in bodies]


def size(i: int, pad: int = 0) -> int:
    return len(msgpack.packb(rec(i, pad), use_bin_type=True)) + ROW_OVERHEAD


def test_a_refused_batch_leaves_the_queue_and_the_next_one_follows(tmp_path: Path) -> None:
    clock = Clock()
    with Spool(tmp_path / "s.db", clock=clock) as s:
        s.append(rec(i) for i in range(10))
        first = s.next_batch(4)
        assert first is not None and numbers(first.bodies) == [0, 1, 2, 3]
        clock.now += 5
        s.quarantine(first.batch_seq, TOO_NEW)
        s.quarantine(first.batch_seq, TOO_NEW)  # idempotent (a crash after the commit, then again)
        nxt = s.next_batch(4)
        assert nxt is not None and not nxt.resent and numbers(nxt.bodies) == [4, 5, 6, 7]
        assert nxt.batch_seq == first.batch_seq + 1
        [q] = s.quarantined()
        assert (q.batch_seq, q.records, q.bytes, q.refused) == (first.batch_seq, 4, sum(map(size, range(4))),
                                                                T0 + 5)
        assert (q.status, q.error, q.detail, q.maybe_stored) == (422, TOO_NEW.error, TOO_NEW.detail, False)
        assert (q.first_ts, q.last_ts, q.requeued_from) == (T0, T0 + 3, None)
        st = s.stats()
        assert (st.quarantined_batches, st.quarantined_records, st.quarantined_bytes) == (1, 4, q.bytes)
        assert (st.unsent_records, st.spool_records, st.quarantined_total) == (6, 10, 4)
        assert st.stats_record_fields()["quarantined_records"] == 4
        # only the queue's next batch can be quarantined, and never an acknowledged one
        s.mark_sent(nxt.batch_seq)
        with pytest.raises(SpoolError, match="acknowledged"):
            s.quarantine(nxt.batch_seq, TOO_NEW)
        s.next_batch(1)
        last = s.next_batch(1)
        assert last is not None
        with pytest.raises(SpoolError, match="no batch"):
            s.quarantine(last.batch_seq + 1, TOO_NEW)


def test_the_quarantine_survives_a_restart_and_is_not_sent_again(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as s:
        s.append(rec(i) for i in range(6))
        b = s.next_batch(3)
        assert b is not None
        s.quarantine(b.batch_seq, Refusal(400, "invalid_batch", "record 2: unknown field", maybe_stored=True))
        held = s.quarantined()
    with Spool(tmp_path / "s.db") as s:
        assert s.quarantined() == held and held[0].maybe_stored
        nxt = s.next_batch(10)
        assert nxt is not None and numbers(nxt.bodies) == [3, 4, 5]
        s.mark_sent(nxt.batch_seq)
        assert s.next_batch(10) is None
        assert s.stats().quarantined_records == 3


def test_requeue_sends_the_records_again_as_a_batch_of_their_own_under_a_new_number(tmp_path: Path) -> None:
    clock = Clock()
    with Spool(tmp_path / "s.db", clock=clock) as s:
        s.append(rec(i) for i in range(8))
        refused = s.next_batch(4)
        assert refused is not None
        s.quarantine(refused.batch_seq, TOO_NEW)
        sent = s.next_batch(2)
        assert sent is not None and numbers(sent.bodies) == [4, 5]
        s.mark_sent(sent.batch_seq)
        with pytest.raises(SpoolError, match="not in the quarantine: 7"):
            s.requeue([refused.batch_seq, 7])
        assert len(s.quarantined()) == 1  # nothing changed
        bytes_before = s.stats().spool_bytes
        [back] = s.requeue([refused.batch_seq])
        assert back.batch_seq == refused.batch_seq and s.quarantined() == []
        s.append(rec(i) for i in range(8, 10))
        assert s.stats().spool_bytes == bytes_before + size(8) + size(9)
        # records 6, 7 (spooled before the requeue), then the requeued ones alone, then 8, 9
        cuts = []
        while (b := s.next_batch(100)) is not None:
            cuts.append((b.batch_seq, numbers(b.bodies)))
            s.mark_sent(b.batch_seq)
        assert [c[1] for c in cuts] == [[6, 7], [0, 1, 2, 3], [8, 9]]
        assert cuts[1][0] > sent.batch_seq  # a new number, never the refused one
        st = s.stats()
        assert (st.requeued_total, st.quarantined_total, st.unsent_records, st.spool_records) == (4, 4, 0, 10)
        assert s.requeue() == []


def test_a_requeued_batch_refused_again_names_the_one_it_came_from(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as s:
        s.append(rec(i) for i in range(3))
        b = s.next_batch(3)
        assert b is not None
        s.quarantine(b.batch_seq, TOO_NEW)
        s.requeue()
        again = s.next_batch(3)
        assert again is not None and numbers(again.bodies) == [0, 1, 2] and again.batch_seq > b.batch_seq
        s.quarantine(again.batch_seq, TOO_NEW)
        [q] = s.quarantined()
        assert (q.batch_seq, q.requeued_from) == (again.batch_seq, b.batch_seq)
        assert s.stats().quarantined_total == 6


def test_the_quota_takes_sent_batches_first_then_quarantined_ones_then_refuses(tmp_path: Path) -> None:
    pad = 200
    one = size(0, pad)
    with Spool(tmp_path / "s.db", quota_bytes=10 * one, quarantine_bytes=10 * one) as s:
        assert s.append(rec(i, pad) for i in range(10)) == 10
        for n in (2, 2):  # records 0-1 sent, 2-3 quarantined, 4-5 sent, 6-7 quarantined
            b = s.next_batch(n)
            assert b is not None
            s.mark_sent(b.batch_seq)
            b = s.next_batch(n)
            assert b is not None
            s.quarantine(b.batch_seq, TOO_NEW)
        assert s.append([rec(10, pad), rec(11, pad), rec(12, pad), rec(13, pad)]) == 4  # the sent ones go
        st = s.stats()
        assert (st.evicted_records, st.quarantine_evicted_records, st.quarantined_records) == (4, 0, 4)
        assert s.append([rec(14, pad), rec(15, pad)]) == 2  # then the oldest quarantined batch
        st = s.stats()
        assert (st.quarantine_evicted_records, st.quarantined_records, st.records_dropped) == (2, 2, 0)
        assert [q.first_ts for q in s.quarantined()] == [T0 + 6]
        assert s.append([rec(i, pad) for i in range(16, 20)]) == 2  # then new records are refused
        st = s.stats()
        assert (st.quarantine_evicted_records, st.quarantined_records, st.records_dropped) == (4, 0, 2)
        assert st.records_lost == 6 and st.spool_records == 10 and st.unsent_records == 10


def test_the_quarantine_keeps_to_its_cap_and_counts_what_it_deletes(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    one = size(0)
    with Spool(tmp_path / "s.db", quarantine_bytes=5 * one) as s:
        s.append(rec(i) for i in range(12))
        for _ in range(3):
            b = s.next_batch(2)
            assert b is not None
            s.quarantine(b.batch_seq, TOO_NEW)
        assert [q.first_ts for q in s.quarantined()] == [T0 + 2, T0 + 4]  # 0-1 deleted for 4-5
        big = s.next_batch(6)
        assert big is not None
        s.quarantine(big.batch_seq, TOO_NEW)  # over the cap alone: the newest refused is still kept
        [q] = s.quarantined()
        assert q.records == 6
        st = s.stats()
        assert (st.quarantine_evicted_records, st.quarantined_total, st.spool_records) == (6, 12, 6)
        assert st.quarantine_bytes == 5 * one
    assert "deleted 2 quarantined records" in caplog.text


def test_a_spool_written_before_the_quarantine_opens_and_gains_it(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Spool(path) as s:
        s.append(rec(i) for i in range(4))
        b = s.next_batch(2)
        assert b is not None
        s.mark_sent(b.batch_seq)
    conn = sqlite3.connect(path)  # the layout of the agent before issue 18
    conn.executescript("DROP TABLE quarantine; DROP TABLE requeued; DROP TABLE quarantine_state;")
    conn.close()
    with Spool(path) as s:
        st = s.stats()
        assert (st.spool_records, st.unsent_records) == (4, 2)
        assert (st.quarantined_records, st.quarantined_total) == (0, 0)
        b = s.next_batch(2)
        assert b is not None
        s.quarantine(b.batch_seq, TOO_NEW)
        assert s.stats().quarantined_records == 2
