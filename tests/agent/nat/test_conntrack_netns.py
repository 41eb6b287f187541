"""NAT records for real: a masquerading gateway in network namespaces (nat_lab.py).

The conntrack source runs in this process with its sockets in the gateway's namespace.
TCP and UDP connections go from the client to the echo server through the gateway; the
`nat` records must name the same inside / outside / remote endpoints as the kernel's own
table (/proc/net/nf_conntrack) and as the peer the server saw. Destroys: TCP by its normal
end (TIME_WAIT shortened by sysctl), UDP by deleting the entry with pyroute2's own
Conntrack API (a code path independent of the source's).

ENOBUFS: a source with the smallest receive buffer the kernel allows misses most of a burst
of 300 UDP flows; it must count the overrun and, after re-reading the table, know exactly
the translations the kernel's table holds.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from nat_lab import ECHO_PORT, PORT_HI, PORT_LO, conntrack_table, nat_gateway, wait_for

from agent.nat.conntrack import ConntrackSource
from wire.validate import validate_record

TCP_CLIENT = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(b"hello"); assert s.recv(5) == b"hello"
print(s.getsockname()[1]); s.close()
"""

UDP_CLIENT = r"""
import socket, sys
n = int(sys.argv[3]) if len(sys.argv) > 3 else 1
socks = []
for _ in range(n):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
    u.bind(("0.0.0.0", 0)); u.sendto(b"ping", (sys.argv[1], int(sys.argv[2]))); socks.append(u)
for u in socks:
    assert u.recv(16) == b"ping"
    print(u.getsockname()[1])
"""

UNTRANSLATED = r"""
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.sendto(b"x", (sys.argv[1], 9))
print(u.getsockname()[1])
"""


