"""Namespaces, TCP endpoints and a packet watcher for the enforcement tests.

What: ``lab(workdir)`` is a context manager giving a `Lab`: network namespaces the
test makes (``Lab.ns``), veth links between them (``Lab.link``), a hub (``Lab.hub``:
a bridge that learns nothing, so every port sees every frame, as a mirror port does),
processes started inside them (``Lab.start``, the e2e harness's `Daemon`) and,
on exit, every process ended by pid and every namespace deleted, even when the test
failed. ``inside(ns)`` runs a block with THIS thread in namespace ``ns``, so the test
can open sockets there (an AF_PACKET capture, the injectors, an NfQueue) and use them
directly after it returns: a socket stays in the namespace it was made in.
``Watcher`` reads an AF_PACKET socket and follows one TCP connection the way the
agent does, from captured packets: each side's next sequence number, its last ack,
its advertised window (scaled), the MAC addresses its frames carried.

The e2e harness (tests/e2e/netns.py) is reused, not copied: `require` (skips),
`wait_for`, `Daemon` (readiness from logs and /proc, stop by process group id) and
`veth_pair` (the two-namespace pair, used as is by the NFQUEUE tests).

Limits: every wait has a timeout (netns.TIMEOUT) and fails the test naming what it
waited for; namespace names carry the pid and a counter, so parallel workers never
collide (addresses are per namespace, so fixed ones are fine).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dpkt
import pytest

_E2E = str(Path(__file__).resolve().parents[2] / "e2e")
if _E2E not in sys.path:
    sys.path.insert(0, _E2E)

from netns import TIMEOUT, Daemon, Net, require, veth_pair, wait_for  # noqa: E402

# the harness's pieces the tests use, re-exported so that they import from one place
__all__ = ["TIMEOUT", "Daemon", "Net", "veth_pair", "wait_for"]

REPO = Path(__file__).resolve().parents[3]
CLONE_NEWNET = 0x40000000  # sched.h: setns() into a network namespace
ETH_P_ALL = 0x0003
_libc = ctypes.CDLL(None, use_errno=True)
_counter = itertools.count()


def need(*binaries: str) -> dict[str, str]:
    """Skip unless root, ``ip netns`` works and the binaries exist (the e2e harness's checks)."""
    paths: dict[str, str] = require(*binaries)
    return paths


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def inside(ns: str) -> Iterator[None]:
    """The block runs with this thread in network namespace ``ns``; back home afterwards."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def run(*argv: str, ns: str | None = None, check: bool = True, cwd: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    """A command (inside ``ns`` when given) to completion; fails the test when ``check`` and it fails."""
    full = ["ip", "netns", "exec", ns, *argv] if ns else list(argv)
    res = subprocess.run(full, capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd)
    if check and res.returncode != 0:
        pytest.fail(f"{' '.join(full)} exited {res.returncode}: {res.stderr.strip()}")
    return res


@dataclass
class Lab:
    """The namespaces and processes of one test."""

    workdir: Path
    tag: str
    namespaces: list[str] = field(default_factory=list)
    daemons: list[Daemon] = field(default_factory=list)
    _ifn: Iterator[int] = field(default_factory=itertools.count)

    def ns(self, role: str, *, ipv6: bool = True, forward: bool = False) -> str:
        """A new namespace with ``lo`` up (IPv6 on unless ``ipv6=False``; routing when ``forward``)."""
        name = f"eaenf-{self.tag}-{role}"
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")
        if not ipv6:
            run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", ns=name)
        else:
            # no duplicate address detection: link-local addresses (the source of neighbour
            # solicitations) are usable at once instead of after a second or more
            for conf in ("all", "default"):
                run("sysctl", "-qw", f"net.ipv6.conf.{conf}.accept_dad=0", ns=name)
        if forward:
            run("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=name)
            if ipv6:
                run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=name)
        return name

    def ifname(self, role: str) -> str:
        """A unique interface name (15 characters at most)."""
        return f"e{os.getpid() % 100000}{next(self._ifn)}{role}"[:15]

    def link(self, ns_a: str, ns_b: str, addrs_a: tuple[str, ...] = (), addrs_b: tuple[str, ...] = ()
             ) -> tuple[str, str]:
        """A veth pair between two namespaces, up, with the given addresses (prefix included)."""
        a, b = self.ifname("a"), self.ifname("b")
        run("ip", "link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns", ns_b)
        for ns, dev, addrs in ((ns_a, a, addrs_a), (ns_b, b, addrs_b)):
            for addr in addrs:
                extra = ["nodad"] if ":" in addr else []  # no duplicate-address wait
                run("ip", "-n", ns, "addr", "add", addr, "dev", dev, *extra)
            run("ip", "-n", ns, "link", "set", dev, "up")
        for ns, dev in ((ns_a, a), (ns_b, b)):
            self.wait_up(ns, dev)
        return a, b

    def wait_up(self, ns: str, dev: str) -> None:
        """Wait for the kernel to call ``dev`` operational: until its link watcher has run
        (rate-limited, up to a second after carrier comes up) the device's queue discards
        what is sent, and the first neighbour solicitation would be lost."""
        wait_for(lambda: "state UP" in run("ip", "-n", ns, "-o", "link", "show", "dev", dev).stdout,
                 f"{dev} in {ns} to be up")

    def hub(self, ns: str) -> str:
        """A bridge in ``ns`` that learns no address: it floods every frame to every port.

        `ageing_time 0` keeps no learned entry at all: a port's learning is switched off only
        after it joined the bridge, and a frame seen in between (an ARP request) would
        otherwise teach the bridge where a MAC is, and stop flooding frames for it."""
        br = self.ifname("h")
        run("ip", "-n", ns, "link", "add", br, "type", "bridge", "mcast_snooping", "0", "ageing_time", "0")
        run("ip", "-n", ns, "link", "set", br, "up")
        return br

    def hub_port(self, ns: str, br: str, dev: str) -> None:
        run("ip", "-n", ns, "link", "set", dev, "master", br)
        run("ip", "-n", ns, "link", "set", dev, "type", "bridge_slave", "learning", "off")

    def start(self, ns: str, name: str, script: str, *args: str) -> Daemon:
        """A Python script in ``ns`` (own session, output to a log); ended at teardown."""
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", script, *args],
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=self.workdir)
        d = Daemon(name, proc, log)
        self.daemons.append(d)
        return d

    def close(self) -> None:
        for d in reversed(self.daemons):
            d.stop()
        for ns in self.namespaces:
            # anything still inside our own namespaces was started by this test: end it by pid
            res = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            for pid in res.stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@contextlib.contextmanager
def lab(workdir: Path) -> Iterator[Lab]:
    need()
    workdir.mkdir(parents=True, exist_ok=True)
    la = Lab(workdir, f"{os.getpid()}-{next(_counter)}")
    try:
        yield la
    finally:
        la.close()


def have(binary: str) -> str | None:
    return shutil.which(binary, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


# -- TCP endpoints ------------------------------------------------------------------------------------

# Both ends exchange one message each way, say so, then block in recv() and report how it
# ended: RESET (ConnectionResetError), EOF, DATA or TIMEOUT.
_REPORT = """
def report(c):
    try:
        d = c.recv(100)
        print("DATA" if d else "EOF", flush=True)
    except ConnectionResetError:
        print("RESET", flush=True)
    except socket.timeout:
        print("TIMEOUT", flush=True)
"""

SERVER = """
import socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port))
s.listen(1)
c, _ = s.accept()
c.settimeout(float(sys.argv[3]))
assert c.recv(100) == b"hello"
c.sendall(b"world")
print("accepted", flush=True)
""" + _REPORT + "report(c)\n"

CLIENT = """
import socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
c = socket.create_connection((addr, port), timeout=float(sys.argv[3]))
c.sendall(b"hello")
assert c.recv(100) == b"world"
print("established", flush=True)
""" + _REPORT + "report(c)\n"


def outcome(d: Daemon) -> str:
    """The last word an endpoint printed once its recv() ended (waits for it)."""
    words = ("RESET", "EOF", "DATA", "TIMEOUT")
    wait_for(lambda: any(w in d.output() for w in words) or d.proc.poll() is not None,
             f"{d.name} to report how its connection ended", diag=d.diag)
    return next((w for w in words if w in d.output()), f"exited: {d.diag()}")


# -- following a connection from captured frames --------------------------------------------------------


def capture_socket(ifname: str) -> socket.socket:
    """An AF_PACKET socket seeing every frame in and out of ``ifname`` (open it ``inside`` the ns)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((ifname, ETH_P_ALL))
    return s


