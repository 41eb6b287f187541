"""Tests for agent.filter.normalize: each decoder on real encoder output, malformed input, totality."""

from __future__ import annotations

import base64
import json
import quopri
import urllib.parse
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.filter.normalize import (
    DECODE_GROWTH,
    MAX_MULTIPART_DEPTH,
    MAX_PARTS,
    MAX_VIEW_BYTES,
    MAX_VIEWS,
    base64_decode,
    body_views,
    content_type_param,
    fold,
    form_decode,
    json_unescape,
    multipart_parts,
    percent_decode,
    qp_decode,
    rfc2047_decode,
)

U = "赌博".encode()
G = "赌博".encode("gbk")


def test_fold_is_ascii_only() -> None:
    assert fold(b"VPN Falun") == b"vpn falun"
    assert fold("ÀÉ赌博".encode()) == "ÀÉ赌博".encode()
    assert fold(bytes(range(256))) == bytes(range(256)).lower()


# --- percent-encoding -----------------------------------------------------------------------


def test_percent_decode() -> None:
    assert percent_decode(urllib.parse.quote("赌博").encode()) == U
    assert percent_decode(urllib.parse.quote("赌博", encoding="gbk").encode()) == G
    assert percent_decode(b"%e8%B5%8c") == "赌".encode()
    assert percent_decode(b"a+b%2B") == b"a+b+"
    assert percent_decode(b"a+b%2B", plus=True) == b"a b+"
    assert percent_decode(b"no escapes") == b"no escapes"


def test_percent_decode_keeps_invalid_sequences() -> None:
    for bad in (b"%", b"%z", b"%4", b"%4g", b"100%", b"%%41", b"%u12", b"%u12zz", b"%%u4e2d"):
        decoded = percent_decode(bad)
        assert decoded == bad.replace(b"%41", b"A").replace(b"%u4e2d", "中".encode())
    assert percent_decode(b"%E8%B5%8") == b"\xe8\xb5%8"


def test_percent_u_iis_style() -> None:
    assert percent_decode(b"%u8D4C%u535a") == U
    assert percent_decode(b"%U4e2d") == "中".encode()
    assert percent_decode(b"%uD842%uDFB7") == "𠮷".encode()  # surrogate pair joined
    assert percent_decode(b"%uD842x") == "\ufffdx".encode()  # lone surrogate
    assert percent_decode(b"%uDFB7%uD842") == "\ufffd\ufffd".encode()
    assert percent_decode(b"%u0041%41") == b"AA"


def test_form_decode() -> None:
    body = urllib.parse.urlencode({"q": "六合 彩", "site": "a&b=c"}).encode()
    assert form_decode(body) == "q=六合 彩\nsite=a&b=c".encode()
    gbk = urllib.parse.urlencode({"q": "赌博"}, encoding="gbk").encode()
    assert form_decode(gbk) == b"q=" + G
    # a keyword cannot be made up of two fields
    assert U not in form_decode(b"a=%E8%B5%8C&%E5%8D%9A=1")


# --- JSON -----------------------------------------------------------------------------------


def test_json_unescape() -> None:
    doc = {"msg": "我要赌博", "name": "𠮷野家", "s": 'a"b\\c/d\n\t\r\b\f'}
    text = json.dumps(doc, ensure_ascii=True).encode()
    assert b"\\u8d4c" in text
    assert json_unescape(text) == json.dumps(doc, ensure_ascii=False).encode().replace(b"\\n", b"\n").replace(
        b"\\t", b"\t").replace(b"\\r", b"\r").replace(b"\\b", b"\b").replace(b"\\f", b"\f").replace(
        b'\\"', b'"').replace(b"\\\\", b"\\")


