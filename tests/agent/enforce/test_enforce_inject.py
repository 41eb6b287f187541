"""agent.enforce.inject for real: established TCP connections in network namespaces, reset.

Inline (`RawInjector`): client ns -- gateway ns (routing) -- server ns. The "agent" is
this test, with sockets opened inside the gateway namespace: it captures the client-side
link with AF_PACKET, follows the connection from the captured segments (as the agent
does), builds the RSTs with `reset_packets` and sends them through the gateway's
kernel with forged source addresses, IPv4 and IPv6. Both endpoints' recv() must end in
ConnectionResetError. A second test shows RFC 5961 at work: in-window but inexact RSTs
leave the connection up and bring back a challenge ACK whose number, used for an exact
RST, then resets it.

Mirror port (`LinkInjector`): client and server on a hub (a bridge that learns nothing,
in the monitor namespace); the agent's interface is one more hub port, sees a copy of
every frame and writes the RST frames back onto it with the MAC addresses it observed.

Every namespace and process is removed at the end (enforce_lab.lab), failed or not.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import dpkt
import pytest
from enforce_lab import (
    CLIENT,
    REPO,
    SERVER,
    Daemon,
    Lab,
    Watcher,
    capture_socket,
    have,
    inside,
    lab,
    outcome,
    run,
    wait_for,
)

from agent.enforce.inject import InjectError, LinkInjector, RawInjector
from agent.enforce.rst import ethernet_frame, reset_packets

PORT = 8080
IDLE = "15"  # seconds an endpoint waits in recv() before reporting TIMEOUT (the test fails then)
FAMILIES = {
    "ipv4": {"cli": "10.71.1.2", "gwc": "10.71.1.1", "gws": "10.71.2.1", "srv": "10.71.2.2", "len": "24"},
    "ipv6": {"cli": "fd71:1::2", "gwc": "fd71:1::1", "gws": "fd71:2::1", "srv": "fd71:2::2", "len": "64"},
}


def routed(la: Lab, fam: str) -> tuple[str, str, str, str]:
    """client -- gateway -- server; returns (client ns, gateway ns, server ns, gateway's client-side if)."""
    a, n = FAMILIES[fam], FAMILIES[fam]["len"]
    cli, gw, srv = la.ns("cli"), la.ns("gw", forward=True), la.ns("srv")
    _, gw_c = la.link(cli, gw, (f"{a['cli']}/{n}",), (f"{a['gwc']}/{n}",))
    la.link(gw, srv, (f"{a['gws']}/{n}",), (f"{a['srv']}/{n}",))
    v = ["-6"] if fam == "ipv6" else []
    run("ip", *v, "-n", cli, "route", "add", "default", "via", a["gwc"])
    run("ip", *v, "-n", srv, "route", "add", "default", "via", a["gws"])
    return cli, gw, srv, gw_c


def connect(la: Lab, cli: str, srv: str, srv_addr: str) -> tuple[Daemon, Daemon]:
    """A server in ``srv``, a client in ``cli`` connected to it, one message exchanged each way."""
    server = la.start(srv, "server", SERVER, srv_addr, str(PORT), IDLE)
    server.wait_listening("tcp", PORT)
    client = la.start(cli, "client", CLIENT, srv_addr, str(PORT), IDLE)
    client.wait_log("established")
    server.wait_log("accepted")
    return server, client


def rsts(w: Watcher, burst: int = 3, *, client_next_seq: int | None = None) -> list[tuple[str, bytes]]:
    assert w.client_addr is not None and w.client.next_seq is not None and w.server.next_seq is not None
    return list(reset_packets(
        client_ip=w.client_addr[0], client_port=w.client_addr[1], server_ip=w.server_addr,
        server_port=PORT, client_next_seq=w.client.next_seq if client_next_seq is None else client_next_seq,
        server_next_seq=w.server.next_seq, client_window=w.client.window,
        server_window=w.server.window, burst=burst))


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Lab]:
    with lab(tmp_path / "net") as la:
        yield la


@pytest.mark.parametrize("fam", ["ipv4", "ipv6"])
def test_raw_injector_resets_both_endpoints(net: Lab, fam: str) -> None:
    cli, gw, srv, gw_c = routed(net, fam)
    with inside(gw):
        cap = capture_socket(gw_c)
        inj = RawInjector()
    with cap, inj:
        server, client = connect(net, cli, srv, FAMILIES[fam]["srv"])
        w = Watcher(cap, PORT)
        w.wait_quiet()
        assert w.client.window > 0 and w.server.window > 0
        pkts = rsts(w)
        assert len(pkts) == 6  # exact + 2 in-window offsets, each way
        for _, p in pkts:
            inj.send(p)
        assert outcome(server) == "RESET"
        assert outcome(client) == "RESET"
        assert (inj.sent, inj.errors) == (6, 0)
        # the exact RST to the client went out on the client's link as built (the kernel
        # filled in only the IPv4 ID)
        w.poll(0.2)
        seen = [t for sender, t in w.seen if sender == "server" and t.flags & dpkt.tcp.TH_RST]
        assert seen and seen[0].seq == w.server.next_seq and seen[0].ack == w.client.next_seq


