"""The keyword filter inside the pipeline: decoders hand content over, alerts come out with the
flow id, once per (connection, rule, field), in every encoding, across segment boundaries.

Frames are built with `tcp_frames` and fed through `Pipeline(rules=...)` on both the fast and
the general path; the alerts must be the same either way.
"""

from __future__ import annotations

import gzip
import json
import struct
from typing import Any
from urllib.parse import quote

import pytest
from flow_paths import both_paths
from tcp_frames import Conn, udp_frame

from agent.filter.compiled import CompiledRules, compile_rules
from agent.pipeline import Pipeline
from rulesets.model import FIELDS, Category, Combination, Phrase, Ruleset

pytestmark = pytest.mark.usefixtures("keyword_engine")  # each test with each keyword engine

Record = dict[str, Any]
T0 = 1_700_000_000.0
CLIENT, SERVER = "192.0.2.10", "198.51.100.80"


def ruleset(*cats: Category, version: int = 7) -> CompiledRules:
    return compile_rules(Ruleset(name="t", version=version, categories=list(cats)))


def cat(cid: str, *words: str, action: str = "alert", fields: tuple[str, ...] = FIELDS,
        exceptions: tuple[str, ...] = (), combos: tuple[tuple[str, ...], ...] = ()) -> Category:
    return Category(
        id=cid, action=action, severity=3,  # type: ignore[arg-type]
        keywords=[Phrase(w, f"{cid}.txt", i + 1) for i, w in enumerate(words)],
        fields=frozenset(fields),
        exceptions=[Phrase(e, f"{cid}-x.txt", i + 1) for i, e in enumerate(exceptions)],
        combinations=[Combination(c, f"{cid}-c.txt", i + 1) for i, c in enumerate(combos)],
    )


def run(frames: list[bytes], rules: CompiledRules, **kw: Any) -> list[Record]:
    return both_paths(frames, T0, rules=rules, **kw)


def alerts(recs: list[Record]) -> list[Record]:
    return [r for r in recs if r["type"] == "alert"]


def http_exchange(request: bytes, response: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                  *, segment: int = 1400, port: int = 40001) -> list[bytes]:
    c = Conn(CLIENT, port, SERVER, 80)
    frames = c.handshake()  # built in order: each segment acknowledges what was sent before it
    frames += [c.c(request[i:i + segment]) for i in range(0, len(request), segment)]
    frames.append(c.s())
    frames += [c.s(response[i:i + segment]) for i in range(0, len(response), segment)]
    return frames + [c.c()] + c.close()


def post(body: bytes, ctype: str = "application/x-www-form-urlencoded", extra: bytes = b"") -> bytes:
    return (b"POST /submit HTTP/1.1\r\nHost: example.com\r\nContent-Type: " + ctype.encode()
            + b"\r\nContent-Length: %d\r\n" % len(body) + extra + b"\r\n" + body)


GAMBLING = cat("gambling", "六合彩", "casino")


def test_percent_encoded_utf8_keyword_in_the_uri() -> None:
    uri = "/search?q=" + quote("今天的六合彩开奖")
    recs = run(http_exchange(f"GET {uri} HTTP/1.1\r\nHost: example.com\r\n\r\n".encode()), ruleset(GAMBLING))
    [a] = alerts(recs)
    sess = next(r for r in recs if r["type"] == "session")
    assert a["uid"] == sess["uid"] and a["src_ip"] == CLIENT and a["dst_port"] == 80
    assert (a["field"], a["keyword"], a["encoding"]) == ("http.uri", "六合彩", "url")
    assert a["category"] == "gambling"
    assert a["rule_id"] == "gambling:gambling.txt:1" and a["ruleset_version"] == "7"
    assert a["action"] == "alert" and a["blocked"] is False and a["severity"] == 3
    assert "六合彩" in a["snippet"] and len(a["snippet"]) <= 200
    assert a["account"] is None


@pytest.mark.parametrize("around", [
    ("x casino y", "x casino y"),
    ("  a\tb\r\n casino\u3000\u3000c  ", "a b casino c"),  # tabs, line ends, ideographic spaces
    ("a  b casino c\u00a0d", "a b casino c d"),  # a double space, a no-break space
])
def test_snippet_collapses_whitespace_runs_to_one_space(around: tuple[str, str]) -> None:
    body, expected = around
    recs = run(http_exchange(post(body.encode("utf-8"), "text/plain")), ruleset(GAMBLING))
    [a] = alerts(recs)
    assert a["snippet"] == expected