def test_json_unescape_edge_cases() -> None:
    assert json_unescape(b"\\\\u8d4c") == b"\\u8d4c"  # an escaped backslash, then text
    assert json_unescape(b"\\\\\\u8d4c") == "\\赌".encode()
    assert json_unescape(b"\\ud842\\udfb7") == "𠮷".encode()
    assert json_unescape(b"\\ud842 \\udfb7") == "\ufffd \ufffd".encode()
    assert json_unescape(b"\\x41\\u12\\") == b"\\x41\\u12\\"
    assert json_unescape(b"\\U8D4C") == b"\\U8D4C"  # JSON has no \U
    assert json_unescape(b"\\u8D4C") == "赌".encode()
    assert json_unescape(b"plain") == b"plain"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_json_unescape_inverts_json_dumps(text: str) -> None:
    assert json_unescape(json.dumps(text, ensure_ascii=True).encode()) == f'"{text}"'.encode()


# --- base64, quoted-printable -----------------------------------------------------------------


def test_base64_decode() -> None:
    data = ("我要赌博" * 30).encode("gbk")
    assert base64_decode(base64.encodebytes(data)) == data  # MIME lines of 76
    assert base64_decode(base64.b64encode(data).rstrip(b"=")) == data
    assert base64_decode(b"6LWM 5Y2a\r\n") == U
    assert base64_decode(b"6LWM5Y2a!garbage 6LWM") == U
    assert base64_decode(b"6LWM5Y2a==6LWM") == U
    assert base64_decode(base64.urlsafe_b64encode(b"\xfb\xff\xfe")) == b"\xfb\xff\xfe"
    assert base64_decode(b"6LWM5") == "赌".encode()  # a lone 6-bit character is dropped
    assert base64_decode(b"") == b"" and base64_decode(b"!!!") == b""


def test_qp_decode() -> None:
    text = ("我要赌博 = " * 20 + "\n") * 3
    encoded = quopri.encodestring(text.encode())
    assert b"=\n" in encoded  # soft line breaks
    assert qp_decode(encoded) == text.encode()
    assert qp_decode(b"=E8=b5=8C=E5=8D=9A") == U
    assert qp_decode(b"=E8=B5=\r\n=8C") == "赌".encode()
    assert qp_decode(b"=E8=B5= \t\r\n=8C") == "赌".encode()  # transport padding after "="
    assert qp_decode(b"a=ZZb=4") == b"a=ZZb=4"
    assert qp_decode(b"plain") == b"plain"


# --- RFC 2047 ---------------------------------------------------------------------------------


def test_rfc2047_header_from_email_package() -> None:
    for charset in ("utf-8", "gb2312", "gbk", "gb18030", "big5"):
        text = "賭博" if charset == "big5" else "赌博"
        encoded = Header(text + " 六合彩" if charset != "big5" else text, charset).encode().encode()
        assert b"=?" in encoded
        assert text.encode() in rfc2047_decode(encoded), charset


def test_rfc2047_long_header_split_into_adjacent_words_is_joined() -> None:
    subject = "关于" + "赌博" * 20 + "的通知"
    for charset in ("utf-8", "gb2312"):
        encoded = Header(subject, charset, maxlinelen=40).encode().encode()
        assert encoded.count(b"=?") > 3
        assert rfc2047_decode(encoded) == subject.encode()


def test_rfc2047_forms() -> None:
    assert rfc2047_decode(b"=?utf-8?q?=E8=B5=8C_=E5=8D=9A?=") == "赌 博".encode()
    assert rfc2047_decode(b"=?UTF-8?B?6LWM5Y2a?=") == U
    assert rfc2047_decode(b"=?utf-8*zh?B?6LWM5Y2a?=") == U  # RFC 2231 language
    assert rfc2047_decode(b"=?iso-8859-1?q?caf=E9?=") == "café".encode()
    # GB2312-labelled text holding a GBK-only character (燚 is not in GB2312)
    assert rfc2047_decode(b"=?gb2312?b?" + base64.b64encode("燚".encode("gbk")) + b"?=") == "燚".encode()
    # one GBK character split across two words
    a, b = base64.b64encode(G[:1]), base64.b64encode(G[1:])
    assert rfc2047_decode(b"=?gbk?b?" + a + b"?= =?gbk?b?" + b + b"?=") == U
    # adjacent words in different charsets: the whitespace between goes, text between stays
    assert rfc2047_decode(b"=?utf-8?b?6LWM?=\r\n =?gbk?b?sqk=?=") == U
    assert rfc2047_decode(b"=?utf-8?b?6LWM?= x =?gbk?b?sqk=?=") == "赌 x 博".encode()
    # unknown labels and Python codecs that are not charsets are read as UTF-8
    assert rfc2047_decode(b"=?x-unknown?b?6LWM5Y2a?=") == U
    assert rfc2047_decode(b"=?unicode_escape?q?\\u8d4c?=") == b"\\u8d4c"
    assert rfc2047_decode(b"=?" + b"x" * 100 + b"?q?a?=") == b"a"


