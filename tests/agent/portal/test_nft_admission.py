"""NftAdmission for real: a captive-portal gateway in network namespaces.

Topology (made per test)::

    client ns ──veth── [port of br1] gateway ns [veth] ──veth── server ns
    10.88.1.2            br1 10.88.1.1          10.88.2.1         10.88.2.2

The gateway routes (ip_forward on) between its bridge ``br1`` (the guest LAN; the client's
veth peer is a bridge port) and the server side, and runs the table ``NftAdmission`` installs
(its nft commands go through ``ip netns exec GW``: the ``argv_prefix``) plus a portal stand-in
on 10.88.1.1:8080 answering ``portal``. The server answers ``server`` over HTTP on 80 and 443
(443 stands for HTTPS: only the connection matters) and echoes UDP on 53 (DNS) and 7.

Every check is what the client sees: the body of an HTTP answer (the portal's or the server's),
how a TCP connect ends (connected, refused by a reset, or a timeout: a refusal must come fast),
whether a UDP datagram is echoed. Only the IPv6 test gives the namespaces IPv6 addresses.

The namespaces, veth links and processes come from tests/agent/enforce/enforce_lab.py (names
carry the pid and a counter; links are waited for until up; on exit every process is ended by
pid and every namespace deleted). Readiness is observed (listening sockets in /proc/PID/net/*)
and every wait has a timeout.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

_ENFORCE = str(Path(__file__).resolve().parents[1] / "enforce")
if _ENFORCE not in sys.path:
    sys.path.insert(0, _ENFORCE)

from enforce_lab import lab as ns_lab  # noqa: E402
from enforce_lab import need as require  # noqa: E402
from enforce_lab import run, wait_for  # noqa: E402

from agent.portal.admission import AdmissionError  # noqa: E402
from agent.portal.nft import NftAdmission  # noqa: E402

GW_IP, CLIENT_IP, GW_OUT_IP, SERVER_IP = "10.88.1.1", "10.88.1.2", "10.88.2.1", "10.88.2.2"
GW_IP6, CLIENT_IP6, GW_OUT_IP6, SERVER_IP6 = "fd88:1::1", "fd88:1::2", "fd88:2::1", "fd88:2::2"
CLIENT_MAC = "02:88:00:00:01:02"
OTHER_MAC = "02:88:00:00:01:99"
PORTAL_PORT = 8080
FAST = 1.0  # seconds a refusal may take (a timeout would be the client's 3 s)

# HTTP "NAME" on each TCP port, UDP echo on each UDP port; dual-stack where IPv6 works.
SERVE = r"""
import selectors, socket, sys, threading
name = sys.argv[1].encode()
tcp = [int(p) for p in sys.argv[2].split(",") if p]
udp = [int(p) for p in sys.argv[3].split(",") if p]

def bound(kind, port):
    try:
        s = socket.socket(socket.AF_INET6, kind)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        addr = ("::", port)
    except OSError:
        s, addr = socket.socket(socket.AF_INET, kind), ("0.0.0.0", port)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(addr)
    if kind == socket.SOCK_STREAM:
        s.listen(64)
    return s

def answer(c):
    c.settimeout(3)
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            d = c.recv(4096)
            if not d:
                return
            buf += d
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(name), name))
    except OSError:
        pass
    finally:
        c.close()

sel = selectors.DefaultSelector()
for p in tcp:
    sel.register(bound(socket.SOCK_STREAM, p), selectors.EVENT_READ, "tcp")
for p in udp:
    sel.register(bound(socket.SOCK_DGRAM, p), selectors.EVENT_READ, "udp")
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if key.data == "tcp":
            c, _peer = s.accept()
            threading.Thread(target=answer, args=(c,), daemon=True).start()
        else:
            data, peer = s.recvfrom(2048)
            s.sendto(data, peer)
"""

# Runs a list of operations (JSON in argv[1]) and prints one JSON result per operation.
CLIENT = r"""
import errno, json, socket, sys, time

def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET

def connect(host, port):
    s = socket.socket(family(host), socket.SOCK_STREAM)
    s.settimeout(3)
    t = time.monotonic()
    try:
        s.connect((host, port))
        return s, "connected", time.monotonic() - t
    except socket.timeout:
        out = "timeout"
    except ConnectionRefusedError:
        out = "refused"
    except OSError as e:
        out = errno.errorcode.get(e.errno, str(e))
    s.close()
    return None, out, time.monotonic() - t

