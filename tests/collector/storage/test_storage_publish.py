"""Storage contract for `publish` records (SCHEMA-additions 1.6), on every backend: stored whole,
found by type, address, account and by the words of their text (Chinese too), and part of their
connection (the traceback's records)."""

from __future__ import annotations

from typing import Any

import pytest
from storage_records import MIDNIGHT, http, session

from collector.storage import Storage
from wire.validate import validate_record


def publish(ts: float, uid: str, text: str | None, *, host: str = "bbs.example.cn", uri: str = "/post.php",
            src: str = "10.0.0.5", account: str | None = None,
            fields: list[str] | None = None) -> dict[str, Any]:
    rec = {
        "type": "publish", "ts": ts, "uid": uid, "proto": "tcp", "src_ip": src, "src_port": 50000,
        "dst_ip": "203.0.113.9", "dst_port": 80, "vlan": None, "inner_vlan": None, "trans_depth": 1,
        "method": "POST", "host": host, "uri": uri, "content_type": "application/x-www-form-urlencoded",
        "charset": "gb18030", "body_len": 120,
        "fields": fields if fields is not None else ["author", "message"],
        "text": text, "text_len": len(text or ""), "fields_dropped": 0, "account": account,
    }
    return validate_record(rec)


@pytest.fixture
def posts(store: Storage) -> Storage:
    store.insert_batch("a", "u", 1, [
        session(MIDNIGHT - 10, "P1", account="alice"),
        http(MIDNIGHT - 9, "P1", "bbs.example.cn", "/post.php", account="alice"),
        publish(MIDNIGHT - 9, "P1", "author=张三\nmessage=图书馆周末开放\\r\\n欢迎", account="alice"),
        publish(MIDNIGHT + 5, "P2", "author=李四\nmessage=Hello World", src="10.0.0.6", uri="/api/posts"),
        publish(MIDNIGHT + 6, "P3", None, fields=[]),
    ])
    return store


def of(page: list[dict[str, Any]]) -> list[Any]:
    return [(r["type"], r["uid"]) for r in page]


def test_publish_records_come_back_whole(posts: Storage) -> None:
    got = posts.records(type="publish").records
    assert [r["uid"] for r in got] == ["P1", "P2", "P3"]
    want = publish(MIDNIGHT - 9, "P1", "author=张三\nmessage=图书馆周末开放\\r\\n欢迎", account="alice")
    assert {k: got[0][k] for k in want} == want


@pytest.mark.parametrize(("text", "expected"), [
    ("图书馆周末", [("publish", "P1")]),  # the text, in Chinese
    ("hello world", [("publish", "P2")]),  # case-insensitive
    ("author=李四", [("publish", "P2")]),
    ("/api/posts", [("publish", "P2")]),  # the uri
    ("bbs.example", [("http", "P1"), ("publish", "P1"), ("publish", "P2"), ("publish", "P3")]),  # the host
    ("message=hello", [("publish", "P2")]),
    ("nothing like it", []),
])
def test_the_words_of_a_post_find_it(posts: Storage, text: str, expected: list[Any]) -> None:
    assert of(posts.records(text=text).records) == expected


def test_by_account_address_and_type(posts: Storage) -> None:
    assert of(posts.records(type="publish", account="alice").records) == [("publish", "P1")]
    assert of(posts.records(ip="10.0.0.6").records) == [("publish", "P2")]
    assert of(posts.records(type="publish", text="张三").records) == [("publish", "P1")]


def test_a_post_is_part_of_its_connection(posts: Storage) -> None:
    assert [r["type"] for r in posts.connection("P1")] == ["session", "http", "publish"]