def test_rfc2047_malformed_left_alone() -> None:
    for bad in (b"=?utf-8?x?abc?=", b"=?utf-8?b?6LWM", b"=??b?6LWM?=", b"=?utf-8?q?a b?=", b"plain =? text"):
        assert rfc2047_decode(bad) == bad
    assert rfc2047_decode(b"=?utf-8?b?!!!!?=") == b""
    assert rfc2047_decode(b"=?utf-8?b?/w==?=") == "\ufffd".encode()


# --- Content-Type parameters -------------------------------------------------------------------


def test_content_type_param() -> None:
    ct = 'multipart/form-data; charset=UTF-8; Boundary="----Web Kit;\\"x"'
    assert content_type_param(ct, "boundary") == '----Web Kit;"x'
    assert content_type_param(ct, "CHARSET") == "UTF-8"
    assert content_type_param(ct, "name") is None
    assert content_type_param(b"text/plain; charset=gbk", "charset") == "gbk"
    assert content_type_param("multipart/mixed; boundary=abc ; x=1", "boundary") == "abc"
    assert content_type_param('multipart/mixed; boundary="unterminated', "boundary") == "unterminated"
    assert content_type_param("text/plain", "charset") is None
    assert content_type_param("", "charset") is None


# --- multipart ----------------------------------------------------------------------------------


def form_data(nl: bytes, *, close: bool = True) -> bytes:
    parts = [
        b"preamble" + nl,
        b"--XyZ" + nl + b'Content-Disposition: form-data; name="q"' + nl + nl + U,
        nl + b"--XyZ  " + nl + b'Content-Disposition: form-data; name="f"; filename="a.txt"' + nl
        + b"Content-Type: text/plain" + nl + nl + G + nl + b"--XyZnot a delimiter" + nl,
        nl + b"--XyZ" + nl + nl + b"headerless",
    ]
    if close:
        parts.append(nl + b"--XyZ--" + nl + b"epilogue")
    return b"".join(parts)


def test_multipart_form_data_crlf_and_lf() -> None:
    for nl in (b"\r\n", b"\n"):
        expected = [U, G + nl + b"--XyZnot a delimiter" + nl, b"headerless"]
        assert multipart_parts(form_data(nl), b"XyZ") == expected
        # a truncated capture: no close delimiter, the last part runs to the end of the buffer
        assert multipart_parts(form_data(nl, close=False), b"XyZ") == expected
        cut = form_data(nl)
        cut = cut[: cut.index(b"headerless") + 4]
        assert multipart_parts(cut, b"XyZ") == [*expected[:2], b"head"]


def test_multipart_mail_from_email_package() -> None:
    msg = MIMEMultipart()
    msg.attach(MIMEText("我要赌博", "plain", "utf-8"))  # base64
    msg.attach(MIMEText("六合彩开奖", "plain", "gb2312"))  # base64, GB2312
    qp = MIMEText("", "plain")
    qp.set_payload("法轮 " * 30, "utf-8")
    qp.replace_header("Content-Transfer-Encoding", "quoted-printable")
    qp.set_payload(quopri.encodestring(("法轮 " * 30).encode()).decode())
    msg.attach(qp)
    attachment = MIMEText("data", "plain", "us-ascii")
    attachment.add_header("Content-Disposition", "attachment", filename=Header("翻墙.txt", "utf-8").encode())
    msg.attach(attachment)
    attachment2 = MIMEText("data", "plain", "us-ascii")
    attachment2.add_header("Content-Disposition", "attachment", filename=("utf-8", "", "翻墙.zip"))
    msg.attach(attachment2)
    raw = msg.as_bytes()
    body = raw.split(b"\n\n", 1)[1]
    boundary = content_type_param(msg["Content-Type"], "boundary")
    assert boundary
    parts = multipart_parts(body, boundary.encode())
    assert parts[0] == "我要赌博".encode()
    assert parts[1] == "六合彩开奖".encode("gb2312")
    assert parts[2] == ("法轮 " * 30).encode()
    assert parts[3] == 'attachment; filename="翻墙.txt"'.encode() and parts[4] == b"data"
    assert "翻墙.zip".encode() in parts[5] and parts[6] == b"data"
    assert len(parts) == 7


