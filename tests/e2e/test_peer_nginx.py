"""End to end against nginx: curl requests in one namespace, nginx in another, the veth captured.

nginx's own access log is the reference: every request it logged must have exactly one
`http` record with the same method, uri, status, Host header and User-Agent, and a
response_body_len equal to nginx's $body_bytes_sent (for the gzip response, whose sent
bytes are compressed, the decoded length: the size of the file). The Basic-auth request
carries its user name and never its password (nor the base64 token holding it); the
accepted one gives an application `login` record (source http), the refused one none.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from netns import Net, assert_captured, nginx_conf, replay, require, veth_pair

HOST = "www.example.test"
USER, SECRET = "alice", "Basic-S3cret-9f27"
UA = "edgeaudit-e2e/1.0"
POST_BODY = "name=%E4%BD%A0%E5%A5%BD&text=hello+world"
BIG = ("edgeaudit end-to-end line of text that compresses well\n" * 400).encode()
FIELDS = ("method", "uri", "status", "body_bytes_sent", "host", "user_agent", "remote_user",
          "content_encoding", "content_length", "connection", "connection_requests")


def _conf(tmp: Path, addr: str) -> str:
    fmt = "\\t".join(f"${v}" for v in (
        "request_method", "request_uri", "status", "body_bytes_sent", "http_host", "http_user_agent",
        "remote_user", "sent_http_content_encoding", "content_length", "connection",
        "connection_requests"))
    return nginx_conf(tmp, f"""
    types {{ text/html html; text/plain txt; }}
    default_type application/octet-stream;
    log_format e2e '{fmt}';
    access_log {tmp}/access.log e2e;
    keepalive_timeout 30;
    gzip on;
    gzip_types text/plain;
    gzip_min_length 1;
    server {{
        listen {addr}:80;
        server_name {HOST};
        root {tmp}/www;
        location /private/ {{
            auth_basic "e2e";
            auth_basic_user_file {tmp}/htpasswd;
        }}
    }}""")


def test_peer_nginx(tmp_path: Path) -> None:
    paths = require("nginx", "curl")
    www = tmp_path / "www"
    (www / "private").mkdir(parents=True)
    (www / "index.html").write_text("<html><body>hello</body></html>\n")
    for i in range(3):
        (www / f"page{i}.html").write_text(f"<p>page {i}</p>\n" * (i + 1))
    (www / "big.txt").write_bytes(BIG)
    (www / "form").write_text("static: POST is refused with 405\n")
    (www / "private" / "report.html").write_text("<p>for alice only</p>\n")
    (tmp_path / "htpasswd").write_text(f"{USER}:{{PLAIN}}{SECRET}\n")

    with veth_pair(tmp_path / "net") as net:
        conf = tmp_path / "nginx.conf"
        conf.write_text(_conf(tmp_path, net.server.addr))
        nginx = net.start(net.server, "nginx", [paths["nginx"], "-p", str(tmp_path), "-c", str(conf),
                                                "-e", str(tmp_path / "error.log")])
        nginx.wait_listening("tcp", 80)
        with net.capture() as cap:
            _drive(net)
        nginx.stop()  # flushes the access log
        assert_captured(cap.pcap, "tcp", 80, b"GET /index.html", b"POST /form", b"Authorization: Basic")
        logged = [dict(zip(FIELDS, line.split("\t"), strict=True))
                  for line in (tmp_path / "access.log").read_text().splitlines()]
        out = replay(cap.pcap)

    assert len(logged) == 9, logged
    http = out.of("http")
    assert len(http) == len(logged), (http, logged)
    by_uri = {r["uri"]: r for r in http}
    assert sorted(by_uri) == sorted(e["uri"] for e in logged), "one http record per logged request"
    for e in logged:
        r = by_uri[e["uri"]]
        assert r["method"] == e["method"], e
        assert r["status_code"] == int(e["status"]), e
        assert r["host"] == e["host"] == HOST, e
        assert r["user_agent"] == e["user_agent"], e
        assert r["dst_ip"] == net.server.addr and r["dst_port"] == 80
        assert r["src_ip"] == net.client.addr
        if e["content_encoding"] == "gzip":
            assert int(e["body_bytes_sent"]) < len(BIG), "nginx compressed the response"
            assert r["response_body_len"] == len(BIG), "decoded body bytes of the gzip response"
        else:
            assert r["response_body_len"] == int(e["body_bytes_sent"]), e
        want_body = int(e["content_length"]) if e["content_length"] != "-" else 0
        assert r["request_body_len"] == want_body, e
        assert r["username"] == (e["remote_user"] if e["remote_user"] != "-" else None), e

    # the keep-alive call: three requests, one connection, trans_depth 1, 2, 3
    ka = [by_uri[f"/page{i}.html?n={i}"] for i in range(3)]
    assert len({r["uid"] for r in ka}) == 1
    assert [r["trans_depth"] for r in ka] == [1, 2, 3]
    assert [int(e["connection_requests"]) for e in logged if e["uri"].startswith("/page")] == [1, 2, 3]
    # every other request came on a connection of its own
    assert len({r["uid"] for r in http}) == len(http) - 2

    assert by_uri["/missing-e2e.html"]["status_code"] == 404
    assert by_uri["/form"]["request_body_len"] == len(POST_BODY)
    assert by_uri["/private/report.html"]["status_code"] == 200
    assert by_uri["/private/report.html"]["username"] == USER
    assert by_uri["/private/denied.html"]["status_code"] == 401
    assert by_uri["/private/denied.html"]["username"] == "mallory"

    out.assert_secret_absent(SECRET, "wrong-pass-1x", base64.b64encode(f"{USER}:{SECRET}".encode()).decode())

    # identity (DESIGN.md, data path 5): the accepted Basic login binds alice to the client's
    # address; the refused one (401) binds nobody
    logins = out.of("login")
    assert [(r["event"], r["source"], r["account"], r["ip"]) for r in logins] == [
        ("login", "http", USER, net.client.addr)], logins
    assert logins[0]["session_id"] == by_uri["/private/report.html"]["uid"]

    # each connection's session record says it was http, with the client as originator
    sessions = [s for s in out.of("session") if s["uid"] in {r["uid"] for r in http}]
    assert len(sessions) == len({r["uid"] for r in http})
    assert all(s["service"] == "http" and s["conn_state"] == "SF" for s in sessions), sessions


def _drive(net: Net) -> None:
    base = f"http://{HOST}"
    curl = ["curl", "-sS", "--resolve", f"{HOST}:80:{net.server.addr}", "-w", "%{http_code}\\n"]

    def get(*args: str) -> list[str]:
        """curl with ``args``; each URL's body to /dev/null; the status codes it printed."""
        argv = [*curl]
        for a in args:
            argv += [a, "-o", "/dev/null"] if a.startswith("http://") else [a]
        return net.run(net.client, argv).stdout.split()

    assert get("-A", UA, f"{base}/index.html") == ["200"]
    assert get("-A", UA, f"{base}/missing-e2e.html") == ["404"]
    assert get("-A", UA, "--data-binary", POST_BODY, f"{base}/form") == ["405"]  # static files refuse POST
    assert get("-A", UA, *(f"{base}/page{i}.html?n={i}" for i in range(3))) == ["200"] * 3
    assert get("-A", "curl-gzip", "--compressed", f"{base}/big.txt") == ["200"]
    assert get("-A", UA, "-u", f"{USER}:{SECRET}", f"{base}/private/report.html") == ["200"]
    assert get("-A", UA, "-u", "mallory:wrong-pass-1x", f"{base}/private/denied.html") == ["401"]


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-v"])
