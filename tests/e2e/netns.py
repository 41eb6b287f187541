"""Real peers in network namespaces: the harness of the end-to-end tests.

What: ``veth_pair(workdir)`` is a context manager that makes two network
namespaces joined by a veth pair (``server`` and ``client`` sides, each with an
address in a private /24 and ``lo`` up). On it a test starts a real daemon in the
foreground (``net.start``), captures the veth with tcpdump (``net.capture``), drives
the daemon with its real client (``net.run``), replays the capture through
``edgeaudit-agent replay`` (``replay``) and asserts on the records.

Why this shape (DESIGN.md, "Standards for the code" 9: real things, no sleeps):
* Names carry the pid and a counter, so pytest-xdist workers and concurrent runs
  never collide; the /24 is chosen from the worker number and the pid (addresses
  are per-namespace anyway, the choice only keeps captures easy to tell apart).
* Daemons run in the foreground under ``ip netns exec`` (which execs, so the pid we
  hold is the daemon's) in a session of their own; teardown signals that process
  group by id, then any process still inside our namespaces by pid
  (``ip netns pids``). Nothing is ever killed by name: the host may run its own
  instances of the same daemons.
* Readiness is observed, never slept for: a daemon is ready when its listening
  socket shows in ``/proc/PID/net/{tcp,udp}[6]`` (the daemon's own namespace, read
  without sending a packet onto the captured link); tcpdump is ready when it says
  "listening on"; the capture is complete when a marker datagram sent after the
  traffic is in the file (tcpdump ``-U`` writes packets in order, one by one), and
  only then is tcpdump stopped with SIGINT.
* Everything is skipped with a reason when not root, when ``ip netns`` does not
  work, or when a binary is missing.

API: ``require(*binaries)`` (skips; returns name -> path); ``veth_pair(dir)`` -> ``Net``
with ``server``/``client`` ``Side`` (ns, ifname, addr, mac); ``Net.start(side, name, argv)``
-> ``Daemon`` (``pid``, ``wait_listening(proto, port)``, ``wait_log(text)``, ``diag()``,
``stop()``); ``Net.capture(side=server)`` -> ``Capture`` (``pcap``); ``Net.run`` /
``Net.python`` (client commands, must exit 0); ``Net.add_address``; ``wait_for(cond, what)``;
``replay(pcap)`` -> ``Replay`` (``records``, ``text``, ``of(type, **fields)``,
``assert_secret_absent``); ``assert_captured`` / ``pcap_payloads`` (what the capture holds,
to tell a missing packet from a wrong record).

Every capture ends with the marker: one UDP datagram client -> server port 9 and the ICMP
port-unreachable answer (two `session` records). IPv6 is off in both namespaces, so no
neighbour discovery traffic.

Limits: IPv4 only; every wait has a timeout (``TIMEOUT``) and fails the test with
the daemon's log when it expires.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dpkt
import pytest

from wire.validate import validate_record

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 10.0  # seconds any single wait may take before the test fails
POLL = 0.02  # seconds between two looks at a condition being waited for
MARKER_PORT = 9  # discard: the capture-complete marker datagram goes here

_counter = itertools.count()


# -- skips ------------------------------------------------------------------------------------------


def require(*binaries: str) -> dict[str, str]:
    """Skip unless root, ``ip netns`` works and every binary is on PATH; return name -> path."""
    if not sys.platform.startswith("linux"):
        pytest.skip("network namespaces need Linux")
    if os.geteuid() != 0:
        pytest.skip("end-to-end peer tests need root (network namespaces)")
    paths: dict[str, str] = {}
    for b in ("ip", "tcpdump", *binaries):
        p = shutil.which(b, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
        if p is None:
            pytest.skip(f"{b} is not installed")
        paths[b] = p
    probe = f"eaprobe-{os.getpid()}-{next(_counter)}"
    res = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"ip netns unavailable: {res.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return paths


# -- waiting ----------------------------------------------------------------------------------------


def wait_for(cond: Callable[[], bool], what: str, timeout: float = TIMEOUT,
             diag: Callable[[], str] | None = None) -> None:
    """Poll ``cond`` until true; fail the test naming ``what`` (and ``diag()``) on timeout."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            extra = f"\n{diag()}" if diag is not None else ""
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}{extra}")
        time.sleep(POLL)