def test_in_window_rst_gets_a_challenge_ack_then_the_exact_one_resets(net: Lab) -> None:
    """RFC 5961 §3.2 on Linux: inexact in-window RST -> challenge ACK carrying RCV.NXT; exact -> reset."""
    cli, gw, srv, gw_c = routed(net, "ipv4")
    with inside(gw):
        cap = capture_socket(gw_c)
        inj = RawInjector()
    with cap, inj:
        server, client = connect(net, cli, srv, FAMILIES["ipv4"]["srv"])
        w = Watcher(cap, PORT)
        w.wait_quiet()
        rcv_nxt = w.client.next_seq
        # pretend the agent's view is behind: only the in-window offsets reach the server
        inexact = [p for d, p in rsts(w, burst=3) if d == "to_server"][1:]
        assert inexact
        mark = len(w.seen)
        for p in inexact:
            inj.send(p)

        def challenge() -> dpkt.tcp.TCP | None:
            w.poll(0.05)
            for sender, t in w.seen[mark:]:
                if sender == "server" and t.flags == dpkt.tcp.TH_ACK and not t.data:
                    return t
            return None

        wait_for(lambda: challenge() is not None, "the server's challenge ACK")
        ack = challenge()
        assert ack is not None and ack.ack == rcv_nxt  # the server told us its exact RCV.NXT
        assert "RESET" not in server.output()  # the challenge ACK was sent instead of resetting
        for _, p in rsts(w, burst=1, client_next_seq=ack.ack):
            inj.send(p)
        assert outcome(server) == "RESET"
        assert outcome(client) == "RESET"


@pytest.mark.parametrize("fam", ["ipv4", "ipv6"])
def test_link_injector_on_a_mirror_port(net: Lab, fam: str) -> None:
    a = FAMILIES[fam]
    n = a["len"]
    cli, srv, mon = net.ns("cli"), net.ns("srv"), net.ns("mon")
    hub = net.hub(mon)
    _, port_c = net.link(cli, mon, (f"{a['cli']}/{n}",))
    _, port_s = net.link(srv, mon, (f"{a['gwc']}/{n}",))  # the server: same subnet as the client
    mon0, port_m = net.link(mon, mon)
    for port in (port_c, port_s, port_m):
        net.hub_port(mon, hub, port)
    with inside(mon):
        cap = capture_socket(mon0)
        inj = LinkInjector(mon0)
    with cap, inj:
        server, client = connect(net, cli, srv, a["gwc"])
        w = Watcher(cap, PORT)
        w.wait_quiet()  # the mirror port saw the whole exchange
        for direction, p in rsts(w):
            half = w.client if direction == "to_server" else w.server
            inj.send(ethernet_frame(p, half.src_mac, half.dst_mac))
        assert outcome(server) == "RESET"
        assert outcome(client) == "RESET"
        assert (inj.sent, inj.errors) == (6, 0)


def test_injectors_refuse_nonsense(net: Lab) -> None:
    ns = net.ns("solo")
    with inside(ns):
        RawInjector(mark=7).close()  # SO_MARK accepted (we have CAP_NET_ADMIN)
        raw = RawInjector()
        link = LinkInjector("lo")
        with pytest.raises(InjectError, match="no interface named"):
            LinkInjector("nosuchdev0")
    with raw, link:
        for bad in (b"", b"\x50" + b"\0" * 39, b"\x45" + b"\0" * 10):
            with pytest.raises(ValueError):
                raw.send(bad)
        with pytest.raises(ValueError, match="link-local"):
            raw.send(b"\x60" + b"\0" * 23 + socket.inet_pton(socket.AF_INET6, "fe80::1"))
        # no route to the destination in an empty namespace: the kernel's error, counted
        (_, pkt), _ = reset_packets(client_ip="10.9.9.9", client_port=1, server_ip="10.8.8.8",
                                    server_port=2, client_next_seq=0, server_next_seq=0, burst=1)
        with pytest.raises(InjectError, match="unreachable"):
            raw.send(pkt)
        assert (raw.sent, raw.errors) == (0, 5)
        with pytest.raises(ValueError):
            link.send(b"\0" * 10)
        link.send(b"\0" * 60)  # anything frame-shaped goes: loopback takes it
        assert (link.sent, link.errors) == (1, 1)
    with pytest.raises(ValueError, match="closed"):
        raw.send(pkt)


def test_permission_errors_name_the_capability(net: Lab) -> None:
    """Without CAP_NET_RAW / CAP_NET_ADMIN (dropped with setpriv) the errors say what is missing."""
    if have("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    ns = net.ns("nocap")
    script = (
        "from agent.enforce.inject import RawInjector, LinkInjector\n"
        "from agent.enforce.nfqueue import NfQueue\n"
        "for make in (RawInjector, lambda: LinkInjector('lo'), lambda: NfQueue(3)):\n"
        "    try:\n"
        "        make()\n"
        "        print('OPENED')\n"
        "    except PermissionError as e:\n"
        "        print(e)\n")
    drop = "-net_raw,-net_admin"
    res = run("setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", sys.executable, "-c", script,
              ns=ns, cwd=REPO)
    lines = res.stdout.splitlines()
    assert len(lines) == 3 and "OPENED" not in res.stdout, res.stdout
    assert "CAP_NET_RAW" in lines[0] and "CAP_NET_RAW" in lines[1]
    assert "CAP_NET_ADMIN" in lines[2]
