"""A capture worker with publishing hosts: `publish` records go to the spool, the poster named by
a login another worker saw (the identity records travel between workers)."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import msgpack  # type: ignore[import-untyped]
from tcp_frames import Conn

from agent.publish.config import publishing_from_hosts
from agent.run.status import read_status
from agent.run.worker import GatewayConsumer
from agent.spool.store import Spool
from wire.validate import validate_record

ETHERNET = 1
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _spooled(spool: Spool) -> list[dict[str, Any]]:
    rows = spool._conn.execute("SELECT body FROM records ORDER BY id").fetchall()  # test-only peek
    return [msgpack.unpackb(r[0]) for r in rows]


def test_a_post_in_one_worker_names_the_user_another_worker_saw_log_in(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    inboxes = [ctx.Queue(), ctx.Queue()]
    publishing = publishing_from_hosts(["bbs.example.cn"])

    def worker(i: int) -> GatewayConsumer:
        return GatewayConsumer(f"lan0-{i}", Spool(tmp_path / "spool.sqlite"), depth=16384, roster=None,
                               rules=None, rules_path=None, pubkeys=[], inbox=inboxes[i],
                               peers=[inboxes[1 - i]], publishing=publishing)

    a, b = worker(0), worker(1)
    now = time.time() - 120
    start = {"type": "radius", "ts": now - 10, "uid": "Cradius1", "proto": "udp", "src_ip": "192.168.1.1",
             "src_port": 40000, "dst_ip": "192.168.1.2", "dst_port": 1813, "code": "Accounting-Request",
             "status_type": "Start", "username": "alice", "framed_addr": "192.168.1.77",
             "calling_station_id": "13800138000", "called_station_id": None, "nas_ip": "192.168.1.1",
             "acct_session_id": "s-1", "session_time": None, "input_octets": None, "output_octets": None,
             "result": None}
    a._sink([start])  # worker 0 decoded alice's accounting Start
    for _ in range(50):  # the queue's feeder thread delivers asynchronously
        b.feed([])
        if b.counters["identity_received"]:
            break
        time.sleep(0.02)
    body = urlencode({"message": "图书馆今天开放"}).encode()
    req = (b"POST /post HTTP/1.1\r\nHost: bbs.example.cn\r\n"
           b"Content-Type: application/x-www-form-urlencoded\r\n"
           b"Content-Length: %d\r\n\r\n" % len(body)) + body
    c = Conn("192.168.1.77", 50001, "198.51.100.80", 80)
    frames = c.handshake() + c.exchange(req, OK) + c.close()
    b.feed([(now + i * 0.01, ETHERNET, fr) for i, fr in enumerate(frames)])
    b.finish()
    a.finish()
    [pub] = [r for r in _spooled(b.spool) if r["type"] == "publish"]
    assert (pub["account"], pub["src_ip"], pub["host"], pub["text"]) == (
        "alice", "192.168.1.77", "bbs.example.cn", "message=图书馆今天开放")
    validate_record(pub)
    # the worker's status (what /metrics sums: edgeaudit_publish_total{counter=...}) counts it
    assert read_status(tmp_path)["lan0-1"]["publish"] == {
        "records": 1, "bodies_cut": 0, "fields": 1, "fields_dropped": 0, "texts_cut": 0, "undecoded": 0}
    assert read_status(tmp_path)["lan0-0"]["publish"]["records"] == 0
