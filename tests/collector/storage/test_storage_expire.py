"""Storage contract: retention (expire) with and without legal holds."""

from __future__ import annotations

import pytest
from storage_records import DAY, MIDNIGHT, OpenStore, http, login, session

from collector.storage import Hold, Storage

D = [MIDNIGHT + k * DAY for k in range(4)]  # four consecutive days


@pytest.fixture
def filled(store: Storage) -> Storage:
    # per day: unit-1/alice, unit-1/bob, unit-2/alice at +1h, +2h, +3h
    for k, day in enumerate(D):
        store.insert_batch("a1", "unit-1", k, [http(day + 3600, f"A{k}", account="alice")])
        store.insert_batch("a1", "unit-1", 100 + k, [session(day + 7200, f"B{k}", account="bob")])
        store.insert_batch("a2", "unit-2", k, [login(day + 10800, "login", "10.0.0.7", "alice")])
    return store


def test_expire_without_holds_drops_whole_days(filled: Storage) -> None:
    res = filled.expire(D[2], [])
    assert (res.deleted, res.held) == (6, 0)
    assert res.days_dropped == ["2024-03-01", "2024-03-02"]
    assert filled.count() == 6
    assert min(r["ts"] for r in filled.records().records) >= D[2]
    assert filled.expire(D[2], []).deleted == 0


def test_expire_inside_a_day_deletes_rows(filled: Storage) -> None:
    res = filled.expire(D[0] + 9000, [])  # between +2h and +3h of day 0
    assert (res.deleted, res.days_dropped, res.held) == (2, [], 0)
    assert filled.count() == 10


def test_hold_on_a_unit(filled: Storage) -> None:
    res = filled.expire(D[2], [Hold(unit="unit-2")])
    assert (res.deleted, res.held, res.days_dropped) == (4, 2, [])
    assert {r["_unit"] for r in filled.records(end=D[2]).records} == {"unit-2"}


def test_hold_on_an_account(filled: Storage) -> None:
    res = filled.expire(D[2], [Hold(account="bob")])
    assert (res.deleted, res.held) == (4, 2)
    assert {r["uid"] for r in filled.records(end=D[2]).records} == {"B0", "B1"}


def test_hold_on_a_time_range_keeps_other_days_dropping(filled: Storage) -> None:
    res = filled.expire(D[3], [Hold(start=D[1] + 3000, end=D[1] + 7200)])  # half-open: only +1h
    assert res.days_dropped == ["2024-03-01", "2024-03-03"]
    assert (res.deleted, res.held) == (8, 1)
    assert [r["uid"] for r in filled.records(end=D[3]).records] == ["A1"]


def test_hold_fields_combine_and_holds_add_up(filled: Storage) -> None:
    holds = [
        Hold(unit="unit-1", account="alice", start=D[0], end=D[1]),
        Hold(unit="unit-2", end=D[1] + 20000),
    ]
    res = filled.expire(D[2], holds)
    kept = sorted((r["_unit"], r["ts"]) for r in filled.records(end=D[2]).records)
    assert kept == [("unit-1", D[0] + 3600), ("unit-2", D[0] + 10800), ("unit-2", D[1] + 10800)]
    assert (res.deleted, res.held) == (3, 3)


def test_hold_on_everything(filled: Storage) -> None:
    res = filled.expire(D[3], [Hold()])
    assert (res.deleted, res.held, res.days_dropped) == (0, 9, [])


def test_store_works_after_expire_and_reopen(open_store: OpenStore) -> None:
    store = open_store()
    store.insert_batch("a", "u", 1, [http(D[0], "old"), http(D[2], "new")])
    store.expire(D[1], [])
    store.insert_batch("a", "u", 2, [http(D[0] + 5, "late")])  # a late record for a dropped day
    store.close()
    again = open_store()
    assert [r["uid"] for r in again.records().records] == ["late", "new"]
    assert again.count() == 2
