"""A publishing request's text fields and its `publish` record: forms, JSON, multipart, charsets,
the escaping of the text, the bounds, and no body making the extraction raise."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.publish.extract import (
    MAX_BODY,
    Publisher,
    parse_text,
    text_fields,
    text_line,
)
from wire.limits import MAX_LIST_ITEM_LEN, MAX_LIST_LEN, MAX_STRING_LEN
from wire.validate import validate_record

FORM = "application/x-www-form-urlencoded"
FLOW = {"uid": "C1", "proto": "tcp", "src_ip": "192.0.2.10", "src_port": 40000, "dst_ip": "198.51.100.80",
        "dst_port": 80, "vlan": None, "inner_vlan": None}


def record(body: bytes, ctype: str | None, **kw: Any) -> dict[str, Any]:
    """The publish record of `body` with a flow id, checked by the wire's validator."""
    pub = Publisher(["bbs.example.cn"], **kw)
    media = ctype.split(";")[0].strip().lower() if ctype else None
    rec, _ = pub.record(1.5, 1, "POST", "bbs.example.cn", "/post", media, ctype, body, len(body))
    out = {**FLOW, **rec}
    validate_record(out)
    return out


def multipart(*parts: tuple[bytes, bytes], boundary: bytes = b"b0undary") -> bytes:
    """A multipart body of (header block, content) parts."""
    out = b""
    for head, content in parts:
        out += b"--" + boundary + b"\r\n" + head + b"\r\n\r\n" + content + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


# -- forms ----------------------------------------------------------------------------------------


def test_a_utf8_form_gives_its_fields_in_order() -> None:
    body = urlencode({"author": "张三", "title": "春天", "message": "你好，世界!\r\n第二行 a+b=c&d"}).encode()
    assert text_fields(body, FORM) == ([("author", "张三"), ("title", "春天"),
                                        ("message", "你好，世界!\r\n第二行 a+b=c&d")], "utf_8")


@pytest.mark.parametrize("ctype", [FORM + "; charset=gbk", FORM + "; charset=GB2312", FORM + ';charset="gbk"',
                                   FORM])
def test_a_gbk_form_is_read_with_its_label_or_when_it_is_not_utf8(ctype: str) -> None:
    body = urlencode({"author": "李四", "message": "今天天气很好"}, encoding="gbk").encode()
    assert text_fields(body, ctype) == ([("author", "李四"), ("message", "今天天气很好")], "gb18030")


def test_a_label_wins_over_the_guess() -> None:
    # the bytes of 张 in UTF-8 read as Big5 because the sender said so: the label is the truth
    body = b"a=" + quote("張").encode()
    fields, codec = text_fields(body, FORM + "; charset=big5")
    assert codec == "big5hkscs" and fields[0][1] == "張".encode().decode("big5hkscs", "replace")


def test_form_pairs_without_values_and_empty_pairs() -> None:
    assert text_fields(b"a&&b=&=c&", FORM) == ([("a", ""), ("b", ""), ("", "c")], "utf_8")
    assert text_fields(b"&&", FORM) == ([], None)


# -- JSON -----------------------------------------------------------------------------------------


def test_json_string_members_by_dotted_path_in_document_order() -> None:
    doc = {"author": "王五", "post": {"title": "标题", "views": 3, "draft": False, "body": "内容\n两行"},
           "tags": ["新闻", {"name": "本地"}], "none": None}
    body = json.dumps(doc, ensure_ascii=True).encode()  # \\u escapes: the JSON parser undoes them
    assert text_fields(body, "application/json; charset=utf-8") == ([
        ("author", "王五"), ("post.title", "标题"), ("post.body", "内容\n两行"), ("tags.0", "新闻"),
        ("tags.1.name", "本地")], "utf_8")


def test_json_in_gbk_and_a_bare_string() -> None:
    assert text_fields('{"m": "你好"}'.encode("gbk"), "application/json") == ([("m", "你好")], "gb18030")
    assert text_fields(b'"hello"', "application/vnd.api+json") == ([("", "hello")], "utf_8")


