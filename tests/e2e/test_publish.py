"""Publishing for real: a guestbook behind nginx and php-fpm, posted to through an inline gateway.

Client, gateway and server in three network namespaces (``test_block_inline.Routed``). The
server runs Debian's nginx and php8.2-fpm with ``data/guestbook.php``, which stores every post
as PHP parsed it (forms, multipart, JSON; gunzipped when the body is gzip-coded) — what the
application stored is the truth. The gateway runs ``edgeaudit-agent run`` in inline mode with
``[publishing] hosts = ["bbs.example.cn"]``, a unit profile whose services name a forum at
forum.example.cn, the example ruleset (its ``drugs`` category blocks) and a category of the
unit's own that blocks a phrase on its publishing hosts only (``fields = ["publish.text"]``),
and uploads to a collector on the gateway's loopback.

curl posts in UTF-8 and GBK forms (with and without a charset label), JSON, multipart with a
text part and a file, chunked, gzip-coded, to both declared hosts and to an undeclared one; two
posts carry block keywords. Then: each stored post has one `publish` record whose fields and
decoded text are what the guestbook stored, in the charset the record names, with the poster's
address and the flow id; the undeclared host's post has none; the posts with block keywords
were stopped (reset, never stored) with an alert saying `blocked: true`, one per post; the
phrase of the unit's own category is stopped on the forum and not elsewhere; the operator
finds the posts at the collector (that an auditor may not: tests/collector/test_collector_publish.py).
"""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netns import REPO, agent_exe, nginx_conf, require, wait_for
from test_block_inline import Routed, collector_on, routed

from agent.publish.extract import parse_text
from wire.validate import validate_record

QUEUE = 9
GUESTBOOK = Path(__file__).resolve().parent / "data" / "guestbook.php"
FPM_PORT = 9000
OWN_PHRASE = "违规广告"  # the unit's own category: blocked in publish.text only
CHUNKED = {"author": "吴九", "message": "分块传输的留言" * 40}
ZIPPED = {"author": "郑十", "message": "压缩过的留言" * 60}


@dataclass
class Post:
    """One curl post: what it sends and what its record should say."""

    name: str
    host: str
    args: list[str]
    author: str  # the post's author field, as the guestbook stored it (the key that pairs them)
    charset: str = "utf-8"
    blocked: bool = False
    recorded: bool = True


def _fpm_conf(srv: Path) -> str:
    return f"""[global]
pid = {srv}/php-fpm.pid
error_log = {srv}/php-fpm.log
daemonize = no
[guestbook]
user = root
group = root
listen = 127.0.0.1:{FPM_PORT}
pm = static
pm.max_children = 2
clear_env = no
catch_workers_output = yes
php_admin_flag[log_errors] = on
php_admin_value[error_log] = {srv}/php-errors.log
"""


def _nginx(srv: Path, addr: str) -> str:
    return nginx_conf(srv, f"""
    log_format e2e '$host $request_method $request_uri $status';
    access_log {srv}/access.log e2e;
    server {{
        listen {addr}:80;
        server_name bbs.example.cn forum.example.cn other.example.cn;
        client_max_body_size 1m;
        location / {{
            include /etc/nginx/fastcgi_params;
            fastcgi_pass 127.0.0.1:{FPM_PORT};
            fastcgi_param SCRIPT_FILENAME {GUESTBOOK};
            fastcgi_param GUESTBOOK_STORE {srv}/posts.jsonl;
        }}
    }}""")


def _ruleset(tmp: Path) -> Path:
    """The example ruleset and a category of the unit's own for its publishing hosts."""
    rules = tmp / "rules"
    rules.mkdir()
    for f in (REPO / "rulesets" / "examples").iterdir():
        (rules / f.name).write_bytes(f.read_bytes())
    (rules / "bbs.txt").write_text(OWN_PHRASE + "\n")
    with (rules / "ruleset.toml").open("a") as f:
        f.write('\n[[categories]]\nid = "bbs"\naction = "block"\nseverity = 4\nkeywords = "bbs.txt"\n'
                'fields = ["publish.text"]\n')
    return rules


@contextmanager
def _site(tmp_path: Path) -> Iterator[tuple[Routed, Path]]:
    require("nginx", "nft", "curl", "php-fpm8.2")
    with routed(tmp_path / "net") as net:
        srv = tmp_path / "srv"
        srv.mkdir()
        (srv / "php-fpm.conf").write_text(_fpm_conf(srv))
        (srv / "nginx.conf").write_text(_nginx(srv, net.server.addr))
        fpm = net.start(net.server, "php-fpm", ["php-fpm8.2", "-F", "-R", "-y", str(srv / "php-fpm.conf")])
        fpm.wait_listening("tcp", FPM_PORT)
        nginx = net.start(net.server, "nginx", ["nginx", "-c", str(srv / "nginx.conf"), "-p", str(srv)])
        nginx.wait_listening("tcp", 80)
        net.queue(QUEUE)
        yield net, srv