def listening_ports(pid: int, proto: str) -> set[int]:
    """Ports with a listening TCP socket (``proto='tcp'``) or a bound UDP socket in ``pid``'s namespace."""
    ports: set[int] = set()
    for fam in ("", "6"):
        try:
            lines = Path(f"/proc/{pid}/net/{proto}{fam}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            port = int(parts[1].rsplit(":", 1)[1], 16)
            if proto == "udp" or parts[3] == "0A":  # 0A = TCP_LISTEN
                ports.add(port)
    return ports


# -- the namespaces ----------------------------------------------------------------------------------


@dataclass
class Side:
    """One end of the veth pair: its namespace, interface, address and MAC."""

    ns: str
    ifname: str
    addr: str
    mac: str

    def argv(self, *args: str) -> list[str]:
        """``args`` run inside this namespace."""
        return ["ip", "netns", "exec", self.ns, *args]


@dataclass
class Daemon:
    """A foreground server process started in a namespace; its output goes to ``log``."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def diag(self) -> str:
        state = "running" if self.proc.poll() is None else f"exited with {self.proc.returncode}"
        return f"{self.name} (pid {self.pid}, {state}) log tail:\n{self.output()[-3000:]}"

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            pytest.fail(f"{self.name} exited early with {self.proc.returncode}:\n{self.output()[-3000:]}")

    def wait_listening(self, proto: str, port: int, timeout: float = TIMEOUT) -> None:
        """Wait until the daemon's namespace has a TCP listener / bound UDP socket on ``port``."""

        def ready() -> bool:
            self.check_alive()
            return port in listening_ports(self.pid, proto)

        wait_for(ready, f"{self.name} to listen on {proto}/{port}", timeout, self.diag)

    def wait_log(self, text: str, timeout: float = TIMEOUT) -> None:
        """Wait until ``text`` appears in the daemon's output."""

        def seen() -> bool:
            self.check_alive()
            return text in self.output()

        wait_for(seen, f"{self.name} to log {text!r}", timeout, self.diag)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the daemon's own process group (by id), then SIGKILL it if it lingers.

        Signalled only while the leader is unreaped (its id cannot have been reused);
        children that outlive it are ended by ``Net.close`` (``ip netns pids``).
        """
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(timeout)


@dataclass
class Capture:
    """tcpdump writing ``pcap`` from one interface; ``stop`` makes sure the file is complete."""

    pcap: Path
    proc: subprocess.Popen[bytes]
    stderr: Path
    marker: bytes = field(default_factory=lambda: b"edgeaudit-e2e-marker-" + uuid.uuid4().hex.encode())
    stopped: bool = False

    def has_marker(self) -> bool:
        try:
            return self.marker in self.pcap.read_bytes()
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Net:
    """Two namespaces joined by a veth pair, and the processes started in them."""

    workdir: Path
    server: Side
    client: Side
    daemons: list[Daemon] = field(default_factory=list)
    captures: list[Capture] = field(default_factory=list)

    # running things ----------------------------------------------------------------------------

    def run(self, side: Side, args: Sequence[str], timeout: float = TIMEOUT, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a client command to completion inside ``side``'s namespace."""
        try:
            res = subprocess.run(side.argv(*args), capture_output=True, text=True, timeout=timeout,
                                 input=input)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"{' '.join(args)} timed out after {timeout} s: {e.stdout!r} {e.stderr!r}")
        if check and res.returncode != 0:
            pytest.fail(f"{' '.join(args)} exited {res.returncode}:\nstdout:\n{res.stdout}\n"
                        f"stderr:\n{res.stderr}\n" + "\n".join(d.diag() for d in self.daemons))
        return res

    def python(self, side: Side, script: str, *args: str, timeout: float = TIMEOUT
               ) -> subprocess.CompletedProcess[str]:
        """Run a Python script (``sys.argv[1:] = args``) inside ``side``'s namespace; must exit 0."""
        return self.run(side, [sys.executable, "-c", script, *args], timeout=timeout)

    def start(self, side: Side, name: str, args: Sequence[str], env: dict[str, str] | None = None
              ) -> Daemon:
        """Start a foreground daemon in ``side``'s namespace, in a new session; stopped at teardown."""
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(side.argv(*args), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    cwd=self.workdir, env=env)
        d = Daemon(name, proc, log)
        self.daemons.append(d)
        return d

    @contextlib.contextmanager
    def capture(self, side: Side | None = None, name: str = "capture") -> Iterator[Capture]:
        """Capture ``side``'s veth (default: the server's) for the duration of the block.

        On normal exit a marker datagram is sent client -> server and tcpdump is stopped
        only once the marker is in the file, so every packet of the block is there too.
        """
        side = side or self.server
        pcap = self.workdir / f"{name}.pcap"
        errf = self.workdir / f"{name}.tcpdump.err"
        with errf.open("wb") as err:
            # -Z root: Debian's tcpdump otherwise drops to user tcpdump, which cannot write tmp dirs
            proc = subprocess.Popen(side.argv("tcpdump", "-i", side.ifname, "-n", "-s", "0", "-U",
                                              "-Z", "root", "-w", str(pcap)),
                                    stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        cap = Capture(pcap, proc, errf)
        self.captures.append(cap)

        def listening() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"tcpdump exited {proc.returncode}: {errf.read_text(errors='replace')}")
            return b"listening on" in errf.read_bytes()

        wait_for(listening, "tcpdump to start listening")
        yield cap
        self.send_marker(cap.marker)
        wait_for(cap.has_marker, "the end-of-traffic marker to reach the capture",
                 diag=lambda: errf.read_text(errors="replace"))
        cap.kill()
        cap.stopped = True

    def send_marker(self, marker: bytes) -> None:
        script = ("import socket,sys\n"
                  "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                  "s.sendto(sys.argv[1].encode(),(sys.argv[2],int(sys.argv[3])))\n")
        self.python(self.client, script, marker.decode(), self.server.addr, str(MARKER_PORT))

    def add_address(self, side: Side, host: int) -> str:
        """Give ``side``'s veth one more address, ``host`` in the pair's /24; return it."""
        addr = f"{side.addr.rsplit('.', 1)[0]}.{host}"
        _ip("-n", side.ns, "addr", "add", f"{addr}/24", "dev", side.ifname)
        return addr

    # teardown ------------------------------------------------------------------------------------

    def close(self) -> None:
        for cap in self.captures:
            cap.kill()
        for d in reversed(self.daemons):
            d.stop()
        for side in (self.server, self.client):
            # anything still inside our own namespaces was started by this test: end it by pid
            res = subprocess.run(["ip", "netns", "pids", side.ns], capture_output=True, text=True)
            for pid in res.stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        for side in (self.server, self.client):
            subprocess.run(["ip", "netns", "del", side.ns], capture_output=True)


def _subnet() -> str:
    """A private /24 (its first three octets) unique to this xdist worker and process."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    w = int(worker) if worker.isdigit() else 0
    return f"10.{200 + w % 50}.{os.getpid() % 250}"


def _ip(*args: str) -> None:
    res = subprocess.run(["ip", *args], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail(f"ip {' '.join(args)}: {res.stderr.strip()}")


@contextlib.contextmanager
def veth_pair(workdir: Path) -> Iterator[Net]:
    """Two fresh namespaces (server .1, client .2 of a private /24) joined by a veth pair."""
    require()
    n = next(_counter)
    tag = f"{os.getpid()}-{n}"
    short = f"{os.getpid() % 10_000_000}-{n % 100}"  # interface names: 15 characters at most
    net_prefix = _subnet()
    server = Side(f"ea-{tag}-srv", f"eas{short}", f"{net_prefix}.1", "02:ea:00:00:00:01")
    client = Side(f"ea-{tag}-cli", f"eac{short}", f"{net_prefix}.2", "02:ea:00:00:00:02")
    net = Net(workdir, server, client)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        for s in (server, client):
            _ip("netns", "add", s.ns)
            # IPv4 only: no IPv6 neighbour discovery or MLD noise in the captures
            _ip("netns", "exec", s.ns, "sh", "-c", "cd /proc/sys/net/ipv6/conf 2>/dev/null || exit 0;"
                " echo 1 > default/disable_ipv6 && echo 1 > all/disable_ipv6")
        _ip("link", "add", server.ifname, "netns", server.ns, "address", server.mac, "type", "veth",
            "peer", "name", client.ifname, "netns", client.ns, "address", client.mac)
        for s in (server, client):
            _ip("-n", s.ns, "link", "set", "lo", "up")
            _ip("-n", s.ns, "addr", "add", f"{s.addr}/24", "dev", s.ifname)
            _ip("-n", s.ns, "link", "set", s.ifname, "up")
        yield net
    finally:
        net.close()


def nginx_conf(tmp: Path, http: str) -> str:
    """An nginx main configuration for a test: in the foreground, as root, every path under
    ``tmp``; ``http`` is the body of its ``http {}`` block (servers, log formats...)."""
    return f"""
user root;
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 64; }}
http {{
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{http}
}}
"""


# -- the agent ---------------------------------------------------------------------------------------


def agent_exe() -> list[str]:
    """The agent's console script next to the interpreter, else ``python -m agent.cli``."""
    exe = shutil.which("edgeaudit-agent", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "agent.cli"]


