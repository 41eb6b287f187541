"""`publish` records through the real pipeline: frames built with `tcp_frames`, fed on the fast and
the general path (which must agree), every record valid on the wire.

Covered: a post to a declared host and none to another; the poster's account from the identity
table; chunked and gzip-coded bodies; pipelined posts and 100-continue; a long post on a
keep-alive connection whose earlier requests used up the inspection depth (the body is kept on
its own exemption); a body past the bound; a post cut short by a reset; uploads that hold no
text; nothing changes for other hosts' traffic (same records, same inspector counters: the
bodies are still skipped, not kept); the keyword filter: one alert per post whatever the
category's fields (the body, or the decoded text when a category watches only
`publish.text`), blocking in inline mode."""

from __future__ import annotations

import gzip
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from flow_paths import both_paths
from tcp_frames import Conn

from agent.filter.compiled import CompiledRules, compile_rules
from agent.identity.roster import Roster, RosterEntry
from agent.pipeline import Pipeline
from agent.publish.config import publishing_from_hosts
from rulesets.model import FIELDS, Category, Phrase, Ruleset

Record = dict[str, Any]
T0 = 1_700_000_000.0
CLIENT, SERVER = "192.0.2.10", "198.51.100.80"
FORM = "application/x-www-form-urlencoded"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
PUBLISHING = publishing_from_hosts(["bbs.example.cn", "*.news.example.cn"])


def post(body: bytes, host: str = "bbs.example.cn", ctype: str = FORM, uri: str = "/post.php",
         extra: str = "") -> bytes:
    return (f"POST {uri} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ctype}\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def exchange(*requests: bytes, response: bytes = OK, segment: int = 1400, port: int = 40001,
             reset: bool = False) -> list[bytes]:
    """One connection: each request in `segment`-sized pieces, then its response."""
    c = Conn(CLIENT, port, SERVER, 80)
    frames = c.handshake()
    for req in requests:
        frames += [c.c(req[i:i + segment]) for i in range(0, len(req), segment)]
        frames.append(c.s())
        frames.append(c.s(response))
        frames.append(c.c())
    if reset:
        return frames + [c.c(flags="RA")]
    return frames + c.close()


def run(frames: list[bytes], **kw: Any) -> list[Record]:
    kw.setdefault("publishing", PUBLISHING)
    recs: list[Record] = both_paths(frames, T0, **kw)
    return recs


def of(recs: list[Record], rtype: str) -> list[Record]:
    return [r for r in recs if r["type"] == rtype]


def counters(frames: list[bytes], **kw: Any) -> dict[str, int]:
    p = Pipeline(lambda _r: None, **kw)
    p.feed([(T0 + i * 0.01, 1, f) for i, f in enumerate(frames)])
    p.finish()
    return p.counters()


# -- what becomes a record -------------------------------------------------------------------------


def test_a_form_post_to_a_declared_host_is_recorded_with_its_flow() -> None:
    body = urlencode({"author": "张三", "message": "今天天气很好\r\n第二行"}).encode()
    recs = run(exchange(post(body)))
    [pub] = of(recs, "publish")
    [http] = of(recs, "http")
    assert recs.index(pub) < recs.index(http)  # made when the body is complete, not at the reply
    assert {k: pub[k] for k in ("uid", "src_ip", "src_port", "dst_ip", "dst_port", "proto")} == {
        "uid": http["uid"], "src_ip": CLIENT, "src_port": 40001, "dst_ip": SERVER, "dst_port": 80,
        "proto": "tcp"}
    assert pub["ts"] == http["ts"] == T0 + 3 * 0.01  # when the request started
    got = (pub["method"], pub["host"], pub["uri"], pub["trans_depth"])
    assert got == ("POST", "bbs.example.cn", "/post.php", 1)
    assert pub["text"] == "author=张三\nmessage=今天天气很好\\r\\n第二行"
    assert pub["fields"] == ["author", "message"]
    assert (pub["content_type"], pub["charset"], pub["body_len"]) == (FORM, "utf-8", len(body))
    assert pub["account"] is None


def test_other_hosts_and_requests_without_a_body_make_no_record() -> None:
    body = b"m=hello"
    get = b"GET /?m=hello HTTP/1.1\r\nHost: bbs.example.cn\r\n\r\n"
    recs = run(exchange(post(body, host="other.example.cn"), post(body, host="news.example.cn"), get,
                        post(b"", host="bbs.example.cn")))
    assert of(recs, "publish") == [] and len(of(recs, "http")) == 4
    recs = run(exchange(post(body, host="a.news.example.cn:8080")))
    assert [r["host"] for r in of(recs, "publish")] == ["a.news.example.cn:8080"]