def tcp(host, port):
    s, out, took = connect(host, port)
    if s is not None:
        s.close()
    return {"outcome": out, "s": took}

def http(host, port):
    s, out, took = connect(host, port)
    if s is None:
        return {"outcome": out, "s": took}
    try:
        s.sendall(b"GET / HTTP/1.0\r\nHost: example.test\r\n\r\n")
        buf = b""
        while True:
            d = s.recv(4096)
            if not d:
                break
            buf += d
        return {"outcome": "ok", "body": buf.split(b"\r\n\r\n", 1)[-1].decode(), "s": took}
    except OSError as e:
        return {"outcome": errno.errorcode.get(e.errno, str(e)), "s": took}
    finally:
        s.close()

def udp(host, port):
    u = socket.socket(family(host), socket.SOCK_DGRAM)
    u.settimeout(3)
    t = time.monotonic()
    try:
        u.connect((host, port))
        u.send(b"ping")
        return {"outcome": "echo" if u.recv(64) == b"ping" else "other", "s": time.monotonic() - t}
    except socket.timeout:
        return {"outcome": "timeout", "s": time.monotonic() - t}
    except OSError as e:
        return {"outcome": errno.errorcode.get(e.errno, str(e)), "s": time.monotonic() - t}

def keep(host, port, every, total):
    outs = []
    end = time.monotonic() + total
    while time.monotonic() < end:
        outs.append(tcp(host, port)["outcome"])
        time.sleep(every)
    return {"outcome": sorted(set(outs)), "n": len(outs)}

for op in json.loads(sys.argv[1]):
    print(json.dumps(globals()[op[0]](*op[1:])), flush=True)
