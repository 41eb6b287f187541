"""The live worker's consumer without a network: records reach the spool, a closed
connection's session leaves on an idle link when the wall clock moves on (`Pipeline.tick`),
sessions get their public address from the NAT table, and `stats` records are valid."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "flows"))
from tcp_frames import udp_frame  # noqa: E402

from agent.run.status import read_status  # noqa: E402
from agent.run.worker import STATS_EVERY_S, GatewayConsumer  # noqa: E402
from agent.spool.store import Spool  # noqa: E402

ETHERNET = 1


class Nat:
    def __init__(self) -> None:
        self.asked: list[tuple[Any, ...]] = []

    def outside_for(self, proto: str, src_ip: str, src_port: int, dst_ip: str,
                    dst_port: int) -> tuple[str, int] | None:
        self.asked.append((proto, src_ip, src_port, dst_ip, dst_port))
        return ("203.0.113.10", 40001) if src_ip == "192.168.1.5" else None


def _spooled(spool: Spool) -> list[dict[str, Any]]:
    rows = spool._conn.execute("SELECT body FROM records ORDER BY id").fetchall()  # test-only peek
    return [msgpack.unpackb(r[0]) for r in rows]


def test_idle_link_sessions_leave_with_their_public_address(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    nat = Nat()
    clock = [1000.0]
    c = GatewayConsumer("lan0-0", spool, depth=16384, roster=None, rules=None, rules_path=None, pubkeys=[],
                        nat=nat, clock=lambda: clock[0])
    now = time.time() - 120  # the packets were two minutes ago; nothing came since
    frames = [(now, ETHERNET, udp_frame("192.168.1.5", 50000, "198.51.100.9", 7777, b"ping")),
              (now + 0.01, ETHERNET, udp_frame("198.51.100.9", 7777, "192.168.1.5", 50000, b"pong"))]
    c.feed(frames)
    c.flush()
    assert [r for r in _spooled(spool) if r["type"] == "session"] == []  # still open by packet time
    c.stats({"kernel_drops": 3})  # the pool's periodic call: the wall clock moved on
    sessions = [r for r in _spooled(spool) if r["type"] == "session"]
    assert len(sessions) == 1, _spooled(spool)
    assert (sessions[0]["nat_ip"], sessions[0]["nat_port"]) == ("203.0.113.10", 40001)
    assert nat.asked == [("udp", "192.168.1.5", 50000, "198.51.100.9", 7777)]
    status = read_status(tmp_path)["lan0-0"]
    assert status["running"] and status["records"]["session"] == 1
    assert status["capture"] == {"kernel_drops": 3}

    clock[0] += STATS_EVERY_S + 1
    c.stats({"kernel_drops": 5})
    stats = [r for r in _spooled(spool) if r["type"] == "stats"]
    assert len(stats) == 1 and stats[0]["kernel_drops"] == 5 and stats[0]["packets"] == 2
    assert stats[0]["ruleset_version"] is None
    c.finish()
    assert read_status(tmp_path)["lan0-0"]["final"] is True
    assert spool.stats().records_invalid == 0  # every record the consumer spooled was valid


def test_a_login_seen_by_one_worker_names_the_user_in_another(tmp_path: Path) -> None:
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    inboxes = [ctx.Queue(), ctx.Queue()]

    def worker(i: int) -> GatewayConsumer:
        return GatewayConsumer(f"lan0-{i}", Spool(tmp_path / "spool.sqlite"), depth=16384, roster=None,
                               rules=None, rules_path=None, pubkeys=[], inbox=inboxes[i],
                               peers=[inboxes[1 - i]])

    a, b = worker(0), worker(1)
    now = time.time() - 120
    # worker 0 decoded the RADIUS accounting Start of alice at 192.168.1.77
    start = {"type": "radius", "ts": now - 10, "uid": "Cradius1", "proto": "udp", "src_ip": "192.168.1.1",
             "src_port": 40000, "dst_ip": "192.168.1.2", "dst_port": 1813, "code": "Accounting-Request",
             "status_type": "Start", "username": "alice", "framed_addr": "192.168.1.77",
             "calling_station_id": "13800138000", "called_station_id": None, "nas_ip": "192.168.1.1",
             "acct_session_id": "s-1", "session_time": None, "input_octets": None, "output_octets": None,
             "result": None}
    a._sink([start])
    assert a.counters["identity_forwarded"] == 1
    # worker 1 carries alice's connection: its own table never saw the login
    frames = [(now, ETHERNET, udp_frame("192.168.1.77", 50001, "198.51.100.9", 7777, b"x")),
              (now + 0.01, ETHERNET, udp_frame("198.51.100.9", 7777, "192.168.1.77", 50001, b"y"))]
    for _ in range(50):  # the queue's feeder thread delivers asynchronously
        b.feed([])
        if b.counters["identity_received"]:
            break
        time.sleep(0.02)
    assert b.counters["identity_received"] == 1
    b.feed(frames)
    b.stats({})
    sessions = [r for r in _spooled(b.spool) if r["type"] == "session"]
    assert [s["account"] for s in sessions] == ["alice"]
    assert [r for r in _spooled(b.spool) if r["type"] == "login"] == []  # worker 0 emits alice's login
    a.finish()
    b.finish()


def test_a_new_bundle_compiles_while_capture_goes_on_and_swaps_in_at_a_tick(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from agent.filter.compiled import compile_rules
    from rulesets.bundle import pack_bundle, verify_bundle

    key = Ed25519PrivateKey.generate()

    def bundle(version: int, word: str) -> bytes:
        toml = (f'name = "t"\nversion = {version}\n[[categories]]\nid = "gambling"\naction = "alert"\n'
                f'severity = 3\nkeywords = "k.txt"\n').encode()
        now = int(time.time())
        return pack_bundle({"ruleset.toml": toml, "k.txt": word.encode() + b"\n"}, key, name="t",
                           version=version, created=now - 10, expires=now + 3600)[0]

    path = tmp_path / "rules.bundle"
    path.write_bytes(bundle(3, "casino"))
    ruleset = verify_bundle(path.read_bytes(), [key.public_key()]).ruleset
    rules = compile_rules(ruleset, cache_dir=tmp_path / "c")
    spool = Spool(tmp_path / "spool.sqlite")
    c = GatewayConsumer("lan0-0", spool, depth=16384, roster=None, rules=rules, rules_path=path,
                        pubkeys=[key.public_key()])
    assert c.updater is not None and c.ruleset_version == 3
    path.write_bytes(bundle(4, "lottery"))
    c.stats({})  # the changed file is verified and handed to a compile thread: v3 still runs
    deadline = time.monotonic() + 60
    while c.ruleset_version != 4 and time.monotonic() < deadline:
        c.feed([(time.time(), ETHERNET, udp_frame("192.168.1.5", 50000, "198.51.100.9", 7777, b"x"))])
        time.sleep(0.01)  # the thread's end is polled at the periodic call, as the pool makes it
        c.stats({})
    assert c.ruleset_version == 4
    audit = [r for r in _spooled(spool) if r["type"] == "audit"]
    assert [(r["action"], r["result"]) for r in audit] == [("ruleset_update", "applied")], audit
    # a bundle that fails verification is refused at the next tick, with the reason; v4 keeps running
    path.write_bytes(b"\x00" * 4096)
    c.stats({})
    audit = [r for r in _spooled(spool) if r["type"] == "audit"]
    assert audit[-1]["result"] == "rejected" and c.ruleset_version == 4
    c.finish()