@dataclass
class Replay:
    """The records of one ``edgeaudit-agent replay`` run, and its raw JSON-lines text."""

    records: list[dict[str, Any]]
    text: str

    def of(self, rtype: str, **match: Any) -> list[dict[str, Any]]:
        """Records of ``rtype`` whose fields equal every ``match`` item."""
        return [r for r in self.records if r.get("type") == rtype
                and all(r.get(k) == v for k, v in match.items())]

    def assert_secret_absent(self, *secrets: str) -> None:
        for s in secrets:
            assert s not in self.text, f"secret {s!r} appears in the agent's records"


def replay(pcap: Path, out: Path | None = None) -> Replay:
    """Run ``edgeaudit-agent replay PCAP --jsonl OUT``; every line must be a valid record."""
    out = out or pcap.with_suffix(".jsonl")
    res = subprocess.run([*agent_exe(), "replay", str(pcap), "--jsonl", str(out)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"replay exited {res.returncode}: {res.stderr}"
    text = out.read_text(encoding="utf-8")
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    for r in records:
        validate_record(r)
    return Replay(records, text)


# -- looking into a capture (to tell a missing packet from a wrong record) ---------------------------


def pcap_payloads(pcap: Path, proto: str, port: int) -> list[bytes]:
    """Transport payloads (non-empty) of IPv4 ``proto`` ('tcp'/'udp') packets to or from ``port``."""
    out: list[bytes] = []
    with pcap.open("rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if not isinstance(ip, dpkt.ip.IP):
                continue
            l4 = ip.data
            want = dpkt.tcp.TCP if proto == "tcp" else dpkt.udp.UDP
            if isinstance(l4, want) and port in (l4.sport, l4.dport) and len(l4.data):
                out.append(bytes(l4.data))
    return out


def assert_captured(pcap: Path, proto: str, port: int, *needles: bytes) -> None:
    """The capture holds traffic on ``port`` and every needle occurs in its payloads."""
    payloads = pcap_payloads(pcap, proto, port)
    assert payloads, f"no {proto}/{port} payload in {pcap}"
    blob = b"\0".join(payloads)
    for n in needles:
        assert n in blob, f"{n!r} not in the captured {proto}/{port} traffic"