def test_gbk_form_body_split_across_segments_matches_once() -> None:
    body = b"name=x&msg=" + quote("我想买六合彩", encoding="gbk").encode() + b"&z=1"
    # 7-byte segments cut the percent-encoded keyword everywhere
    recs = run(http_exchange(post(body), segment=7), ruleset(GAMBLING))
    [a] = alerts(recs)
    assert (a["field"], a["encoding"]) == ("http.request_body", "url-gbk")


def test_raw_gbk_and_gb18030_bodies() -> None:
    for charset in ("gbk", "gb18030"):
        body = ("这里有六合彩的消息").encode(charset)
        [a] = alerts(run(http_exchange(post(body, "text/plain; charset=" + charset)), ruleset(GAMBLING)))
        assert a["encoding"] == "gbk"  # the two agree on these characters: the first form names it
        assert "六合彩" in a["snippet"]


def test_gbk_trail_letters_match_exactly_ascii_in_either_case() -> None:
    """Issue 16: the keyword 丅丅测试 (GBK 81 42 81 42 ...) does not alert on the different text
    乥乥测试 (81 62 81 62 ...), raw, percent-encoded or in a split stream; its own text does,
    and the ASCII letters of a mixed keyword (QQ群) still match in either case."""
    rules = ruleset(cat("t", "丅丅测试", "QQ群"))
    for text in ("乥乥测试", "乥丅测试", "丅乥测试"):
        body = ("看" + text + "了").encode("gbk")
        assert alerts(run(http_exchange(post(body, "text/plain; charset=gbk"), segment=7), rules)) == []
        form = b"m=" + quote(text, encoding="gbk").encode()
        assert alerts(run(http_exchange(post(form)), rules)) == []
    [a] = alerts(run(http_exchange(post("看丅丅测试了".encode("gbk"), "text/plain; charset=gbk"), segment=7),
                     rules))
    assert (a["keyword"], a["encoding"]) == ("丅丅测试", "gbk") and "丅丅测试" in a["snippet"]
    [a] = alerts(run(http_exchange(post(b"m=" + quote("丅丅测试", encoding="gbk").encode())), rules))
    assert (a["keyword"], a["encoding"]) == ("丅丅测试", "url-gbk")
    [a] = alerts(run(http_exchange(post("加qQ群".encode("gbk"), "text/plain; charset=gbk")), rules))
    assert (a["keyword"], a["encoding"]) == ("QQ群", "gbk")