class Clock:
    """A monotonic clock the test moves by hand (for the lookup's linger time)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def collect(src: ConntrackSource, into: list[dict[str, Any]], cond: Any, what: str) -> None:
    def step() -> bool:
        for r in src.poll(0.1):
            validate_record(r)
            into.append(dict(r))
        return bool(cond())

    wait_for(step, what, diag=lambda: f"records {into}\nstats {src.stats()}")


def test_tcp_and_udp_translations_create_and_destroy(tmp_path: Path) -> None:
    sysctls = ("net.netfilter.nf_conntrack_timestamp=1",
               "net.netfilter.nf_conntrack_tcp_timeout_time_wait=1")
    with nat_gateway(tmp_path / "net", sysctls) as net:
        clock = Clock()
        with ConntrackSource(netns=net.gw, linger=60.0, clock=clock) as src:
            records: list[dict[str, Any]] = []
            t0 = time.time()
            tcp_port = int(net.client(TCP_CLIENT, net.server_ip, str(ECHO_PORT)).strip())
            udp_port = int(net.client(UDP_CLIENT, net.server_ip, str(ECHO_PORT)).strip())
            gw_inside = net.routed.gw_c.addr
            untranslated_port = int(net.client(UNTRANSLATED, gw_inside).strip())

            def created(proto: str, port: int) -> list[dict[str, Any]]:
                return [r for r in records if r["event"] == "create" and r["proto"] == proto
                        and r["inside_port"] == port]

            collect(src, records, lambda: created("tcp", tcp_port) and created("udp", udp_port),
                    "create records of the TCP and the UDP connection")
            t1 = time.time()
            table = conntrack_table(net.gw)
            peers = net.peers()
            for proto, port in (("tcp", tcp_port), ("udp", udp_port)):
                (rec,) = created(proto, port)
                inside = (net.client_ip, net.server_ip, port)
                (line,) = [c for c in table if c.proto == proto and c.orig[:3] == inside]
                # the kernel's table: inside = orig source, outside = reply destination, remote = orig dest
                assert (rec["inside_ip"], rec["inside_port"]) == (line.orig[0], line.orig[2])
                assert (rec["outside_ip"], rec["outside_port"]) == (line.reply[1], line.reply[3])
                assert (rec["remote_ip"], rec["remote_port"]) == (line.orig[1], line.orig[3])
                # what the server saw is the outside endpoint; the port was translated into the range
                assert (proto, rec["outside_ip"], rec["outside_port"]) in peers, peers
                assert rec["outside_ip"] == net.outside_ip and PORT_LO <= rec["outside_port"] <= PORT_HI
                assert (rec["remote_ip"], rec["remote_port"]) == (net.server_ip, ECHO_PORT)
                # NEW events carry no kernel timestamp: the receipt time, within the test's window
                assert t0 - 1 <= rec["ts"] <= t1 + 1, (rec["ts"], t0, t1)
                assert src.outside_for(proto, net.client_ip, port, net.server_ip, ECHO_PORT) == (
                    rec["outside_ip"], rec["outside_port"])
            assert src.stats()["receipt_ts"] >= 2
            # the datagram to the gateway itself is tracked but not translated: no record
            assert src.stats()["untranslated"] >= 1
            assert not [r for r in records if r["inside_port"] == untranslated_port], records
            assert src.outside_for("udp", net.client_ip, untranslated_port, gw_inside, 9) is None

            # UDP: remove the entry with pyroute2's own API -> a destroy record
            from pyroute2 import Conntrack  # type: ignore[import-untyped]
            from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple  # type: ignore[import-untyped]

            with Conntrack(netns=net.gw) as ct:
                ct.entry("del", tuple_orig=NFCTAttrTuple(saddr=net.client_ip, daddr=net.server_ip,
                                                         proto=socket.IPPROTO_UDP, sport=udp_port,
                                                         dport=ECHO_PORT))

            def destroyed(proto: str, port: int) -> list[dict[str, Any]]:
                return [r for r in records if r["event"] == "destroy" and r["proto"] == proto
                        and r["inside_port"] == port]

            # TCP: closed by the client; TIME_WAIT is 1 s. The kernel's gc worker may take up to its
            # scan interval (tens of seconds when idle) to remove an expired entry; reading the table
            # reaps expired entries at once (as `conntrack -L` would), so the test reads until it is gone.
            wait_for(lambda: not [c for c in conntrack_table(net.gw) if c.proto == "tcp"
                                  and c.orig[:3] == (net.client_ip, net.server_ip, tcp_port)],
                     "the TCP entry to leave TIME_WAIT and the table")
            collect(src, records, lambda: destroyed("udp", udp_port) and destroyed("tcp", tcp_port),
                    "destroy records of both connections")
            for proto, port in (("tcp", tcp_port), ("udp", udp_port)):
                (c,), (d,) = created(proto, port), destroyed(proto, port)
                same = ("proto", "inside_ip", "inside_port", "outside_ip", "outside_port", "remote_ip",
                        "remote_port")
                assert {k: c[k] for k in same} == {k: d[k] for k in same}
                assert c["ts"] - 1 <= d["ts"] <= time.time()
                # sessions end after conntrack forgets them: the lookup still answers ...
                assert src.outside_for(proto, net.client_ip, port, net.server_ip, ECHO_PORT) == (
                    c["outside_ip"], c["outside_port"])
            assert not any(c.orig[2] in (tcp_port, udp_port) for c in conntrack_table(net.gw)
                           if c.orig[0] == net.client_ip)
            # ... until the linger time is over
            clock.now += 61.0
            assert src.outside_for("tcp", net.client_ip, tcp_port, net.server_ip, ECHO_PORT) is None
            assert src.outside_for("udp", net.client_ip, udp_port, net.server_ip, ECHO_PORT) is None
            assert src.stats()["enobufs"] == 0
            assert src.stats()["kernel_ts"] >= 2  # the destroys carry CTA_TIMESTAMP_STOP


def test_enobufs_is_counted_and_the_table_reread(tmp_path: Path) -> None:
    # rcvbuf=1: the kernel rounds it up to its minimum, far less than 300 NEW events
    with nat_gateway(tmp_path / "net") as net, ConntrackSource(netns=net.gw, rcvbuf=1) as src:
        before = src.poll(0.0)
        assert before == []
        n = 300
        ports = [int(p) for p in net.client(UDP_CLIENT, net.server_ip, str(ECHO_PORT), str(n)).split()]
        assert len(ports) == n
        records: list[dict[str, Any]] = []
        collect(src, records, lambda: src.stats()["enobufs"] >= 1 and src.stats()["resyncs"] >= 1,
                "the overrun to be reported and the table re-read")
        # read whatever is still queued (events after the dump) until the socket is quiet
        while more := src.poll(0.2):
            for r in more:
                validate_record(r)
            records += [dict(r) for r in more]
        kernel = {("udp", c.orig[0], c.orig[2], c.reply[1], c.reply[3], c.orig[1], c.orig[3])
                  for c in conntrack_table(net.gw) if c.proto == "udp" and c.orig[0] == net.client_ip}
        assert {k[2] for k in kernel} == set(ports)  # all 300 are in the kernel's table
        known = {(t.proto, t.inside_ip, t.inside_port, t.outside_ip, t.outside_port, t.remote_ip,
                  t.remote_port) for t in (v.translation for v in src.table.live.values())}
        assert known == kernel
        created = [r for r in records if r["event"] == "create"]
        assert {(r["proto"], r["inside_ip"], r["inside_port"], r["outside_ip"], r["outside_port"],
                 r["remote_ip"], r["remote_port"]) for r in created} == kernel
        assert len(created) == n, "one create per mapping, no duplicates"
        assert not [r for r in records if r["event"] == "destroy"]
        st = src.stats()
        assert st["reconcile_created"] >= 1 and st["events_new"] < n, st
        assert st["enobufs"] >= 1
        for p in ports:
            assert src.outside_for("udp", net.client_ip, p, net.server_ip, ECHO_PORT) is not None



PING = r"""
import os, socket, struct, sys
# an ICMP echo with a chosen identifier (raw socket: root in the client namespace)
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.settimeout(5)
ident = int(sys.argv[2])
def csum(b):
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b)); t = (t >> 16) + (t & 0xFFFF); t += t >> 16
    return ~t & 0xFFFF
