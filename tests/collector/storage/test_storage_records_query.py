"""Storage contract: the ``records`` query, its filters and cursor pagination."""

from __future__ import annotations

import pytest
from storage_records import DAY, MIDNIGHT, alert, dns, http, login, nat, session, tls

from collector.storage import MAX_PAGE, Storage


@pytest.fixture
def mixed(store: Storage) -> Storage:
    store.insert_batch(
        "a",
        "u",
        1,
        [
            session(MIDNIGHT - 10, "S1", src="10.0.0.5", nat_ip="192.0.2.1", nat_port=40000, account="alice"),
            http(MIDNIGHT - 5, "H1", "News.Example.COM", "/Search?q=Hello", account="alice"),
            dns(MIDNIGHT, "D1", "mail.example.org"),
            tls(MIDNIGHT + 5, "T1", "secure.bank.test"),
            alert(MIDNIGHT + 10, "H1", "违禁词", account="alice2"),
            login(MIDNIGHT + 20, "login", "10.0.0.77", "bob"),
            nat(MIDNIGHT + 30, "create", ("10.0.0.8", 1234), ("192.0.2.2", 40001)),
        ],
    )
    return store


def uids(page: list[dict[str, object]]) -> list[object]:
    return [r.get("uid", r["type"]) for r in page]


def test_type_filter(mixed: Storage) -> None:
    assert uids(mixed.records(type="http").records) == ["H1"]
    assert uids(mixed.records(type="nope").records) == []


def test_time_range_is_half_open(mixed: Storage) -> None:
    page = mixed.records(start=MIDNIGHT - 5, end=MIDNIGHT + 5)
    assert uids(page.records) == ["H1", "D1"]
    assert uids(mixed.records(start=MIDNIGHT + 5).records) == ["T1", "H1", "login", "nat"]
    assert uids(mixed.records(end=MIDNIGHT - 5).records) == ["S1"]


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("10.0.0.5", ["S1", "H1", "D1", "T1", "H1"]),  # src_ip of sessions, http, dns, tls, alert
        ("192.0.2.53", ["D1"]),  # dst_ip
        ("192.0.2.1", ["S1"]),  # a session's nat_ip
        ("10.0.0.77", ["login"]),  # a login's address
        ("192.0.2.2", ["nat"]),  # a nat record's outside address
        ("10.0.0.8", ["nat"]),  # and its inside address
        ("10.9.9.9", []),
    ],
)
def test_ip_filter(mixed: Storage, ip: str, expected: list[str]) -> None:
    assert uids(mixed.records(ip=ip).records) == expected


def test_ip_filter_is_canonicalised(store: Storage) -> None:
    store.insert_batch("a", "u", 1, [login(MIDNIGHT, "login", "2001:db8::1", "carol")])
    assert len(store.records(ip="2001:DB8:0::1").records) == 1


def test_account_is_exact(mixed: Storage) -> None:
    assert uids(mixed.records(account="alice").records) == ["S1", "H1"]
    assert uids(mixed.records(account="bob").records) == ["login"]
    assert uids(mixed.records(account="ali").records) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("news.example", ["H1"]),  # host, case-insensitive
        ("search?Q=hello", ["H1"]),  # uri
        ("MAIL.example", ["D1"]),  # dns query
        ("bank", ["T1"]),  # server_name
        ("违禁", ["H1"]),  # alert keyword (the alert's uid is H1)
        ("example", ["H1", "D1"]),
        ("%", []),  # no LIKE wildcards
    ],
)
def test_text_filter(mixed: Storage, text: str, expected: list[str]) -> None:
    assert uids(mixed.records(text=text).records) == expected


def test_filters_combine(mixed: Storage) -> None:
    assert uids(mixed.records(ip="10.0.0.5", account="alice", start=MIDNIGHT - 6).records) == ["H1"]
    assert uids(mixed.records(type="http", text="bank").records) == []


def test_cursor_pages_across_days(store: Storage) -> None:
    # 12 records over three days, several sharing a ts, inserted out of order.
    times = [MIDNIGHT - 1, MIDNIGHT - 1, MIDNIGHT, MIDNIGHT + 1, MIDNIGHT + 1, MIDNIGHT + 1]
    times += [MIDNIGHT + DAY - 1, MIDNIGHT + DAY, MIDNIGHT + DAY, MIDNIGHT + DAY + 2]
    times += [MIDNIGHT - DAY, MIDNIGHT]
    recs = [session(t, f"C{i:02}") for i, t in enumerate(times)]
    store.insert_batch("a", "u", 1, recs[:6])
    store.insert_batch("a", "u", 2, recs[6:])
    expected = [r["uid"] for r in sorted(recs, key=lambda r: (r["ts"], int(r["uid"][1:]) >= 6))]
    got: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = store.records(limit=5, cursor=cursor)
        got.extend(r["uid"] for r in page.records)
        pages += 1
        cursor = page.cursor
        if cursor is None:
            break
    assert got == expected
    assert pages == 3


def test_cursor_with_filters_and_exact_page(store: Storage) -> None:
    store.insert_batch("a", "u", 1, [http(MIDNIGHT + i * 3600 * 10, f"H{i}") for i in range(6)])
    store.insert_batch("a", "u", 2, [dns(MIDNIGHT + i * 3600 * 10 + 1, f"D{i}", "x.test") for i in range(6)])
    first = store.records(type="http", limit=3)
    assert uids(first.records) == ["H0", "H1", "H2"]
    assert first.cursor is not None
    second = store.records(type="http", limit=3, cursor=first.cursor)
    assert uids(second.records) == ["H3", "H4", "H5"]
    assert second.cursor is None  # exactly used up: no empty third page


def test_cursor_is_stable_when_newer_records_arrive(store: Storage) -> None:
    store.insert_batch("a", "u", 1, [http(MIDNIGHT + i, f"H{i}") for i in range(4)])
    first = store.records(limit=2)
    store.insert_batch("a", "u", 2, [http(MIDNIGHT + 10, "H9")])
    rest = store.records(limit=10, cursor=first.cursor)
    assert uids(rest.records) == ["H2", "H3", "H9"]


def test_limit_is_capped(store: Storage) -> None:
    store.insert_batch("a", "u", 1, [http(MIDNIGHT + i / 100, f"H{i}") for i in range(MAX_PAGE + 5)])
    page = store.records(limit=MAX_PAGE * 10)
    assert len(page.records) == MAX_PAGE
    assert page.cursor is not None
    assert len(store.records(cursor=page.cursor).records) == 5


def test_bad_arguments(store: Storage) -> None:
    with pytest.raises(ValueError):
        store.records(limit=0)
    with pytest.raises(ValueError):
        store.records(cursor="not a cursor!")
    with pytest.raises(ValueError):
        store.records(ip="10.0.0.999")