def test_gzip_response_body_and_ascii_case_folding() -> None:
    body = gzip.compress(b"<html>Welcome to the CASINO royale</html>")
    resp = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    [a] = alerts(run(http_exchange(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", resp), ruleset(GAMBLING)))
    assert (a["field"], a["keyword"], a["encoding"]) == ("http.response_body", "casino", "utf-8")


def test_json_escapes_and_multipart_base64() -> None:
    body = json.dumps({"text": "六合彩"}).encode()  # ensure_ascii: \u516d\u5408\u5f69
    assert b"\\u516d" in body
    [a] = alerts(run(http_exchange(post(body, "application/json")), ruleset(GAMBLING)))
    assert (a["field"], a["encoding"]) == ("http.request_body", "json")
    import base64
    part = base64.encodebytes("六合彩".encode()).strip()
    mp = (b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n"
          b"Content-Transfer-Encoding: base64\r\n\r\n" + part + b"\r\n--XyZ--\r\n")
    [a] = alerts(run(http_exchange(post(mp, 'multipart/form-data; boundary="XyZ"')), ruleset(GAMBLING)))
    assert a["encoding"].startswith("base64")


def test_one_alert_per_connection_rule_and_field() -> None:
    c = Conn(CLIENT, 40009, SERVER, 80)
    frames = c.handshake()
    for i in range(3):
        frames += [c.c(f"GET /casino/{i} HTTP/1.1\r\nHost: casino.example\r\n\r\n".encode()), c.s(),
                   c.s(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), c.c()]
    frames += c.close()
    got = alerts(run(frames, ruleset(GAMBLING)))
    assert sorted(a["field"] for a in got) == ["http.host", "http.uri"]


def test_near_misses_do_not_match() -> None:
    text = "六合 彩, 六合采, casin0, 合彩六"
    body = text.encode("utf-8") + text.encode("gbk")[:-1]
    assert alerts(run(http_exchange(post(body, "text/plain")), ruleset(GAMBLING))) == []


def test_exception_phrase_suppresses_a_match_inside_it_only() -> None:
    rules = ruleset(cat("gambling", "赌博", exceptions=("禁止赌博",)))
    assert alerts(run(http_exchange(post("公告:禁止赌博".encode(), "text/plain")), rules)) == []
    [a] = alerts(run(http_exchange(post("公告:禁止赌博。来赌博吧".encode(), "text/plain")), rules))
    assert a["keyword"] == "赌博"


def test_combination_needs_every_part_in_one_message() -> None:
    rules = ruleset(cat("drugs", "海洛因", combos=(("冰", "出售"),)))
    [a] = alerts(run(http_exchange(post("出售上等冰,价格面议".encode(), "text/plain")), rules))
    assert (a["keyword"], a["rule_id"]) == ("冰 & 出售", "drugs:drugs-c.txt:1")
    assert alerts(run(http_exchange(post("出售二手书".encode(), "text/plain")), rules)) == []


def test_fields_limit_where_a_category_matches() -> None:
    rules = ruleset(cat("dnsonly", "casino", fields=("dns.query",)))
    assert alerts(run(http_exchange(b"GET /casino HTTP/1.1\r\nHost: h\r\n\r\n"), rules)) == []


def test_keyword_past_the_depth_is_not_scanned() -> None:
    body = b"a" * 3000 + "六合彩".encode()
    assert alerts(run(http_exchange(post(body, "text/plain")), ruleset(GAMBLING), depth=2048)) == []
    assert len(alerts(run(http_exchange(post(body, "text/plain")), ruleset(GAMBLING)))) == 1


def test_dns_query_with_an_idna_name() -> None:
    name = "www.六合彩.com".encode("idna")
    q = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    for label in name.split(b"."):
        q += bytes([len(label)]) + label
    q += b"\x00" + struct.pack("!HH", 1, 1)
    [a] = alerts(run([udp_frame(CLIENT, 53001, "198.51.100.53", 53, q)], ruleset(GAMBLING)))
    assert (a["field"], a["encoding"], a["dst_port"]) == ("dns.query", "idna", 53)


def test_block_category_says_not_blocked_offline() -> None:
    rules = ruleset(cat("bad", "casino", action="block"))
    [a] = alerts(run(http_exchange(b"GET /casino HTTP/1.1\r\nHost: h\r\n\r\n"), rules))
    assert (a["action"], a["blocked"]) == ("block", False)


def test_records_other_than_alerts_do_not_change_with_a_ruleset() -> None:
    body = b"x" * 30000
    c = Conn(CLIENT, 40011, SERVER, 80)
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    frames = c.handshake()
    for _ in range(2):  # two big replies on one connection: both fully counted
        frames += [c.c(b"GET /casino HTTP/1.1\r\nHost: h\r\n\r\n"), c.s()]
        frames += [c.s(resp[i:i + 1400]) for i in range(0, len(resp), 1400)] + [c.c()]
    frames += c.close()
    with_rules = run(frames, ruleset(GAMBLING))
    without: list[Record] = []
    p = Pipeline(without.extend)
    p.feed([(T0 + i * 0.01, 1, f) for i, f in enumerate(frames)])
    p.finish()
    assert [r for r in with_rules if r["type"] != "alert"] == without
    assert [r["response_body_len"] for r in without if r["type"] == "http"] == [30000, 30000]


def talk(c: Conn, lines: list[tuple[bool, bytes]]) -> list[bytes]:
    out: list[bytes] = []
    for from_client, data in lines:
        out += [c.c(data), c.s()] if from_client else [c.s(data), c.c()]
    return out


def smtp_session(message: bytes) -> list[bytes]:
    c = Conn("10.0.0.1", 40020, "10.0.0.25", 25)
    return c.handshake() + talk(c, [
        (False, b"220 mx ESMTP\r\n"), (True, b"EHLO c\r\n"), (False, b"250 mx\r\n"),
        (True, b"MAIL FROM:<a@example.com>\r\n"), (False, b"250 OK\r\n"),
        (True, b"RCPT TO:<b@example.org>\r\n"), (False, b"250 OK\r\n"), (True, b"DATA\r\n"),
        (False, b"354 go\r\n"), (True, message + b"\r\n.\r\n"), (False, b"250 queued\r\n"),
        (True, b"QUIT\r\n"), (False, b"221 bye\r\n")]) + c.close()


def test_mail_subject_rfc2047_gbk_and_base64_body() -> None:
    from email.header import Header
    subject = Header("特价六合彩", "gbk").encode().encode()  # =?gbk?b?...?=
    body = __import__("base64").encodebytes("内容:正宗六合彩".encode()).strip()
    msg = (b"From: a@example.com\r\nTo: b@example.org\r\nSubject: " + subject
           + b"\r\nContent-Type: text/plain; charset=utf-8\r\n"
           + b"Content-Transfer-Encoding: base64\r\n\r\n" + body)
    got = sorted((a["field"], a["encoding"]) for a in alerts(run(smtp_session(msg), ruleset(GAMBLING))))
    assert got == [("smtp.body", "base64"), ("smtp.subject", "rfc2047")]


def test_mail_quoted_printable_body() -> None:
    import quopri
    body = quopri.encodestring("一段很长的文字,然后是六合彩。".encode())
    msg = (b"Subject: hi\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + body)
    [a] = alerts(run(smtp_session(msg), ruleset(GAMBLING)))
    assert (a["field"], a["encoding"]) == ("smtp.body", "quoted-printable")


def test_chunked_response_with_the_keyword_across_chunks() -> None:
    text = "欢迎光临六合彩网站".encode()
    chunks = [text[:13], text[13:]]  # the cut falls inside 六合彩's bytes
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in chunks) + b"0\r\n\r\n"
    resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    [a] = alerts(run(http_exchange(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", resp, segment=9), ruleset(GAMBLING)))
    assert (a["field"], a["encoding"]) == ("http.response_body", "utf-8")


def test_tls_server_name() -> None:
    host = b"www.casino-royal.example"
    entry = struct.pack("!BH", 0, len(host)) + host
    names = struct.pack("!H", len(entry)) + entry
    ext = struct.pack("!HH", 0, len(names)) + names
    body = (struct.pack("!H", 0x0303) + bytes(range(32)) + b"\x00" + struct.pack("!HH", 2, 0x002F)
            + b"\x01\x00" + struct.pack("!H", len(ext)) + ext)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    hello = b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs
    c = Conn(CLIENT, 40030, SERVER, 443)
    [a] = alerts(run(c.handshake() + [c.c(hello), c.s()] + c.close(), ruleset(GAMBLING)))
    assert (a["field"], a["keyword"], a["dst_port"]) == ("tls.server_name", "casino", 443)


def test_ftp_argument_but_never_the_password() -> None:
    c = Conn(CLIENT, 40040, SERVER, 21)
    frames = c.handshake() + talk(c, [
        (False, b"220 ftp\r\n"), (True, b"USER casino\r\n"), (False, b"331 pw\r\n"),
        (True, b"PASS casino-secret\r\n"), (False, b"230 ok\r\n"),
        (True, "RETR 六合彩.zip\r\n".encode()), (False, b"550 no\r\n")]) + c.close()
    got = alerts(run(frames, ruleset(GAMBLING)))
    assert sorted(a["keyword"] for a in got) == ["casino", "六合彩"]  # USER and RETR, never PASS
    assert all("secret" not in a["snippet"] for a in got)


def test_media_bodies_are_counted_not_scanned() -> None:
    """An image or an archive holds no typed text: its body is skipped (and still counted)."""
    body = b"\x89PNG\r\n" + "六合彩".encode() + b"\x00" * 40000
    for ctype, scanned in (("image/png", False), ("application/zip", False), ("text/html", True),
                           ("application/x-unknown", True)):
        resp = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (
            ctype.encode(), len(body))
        recs = run(http_exchange(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", resp + body), ruleset(GAMBLING))
        assert len(alerts(recs)) == (1 if scanned else 0), ctype
        assert [r["response_body_len"] for r in recs if r["type"] == "http"] == [len(body)]
