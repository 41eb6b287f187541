"""`publish` records at a running collector: stored from an agent's batch, searched by operators
(never by auditors, and every look audited), and the compliance report's publishing measure for
the units whose profile names a news, publishing or bulletin-board service."""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

from collector_server import post
from test_collector_rulesets import collector as collector  # noqa: F401  (the fixture)
from test_collector_units import PROFILE, request

from wire.envelope import encode_batch
from wire.validate import validate_record

DAY = 86400
SERVICES = ["公共上网服务", "论坛 bbs.library.example.cn", "新闻发布 news.library.example.cn:8080"]


def _publish(ts: float, uid: str, text: str) -> dict[str, Any]:
    return validate_record({
        "type": "publish", "ts": ts, "uid": uid, "proto": "tcp", "src_ip": "198.51.100.7", "src_port": 40000,
        "dst_ip": "192.0.2.80", "dst_port": 80, "vlan": None, "inner_vlan": None, "trans_depth": 1,
        "method": "POST", "host": "bbs.library.example.cn", "uri": "/post.php",
        "content_type": "application/x-www-form-urlencoded", "charset": "utf-8", "body_len": 64,
        "fields": ["author", "message"], "text": text, "text_len": len(text), "fields_dropped": 0,
        "account": "alice"})


def _measures(ans: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["measure"]: m for m in ans["measures"]}


def _query(c: dict[str, Any], params: dict[str, str], user: tuple[str, str]) -> tuple[int, Any]:
    return request(c, "GET", "/api/v1/query/records?" + urllib.parse.urlencode(params), user=user)


def test_publishing_measure_records_and_who_may_read_them(collector: dict[str, Any]) -> None:  # noqa: F811
    c = collector
    now = time.time()
    profile = {**PROFILE, "services": SERVICES}
    assert request(c, "PUT", "/api/v1/units/self", json.dumps(profile).encode(), token=c["token"])[0] == 200
    # declared, nothing recorded yet: the measure fails, saying why
    m = _measures(request(c, "GET", "/api/v1/units/unit-42/compliance", user=c["operator"])[1])["publishing"]
    assert not m["ok"] and m["problems"] == [
        "备案载明信息发布服务，60 天内无发布记录 / the profile names publishing services, but no publish "
        "record came in 60 days"]
    assert m["evidence"]["services"] == SERVICES[1:]
    assert m["evidence"]["hosts"] == ["bbs.library.example.cn", "news.library.example.cn:8080"]

    posts = [_publish(now - 3 * DAY, "P1", "author=张三\nmessage=图书馆周末开放"),
             _publish(now - 60, "P2", "author=李四\nmessage=讲座通知")]
    for i, r in enumerate(posts):  # one batch each: a batch's records count on its latest day
        assert post(c["url"], encode_batch("gw1", "unit-42", i + 1, [r]), c["token"])[0] == 200
    m = _measures(request(c, "GET", "/api/v1/units/unit-42/compliance", user=c["operator"])[1])["publishing"]
    assert m["ok"] and m["problems"] == [] and m["notes"] == []
    assert m["evidence"]["records"] == 2 and m["evidence"]["latest"] == posts[1]["ts"]
    assert m["evidence"]["days_with_records"] == 2 and "gaps" not in m["evidence"]
    status, page = _html(c)
    assert status == 200 and "Published content recorded" in page and "bbs.library.example.cn" in page
    assert "图书馆周末开放" not in page  # counts, not content

    # the records: by type and by the words of a post, for operators
    status, ans = _query(c, {"type": "publish", "q": "图书馆"}, c["operator"])
    assert status == 200 and [r["uid"] for r in ans["records"]] == ["P1"]
    assert ans["records"][0]["text"] == posts[0]["text"] and ans["records"][0]["account"] == "alice"
    assert [r["uid"] for r in _query(c, {"type": "publish"}, c["operator"])[1]["records"]] == ["P1", "P2"]
    # an auditor reads the audit log, not what people published
    assert _query(c, {"type": "publish"}, c["auditor"])[0] == 403
    log = [json.loads(line) for line in (c["data"] / "audit.log").read_text().splitlines()]
    assert [e["action"] for e in log[-1:]] == ["forbidden"]
    assert any(e["action"] == "records" and e["actor"] == "olga" for e in log)


def test_the_measure_shows_only_where_it_applies(collector: dict[str, Any]) -> None:  # noqa: F811
    c = collector
    assert request(c, "PUT", "/api/v1/units/self", json.dumps(PROFILE).encode(), token=c["token"])[0] == 200
    assert "publishing" not in _measures(request(c, "GET", "/api/v1/units/unit-42/compliance",
                                                 user=c["operator"])[1])
    # records from an agent configured with [publishing] hosts the profile does not name
    assert post(c["url"], encode_batch("gw1", "unit-42", 1, [_publish(time.time() - 5, "P9", "m=hi")]),
                c["token"])[0] == 200
    m = _measures(request(c, "GET", "/api/v1/units/unit-42/compliance", user=c["operator"])[1])["publishing"]
    assert m["ok"] and m["evidence"]["services"] == [] and m["evidence"]["records"] == 1
    assert m["notes"] == ["备案信息未载明信息发布服务，但探针上报了发布记录 / the unit's agents record "
                          "published content, but its profile names no publishing service"]
    # a service named without a host: the agent needs [publishing] hosts for it
    profile = {**PROFILE, "services": ["电子公告服务"]}
    assert request(c, "PUT", "/api/v1/units/self", json.dumps(profile).encode(), token=c["token"])[0] == 200
    m = _measures(request(c, "GET", "/api/v1/units/unit-42/compliance", user=c["operator"])[1])["publishing"]
    assert m["ok"] and m["evidence"]["hosts"] == [] and "name no host" in m["notes"][0]


def _html(c: dict[str, Any]) -> tuple[int, str]:
    import base64
    import urllib.error
    import urllib.request

    user, password = c["operator"]
    req = urllib.request.Request(c["url"] + "/api/v1/units/unit-42/compliance?format=html", headers={
        "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