@pytest.mark.parametrize("body", [b'{"m": "cut sh', b"[" * 100_000, b"not json"])
def test_a_body_that_does_not_parse_as_json_is_its_text(body: bytes) -> None:
    fields, codec = text_fields(body, "application/json")
    assert fields == [("body", body.decode())] and codec == "utf_8"


def test_a_lone_surrogate_from_a_json_escape_is_replaced() -> None:
    rec = record(b'{"m": "a\\ud800b", "\\udfff": "x"}', "application/json")
    assert rec["text"] == "m=a?b\n?=x" and rec["fields"] == ["m", "?"]


# -- multipart ------------------------------------------------------------------------------------


def test_multipart_text_parts_are_fields_and_files_are_not() -> None:
    body = multipart(
        (b'Content-Disposition: form-data; name="author"', "赵六".encode()),
        (b'Content-Disposition: form-data; name="message"\r\nContent-Type: text/plain; charset=gbk',
         "多部分消息".encode("gbk")),
        (b'Content-Disposition: form-data; name="photo"; filename="a.jpg"\r\nContent-Type: image/jpeg',
         b"\xff\xd8\xff\xe0binary"),
        (b'Content-Disposition: form-data; name="notes"; filename="n.txt"\r\nContent-Type: text/plain',
         b"a file is not typed text"),
        (b'Content-Disposition: form-data; name="blob"\r\nContent-Type: application/octet-stream',
         b"\x00\x01"),
        (b'Content-Disposition: form-data; name="title"', "标题".encode()),
    )
    fields, codec = text_fields(body, "multipart/form-data; boundary=b0undary")
    assert fields == [("author", "赵六"), ("message", "多部分消息"), ("title", "标题")] and codec == "utf_8"


def test_a_gbk_multipart_without_labels_is_read_as_gb18030() -> None:
    body = multipart(('Content-Disposition: form-data; name="留言"'.encode("gbk"), "你好".encode("gbk")))
    assert text_fields(body, "multipart/form-data; boundary=b0undary") == ([("留言", "你好")], "gb18030")


def test_a_multipart_part_in_base64() -> None:
    body = multipart((b'Content-Disposition: form-data; name="m"\r\nContent-Transfer-Encoding: base64',
                      b"5L2g5aW9"))
    assert text_fields(body, "multipart/form-data; boundary=b0undary") == ([("m", "你好")], "utf_8")


# -- other types ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("ctype", "expected"), [
    ("text/plain", ([("body", "纯文本")], "utf_8")),
    ("application/xml", ([("body", "纯文本")], "utf_8")),
    (None, ([("body", "纯文本")], "utf_8")),
    ("image/png", ([], None)),
    ("application/octet-stream", ([], None)),
])
def test_text_bodies_are_one_field_and_others_none(ctype: str | None, expected: Any) -> None:
    assert text_fields("纯文本".encode(), ctype) == expected


# -- the text and the record ---------------------------------------------------------------------


def test_the_record_of_a_form() -> None:
    body = urlencode({"author": "张三", "message": "第一行\r\n第二行"}).encode()
    rec = record(body, FORM + "; charset=UTF-8")
    keys = ("type", "ts", "trans_depth", "method", "host", "uri", "content_type", "charset", "body_len",
            "fields", "text", "text_len", "fields_dropped", "account")
    assert {k: rec[k] for k in keys} == {
        "type": "publish", "ts": 1.5, "trans_depth": 1, "method": "POST", "host": "bbs.example.cn",
        "uri": "/post", "content_type": FORM, "charset": "utf-8", "body_len": len(body),
        "fields": ["author", "message"], "text": "author=张三\nmessage=第一行\\r\\n第二行",
        "text_len": len("author=张三\nmessage=第一行\\r\\n第二行"), "fields_dropped": 0, "account": None}


def test_a_record_without_text() -> None:
    rec = record(b"\x89PNG\r\n", "image/png")
    got = (rec["fields"], rec["text"], rec["text_len"], rec["charset"], rec["body_len"])
    assert got == ([], None, 0, None, 6)


