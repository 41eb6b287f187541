"""A captive portal admission names the guest on a capture worker's records.

The portal runs in the supervisor, which puts its login/logout records into every capture
worker's inbox (here a `queue.Queue`, the worker alone: the supervisor makes an inbox even
for one worker when the portal is configured). The worker's own table knows the guest's
address only from a DHCP lease with no roster entry (account null); the portal binding in its
shared table must still name the guest on the guest's sessions during the admission, and
not before or after it. The worker does not spool the portal's records (the supervisor does)."""

from __future__ import annotations

import queue
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "flows"))
from tcp_frames import udp_frame  # noqa: E402

from agent.run.worker import GatewayConsumer  # noqa: E402
from agent.spool.store import Spool  # noqa: E402
from wire.validate import validate_record  # noqa: E402

ETHERNET = 1
GUEST_IP = "10.0.2.20"
GUEST_MAC = "02:00:00:00:02:20"
GUEST = "guest-000123"


def _spooled(spool: Spool) -> list[dict[str, Any]]:
    rows = spool._conn.execute("SELECT body FROM records ORDER BY id").fetchall()  # test-only peek
    return [msgpack.unpackb(r[0]) for r in rows]


def _dhcp(mtype: int, *, op: int, yiaddr: str = "0.0.0.0", lease: int | None = None) -> bytes:
    """A BOOTP message (RFC 2131 §2) with the message type option and maybe a lease time."""
    head = struct.pack("!BBBBIHH", op, 1, 6, 0, 0x5EED, 0, 0) + socket.inet_aton("0.0.0.0")
    head += socket.inet_aton(yiaddr) + socket.inet_aton("0.0.0.0") * 2
    head += bytes.fromhex(GUEST_MAC.replace(":", "")).ljust(16, b"\0") + b"\0" * 192
    opts = bytes([53, 1, mtype]) + (bytes([51, 4]) + struct.pack("!I", lease) if lease is not None else b"")
    return head + b"\x63\x82\x53\x63" + opts + b"\xff"


def _portal(ts: float, event: str, duration: float | None = None) -> dict[str, Any]:
    """The record the portal writes when it admits the guest (login) and when that ends."""
    return validate_record({"type": "login", "ts": ts, "event": event, "account": GUEST, "ip": GUEST_IP,
                            "mac": GUEST_MAC, "calling_station": GUEST_MAC, "source": "portal",
                            "session_id": "psess-1", "duration": duration})


def _udp(ts: float, sport: int) -> list[tuple[float, int, bytes]]:
    mac = bytes.fromhex(GUEST_MAC.replace(":", ""))
    return [(ts, ETHERNET, udp_frame(GUEST_IP, sport, "198.51.100.9", 7777, b"q", smac=mac)),
            (ts + 0.01, ETHERNET, udp_frame("198.51.100.9", 7777, GUEST_IP, sport, b"r", dmac=mac))]


def test_a_portal_login_in_the_inbox_names_the_guest_on_its_sessions(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    inbox: queue.Queue[dict[str, Any]] = queue.Queue()
    c = GatewayConsumer("lan0-0", spool, depth=16384, roster=None, rules=None, rules_path=None, pubkeys=[],
                        inbox=inbox)
    now = time.time() - 600
    lease = [(now, ETHERNET, udp_frame("0.0.0.0", 68, "255.255.255.255", 67, _dhcp(3, op=1))),
             (now + 0.01, ETHERNET, udp_frame("10.0.2.1", 67, "255.255.255.255", 68,
                                              _dhcp(5, op=2, yiaddr=GUEST_IP, lease=86400)))]
    inbox.put(_portal(now + 10, "login"))  # the guest is admitted 10 s after its lease
    c.feed(lease + _udp(now + 5, 50005) + _udp(now + 20, 50020))
    inbox.put(_portal(now + 100, "logout", duration=90.0))
    c.feed(_udp(now + 150, 50150))
    c.stats({})  # the wall clock moved on: every connection has ended
    records = _spooled(spool)
    sessions = [r for r in records if r["type"] == "session" and r["dst_port"] == 7777]
    accounts = {r["src_port"]: r["account"] for r in sessions}
    assert accounts == {50005: None, 50020: GUEST, 50150: None}, accounts
    # the worker's own table had the lease, naming nobody (no roster): its login record says so
    logins = [(r["source"], r["event"], r["account"]) for r in records if r["type"] == "login"]
    assert logins == [("dhcp", "login", None)], logins  # the portal's records are the supervisor's to spool
    assert c.counters["identity_received"] == 2
    assert c.shared_identity is not None and c.shared_identity.counters["portal_logins"] == 1
    c.finish()
    assert spool.stats().records_invalid == 0