def test_nested_multipart_and_limits() -> None:
    inner = MIMEMultipart("alternative")
    inner.attach(MIMEText("赌博", "plain", "utf-8"))
    inner.attach(MIMEText("<b>赌博</b>", "html", "gbk"))
    outer = MIMEMultipart()
    outer.attach(MIMEText("intro", "plain"))
    outer.attach(inner)
    body = outer.as_bytes().split(b"\n\n", 1)[1]
    boundary = content_type_param(outer["Content-Type"], "boundary")
    assert boundary
    assert multipart_parts(body, boundary.encode()) == [b"intro", U, "<b>赌博</b>".encode("gbk")]

    # nesting deeper than MAX_MULTIPART_DEPTH: the innermost parts are not entered
    def nest(level: int) -> bytes:
        if level == 0:
            return b"Content-Type: text/plain\n\nleaf"
        b = b"b%d" % level
        return b"Content-Type: multipart/mixed; boundary=" + b + b"\n\n--" + b + b"\n" + nest(level - 1) + (
            b"\n--" + b + b"--\n")
    deep = nest(MAX_MULTIPART_DEPTH + 2).split(b"\n\n", 1)[1]
    assert multipart_parts(deep, b"b%d" % (MAX_MULTIPART_DEPTH + 2)) == []
    shallow = nest(MAX_MULTIPART_DEPTH).split(b"\n\n", 1)[1]
    assert multipart_parts(shallow, b"b%d" % MAX_MULTIPART_DEPTH) == [b"leaf"]

    many = b"".join(b"--b\n\npart%d\n" % i for i in range(MAX_PARTS + 10)) + b"--b--\n"
    assert len(multipart_parts(many, b"b")) == MAX_PARTS


def test_multipart_without_delimiter_or_boundary() -> None:
    assert multipart_parts(b"just text", b"b") == []
    assert multipart_parts(b"--b\n\nx", b"") == []
    assert multipart_parts(b"", b"b") == []


# --- body_views -----------------------------------------------------------------------------------


def test_body_views_form() -> None:
    body = urllib.parse.urlencode({"q": "VPN翻墙"}).encode()
    view = [("q=VPN翻墙".encode(), "url")]  # as decoded: the matchers ignore ASCII case
    assert body_views(body, "application/x-www-form-urlencoded; charset=UTF-8") == view
    assert body_views(body, None) == view  # form-shaped, no type
    assert body_views(body, "text/plain") == []
    assert body_views(b"q=plain&x=1", "application/x-www-form-urlencoded") == []  # nothing decoded
    assert body_views(b"hello %E8%B5%8C world", None) == []  # not form-shaped


def test_body_views_json() -> None:
    body = json.dumps({"msg": "我要赌博"}).encode()
    assert body_views(body, "application/json") == [('{"msg": "我要赌博"}'.encode(), "json")]
    assert body_views(body, "text/javascript") == [('{"msg": "我要赌博"}'.encode(), "json")]
    assert body_views(b'{"a": 1}', "application/json") == []
    # a JSON value sent in a form field
    form = urllib.parse.urlencode({"data": json.dumps({"m": "赌博"})}).encode()
    views = body_views(form, "application/x-www-form-urlencoded")
    assert [t for _, t in views] == ["url", "json"] and U in views[1][0]


