"""Storage contract: batch ingest, idempotence, provenance, persistence."""

from __future__ import annotations

import pytest
from storage_records import MIDNIGHT, OpenStore, http, login, session, strip

from collector.storage import AGENT_KEY, UNIT_KEY, BatchConflict, InsertResult, Storage


def test_insert_counts_and_returns_records(store: Storage) -> None:
    recs = [session(MIDNIGHT + i, f"C{i}") for i in range(5)]
    res = store.insert_batch("agent-1", "unit-1", 1, recs)
    assert (res.accepted, res.duplicate) == (5, False)
    assert store.count() == 5
    page = store.records(limit=10)
    assert [strip(r) for r in page.records] == recs
    assert page.cursor is None


def test_same_batch_twice_is_stored_once(store: Storage) -> None:
    recs = [session(MIDNIGHT + i, f"C{i}") for i in range(3)]
    store.insert_batch("a", "u", 7, recs)
    again = store.insert_batch("a", "u", 7, recs)
    assert (again.accepted, again.duplicate) == (3, True)
    assert store.count() == 3


def test_same_seq_different_content_is_refused_not_dropped(store: Storage) -> None:
    """Issue 18: other records under a used batch number were answered "duplicate" and lost;
    they are refused (the caller keeps them), and the first batch stays as it was."""
    store.insert_batch("a", "u", 7, [session(MIDNIGHT, "C1")])
    with pytest.raises(BatchConflict):
        store.insert_batch("a", "u", 7, [session(MIDNIGHT + 1, "C2"), session(MIDNIGHT + 2, "C3")])
    assert store.insert_batch("a", "u", 7, [session(MIDNIGHT, "C1")]) == InsertResult(1, duplicate=True)
    assert [r["uid"] for r in store.records(limit=10).records] == ["C1"]


def test_same_seq_from_another_agent_is_new(store: Storage) -> None:
    store.insert_batch("a", "u", 7, [session(MIDNIGHT, "C1")])
    res = store.insert_batch("b", "u", 7, [session(MIDNIGHT, "C1")])
    assert res == type(res)(accepted=1, duplicate=False)
    assert store.count() == 2


def test_empty_batch_is_recorded(store: Storage) -> None:
    assert store.insert_batch("a", "u", 1, []).duplicate is False
    assert store.insert_batch("a", "u", 1, []).duplicate is True
    assert store.count() == 0


def test_provenance_comes_from_the_caller(store: Storage) -> None:
    store.insert_batch("agent-x", "unit-y", 1, [login(MIDNIGHT, "login", "10.0.0.5", "alice")])
    (rec,) = store.records(limit=1).records
    assert (rec[AGENT_KEY], rec[UNIT_KEY]) == ("agent-x", "unit-y")


def test_batch_spanning_midnight_is_whole_and_ordered(store: Storage) -> None:
    recs = [http(MIDNIGHT + 1, "C2"), http(MIDNIGHT - 1, "C1"), http(MIDNIGHT + 86_400 + 5, "C3")]
    assert store.insert_batch("a", "u", 1, recs).accepted == 3
    assert [r["uid"] for r in store.records(limit=10).records] == ["C1", "C2", "C3"]
    assert store.insert_batch("a", "u", 1, recs).duplicate is True
    assert store.count() == 3


def test_reopen_finds_everything(open_store: OpenStore) -> None:
    first = open_store()
    recs = [session(MIDNIGHT - 5 + i, f"C{i}") for i in range(10)]
    first.insert_batch("a", "u", 1, recs)
    first.close()
    second = open_store()
    assert second.count() == 10
    assert [strip(r) for r in second.records(limit=100).records] == recs
    assert second.insert_batch("a", "u", 1, recs).duplicate is True
    assert second.connection("C3")[0]["uid"] == "C3"
