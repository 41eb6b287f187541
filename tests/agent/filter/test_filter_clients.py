"""Keywords found in content encoded the way browsers, apps and mailers encode it.

forms (what to look for) + normalize (where to look) + automaton (looking), together,
on haystacks made by the encoders clients use: urllib.parse, json, email.
"""

from __future__ import annotations

import json
import urllib.parse
from email.charset import QP, Charset
from email.header import Header
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest
from filter_matching import Matcher

from agent.filter.normalize import content_type_param, fold, percent_decode, rfc2047_decode
from agent.filter.patterns import StreamScan

pytestmark = pytest.mark.usefixtures("keyword_engine")  # each test with each keyword engine

KEYWORDS = ["赌博", "六合彩", "法轮", "VPN翻墙", "falun", "𠮷"]


@pytest.fixture(scope="module")
def m() -> Matcher:
    return Matcher(KEYWORDS)


# --- URLs and forms -------------------------------------------------------------------------------


@pytest.mark.parametrize(("encoding", "form"), [("utf-8", "url"), ("gbk", "url-gbk")])
def test_query_string(m: Matcher, encoding: str, form: str) -> None:
    for text in ("赌博", "六合彩", "法轮", "VPN翻墙"):
        uri = "/s?wd=" + urllib.parse.quote("我想" + text + "网站", encoding=encoding) + "&ie=" + encoding
        assert m.hits(uri.encode()) == {(text, form, "raw")}
        # the filter may also match the decoded URI: the raw bytes of that encoding
        decoded = percent_decode(uri.encode())
        assert {(k, e) for k, e, _ in m.hits(decoded)} == {(text, "utf-8" if encoding == "utf-8" else "gbk")}


def test_query_string_outside_gbk(m: Matcher) -> None:
    uri = "/s?q=" + urllib.parse.quote("𠮷野家")
    assert m.hits(uri.encode()) == {("𠮷", "url", "raw")}
    assert m.keywords_in("𠮷野家".encode("gb18030")) == {"𠮷"}


def test_form_bodies(m: Matcher) -> None:
    for encoding, form in (("utf-8", "utf-8"), ("gbk", "gbk")):
        fields = {"title": "六合彩 开奖", "body": "用VPN翻墙"}
        body = urllib.parse.urlencode(fields, encoding=encoding).encode()
        assert b"+" in body
        hits = m.body_hits(body, "application/x-www-form-urlencoded")
        assert {(k, e) for k, e, v in hits if v == "url"} == {("六合彩", form), ("VPN翻墙", form)}
        assert ("VPN翻墙", "url" if encoding == "utf-8" else "url-gbk", "raw") in hits
        # sent without a Content-Type, the body is still read as a form
        assert hits == m.body_hits(body, None)


def test_keyword_split_over_two_fields_is_not_made_up(m: Matcher) -> None:
    body = urllib.parse.urlencode({"a": "我要赌", "博": "1"}).encode()
    assert m.body_hits(body, "application/x-www-form-urlencoded") == set()


# --- JSON -----------------------------------------------------------------------------------------


def test_json_bodies(m: Matcher) -> None:
    body = json.dumps({"msg": "今晚六合彩", "to": "𠮷野家", "via": "VPN翻墙"}, ensure_ascii=True).encode()
    assert m.body_hits(body, "text/plain") == m.body_hits(body, "application/json; charset=utf-8")
    assert {(k, e, v) for k, e, v in m.body_hits(body, "application/json")} == {
        ("六合彩", "utf-8", "json"), ("𠮷", "utf-8", "json"), ("VPN翻墙", "utf-8", "json"),
    }
    # an escaped backslash is not an escape: nothing to find
    assert m.body_hits(json.dumps("\\u8d4c\\u535a").encode(), "application/json") == set()
    # UTF-8 JSON needs no view
    raw = json.dumps({"m": "赌博"}, ensure_ascii=False).encode()
    assert m.body_hits(raw, "application/json") == {("赌博", "utf-8", "raw")}


# --- mail -----------------------------------------------------------------------------------------