def test_the_poster_account_comes_from_the_identity_table() -> None:
    roster = Roster([RosterEntry("alice", None, None, CLIENT, 1)])
    [pub] = of(run(exchange(post(b"m=hi")), roster=roster), "publish")
    assert pub["account"] == "alice"


def test_chunked_and_gzip_bodies_are_decoded() -> None:
    form = urlencode({"author": "李四", "message": "压缩的帖子" * 50}).encode()
    gz = gzip.compress(form)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(gz[i:i + 100]), gz[i:i + 100]) for i in range(0, len(gz), 100))
    req = (b"POST /p HTTP/1.1\r\nHost: bbs.example.cn\r\nContent-Type: " + FORM.encode()
           + b"\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
    [pub] = of(run(exchange(req, segment=300)), "publish")
    assert pub["text"] == "author=李四\nmessage=" + "压缩的帖子" * 50 and pub["body_len"] == len(form)


def test_pipelined_posts_and_100_continue() -> None:
    one, two = post(b"m=first"), post(b"m=second", extra="Expect: 100-continue\r\n")
    c = Conn(CLIENT, 40002, SERVER, 80)
    head, body = two.split(b"\r\n\r\n", 1)
    frames = c.handshake() + [c.c(one), c.s(OK), c.c(head + b"\r\n\r\n"),
                              c.s(b"HTTP/1.1 100 Continue\r\n\r\n"), c.c(body), c.s(OK), c.c()] + c.close()
    pubs = of(run(frames), "publish")
    assert [(p["trans_depth"], p["text"]) for p in pubs] == [(1, "m=first"), (2, "m=second")]


def test_json_and_multipart_posts() -> None:
    doc = json.dumps({"author": "王五", "post": {"title": "标题", "body": "正文"}}).encode()
    mp = (b'--XyZ\r\nContent-Disposition: form-data; name="author"\r\n\r\n' + "赵六".encode()
          + b'\r\n--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
          b"Content-Type: application/octet-stream\r\n\r\n\x00\x01\x02\r\n--XyZ--\r\n")
    pubs = of(run(exchange(post(doc, ctype="application/json"),
                           post(mp, ctype="multipart/form-data; boundary=XyZ"))), "publish")
    assert [p["text"] for p in pubs] == ["author=王五\npost.title=标题\npost.body=正文", "author=赵六"]
    assert [p["content_type"] for p in pubs] == ["application/json", "multipart/form-data"]


# -- bodies and the inspection depth -----------------------------------------------------------------


def test_a_long_post_after_requests_that_used_up_the_depth_is_whole() -> None:
    """Twenty GETs with long cookies take the request side past the 16 KiB inspection depth
    before the post; the post's body is kept on its own exemption, so its text is whole."""
    cookie = "c" * 900
    gets = [f"GET /t/{i} HTTP/1.1\r\nHost: bbs.example.cn\r\nCookie: {cookie}\r\n\r\n".encode()
            for i in range(20)]
    message = "长帖子的内容。" * 800  # 5,600 characters: 50,400 bytes percent-encoded
    body = urlencode({"m": message}).encode()
    frames = exchange(*gets, post(body), segment=1000)
    [pub] = of(run(frames), "publish")
    assert pub["text"] == "m=" + message and pub["body_len"] == len(body) > 50_000
    c = counters(frames, publishing=PUBLISHING)
    assert c["inspect_exempted_bytes"] >= len(body) and c["publish_bodies_cut"] == 0


def test_a_body_past_the_bound_is_counted_and_its_text_is_the_kept_prefix() -> None:
    body = urlencode({"a": "x" * 10, "m": "y" * 100_000}).encode()
    [pub] = of(run(exchange(post(body))), "publish")
    kept = "a=" + "x" * 10 + "\nm=" + "y" * (65536 - 15)  # the text of the first 64 KiB
    assert pub["body_len"] == len(body) and pub["text_len"] == len(kept) and pub["text"] == kept[:8192]
    assert counters(exchange(post(body)), publishing=PUBLISHING)["publish_bodies_cut"] == 1


def test_a_post_cut_short_is_recorded_at_the_connection_end() -> None:
    body = b"m=" + b"z" * 5000
    req = post(body)
    c = Conn(CLIENT, 40003, SERVER, 80)
    frames = c.handshake() + [c.c(req[:3000]), c.s(), c.c(flags="RA")]
    [pub] = of(run(frames), "publish")
    sent = 3000 - len(req.split(b"\r\n\r\n")[0]) - 4
    assert pub["body_len"] == sent and pub["text"] == "m=" + "z" * (sent - 2)


def test_an_upload_without_text_is_recorded_and_not_kept() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 100
    frames = exchange(post(png, ctype="image/png"))
    [pub] = of(run(frames), "publish")
    got = (pub["fields"], pub["text"], pub["body_len"], pub["content_type"])
    assert got == ([], None, len(png), "image/png")
    assert counters(frames, publishing=PUBLISHING)["inspect_skipped_bytes"] > len(png) - 2 * 1400


def test_other_hosts_traffic_is_handled_as_without_publishing() -> None:
    """The same records and the same inspector counters with and without publishing hosts: other
    hosts' bodies are still only counted and skipped (no body kept, no depth exempted)."""
    body = bytes(range(256)) * 100
    big = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    frames = exchange(post(b"m=" + body.hex().encode(), host="other.example.cn"),
                      b"GET / HTTP/1.1\r\nHost: www.example.cn\r\n\r\n", response=big)
    assert run(frames) == run(frames, publishing=None)
    with_pub = counters(frames, publishing=PUBLISHING)
    with_pub = {k: v for k, v in with_pub.items() if not k.startswith("publish_")}
    assert with_pub == counters(frames)
    assert with_pub["inspect_skipped_bytes"] > len(body) and with_pub["inspect_exempted_bytes"] == 0


# -- the keyword filter ------------------------------------------------------------------------------


def rules(*cats: Category) -> CompiledRules:
    return compile_rules(Ruleset(name="t", version=3, categories=list(cats)))


def cat(cid: str, *words: str, action: str = "alert", fields: tuple[str, ...] = FIELDS) -> Category:
    return Category(id=cid, action=action, severity=3,  # type: ignore[arg-type]
                    keywords=[Phrase(w, f"{cid}.txt", i + 1) for i, w in enumerate(words)],
                    fields=frozenset(fields))


@pytest.mark.usefixtures("keyword_engine")
def test_one_alert_per_post_whatever_the_fields() -> None:
    gbk = urlencode({"author": "张三", "message": "便宜出售冰毒联系我"}, encoding="gbk").encode()
    frames = exchange(post(gbk, ctype=FORM + "; charset=gbk"))
    # every field (the default): the body is scanned, the decoded text would be the same bytes again
    alerts = of(run(frames, rules=rules(cat("drugs", "冰毒", action="block"))), "alert")
    got = [(a["field"], a["encoding"], a["keyword"]) for a in alerts]
    assert got == [("http.request_body", "url-gbk", "冰毒")]
    # a category for the unit's own publishing only: the decoded text, in UTF-8
    alerts = of(run(frames, rules=rules(cat("bbs", "冰毒", fields=("publish.text",)))), "alert")
    assert [(a["field"], a["encoding"], a["category"]) for a in alerts] == [("publish.text", "utf-8", "bbs")]
    assert "出售冰毒联系我" in alerts[0]["snippet"]
    assert alerts[0]["uid"] == of(run(frames), "publish")[0]["uid"]
    # both named: the body covers the text
    both = cat("both", "冰毒", fields=("http.request_body", "publish.text"))
    alerts = of(run(frames, rules=rules(both)), "alert")
    assert [a["field"] for a in alerts] == ["http.request_body"]
    # another host's post: the body is scanned as ever, there is no text
    other = exchange(post(gbk, host="other.example.cn", ctype=FORM + "; charset=gbk"))
    alerts = of(run(other, rules=rules(cat("drugs", "冰毒"))), "alert")
    assert [a["field"] for a in alerts] == ["http.request_body"]
    assert of(run(other, rules=rules(cat("bbs", "冰毒", fields=("publish.text",)))), "alert") == []


@pytest.mark.usefixtures("keyword_engine")
def test_a_post_with_a_block_keyword_is_stopped_inline() -> None:
    """Inline (the inspector's on_block set), the segment that completes the post is judged before
    its verdict: the block keyword in the decoded text stops the connection there."""
    body = urlencode({"m": "你好" * 700 + "出售冰毒"}).encode()
    frames = exchange(post(body), segment=1000)
    p = Pipeline(lambda _r: None, rules=rules(cat("bbs", "冰毒", action="block", fields=("publish.text",))),
                 publishing=PUBLISHING)
    out: list[Record] = []
    p.sink = out.extend
    blocked: list[tuple[bool, int] | None] = []

    def on_block(_f: Any, alerts: list[Record], segment: tuple[bool, int] | None) -> bool:
        blocked.append(segment)
        return True

    assert p.inspector is not None
    p.inspector.on_block = on_block
    for i, fr in enumerate(frames):
        p.feed([(T0 + i * 0.01, 1, fr)])
    p.finish()
    [alert] = of(out, "alert")
    assert alert["blocked"] and alert["field"] == "publish.text" and alert["action"] == "block"
    # the last segment of the body: the one the server would need to store the post
    last = post(body)
    offset = len(last) - (len(last) - 1) % 1000 - 1
    assert blocked == [(True, 1000 + 1 + offset)]