def test_body_views_mail_transfer_encodings() -> None:
    b64 = base64.encodebytes("我要赌博".encode("gbk"))
    expected = [("我要赌博".encode("gbk"), "base64")]
    assert body_views(b64, "text/plain; charset=gbk", "Base64") == expected
    qp = quopri.encodestring("赌博 VPN".encode())
    assert body_views(qp, "text/plain", "quoted-printable") == [("赌博 VPN".encode(), "quoted-printable")]
    assert body_views(b"plain text", "text/plain", "7bit") == []


def test_body_views_multipart() -> None:
    msg = MIMEMultipart()
    msg.attach(MIMEText("我要赌博", "plain", "utf-8"))
    att = MIMEText("x", "plain", "us-ascii")
    att.add_header("Content-Disposition", "attachment", filename=Header("翻墙.txt", "utf-8").encode())
    msg.attach(att)
    body = msg.as_bytes().split(b"\n\n", 1)[1]
    views = body_views(body, msg["Content-Type"])
    assert ("我要赌博".encode(), "base64") in views
    assert ('attachment; filename="翻墙.txt"'.encode(), "multipart") in views
    # identity parts are part of the body already: no view
    assert body_views(form_data(b"\r\n"), "multipart/form-data; boundary=XyZ") == []
    # no boundary parameter: the first line is taken as the delimiter
    views = body_views(b"--zz\nContent-Transfer-Encoding: base64\n\n6LWM5Y2a\n--zz--\n", "multipart/mixed")
    assert views == [(U, "base64")]


def test_body_views_bounded() -> None:
    part = b"--b\nContent-Transfer-Encoding: base64\n\n%s\n"
    body = b"".join(part % base64.b64encode(b"view %d " % i + b"x" * 9000) for i in range(40)) + b"--b--"
    views = body_views(body, "multipart/mixed; boundary=b")
    assert len(views) <= MAX_VIEWS
    assert sum(len(v) for v, _ in views) <= MAX_VIEW_BYTES
    small = b"".join(part % base64.b64encode(b"view %d" % i) for i in range(40)) + b"--b--"
    assert len(body_views(small, "multipart/mixed; boundary=b")) == MAX_VIEWS


# --- totality and bounds on any input -----------------------------------------------------------

NASTY = st.lists(
    st.sampled_from([
        b"%", b"%u", b"%U", b"+", b"&", b"=", b"\\", b"\\u", b"u", b"d8", b"dc", b"D8", b"4e", b"E8",
        b"?", b"=?", b"?=", b"?b?", b"?q?", b"utf-8", b"gbk", b"\r\n", b"\n", b" ", b"--b", b"--",
        b"Content-Transfer-Encoding: base64", b"Content-Type: multipart/mixed; boundary=b",
        b"6LWM", b"\x00", b"\xff", b"\xe8\xb5", b"A", b"z", b'"', b"_", b"*=",
    ]),
    max_size=60,
).map(b"".join)
ANY = st.one_of(st.binary(max_size=300), NASTY)


@settings(max_examples=400, deadline=None)
@given(ANY)
def test_decoders_are_total_and_shrink(data: bytes) -> None:
    for decoded in (fold(data), percent_decode(data), percent_decode(data, plus=True), form_decode(data),
                    json_unescape(data), base64_decode(data), qp_decode(data)):
        assert isinstance(decoded, bytes) and len(decoded) <= len(data)
    assert len(rfc2047_decode(data)) <= DECODE_GROWTH * len(data)


@settings(max_examples=300, deadline=None)
@given(ANY, st.sampled_from([b"b", b"--", b"zz"]))
def test_multipart_and_views_are_total_and_bounded(data: bytes, boundary: bytes) -> None:
    parts = multipart_parts(data, boundary)
    assert len(parts) <= 2 * MAX_PARTS
    assert sum(len(p) for p in parts) <= DECODE_GROWTH * len(data)
    for ctype in (None, "multipart/mixed; boundary=" + boundary.decode(), "multipart/mixed",
                  "application/x-www-form-urlencoded", "application/json"):
        for transfer in (None, "base64", "quoted-printable"):
            views = body_views(data, ctype, transfer)
            assert len(views) <= MAX_VIEWS
            assert sum(len(v) for v, _ in views) <= MAX_VIEW_BYTES
            assert all(v and v != data for v, _ in views)
    content_type_param(data, "boundary")