def _fields(**fields: str) -> list[str]:
    """curl arguments posting `fields` as a UTF-8 form."""
    return [arg for name, value in fields.items() for arg in ("--data-urlencode", f"{name}={value}")]


def _posts(tmp: Path) -> list[Post]:
    files = tmp / "bodies"
    files.mkdir()
    form = "application/x-www-form-urlencoded"

    def data(name: str, body: bytes, *headers: str) -> list[str]:
        (files / name).write_bytes(body)
        return [*(a for h in headers for a in ("-H", h)), "--data-binary", f"@{files / name}"]

    def encoded(charset: str, **fields: str) -> bytes:
        return urllib.parse.urlencode(fields, encoding=charset).encode()

    doc = {"author": "王五", "post": {"title": "新书上架", "body": "本周新到图书\n共二十种", "views": 3},
           "tags": ["通知", "图书"]}
    photo = files / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    gb = "gb18030"
    return [
        Post("utf-8 form", "bbs.example.cn",
             _fields(author="张三", message="你好，世界！\r\n第二行 a&b=c d+e"), "张三"),
        Post("gbk form, labelled", "bbs.example.cn",
             data("gbk", encoded("gbk", author="李四", message="今天天气很好，欢迎来图书馆"),
                  f"Content-Type: {form}; charset=gbk"), "李四", gb),
        Post("gbk form, no label", "bbs.example.cn",
             data("gbk-plain", encoded("gbk", author="周八", message="没有标明字符集的表单"),
                  f"Content-Type: {form}"), "周八", gb),
        Post("json", "bbs.example.cn",
             data("doc.json", json.dumps(doc, ensure_ascii=False).encode(),
                  "Content-Type: application/json; charset=utf-8"), "王五"),
        Post("multipart", "bbs.example.cn",
             ["-F", "author=赵六", "-F", "message=多部分的留言，附一张图",
              "-F", f"photo=@{photo};type=image/png"], "赵六"),
        Post("chunked", "bbs.example.cn",
             data("chunked", encoded("utf-8", **CHUNKED), "Transfer-Encoding: chunked",
                  f"Content-Type: {form}"), "吴九"),
        Post("gzip", "bbs.example.cn",
             data("zipped.gz", gzip.compress(encoded("utf-8", **ZIPPED)), "Content-Encoding: gzip",
                  f"Content-Type: {form}"), "郑十"),
        Post("the profile's forum", "forum.example.cn",
             _fields(author="孙七", message="论坛里的一帖"), "孙七"),
        Post("an undeclared host", "other.example.cn",
             _fields(author="钱一", message=f"别处的留言 {OWN_PHRASE}"), "钱一", recorded=False),
        Post("a drugs keyword", "bbs.example.cn",
             _fields(author="坏人", message="便宜出售冰毒联系我"), "坏人", blocked=True),
        Post("the unit's own phrase", "forum.example.cn",
             _fields(author="广告商", message=f"这里有{OWN_PHRASE}"), "广告商", blocked=True),
    ]


def _curl(net: Routed, post: Post) -> subprocess.CompletedProcess[str]:
    argv = net.client.argv("curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\nHTTP %{http_code}\n",
                           "--resolve", f"{post.host}:80:{net.server.addr}", *post.args,
                           f"http://{post.host}/post.php?from=e2e")
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def _stored(srv: Path) -> list[dict[str, Any]]:
    path = srv / "posts.jsonl"
    entries = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    for e in entries:
        e["raw"] = [(base64.b64decode(n), base64.b64decode(v)) for n, v in e["fields"]]
    return entries


def _author(raw: list[tuple[bytes, bytes]]) -> str:
    """The author field of a stored post (a GBK form's bytes are no UTF-8)."""
    value = dict(raw)[b"author"]
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("gb18030")


def _query(net: Routed, url: str, user: tuple[str, str], params: dict[str, str]) -> tuple[int, Any]:
    fetch = ("import sys, json, urllib.request, urllib.error, base64\n"
             "req = urllib.request.Request(sys.argv[1], headers={'Authorization': 'Basic ' + "
             "base64.b64encode(sys.argv[2].encode()).decode()})\n"
             "try:\n    r = urllib.request.urlopen(req, timeout=30)\n"
             "    print(r.status); print(r.read().decode())\n"
             "except urllib.error.HTTPError as e:\n    print(e.code); print(e.read().decode())")
    out = net.run(net.gw_c, sys.executable, "-c", fetch,
                  f"{url}/api/v1/query/records?{urllib.parse.urlencode(params)}", f"{user[0]}:{user[1]}")
    status, _, body = out.partition("\n")
    return int(status), json.loads(body)