@dataclass
class HalfState:
    """What one side of the connection sent, as far as the capture shows."""

    next_seq: int | None = None  # its next byte's sequence number (the peer's RCV.NXT)
    ack: int | None = None
    window: int = 0  # last advertised window, scaled (RFC 7323 §2.3)
    raw_window: int = 0
    wscale: int | None = None  # the shift its SYN offered, None without the option
    data: bytes = b""
    src_mac: bytes = b""
    dst_mac: bytes = b""


@dataclass
class Watcher:
    """Follows one TCP connection (client -> server:port) through an AF_PACKET socket."""

    sock: socket.socket
    server_port: int
    client: HalfState = field(default_factory=HalfState)
    server: HalfState = field(default_factory=HalfState)
    client_addr: tuple[str, int] | None = None
    server_addr: str = ""
    seen: list[tuple[str, dpkt.tcp.TCP]] = field(default_factory=list)  # (sender, segment) in order

    def poll(self, timeout: float) -> None:
        """Read the frames that arrive within ``timeout`` seconds (at least the waiting ones)."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                return
            self._frame(self.sock.recv(65535))

    def _frame(self, buf: bytes) -> None:
        eth = dpkt.ethernet.Ethernet(buf)
        ip = eth.data
        if not isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) or not isinstance(ip.data, dpkt.tcp.TCP):
            return
        tcp = ip.data
        if self.server_port not in (tcp.sport, tcp.dport):
            return
        fam = socket.AF_INET6 if isinstance(ip, dpkt.ip6.IP6) else socket.AF_INET
        src, dst = socket.inet_ntop(fam, ip.src), socket.inet_ntop(fam, ip.dst)
        if tcp.dport == self.server_port:
            half, sender = self.client, "client"
            self.client_addr, self.server_addr = (src, tcp.sport), dst
        else:
            half, sender = self.server, "server"
        self.seen.append((sender, tcp))
        if tcp.flags & dpkt.tcp.TH_RST:
            return  # ours, or the endpoints' own: not part of the state we follow
        if tcp.flags & dpkt.tcp.TH_SYN:
            for kind, val in dpkt.tcp.parse_opts(tcp.opts):
                if kind == dpkt.tcp.TCP_OPT_WSCALE:
                    half.wscale = val[0]
        syn_fin = (1 if tcp.flags & dpkt.tcp.TH_SYN else 0) + (1 if tcp.flags & dpkt.tcp.TH_FIN else 0)
        end = (tcp.seq + len(tcp.data) + syn_fin) % (1 << 32)
        if half.next_seq is None or 0 < (end - half.next_seq) % (1 << 32) < (1 << 31):
            half.next_seq = end
        if tcp.flags & dpkt.tcp.TH_ACK:
            half.ack = tcp.ack
        # scaling applies only when both SYNs offered it, never to a SYN's own window (RFC 7323 §2.2)
        scaled = self.client.wscale is not None and self.server.wscale is not None
        shift = half.wscale if scaled and half.wscale is not None and not tcp.flags & dpkt.tcp.TH_SYN else 0
        half.raw_window, half.window = tcp.win, tcp.win << shift
        half.data += bytes(tcp.data)
        half.src_mac, half.dst_mac = eth.src, eth.dst

    def quiet(self) -> bool:
        """Both sides sent their message and each acknowledged everything the other sent."""
        c, s = self.client, self.server
        return (c.data == b"hello" and s.data == b"world" and c.next_seq is not None
                and c.ack == s.next_seq and s.ack == c.next_seq)

    def wait_quiet(self) -> None:
        def check() -> bool:
            self.poll(0.05)
            return self.quiet()

        wait_for(check, "the capture to show the exchange acknowledged both ways",
                 diag=lambda: f"client {self.client}\nserver {self.server}")
