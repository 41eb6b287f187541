"""A NAT gateway in network namespaces, for the conntrack tests.

What: ``nat_gateway(workdir)`` builds client ns -- gateway ns -- server ns (the
``Routed`` topology of tests/e2e/test_block_inline.py, reused by import) and turns the
gateway into a masquerading router: ip_forward on, nftables ``masquerade`` on its
server-side (outside) interface (TCP/UDP source ports mapped into ``PORT_LO``-``PORT_HI``,
so ports change too), IPv6 off. The server namespace runs ``ECHO``, a TCP and UDP echo
server that logs every peer it sees (``PEER tcp 10.x.y.1 40001``): what the remote side
saw is the translated address, an observation independent of conntrack.

``conntrack_table(ns)`` reads the gateway's table from ``/proc/net/nf_conntrack`` (the
``conntrack`` tool is not installed here; the proc file is the kernel's own text view),
again independent of the code under test.

Everything is skipped with a reason when not root, without ``ip netns`` or without nft
(the e2e harness's ``require``); namespaces and processes are removed in teardown.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_E2E = str(Path(__file__).resolve().parents[2] / "e2e")
if _E2E not in sys.path:
    sys.path.insert(0, _E2E)

from netns import TIMEOUT, Daemon, require, wait_for  # noqa: E402
from test_block_inline import Routed  # noqa: E402

__all__ = ["TIMEOUT", "Daemon", "wait_for", "NatNet", "nat_gateway", "conntrack_table", "CtLine",
           "ECHO_PORT", "PORT_LO", "PORT_HI"]

ECHO_PORT = 7007
PORT_LO, PORT_HI = 40000, 40999  # masquerade maps TCP/UDP source ports into this range (translated too)

ECHO = r"""
import selectors, socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
sel = selectors.DefaultSelector()
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((addr, port)); t.listen(512)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((addr, port))
sel.register(t, selectors.EVENT_READ, "accept"); sel.register(u, selectors.EVENT_READ, "udp")
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        if key.data == "accept":
            c, peer = t.accept()
            print("PEER tcp", peer[0], peer[1], flush=True)
            sel.register(c, selectors.EVENT_READ, "conn")
        elif key.data == "udp":
            data, peer = u.recvfrom(2048)
            print("PEER udp", peer[0], peer[1], flush=True)
            u.sendto(data, peer)
        else:
            c = key.fileobj
            data = c.recv(2048)
            if data:
                c.sendall(data)
            else:
                sel.unregister(c); c.close()
"""


@dataclass
class NatNet:
    """The three namespaces; ``outside`` is the gateway's public (server-side) address."""

    routed: Routed
    echo: Daemon

    @property
    def gw(self) -> str:
        return self.routed.gw_c.ns

    @property
    def client_ip(self) -> str:
        return self.routed.client.addr

    @property
    def server_ip(self) -> str:
        return self.routed.server.addr

    @property
    def outside_ip(self) -> str:
        return self.routed.gw_s.addr

    def client(self, script: str, *args: str) -> str:
        """Run a Python script in the client namespace; its stdout (must exit 0)."""
        return self.routed.run(self.routed.client, sys.executable, "-c", script, *args)

    def gw_run(self, *args: str) -> str:
        return self.routed.run(self.routed.gw_c, *args)

    def peers(self) -> list[tuple[str, str, int]]:
        """(proto, ip, port) of every peer the echo server saw, in order."""
        return [(m[1], m[2], int(m[3])) for m in re.finditer(r"PEER (\w+) (\S+) (\d+)", self.echo.output())]


@contextlib.contextmanager
def nat_gateway(workdir: Path, sysctls: tuple[str, ...] = ()) -> Iterator[NatNet]:
    require("nft")
    workdir.mkdir(parents=True, exist_ok=True)
    net = Routed(workdir)
    try:
        net.up()
        gw = net.gw_c.ns
        out = net.gw_s.ifname
        rules = ("table ip eanat {\n chain post {\n  type nat hook postrouting priority 100; policy accept;\n"
                 f'  oifname "{out}" meta l4proto {{ tcp, udp }} masquerade to :{PORT_LO}-{PORT_HI}\n'
                 f'  oifname "{out}" masquerade\n }}\n}}\n')
        res = subprocess.run(["ip", "netns", "exec", gw, "nft", "-f", "-"], input=rules, text=True,
                             capture_output=True, check=False)
        assert res.returncode == 0, f"nft masquerade rule: {res.stderr}"
        for s in sysctls:
            net.run(net.gw_c, "sysctl", "-qw", s)
        echo = net.start(net.server, "echo", [sys.executable, "-u", "-c", ECHO, net.server.addr,
                                              str(ECHO_PORT)])
        echo.wait_log("ready")
        yield NatNet(net, echo)
    finally:
        net.down()


@dataclass(frozen=True)
class CtLine:
    """One line of /proc/net/nf_conntrack: both tuples (ports None for ICMP)."""

    proto: str
    orig: tuple[str, str, int | None, int | None]  # src, dst, sport, dport
    reply: tuple[str, str, int | None, int | None]


def conntrack_table(ns: str) -> list[CtLine]:
    """The kernel's connection table of namespace ``ns``, as /proc/net/nf_conntrack shows it."""
    text = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/nf_conntrack"], capture_output=True,
                          text=True, check=True).stdout
    out: list[CtLine] = []
    for line in text.splitlines():
        f = line.split()
        proto = f[2]
        kv = [x.split("=", 1) for x in f if "=" in x]
        srcs = [v for k, v in kv if k == "src"]
        dsts = [v for k, v in kv if k == "dst"]
        if proto == "icmp":
            ids = [int(v) for k, v in kv if k == "id"]
            out.append(CtLine(proto, (srcs[0], dsts[0], ids[0], None), (srcs[1], dsts[1], ids[1], None)))
            continue
        sps = [int(v) for k, v in kv if k == "sport"]
        dps = [int(v) for k, v in kv if k == "dport"]
        if len(sps) < 2:
            continue
        out.append(CtLine(proto, (srcs[0], dsts[0], sps[0], dps[0]), (srcs[1], dsts[1], sps[1], dps[1])))
    return out