def test_escapes_keep_one_line_per_field() -> None:
    pairs = [("a=b", "x\\y"), ("n\nl", "v=w\r\n"), ("nul\x00", "z\x00")]
    text = "\n".join(text_line(n, v) for n, v in pairs)
    assert text == "a\\=b=x\\\\y\nn\\nl=v=w\\r\\n\nnul\\x00=z\\x00"
    assert parse_text(text) == pairs
    rec = record(b"a%3Db=x%5Cy&nul%00=z%00", FORM)
    assert rec["text"] == "a\\=b=x\\\\y\nnul\\x00=z\\x00" and rec["fields"] == ["a=b", "nul\\x00"]


@given(st.lists(st.tuples(st.text(), st.text()), max_size=8))
def test_parse_text_undoes_text_line(pairs: list[tuple[str, str]]) -> None:
    if not pairs:
        return
    assert parse_text("\n".join(text_line(n, v) for n, v in pairs)) == pairs


def test_fields_past_the_list_bound_are_dropped_and_counted() -> None:
    body = "&".join(f"f{i}={i}" for i in range(MAX_LIST_LEN + 5)).encode()
    rec = record(body, FORM)
    assert len(rec["fields"]) == MAX_LIST_LEN and rec["fields_dropped"] == 5
    assert rec["fields"][-1] == f"f{MAX_LIST_LEN - 1}" and f"f{MAX_LIST_LEN}=" not in rec["text"]


def test_a_long_text_is_cut_at_the_string_bound_and_its_length_told() -> None:
    long = "长" * (MAX_STRING_LEN + 100)
    rec = record(urlencode({"m": long, "n": "after"}).encode(), FORM)
    assert rec["text"] == ("m=" + long)[:MAX_STRING_LEN] and len(rec["text"]) == MAX_STRING_LEN
    assert rec["text_len"] == len("m=" + long + "\nn=after") and rec["fields"] == ["m", "n"]


def test_a_long_name_is_cut_in_the_list() -> None:
    rec = record(b"x" * (MAX_LIST_ITEM_LEN + 10) + b"=1", FORM)
    assert rec["fields"] == ["x" * MAX_LIST_ITEM_LEN]


def test_counters_and_the_body_bound() -> None:
    pub = Publisher(["bbs.example.cn"], max_body=2048)
    assert pub.max_body == 2048 and Publisher(["a.cn"]).max_body == MAX_BODY
    rec, text = pub.record(1.0, 2, "POST", "bbs.example.cn", "/", FORM, FORM, b"m=1", 5000)
    assert rec["body_len"] == 5000 and text == b"m=1"
    pub.record(1.0, 3, "POST", "bbs.example.cn", "/", FORM, FORM, b"\x1f\x8b", 2, decoded=False)
    assert pub.counters == {"records": 2, "bodies_cut": 1, "fields": 1, "fields_dropped": 0, "texts_cut": 0,
                            "undecoded": 1}
    with pytest.raises(ValueError):
        Publisher(["a.cn"], max_body=10)


_CTYPES = st.sampled_from([None, FORM, FORM + "; charset=gbk", "application/json", "multipart/form-data",
                           "multipart/form-data; boundary=b", "text/plain; charset=x-unknown", "image/png",
                           "application/json; charset=utf-16"])


@given(st.binary(max_size=600), _CTYPES)
def test_no_body_makes_the_extraction_raise_or_the_record_invalid(body: bytes, ctype: str | None) -> None:
    record(body, ctype)
    part = b'--b\r\nContent-Disposition: form-data; name="m"\r\n\r\n'
    record(part + body, "multipart/form-data; boundary=b")


def test_hosts_judged_are_kept_within_a_bound() -> None:
    from agent.publish.extract import MAX_JUDGED

    pub = Publisher(["bbs.example.cn"])
    assert pub.wants("BBS.example.cn:80") and not pub.wants("www.example.cn") and not pub.wants(None)
    assert pub.judged == {"BBS.example.cn:80": True, "www.example.cn": False}
    for i in range(MAX_JUDGED + 10):
        pub.wants(f"h{i}.example.cn")
    assert len(pub.judged) == MAX_JUDGED and pub.wants("bbs.example.cn") and not pub.wants("x.example.cn")