hdr = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"edgeaudit"
pkt = hdr[:2] + struct.pack("!H", csum(hdr + b"\0")) + hdr[4:]
s.sendto(pkt, (sys.argv[1], 0))
while True:
    data = s.recv(2048)
    if data[20] == 0 and struct.unpack("!H", data[24:26])[0] == ident:
        break
"""


def test_icmp_and_the_blocking_loop(tmp_path: Path) -> None:
    """``run(callback, stop)`` in a thread delivers the ICMP echo's translation and returns soon
    after ``stop`` is set; the record's echo id matches the kernel's table."""
    import threading

    from agent.nat.conntrack import POLL_S

    with nat_gateway(tmp_path / "net") as net, ConntrackSource(netns=net.gw) as src:
        got: list[dict[str, Any]] = []
        stop = threading.Event()
        th = threading.Thread(target=src.run, args=(lambda r: got.append(dict(r)), stop), daemon=True)
        th.start()
        net.client(PING, net.server_ip, "4242")
        wait_for(lambda: any(r["proto"] == "icmp" for r in got), "the ICMP create record",
                 diag=lambda: f"{got} {src.stats()}")
        (line,) = [c for c in conntrack_table(net.gw) if c.proto == "icmp" and c.orig[0] == net.client_ip]
        (rec,) = [r for r in got if r["proto"] == "icmp"]
        validate_record(rec)
        assert (rec["event"], rec["inside_ip"], rec["inside_port"]) == ("create", net.client_ip, 4242)
        # ICMP: the reply tuple's destination and echo id (the id sits in the first port slot)
        assert (rec["outside_ip"], rec["outside_port"]) == (line.reply[1], line.reply[2])
        assert rec["outside_ip"] == net.outside_ip
        assert (rec["remote_ip"], rec["remote_port"]) == (net.server_ip, None)
        t = time.monotonic()
        stop.set()
        th.join(POLL_S + 2)
        assert not th.is_alive() and time.monotonic() - t <= POLL_S + 2