def test_posts_to_the_units_guestbook_are_recorded_as_stored_and_stopped_when_they_must_be(
        tmp_path: Path) -> None:
    with _site(tmp_path) as (net, srv):
        url, token, operator, _collector = collector_on(net, tmp_path / "collector")
        cfg = tmp_path / "agent.toml"
        cfg.write_text(f"""
[capture]
mode = "inline"
queue = {QUEUE}
[inspection]
rules = "{_ruleset(tmp_path)}"
[filter]
cache_dir = "{tmp_path / 'engine-cache'}"
[collector]
url = "{url}"
token = "{token}"
batch_seconds = 0.2
[spool]
path = "{tmp_path / 'spool'}"
[publishing]
hosts = ["bbs.example.cn"]
[unit]
name = "某某市图书馆"
services = ["上网服务", "读者论坛 forum.example.cn"]
""")
        agent = net.start(net.gw_c, "agent", [*agent_exe(), "run", "--config", str(cfg)])
        agent.wait_log("running:")
        assert "publishing hosts recorded: bbs.example.cn, forum.example.cn" in agent.output()
        posts = _posts(tmp_path)
        for post in posts:
            res = _curl(net, post)
            said = (post.name, res, agent.diag())
            if post.blocked:  # reset by the gateway: no answer
                assert res.returncode != 0 and "HTTP 200" not in res.stdout, said
            else:
                assert res.returncode == 0 and res.stdout.endswith("HTTP 200\n"), said
                assert "stored" in res.stdout, said
        stored = _stored(srv)
        wait_for(lambda: len((srv / "access.log").read_text().splitlines()) >= len(stored), "nginx's log")
        agent.stop(timeout=60)
        assert agent.proc.returncode == 0, agent.diag()
        # the agent's last uploads are in: read everything back as the operator
        status, ans = _query(net, url, operator, {"type": "publish", "limit": "100"})
        assert status == 200, ans
        records = ans["records"]
        status, alerts = _query(net, url, operator, {"type": "alert", "limit": "100"})
        assert status == 200
        alerts = alerts["records"]

    # what the guestbook stored: every post but the two stopped, each once
    by_author = {_author(e["raw"]): e for e in stored}
    assert sorted(by_author) == sorted(p.author for p in posts if not p.blocked), stored
    assert len(stored) == len(by_author)

    for r in records:
        validate_record({k: v for k, v in r.items() if not k.startswith("_")})
    recorded = {dict(parse_text(r["text"]))["author"]: r for r in records}
    assert sorted(recorded) == sorted(p.author for p in posts if p.recorded), records
    assert len(records) == len(recorded)  # one record per post

    for post in posts:
        if not post.recorded:
            continue
        rec = recorded[post.author]
        got = (rec["host"], rec["method"], rec["uri"])
        assert got == (post.host, "POST", "/post.php?from=e2e"), post.name
        assert rec["src_ip"] == net.client.addr and rec["dst_ip"] == net.server.addr and rec["dst_port"] == 80
        assert rec["charset"] == post.charset, (post.name, rec)
        if post.blocked:
            continue
        entry = by_author[post.author]
        codec = rec["charset"]
        fields = [(n.decode(codec), v.decode(codec)) for n, v in entry["raw"]]
        assert parse_text(rec["text"]) == fields, (post.name, rec["text"], fields)
        assert rec["fields"] == [n for n, _ in fields] and rec["fields_dropped"] == 0
        assert rec["text_len"] == len(rec["text"])
    assert recorded["赵六"]["fields"] == ["author", "message"] and by_author["赵六"]["files"] == ["photo"]
    assert recorded["吴九"]["body_len"] == len(urllib.parse.urlencode(CHUNKED).encode())
    assert recorded["郑十"]["body_len"] == len(urllib.parse.urlencode(ZIPPED).encode())  # decoded bytes

    # one alert per stopped post, each blocked, on the post's own connection
    got = sorted((a["category"], a["field"], a["keyword"], a["blocked"]) for a in alerts)
    want = [("bbs", "publish.text", OWN_PHRASE, True), ("drugs", "http.request_body", "冰毒", True)]
    assert got == want, alerts
    for a in alerts:
        author = "坏人" if a["category"] == "drugs" else "广告商"
        assert a["uid"] == recorded[author]["uid"], (a, recorded[author])
