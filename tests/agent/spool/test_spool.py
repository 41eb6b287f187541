"""The spool on its own: append, batch numbers that survive a restart, acknowledgement, the quota
(alarm, which records go first, refusal), retention, and damaged files."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest

from agent.spool.store import MIN_KEEP_DAYS, ROW_OVERHEAD, Spool, SpoolCorrupt, SpoolError
from agent.uploader.drain import build_body
from wire.envelope import decode_batch, encode_batch

DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


def rec(i: int, pad: int = 0) -> dict[str, Any]:
    # fixed-width details: every record of one `pad` has the same size
    return {"type": "weird", "ts": 1_750_000_000.0 + i, "name": "spool_test",
            "detail": f"{i:06d}:" + "x" * pad}


def seqs(bodies: list[bytes]) -> list[int]:
    return [int(msgpack.unpackb(b)["detail"].split(":")[0]) for b in bodies]


def size(i: int, pad: int = 0) -> int:
    return len(msgpack.packb(rec(i, pad), use_bin_type=True)) + ROW_OVERHEAD


def test_append_batch_send_round_trip(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as s:
        assert s.append(rec(i) for i in range(10)) == 10
        assert s.append([]) == 0
        st = s.stats()
        assert (st.spool_records, st.unsent_records, st.unbatched_records) == (10, 10, 10)
        assert st.spool_bytes == sum(size(i) for i in range(10))
        assert s.newest() == rec(9)
        assert st.stats_record_fields() == {"spool_records": 10, "spool_bytes": st.spool_bytes,
                                            "upload_lag_s": st.upload_lag_s, "quarantined_records": 0}
        b = s.next_batch(4)
        assert b is not None and not b.resent and seqs(b.bodies) == [0, 1, 2, 3]
        # the body the drain builds from the stored bytes is a batch the collector accepts
        body = build_body("gw1", "unit-42", b.batch_seq, b.bodies, 1_750_000_000.5)
        batch = decode_batch(body)
        assert batch["batch_seq"] == b.batch_seq and batch["records"] == [rec(i) for i in range(4)]
        # ... byte for byte what the wire encoder makes of the same records
        assert body == encode_batch("gw1", "unit-42", b.batch_seq, [rec(i) for i in range(4)],
                                    1_750_000_000.5)


def test_an_unacknowledged_batch_comes_back_with_its_number_after_a_restart(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as s:
        s.append(rec(i) for i in range(10))
        first = s.next_batch(4)
        assert first is not None
        # asked again before the acknowledgement: the same batch, not a new one
        again = s.next_batch(4)
        assert again is not None and again.batch_seq == first.batch_seq and again.resent
    with Spool(tmp_path / "s.db") as s:  # "crash" after the send, before mark_sent
        b = s.next_batch(4)
        assert b is not None and b.resent
        assert (b.batch_seq, b.bodies) == (first.batch_seq, first.bodies)
        s.mark_sent(b.batch_seq)
        s.mark_sent(b.batch_seq)  # idempotent
        nxt = s.next_batch(100)
        assert nxt is not None and nxt.batch_seq == b.batch_seq + 1 and seqs(nxt.bodies) == list(range(4, 10))
        st = s.stats()
        assert (st.unsent_records, st.unbatched_records, st.spool_records) == (6, 0, 10)
        s.mark_sent(nxt.batch_seq)
        assert s.next_batch() is None
        assert s.stats().unsent_records == 0 and s.stats().upload_lag_s is None
    with Spool(tmp_path / "s.db") as s:
        s.append([rec(10)])
        b = s.next_batch()
        assert b is not None and b.batch_seq == nxt.batch_seq + 1 and seqs(b.bodies) == [10]


def test_a_new_spool_never_reuses_an_older_spools_numbers(tmp_path: Path) -> None:
    with Spool(tmp_path / "a.db") as s:
        s.append([rec(0)])
        old = s.next_batch()
    with Spool(tmp_path / "b.db") as s:
        s.append([rec(0)])
        new = s.next_batch()
    assert old is not None and new is not None and new.batch_seq > old.batch_seq


def test_a_batch_never_handed_out_cannot_be_acknowledged(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as s, pytest.raises(SpoolError, match="no batch"):
        s.mark_sent(s.stats().next_batch_seq + 5)


def test_a_small_batch_waits_for_the_linger_time_a_full_one_does_not(tmp_path: Path) -> None:
    clock = Clock()
    with Spool(tmp_path / "s.db", clock=clock) as s:
        s.append(rec(i) for i in range(3))
        assert s.next_batch(5, linger_s=1.0) is None
        clock.now += 1.0
        b = s.next_batch(5, linger_s=1.0)
        assert b is not None and len(b.bodies) == 3
        s.mark_sent(b.batch_seq)
        s.append(rec(i) for i in range(3, 9))
        b = s.next_batch(5, linger_s=1.0)  # full: no waiting
        assert b is not None and seqs(b.bodies) == [3, 4, 5, 6, 7]
        st = s.stats()
        assert st.upload_lag_s == 0.0


def test_a_clock_stepped_back_does_not_hold_records_back(tmp_path: Path) -> None:
    clock = Clock()
    with Spool(tmp_path / "s.db", clock=clock) as s:
        s.append([rec(0)])
        clock.now -= 3600  # NTP stepped the clock back an hour
        b = s.next_batch(5, linger_s=1.0)
        assert b is not None and seqs(b.bodies) == [0]


def test_a_batch_is_cut_at_its_byte_limit_but_holds_at_least_one_record(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as s:
        s.append(rec(i, pad=1000) for i in range(5))
        b = s.next_batch(100, max_bytes=2 * size(0, 1000) + 10)
        assert b is not None and seqs(b.bodies) == [0, 1]
        s.mark_sent(b.batch_seq)
        b = s.next_batch(100, max_bytes=10)
        assert b is not None and seqs(b.bodies) == [2]


def test_invalid_records_are_refused_and_counted(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as s:
        bad = {"type": "weird", "ts": 1.0, "name": "x", "detail": None, "password": "no"}
        assert s.append([rec(0), bad, {"type": "nope", "ts": 1.0}, rec(1)]) == 2
        assert s.stats().records_invalid == 2
    with Spool(tmp_path / "nv.db", validate=False) as s:  # unchecked, still no crash on a broken one
        assert s.append([{"type": "weird"}, rec(0)]) == 1 and s.stats().records_invalid == 1
    with Spool(tmp_path / "s.db") as s:
        b = s.next_batch()
        assert b is not None and seqs(b.bodies) == [0, 1]


def test_quota_alarm_then_oldest_sent_go_first_and_unsent_are_never_dropped(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    one = size(0, 200)  # every record below has the same size (details of equal length)
    caplog.set_level(logging.INFO, logger="edgeaudit.spool")
    with Spool(tmp_path / "s.db", quota_bytes=10 * one, clock=clock) as s:
        assert s.append(rec(i, 200) for i in range(7)) == 7
        assert not s.stats().quota_alarm
        assert s.append([rec(7, 200)]) == 1  # 8 of 10: 80%
        assert s.stats().quota_alarm
        assert [r.message for r in caplog.records if "quota bytes used" in r.message]
        for n in (3, 3):  # two sent batches: ids 1-3, then 4-6; 7-8 stay unsent
            b = s.next_batch(n)
            assert b is not None
            s.mark_sent(b.batch_seq)
        clock.now += 61 * DAY  # past the legal minimum: evicting them is no early loss
        assert s.append(rec(i, 200) for i in range(8, 11)) == 3  # needs 1 record of room: batch 1 goes
        st = s.stats()
        assert (st.spool_records, st.evicted_records, st.evicted_early_records) == (8, 3, 0)
        ids = sqlite3.connect(tmp_path / "s.db").execute("SELECT id FROM records ORDER BY id")
        kept = [r[0] for r in ids]
        assert kept == list(range(4, 12))  # the oldest sent batch went first
        assert s.append(rec(i, 200) for i in range(11, 14)) == 3  # batch 2 goes too
        assert s.stats().evicted_records == 6
        assert s.append(rec(i, 200) for i in range(14, 16)) == 2  # exactly full
        # now all 10 are unsent: nothing may be evicted, new records are refused and counted
        assert s.stats().unsent_records == 10
        assert s.append(rec(i, 200) for i in range(16, 18)) == 0
        st = s.stats()
        assert (st.records_dropped, st.spool_records, st.unsent_records) == (2, 10, 10)
        assert [r.message for r in caplog.records if "refused 2 records" in r.message]
        b = s.next_batch(100)
        assert b is not None and seqs(b.bodies) == list(range(6, 16))


def test_evicting_sent_records_younger_than_60_days_is_counted_and_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    one = size(0, 100)
    with Spool(tmp_path / "s.db", quota_bytes=4 * one) as s:
        s.append(rec(i, 100) for i in range(4))
        b = s.next_batch(2)
        assert b is not None
        s.mark_sent(b.batch_seq)
        assert s.append(rec(i, 100) for i in range(4, 7)) == 2  # 2 evicted, then only unsent: 1 refused
        st = s.stats()
        assert (st.evicted_records, st.evicted_early_records, st.records_dropped) == (2, 2, 1)
        assert any("younger than 60 days" in r.message for r in caplog.records)


def test_retention_deletes_sent_records_after_keep_days_and_never_unsent_ones(tmp_path: Path) -> None:
    clock = Clock()
    with pytest.raises(ValueError, match="at least 60"):
        Spool(tmp_path / "x.db", keep_days=MIN_KEEP_DAYS - 1)
    with Spool(tmp_path / "s.db", clock=clock) as s:
        s.append(rec(i) for i in range(6))
        b = s.next_batch(4)
        assert b is not None
        s.mark_sent(b.batch_seq)
        clock.now += 59 * DAY
        assert s.expire() == 0
        clock.now += 2 * DAY
        assert s.expire() == 4
        st = s.stats()
        assert (st.spool_records, st.unsent_records, st.expired_records) == (2, 2, 4)
        assert st.upload_lag_s == pytest.approx(61 * DAY)
        b = s.next_batch()
        assert b is not None and seqs(b.bodies) == [4, 5]


def test_counters_and_numbers_survive_a_restart(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", quota_bytes=3 * size(0)) as s:
        s.append(rec(i) for i in range(5))
        s.append([{"type": "weird"}])
        before = s.stats()
    with Spool(tmp_path / "s.db", quota_bytes=3 * size(0)) as s:
        after = s.stats()
    assert (after.records_dropped, after.records_invalid, after.spool_records, after.next_batch_seq) == (
        before.records_dropped, before.records_invalid, before.spool_records, before.next_batch_seq)
    assert (after.records_dropped, after.records_invalid) == (2, 1)


def test_a_file_that_is_not_a_database_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not sqlite at all\n" * 200)
    with pytest.raises(SpoolCorrupt, match=r"is damaged .*move the file"):
        Spool(path)


def test_another_sqlite_database_is_not_taken_for_a_spool(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(SpoolCorrupt, match="not an edgeaudit spool"):
        Spool(path)


def test_damaged_pages_are_reported_as_a_damaged_spool(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Spool(path) as s:
        s.append(rec(i, 300) for i in range(2000))
        s.check()
    # close() checkpointed the WAL into the file; now scribble over pages in the middle
    data = bytearray(path.read_bytes())
    assert len(data) > 64 * 4096
    for page in range(20, 60):
        off = page * 4096
        data[off:off + 4096] = bytes((page * 7 + i) % 251 for i in range(4096))
    path.write_bytes(bytes(data))
    s = Spool(path)  # the header and schema pages are intact: it opens
    with pytest.raises(SpoolCorrupt, match=r"is damaged: .*Move the file"):
        s.check()
    with pytest.raises(SpoolCorrupt, match=r"is damaged \(next_batch: .*malformed.*\.recover"):
        while (b := s.next_batch()) is not None:
            s.mark_sent(b.batch_seq)
    s.close()