def test_mail_single_part_base64_and_qp(m: Matcher) -> None:
    msg = EmailMessage()
    msg.set_content("今晚六合彩开奖\n", charset="utf-8", cte="base64")
    body = msg.get_payload().encode()
    assert m.hits(body) == set()
    hits = m.body_hits(body, msg["Content-Type"], msg["Content-Transfer-Encoding"])
    assert hits == {("六合彩", "utf-8", "base64")}

    msg = EmailMessage()
    msg.set_content("关于法轮的消息 " * 10 + "\n", charset="utf-8", cte="quoted-printable")
    body = msg.get_payload().encode()
    assert m.body_hits(body, msg["Content-Type"], msg["Content-Transfer-Encoding"]) == {
        ("法轮", "utf-8", "quoted-printable")}

    gbk = MIMEText("我要赌博", "plain", "gb2312")
    body = gbk.get_payload().encode()
    hits = m.body_hits(body, gbk["Content-Type"], gbk["Content-Transfer-Encoding"])
    assert hits == {("赌博", "gbk", "base64")}


def test_mail_subject_encoded_words(m: Matcher) -> None:
    for charset in ("utf-8", "gb2312", "gb18030"):
        subject = Header("本周六合彩推荐 VPN翻墙教程", charset, maxlinelen=30).encode().encode()
        assert m.hits(subject) == set()
        assert {k for k, _, _ in m.hits(rfc2047_decode(subject))} == {"六合彩", "VPN翻墙"}
    qp = Charset("utf-8")
    qp.header_encoding = QP
    subject = Header("关于法轮", qp).encode().encode()
    assert b"?q?" in subject.lower()
    assert m.keywords_in(rfc2047_decode(subject)) == {"法轮"}


def test_mail_multipart(m: Matcher) -> None:
    msg = MIMEMultipart()
    msg.attach(MIMEText("正文：赌博", "plain", "gb2312"))
    msg.attach(MIMEText("<p>法轮</p>", "html", "utf-8"))
    att = MIMEApplication(b"\x00binary", Name="x.bin")
    att.add_header("Content-Disposition", "attachment", filename=Header("六合彩.xls", "utf-8").encode())
    msg.attach(att)
    body = msg.as_bytes().split(b"\n\n", 1)[1]
    hits = m.body_hits(body, msg["Content-Type"])
    assert hits == {("赌博", "gbk", "base64"), ("法轮", "utf-8", "base64"), ("六合彩", "utf-8", "multipart")}


@pytest.mark.parametrize("nl", [b"\r\n", b"\n"])
def test_http_file_upload(m: Matcher, nl: bytes) -> None:
    boundary = b"----WebKitFormBoundary7MA4YWxkTrZu0gW"
    body = nl.join([
        b"--" + boundary,
        b'Content-Disposition: form-data; name="comment"',
        b"",
        "VPN翻墙".encode(),
        b"--" + boundary,
        b'Content-Disposition: form-data; name="file"; filename="a.txt"',
        b"Content-Type: text/plain",
        b"",
        "关于六合彩".encode("gbk"),
        b"--" + boundary + b"--",
        b"",
    ])
    ctype = "multipart/form-data; boundary=" + boundary.decode()
    assert content_type_param(ctype, "boundary") == boundary.decode()
    assert m.body_hits(body, ctype) == {("VPN翻墙", "utf-8", "raw"), ("六合彩", "gbk", "raw")}


# --- streams --------------------------------------------------------------------------------------


def test_streamed_body_in_segments_matches_whole(m: Matcher) -> None:
    page = ("<html><body>" + "新闻内容" * 300 + "赌博" + "新闻" * 500 + "VPN翻墙" + "</body></html>").encode()
    stream = fold(b"HTTP/1.1 200 OK\r\nContent-Type: Text/HTML\r\n\r\n" + page)
    whole = m.patterns.scan(stream)
    assert {m.owner[pid][0] for _, pid in whole} == {"赌博", "VPN翻墙"}
    for mss in (1, 7, 536, 1460):
        scan = StreamScan(m.patterns, 16 * 1024)
        found = []
        for i in range(0, len(stream), mss):
            found += scan.feed(stream[i : i + mss])
        assert found == whole