"""


@dataclass
class Lab:
    """The three namespaces (made by enforce_lab's ``Lab``) and the client's interface."""

    client_ns: str
    gw_ns: str
    server_ns: str
    client_if: str

    def adm(self, idle_s: float = 30.0) -> NftAdmission:
        return NftAdmission(interfaces=["br1"], portal_ip=GW_IP, http_port=PORTAL_PORT, idle_s=idle_s,
                            argv_prefix=["ip", "netns", "exec", self.gw_ns])

    def ops(self, *ops: tuple[Any, ...]) -> list[dict[str, Any]]:
        """Run client operations (``("http", host, port)``, ``("tcp", ...)``, ``("udp", ...)``,
        ``("keep", host, port, every_s, total_s)``) in the client namespace."""
        res = run(sys.executable, "-c", CLIENT, json.dumps(ops), ns=self.client_ns)
        return [json.loads(line) for line in res.stdout.splitlines()]

    def http(self, host: str = SERVER_IP, port: int = 80) -> str:
        """The body the client gets for ``GET /`` (or the failure's outcome in angle brackets)."""
        r = self.ops(("http", host, port))[0]
        return str(r["body"]) if r["outcome"] == "ok" else f"<{r['outcome']}>"

    def tcp(self, host: str = SERVER_IP, port: int = 443) -> dict[str, Any]:
        return self.ops(("tcp", host, port))[0]

    def tables(self) -> list[str]:
        return run("nft", "list", "tables", ns=self.gw_ns).stdout.splitlines()

    def set_client_mac(self, mac: str) -> None:
        """Change the client's MAC; the gateway forgets the old one (neighbour cache)."""
        run("ip", "-n", self.client_ns, "link", "set", "dev", self.client_if, "address", mac)
        run("ip", "-n", self.gw_ns, "neigh", "flush", "dev", "br1")


@contextlib.contextmanager
def portal_lab(workdir: Path, ipv6: bool = False) -> Iterator[Lab]:
    require("nft")
    with ns_lab(workdir) as la:
        cli, gw, srv = la.ns("cli", ipv6=ipv6), la.ns("gw", ipv6=ipv6, forward=True), la.ns("srv", ipv6=ipv6)

        def addrs(v4: str, v6: str) -> tuple[str, ...]:
            return (f"{v4}/24", f"{v6}/64") if ipv6 else (f"{v4}/24",)

        run("ip", "-n", gw, "link", "add", "br1", "type", "bridge")
        client_if, gw_c = la.link(cli, gw, addrs(CLIENT_IP, CLIENT_IP6))
        run("ip", "-n", cli, "link", "set", "dev", client_if, "address", CLIENT_MAC)
        run("ip", "-n", gw, "link", "set", gw_c, "master", "br1")
        for addr in addrs(GW_IP, GW_IP6):
            run("ip", "-n", gw, "addr", "add", addr, "dev", "br1", *(["nodad"] if ":" in addr else []))
        run("ip", "-n", gw, "link", "set", "br1", "up")
        la.wait_up(gw, "br1")
        la.link(srv, gw, addrs(SERVER_IP, SERVER_IP6), addrs(GW_OUT_IP, GW_OUT_IP6))
        run("ip", "-n", cli, "route", "add", "default", "via", GW_IP)
        run("ip", "-n", srv, "route", "add", "default", "via", GW_OUT_IP)
        if ipv6:
            run("ip", "-n", cli, "-6", "route", "add", "default", "via", GW_IP6)
            run("ip", "-n", srv, "-6", "route", "add", "default", "via", GW_OUT_IP6)
        server = la.start(srv, "server", SERVE, "server", "80,443", "53,7")
        portal = la.start(gw, "portal", SERVE, "portal", str(PORTAL_PORT), "")
        for port in (80, 443):
            server.wait_listening("tcp", port)
        for port in (53, 7):
            server.wait_listening("udp", port)
        portal.wait_listening("tcp", PORTAL_PORT)
        yield Lab(cli, gw, srv, client_if)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with portal_lab(tmp_path / "lab") as lab:
        yield lab


def _refused_fast(r: dict[str, Any]) -> bool:
    return bool(r["outcome"] == "refused" and r["s"] < FAST)


# -- without nft: validation and the JSON reader ------------------------------------------------------


BAD_MACS = ["", "02:88:00:00:01", "02:88:00:00:01:02:03", "02-88-00-00-01-02", "0288.0000.0102",
            "02:88:00:00:01:0g", "02:88:00:00:01:02 }; flush ruleset; add element inet x y { 1",
            "02:88:00:00:01:02\n", " 02:88:00:00:01:02"]
BAD_IPS = ["", "10.88.1", "10.88.1.256", "010.88.1.2", "fd88:1::2", "10.88.1.2/24", "host.example",
           "10.88.1.2 }; flush ruleset", "10.88.1.2\n"]


@pytest.mark.parametrize("client", [(mac, CLIENT_IP) for mac in BAD_MACS]
                         + [(CLIENT_MAC, ip) for ip in BAD_IPS])
def test_bad_mac_or_ip_raises_value_error_without_running_nft(tmp_path: Path, client: tuple[str, str]
                                                               ) -> None:
    # a binary that does not exist: running it would raise AdmissionError, not ValueError
    a = NftAdmission(interfaces=["br1"], portal_ip=GW_IP, http_port=8080, idle_s=5,
                     nft=str(tmp_path / "no-nft"))
    for call in (a.admit, a.revoke):
        with pytest.raises(ValueError):
            call(client)


@pytest.mark.parametrize("kwargs", [
    {"interfaces": ['br1" }; flush ruleset; #']}, {"interfaces": []}, {"interfaces": ["a" * 16]},
    {"portal_ip": "10.88.1.1; flush ruleset"}, {"portal_ip": "fd88:1::1"}, {"http_port": 0},
    {"http_port": 65536}, {"idle_s": 0}, {"idle_s": math.inf}, {"table": "t; flush ruleset"},
])
def test_bad_configuration_raises_value_error(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"interfaces": ["br1"], "portal_ip": GW_IP, "http_port": 8080, "idle_s": 5}
    with pytest.raises(ValueError):
        NftAdmission(**(args | kwargs))


def test_mac_upper_case_is_accepted(tmp_path: Path) -> None:
    # validation passes (lower-cased), so the missing binary is what fails
    a = NftAdmission(interfaces=["br1"], portal_ip=GW_IP, http_port=8080, idle_s=5,
                     nft=str(tmp_path / "no-nft"))
    with pytest.raises(AdmissionError):
        a.admit((CLIENT_MAC.upper(), CLIENT_IP))


def test_parse_set_shapes_of_nft_1_0_6() -> None:
    """The shapes ``nft -j list set`` (1.0.6) prints: expires truncated to whole seconds, an
    element's timeout only when it differs from the set's, 0 ms left = no ``expires``."""
    a = NftAdmission(interfaces=["br1"], portal_ip=GW_IP, http_port=8080, idle_s=30)
    meta = {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}
    doc = {"nftables": [meta, {"set": {
        "family": "inet", "name": "admitted", "table": "edgeaudit_portal",
        "type": ["ether_addr", "ipv4_addr"], "handle": 3, "size": 65535, "flags": ["timeout"],
        "timeout": 30, "elem": [
            {"elem": {"val": {"concat": ["02:AA:00:00:00:01", "10.0.0.1"]}, "expires": 29}},
            {"elem": {"val": {"concat": ["02:aa:00:00:00:02", "10.0.0.2"]}, "timeout": 60, "expires": 45}},
            {"elem": {"val": {"concat": ["02:aa:00:00:00:03", "10.0.0.3"]}, "timeout": 0, "expires": 0}},
            {"elem": {"val": {"concat": ["02:aa:00:00:00:04", "10.0.0.4"]}}},
        ]}}]}
    assert a.parse_set(doc) == {("02:aa:00:00:00:01", "10.0.0.1"): 29.5,
                                ("02:aa:00:00:00:02", "10.0.0.2"): 30.0,
                                ("02:aa:00:00:00:03", "10.0.0.3"): 0.5}
    # a set without a timeout: an element without one never expires; a bare key is an element
    doc = {"nftables": [meta, {"set": {"family": "inet", "name": "admitted", "table": "t",
                                       "type": ["ether_addr", "ipv4_addr"], "elem": [
                                           {"concat": ["02:aa:00:00:00:05", "10.0.0.5"]},
                                           {"elem": {"val": {"concat": ["02:aa:00:00:00:06", "10.0.0.6"]},
                                                     "timeout": 10, "expires": 3}}]}}]}
    assert a.parse_set(doc) == {("02:aa:00:00:00:05", "10.0.0.5"): math.inf,
                                ("02:aa:00:00:00:06", "10.0.0.6"): 3.5}
    # empty set: no "elem" at all
    empty = {"nftables": [meta, {"set": {"family": "inet", "name": "admitted", "table": "t"}}]}
    assert a.parse_set(empty) == {}
    with pytest.raises(AdmissionError):
        a.parse_set({"error": "x"})


# -- in namespaces ---------------------------------------------------------------------------------


def test_unadmitted_client_gets_portal_dns_and_fast_refusals(lab: Lab) -> None:
    a = lab.adm()
    a.setup()
    http, tls, dns, other_udp = lab.ops(("http", SERVER_IP, 80), ("tcp", SERVER_IP, 443),
                                        ("udp", SERVER_IP, 53), ("udp", SERVER_IP, 7))
    assert http.get("body") == "portal", http  # port 80 redirected to the portal
    assert _refused_fast(tls), tls  # HTTPS: reset at once, no timeout
    assert dns["outcome"] == "echo", dns  # DNS forwarded for everyone
    # other UDP: ICMP administratively prohibited (Linux reports it as EHOSTUNREACH), fast
    assert other_udp["outcome"] == "EHOSTUNREACH" and other_udp["s"] < FAST, other_udp
    # the gateway itself stays reachable (input is not filtered): the portal directly
    assert lab.http(GW_IP, PORTAL_PORT) == "portal"
    assert a.present() == {}


def test_admit_lets_the_client_out_and_revoke_stops_it(lab: Lab) -> None:
    a = lab.adm(idle_s=30)
    a.setup()
    assert lab.http() == "portal"
    a.admit((CLIENT_MAC.upper(), CLIENT_IP))  # MAC normalised: the packet's lower-case MAC matches
    http, tls, other_udp = lab.ops(("http", SERVER_IP, 80), ("tcp", SERVER_IP, 443), ("udp", SERVER_IP, 7))
    assert http.get("body") == "server", http
    assert tls["outcome"] == "connected", tls
    assert other_udp["outcome"] == "echo", other_udp
    left = a.present()
    assert list(left) == [(CLIENT_MAC, CLIENT_IP)]
    assert 0 < left[(CLIENT_MAC, CLIENT_IP)] <= 30
    a.revoke((CLIENT_MAC, CLIENT_IP))
    assert a.present() == {}
    assert lab.http() == "portal"
    assert _refused_fast(lab.tcp())
    a.revoke((CLIENT_MAC, CLIENT_IP))  # not admitted: nothing happens
    a.admit((CLIENT_MAC, CLIENT_IP))  # and again
    assert lab.http() == "server"


def test_admit_again_restarts_the_idle_clock(lab: Lab) -> None:
    a = lab.adm(idle_s=4)
    a.setup()
    a.admit((CLIENT_MAC, CLIENT_IP))
    wait_for(lambda: a.present().get((CLIENT_MAC, CLIENT_IP), 99) < 3, "the idle clock to run down",
             timeout=4)
    a.admit((CLIENT_MAC, CLIENT_IP))
    assert a.present()[(CLIENT_MAC, CLIENT_IP)] > 3


def test_idle_client_drops_out_and_traffic_keeps_it(lab: Lab) -> None:
    idle = 2.0
    a = lab.adm(idle_s=idle)
    a.setup()
    client = (CLIENT_MAC, CLIENT_IP)
    # traffic keeps it: a connection every 0.5 s for 3 s (longer than the idle timeout)
    a.admit(client)
    kept = lab.ops(("keep", SERVER_IP, 443, 0.5, 3.0))[0]
    assert kept["outcome"] == ["connected"] and kept["n"] >= 5, kept
    assert client in a.present()
    # silence: gone after the idle timeout, not before, and redirected again
    t0 = time.monotonic()
    wait_for(lambda: client not in a.present(), "the idle client to drop out of the set", timeout=idle + 3)
    assert time.monotonic() - t0 > idle - 1.0  # the last packet was < 0.5 s before t0
    assert lab.http() == "portal"
    assert _refused_fast(lab.tcp())


def test_admitted_ip_with_another_mac_is_not_admitted(lab: Lab) -> None:
    a = lab.adm()
    a.setup()
    a.admit((OTHER_MAC, CLIENT_IP))  # the client's address, someone else's MAC
    assert lab.http() == "portal"
    assert _refused_fast(lab.tcp())
    a.admit((CLIENT_MAC, CLIENT_IP))
    assert lab.http() == "server"
    # the client's MAC changes (a spoofer taking over the admitted address): not admitted
    lab.set_client_mac(OTHER_MAC.replace("99", "98"))
    assert lab.http() == "portal"
    assert _refused_fast(lab.tcp())


def test_setup_twice_resets_admission_and_teardown_removes_only_its_table(lab: Lab) -> None:
    # someone else's table on the gateway: never touched
    run("nft", "add", "table", "inet", "othertable", ns=lab.gw_ns)
    a = lab.adm()
    a.setup()
    a.setup()
    a.admit((CLIENT_MAC, CLIENT_IP))
    assert lab.http() == "server"
    a.setup()  # a restart: nobody admitted
    assert a.present() == {}
    assert lab.http() == "portal"
    tables = lab.tables()
    assert "table inet edgeaudit_portal" in tables and "table inet othertable" in tables
    a.teardown()
    tables = lab.tables()
    assert "table inet edgeaudit_portal" not in tables and "table inet othertable" in tables
    a.teardown()  # missing table: fine
    # without the table the gateway just routes: the server answers, 443 connects
    assert lab.http() == "server"
    assert lab.tcp()["outcome"] == "connected"
    with pytest.raises(AdmissionError, match="No such file"):
        a.present()
    with pytest.raises(AdmissionError):
        a.admit((CLIENT_MAC, CLIENT_IP))


def test_ipv6_follows_the_mac(tmp_path: Path) -> None:
    with portal_lab(tmp_path / "lab", ipv6=True) as lab:
        a = lab.adm()
        a.setup()
        http6, tls6, dns6, dns4 = lab.ops(("http", SERVER_IP6, 80), ("tcp", SERVER_IP6, 443),
                                          ("udp", SERVER_IP6, 53), ("udp", SERVER_IP, 53))
        # not admitted: IPv6 port 80 is not redirected (the portal is IPv4) but reset, fast
        assert _refused_fast(http6), http6
        assert _refused_fast(tls6), tls6
        assert dns6["outcome"] == "echo" and dns4["outcome"] == "echo", (dns6, dns4)
        a.admit((CLIENT_MAC, CLIENT_IP))
        http6, tls6 = lab.ops(("http", SERVER_IP6, 80), ("tcp", SERVER_IP6, 443))
        assert http6.get("body") == "server", http6
        assert tls6["outcome"] == "connected", tls6
        # a second admitted address of the same MAC keeps its IPv6 through the first one's revoke
        a.admit((CLIENT_MAC, "10.88.1.77"))
        a.revoke((CLIENT_MAC, CLIENT_IP))
        assert lab.tcp(SERVER_IP6)["outcome"] == "connected"
        assert _refused_fast(lab.tcp(SERVER_IP))
        a.revoke((CLIENT_MAC, "10.88.1.77"))
        assert _refused_fast(lab.tcp(SERVER_IP6))

