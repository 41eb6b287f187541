"""The collector's front door against hostile HTTP, on a real `edgeaudit-collector serve` on
loopback (issue 18): bodies too large, too deep or too slow are refused with a JSON 413/400/408
without reading or parsing them on the event loop (a 32 MiB login stalled every request for
4 s; a nested one was a 500; a slow one held its connection for minutes); the login takes
JSON only; whole-number parameters and cursors are not bent into something else; CSV cells
cannot become formulas; no API answer may be cached.

Raw sockets where the point is what a client sends and when (urllib cannot send a body
slowly, or a Content-Length it does not mean).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import http.client
import io
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from collector_server import post, serve
from test_collector_units import request

from collector.http_limits import JSON_TIMEOUT_S, MAX_JSON_DEPTH, SMALL_JSON
from wire.envelope import encode_batch

DAY0 = 1709251200.0  # 2024-03-01T00:00:00Z
#: The refused body's rest is drained for collector.app.LINGERING_S (2 s); then the close.
CLOSE_WITHIN_S = JSON_TIMEOUT_S + 2.0 + 1.5


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    gen = serve(tmp_path_factory.mktemp("hostile-http"))
    c = next(gen)
    c["addr"] = ("127.0.0.1", int(c["url"].rsplit(":", 1)[1]))
    try:
        yield c
    finally:
        next(gen, None)


def _head(c: dict[str, Any], method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{c['addr'][1]}",
             *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _answer(sock: socket.socket) -> tuple[int, http.client.HTTPMessage, dict[str, Any]]:
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    return resp.status, resp.headers, json.loads(resp.read())


def _get(c: dict[str, Any], path: str, user: tuple[str, str] | None = None) -> tuple[int, Any, bytes]:
    req = urllib.request.Request(c["url"] + path)
    if user:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_an_oversized_json_body_is_refused_before_it_is_read(collector: dict[str, Any]) -> None:
    """Content-Length over the endpoint's limit: a 413 at once, before any body byte is sent
    (the old code waited for all 32 MiB); a chunked body is cut off once over the limit."""
    c = collector
    for path in ("/api/v1/session", "/api/v1/users"):  # the login, and before the admin check
        with socket.create_connection(c["addr"], timeout=3) as s:
            s.sendall(_head(c, "POST", path, {"Content-Type": "application/json",
                                              "Content-Length": str(32 << 20)}))
            status, headers, ans = _answer(s)
        assert (status, ans["error"]) == (413, "too_large"), path
        assert headers["Connection"] == "close"
    with socket.create_connection(c["addr"], timeout=3) as s:
        s.sendall(_head(c, "POST", "/api/v1/session", {"Content-Type": "application/json",
                                                       "Transfer-Encoding": "chunked"}))
        chunk = b"400\r\n" + b" " * 1024 + b"\r\n"
        s.sendall(chunk * (2 * SMALL_JSON.max_bytes // 1024))  # twice the limit, never finished
        status, _, ans = _answer(s)
    assert (status, ans["error"]) == (413, "too_large")


def test_a_32_mib_login_does_not_stall_other_requests(collector: dict[str, Any]) -> None:
    """While a 32 MiB login body is sent, /metrics keeps answering at once (it stalled for
    seconds while the old code read and parsed it on the event loop)."""
    c = collector
    body = b'{"password": "x", "name": [' + b"1e1," * (8 << 20) + b'0]}'  # 32 MiB, slow to parse
    got: dict[str, Any] = {}

    def send() -> None:
        with socket.create_connection(c["addr"], timeout=30) as s:
            # the collector may close once it has answered; the answer is still there
            with contextlib.suppress(OSError):
                s.sendall(_head(c, "POST", "/api/v1/session", {"Content-Type": "application/json",
                                                               "Content-Length": str(len(body))}) + body)
            got["status"], _, got["answer"] = _answer(s)

    sender = threading.Thread(target=send)
    sender.start()
    worst = 0.0
    while sender.is_alive():
        t0 = time.monotonic()
        urllib.request.urlopen(c["url"] + "/metrics", timeout=30).read()
        worst = max(worst, time.monotonic() - t0)
        time.sleep(0.01)
    sender.join()
    assert worst < 0.5, f"/metrics took {worst:.2f} s during the big login"
    assert got["status"] == 413


def test_a_deeply_nested_body_is_a_400_not_a_500(collector: dict[str, Any]) -> None:
    c = collector
    deep = b'{"name": ' + b"[" * 1500 + b"]" * 1500 + b', "password": "x"}'  # within the size limit
    assert len(deep) < SMALL_JSON.max_bytes
    for path in ("/api/v1/session", "/api/v1/users"):
        status, ans = request(c, "POST", path, deep)
        assert (status, ans["error"]) == (400, "bad_request"), (path, status, ans)
        assert "nested" in ans["detail"]
    # just within the limit, it is JSON like any other: the wrong shape, not a parse error
    shallow = b'{"name": ' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1) + b"}"
    status, ans = request(c, "POST", "/api/v1/session", shallow)
    assert status == 400 and "nested" not in ans["detail"]


def test_a_slow_body_gets_a_408_and_its_connection_closes(collector: dict[str, Any]) -> None:
    """A byte every half second: refused with a 408 once the body's time is up, and the
    connection closed soon after (the old code kept it open for as long as bytes came)."""
    c = collector
    stop = threading.Event()
    with socket.create_connection(c["addr"], timeout=CLOSE_WITHIN_S + 5) as s:
        t0 = time.monotonic()
        s.sendall(_head(c, "POST", "/api/v1/session", {"Content-Type": "application/json",
                                                       "Content-Length": "1000"}) + b"{")

        def trickle() -> None:
            while not stop.wait(0.5):
                try:
                    s.send(b" ")
                except OSError:
                    return

        threading.Thread(target=trickle, daemon=True).start()
        try:
            status, headers, ans = _answer(s)
            answered = time.monotonic() - t0
            while s.recv(4096):  # the connection ends: EOF (or a reset)
                pass
        except ConnectionResetError:
            pass
        finally:
            stop.set()
        closed = time.monotonic() - t0
    assert (status, ans["error"]) == (408, "body_timeout") and headers["Connection"] == "close"
    assert JSON_TIMEOUT_S - 0.5 < answered < JSON_TIMEOUT_S + 1.5
    assert closed < CLOSE_WITHIN_S


def test_the_login_takes_json_only(collector: dict[str, Any]) -> None:
    """A form on another site can send text/plain or a form body without the collector's
    consent: with the right password in it, it is still a 415 and no session."""
    c = collector
    name, password = c["operator"]
    body = json.dumps({"name": name, "password": password}).encode()
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        req = urllib.request.Request(c["url"] + "/api/v1/session", data=body, method="POST",
                                     headers={"Content-Type": ctype})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 415 and "Set-Cookie" not in e.value.headers, ctype
        assert json.loads(e.value.read())["error"] == "unsupported_media_type"
    assert request(c, "POST", "/api/v1/session", body)[0] == 200  # application/json


def test_whole_number_parameters_are_not_truncated(collector: dict[str, Any]) -> None:
    c = collector
    op, auditor = c["operator"], c["auditor"]
    for path, name in [
        (f"/api/v1/query/traceback?ip=203.0.113.9&port=53418.9&ts={DAY0}", "port"),
        (f"/api/v1/query/traceback?ip=203.0.113.9&port=%D9%A5&ts={DAY0}", "port"),  # an Arabic-Indic 5
        (f"/api/v1/query/traceback?ip=203.0.113.9&port=1_0&ts={DAY0}", "port"),
        ("/api/v1/query/records?limit=1.9", "limit"),
        ("/api/v1/query/records?limit=1e2", "limit"),
        (f"/api/v1/query/records?from={DAY0}&to=nan", "to"),
    ]:
        status, _, raw = _get(c, path, op)
        ans = json.loads(raw)
        assert (status, ans["error"]) == (400, "bad_query") and name in ans["detail"], (path, ans)
    for path in ("/api/v1/audit?limit=1.9", "/api/v1/audit?before=3.5"):
        assert _get(c, path, auditor)[0] == 400, path
    assert _get(c, "/api/v1/stats/hourly?hours=2.5", op)[0] == 400
    assert _get(c, f"/api/v1/query/traceback?ip=203.0.113.9&port=53418&ts={DAY0 + 0.5}", op)[0] == 200


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _http(uid: str, ts: float, uri: str, account: str | None) -> dict[str, Any]:
    return {"type": "http", "ts": ts, "uid": uid, "proto": "tcp", "src_ip": "10.0.0.5", "src_port": 50000,
            "dst_ip": "203.0.113.9", "dst_port": 80, "vlan": None, "inner_vlan": None, "trans_depth": 1,
            "method": "GET", "host": "example.com", "uri": uri, "referrer": None, "version": "1.1",
            "user_agent": "curl/8", "status_code": 200, "status_msg": "OK", "request_body_len": 0,
            "response_body_len": 10, "req_content_type": None, "resp_content_type": "text/html",
            "username": None, "account": account}


def test_cursors_with_a_non_finite_time_are_refused(collector: dict[str, Any]) -> None:
    """The SQLite store's cursor carries the last record's time; nan or inf there skipped
    the rest of that day silently."""
    c = collector
    assert post(c["url"], encode_batch("gw1", "unit-42", 101, [
        _http(f"CCursor{i}", DAY0 + 60 * i, f"/page{i}", None) for i in range(3)]), c["token"])[0] == 200
    q = {"type": "http", "from": DAY0, "to": DAY0 + 86400, "limit": 1}
    status, _, raw = _get(c, "/api/v1/query/records?" + urllib.parse.urlencode(q), c["operator"])
    first = json.loads(raw)
    assert status == 200 and first["cursor"]
    for bad in ("nan", "inf", "-inf"):
        cursor = _cursor(f"2024-03-01|{bad}|0|0|0")
        status, _, raw = _get(c, "/api/v1/query/records?" + urllib.parse.urlencode({**q, "cursor": cursor}),
                              c["operator"])
        assert (status, json.loads(raw)["error"]) == (400, "bad_query"), bad
    next_page = urllib.parse.urlencode({**q, "cursor": first["cursor"]})
    status, _, raw = _get(c, "/api/v1/query/records?" + next_page, c["operator"])
    assert status == 200 and len(json.loads(raw)["records"]) == 1  # a cursor the store issued


def test_csv_cells_cannot_become_formulas(collector: dict[str, Any]) -> None:
    """OWASP CSV injection: a cell starting with = + - @, a tab or a carriage return is
    written as text (a leading quote), whichever field it is in."""
    c = collector
    starts = ["=1+1", "+1+1", "-1+1", "@SUM(1)", "\t=1+1", "\r=1+1"]
    recs = [_http(f"CCsv{i}", DAY0 + 3600 + i, f"{s}/uri", f"{s}acct") for i, s in enumerate(starts)]
    assert post(c["url"], encode_batch("gw1", "unit-42", 102, recs), c["token"])[0] == 200
    q = {"type": "http", "from": DAY0 + 3600, "to": DAY0 + 3700, "format": "csv"}
    status, _, raw = _get(c, "/api/v1/query/records?" + urllib.parse.urlencode(q), c["operator"])
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8"), newline="")))
    assert [(r["uri"], r["account"]) for r in rows] == [(f"'{s}/uri", f"'{s}acct") for s in starts]


def test_no_api_answer_may_be_cached(collector: dict[str, Any]) -> None:
    c = collector
    op = c["operator"]
    for path, user, status in [
        ("/api/v1/query/records?type=http&limit=1", op, 200),
        ("/api/v1/query/records?type=http&format=csv&limit=1", op, 200),
        ("/api/v1/schema", op, 200),
        ("/api/v1/query/records", None, 401),
        ("/api/v1/audit", op, 403),
        ("/api/v1/query/records?limit=0", op, 400),
        ("/api/v1/no-such-thing", op, 404),
    ]:
        got, headers, _ = _get(c, path, user)
        assert got == status and headers["Cache-Control"] == "no-store", (path, got, headers)
