"""The lab behind ``make demo``: a unit's network in namespaces, audited by the real agent.

What: ``start(cfg)`` builds, on this host (Linux, root)::

    alice ns ─┐  192.168.50.1              ┌─ host (root ns): edgeaudit-collector (SQLite)
              ├─ br0 ─┐                    │   on HOSTNET.1, the gateway is HOSTNET.2
    bob ns ───┘       ├── gateway ns ──────┤
    carol ns ─── br1 ─┘      │             └──────────────────────────────
    (guest network)          │ 203.0.113.10 (nftables masquerade, ports 20000-29999)
                 192.168.60.1│
                           internet ns: 203.0.113.1, servers on 198.51.100.0/24
                           nginx .80, dnsmasq DNS .53, dovecot IMAP/POP3 + SMTP (this module) .25

- the gateway runs ``edgeaudit-agent run`` (gateway mode, capture on both bridges, conntrack
  NAT, the example ruleset, a roster, the unit profile, and the captive portal on the guest
  network ``br1``; its ``agent.toml`` is generated in ``DEMO_DIR/agent`` with the portal's
  self-signed certificate and a desk user), dnsmasq as each network's DHCP server (the guest
  network's hands out the portal's RFC 8908 API URI as option 114, RFC 8910, as
  ``edgeaudit-agent portal dhcp-option`` prints it), FreeRADIUS for accounting, and a stand-in
  for the unit's SMS provider (``smsd``: each request the portal sends it is a line of
  ``DEMO_DIR/gateway/sms.jsonl``, where the lab reads the code a phone would get);
- the collector runs in the host's own namespace on the host end of a veth to the gateway,
  so ``http://HOSTNET.1:PORT`` is reachable from the host;
- the clients log in (alice: a RADIUS Access-Request and accounting Start from radclient,
  with User-Name, Framed-IP-Address and Calling-Station-Id; bob: a DHCP lease from udhcpc,
  named by the roster's MAC), browse with curl (names resolved by the internet's dnsmasq),
  send mail (SMTP) and read it (POP3, IMAP), and bob posts a keyword of the example ruleset's
  ``gambling`` category (an alert);
- the guest, carol, takes a lease on the guest network (asking for option 114), is captive (the
  API says so), and registers in a headless Chromium run in her namespace
  (``guest_browser.py``): an ordinary ``http://`` page lands on the portal, a code by SMS, her
  name, the notice accepted, then the page itself from nginx; screenshots in
  ``DEMO_DIR/screenshots``;
- then a traceback is asked of the collector for alice's page view, from the public address,
  port and time nginx logged (what a website would report to the police), and printed with
  the collector URL and an operator login; likewise for carol's page view, which names her
  guest account (and her registration), and the operator's record search finds her
  ``registration`` and her ``login`` (source ``portal``). Everything is left running.

``stop(cfg)`` removes what ``start`` made: processes by the PIDs recorded in
``DEMO_DIR/lab-state.json`` (checked against their start time, so a reused PID is never
signalled), then whatever is still inside the lab's own namespaces, the namespaces (with their
veths and nftables tables), the host's veth and the per-namespace ``/etc/netns`` files.
It is idempotent, and ``start`` calls it first.

Names: every namespace and the host interface start with ``prefix`` (``eademo`` by default),
so the lab never touches the test suite's namespaces; ``EADEMO_PREFIX``, ``EADEMO_HOSTNET``
(the first three octets of the host link's /30, default ``10.254.254``) and ``EADEMO_PORT``
(the collector's port, default 8470) let a second lab (the test's) run beside it.

Standalone on purpose: it imports nothing from ``tests/`` (the e2e harness gave the ideas:
foreground daemons in a session of their own, readiness read from ``/proc/PID/net/*``).

CLI: ``python deploy/lab/lab.py start|stop [--dir DEMO_DIR]``; ``smtpd`` is the lab's own
SMTP server and ``smsd`` its SMS provider (used by ``start``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.server
import json
import os
import pwd
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
STATE = "lab-state.json"
RADDB = Path("/etc/freeradius/3.0")
ETC_NETNS = Path("/etc/netns")
WAIT_S = 20.0  # the longest any one readiness wait may take

LAN = "192.168.50"
GW_LAN = f"{LAN}.1"
OUTSIDE, ISP = "203.0.113.10", "203.0.113.1"
WEB, DNS, MAIL = "198.51.100.80", "198.51.100.53", "198.51.100.25"
DOMAIN = "example.test"
RADIUS_SECRET = "lab-radius-secret"
KEYWORD = "网上赌场"  # rulesets/examples/gambling.txt (category gambling: alert)
NAT_PORTS = "20000-29999"  # outside the clients' ephemeral range: ports visibly change
# the guest network (issue 19): its own bridge, the agent's captive portal on the gateway
GUEST_NET = "192.168.60"
GW_GUEST = f"{GUEST_NET}.1"
PORTAL_HOST = f"portal.{DOMAIN}"  # the certificate's name; the internet's DNS has it
PORTAL_HTTP, PORTAL_HTTPS = 8080, 8443
SMS_LISTEN = "127.0.0.1:9099"  # the SMS provider's stand-in, in the gateway namespace
DESK_USER, DESK_PASSWORD = "front1", "lab-desk-password"


@dataclass(frozen=True)
class Client:
    name: str
    mac: str
    ip: str | None  # None: from DHCP
    password: str
    calling_station: str = ""


CLIENTS = (
    Client("alice", "02:ea:de:00:00:11", f"{LAN}.11", "alice-mail-pw", "13800138011"),
    Client("bob", "02:ea:de:00:00:12", None, "bob-mail-pw"),
)


@dataclass(frozen=True)
class Guest:
    """A visitor on the guest network: DHCP, then the portal (SMS) in a headless browser."""

    name: str
    mac: str
    phone: str  # what she types on the portal
    person: str  # her name, as she types it
    user_agent: str  # what nginx logs of her page view


GUESTS = (Guest("carol", "02:ea:de:00:00:13", "13912345678", "卡罗尔 Carol", "carol-phone"),)


@dataclass
class LabConfig:
    dir: Path
    prefix: str = "eademo"
    hostnet: str = "10.254.254"
    port: int = 8470
    quiet: bool = False

    @property
    def gw(self) -> str:
        return f"{self.prefix}-gw"

    @property
    def inet(self) -> str:
        return f"{self.prefix}-inet"

    def client_ns(self, c: Client | Guest) -> str:
        return f"{self.prefix}-{c.name}"

    @property
    def namespaces(self) -> list[str]:
        return [self.gw, self.inet, *(self.client_ns(c) for c in (*CLIENTS, *GUESTS))]

    @property
    def host_if(self) -> str:
        return f"{self.prefix}-host"

    @property
    def host_ip(self) -> str:
        return f"{self.hostnet}.1"

    @property
    def url(self) -> str:
        return f"http://{self.host_ip}:{self.port}"

    @property
    def run_dir(self) -> Path:
        """For dovecot: its login processes (user dovenull) must traverse every parent directory."""
        return Path("/run") / f"{self.prefix}-lab"


@dataclass
class State:
    """What ``start`` made, written after every step so ``stop`` can undo a half-made lab."""

    path: Path
    procs: list[dict[str, Any]] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"procs": self.procs, "namespaces": self.namespaces, "links": self.links,
                                   "paths": self.paths}, indent=1))
        tmp.replace(self.path)

    @classmethod
    def load(cls, path: Path) -> State:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls(path)
        return cls(path, list(doc.get("procs", [])), list(doc.get("namespaces", [])),
                   list(doc.get("links", [])), list(doc.get("paths", [])))


class LabError(Exception):
    pass


# -- small helpers -----------------------------------------------------------------------------------


def _run(argv: list[str], *, input: str | None = None, check: bool = True, timeout: float = 30
         ) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise LabError(f"{' '.join(argv)} exited {res.returncode}:\n{res.stdout}{res.stderr}")
    return res


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _ns(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def _tool(name: str) -> str:
    p = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin")
    if p is None:
        raise LabError(f"{name} is not installed (make deps installs it)")
    return p


def _build() -> str:
    """What `edgeaudit-agent --version` says of the installed build (compiled by mypyc or not)."""
    res = subprocess.run([*_exe("edgeaudit-agent", "agent.cli"), "--version"], capture_output=True, text=True,
                         check=False)
    return res.stdout.strip() or res.stderr.strip()


def _exe(name: str, module: str) -> list[str]:
    """A console script of this project next to the interpreter, else ``python -m module``."""
    p = Path(sys.executable).parent / name
    return [str(p)] if p.exists() else [sys.executable, "-m", module]


def _starttime(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot): tells a reused PID from ours."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _listening(pid: int, proto: str, port: int) -> bool:
    """A listening TCP / bound UDP socket on ``port`` in ``pid``'s network namespace."""
    for fam in ("", "6"):
        try:
            lines = Path(f"/proc/{pid}/net/{proto}{fam}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if int(parts[1].rsplit(":", 1)[1], 16) == port and (proto == "udp" or parts[3] == "0A"):
                return True
    return False


def _wait(cond: Callable[[], bool], what: str, timeout: float = WAIT_S, diag: Callable[[], str] | None = None
          ) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:.0f} s waiting for {what}" +
                           (f"\n{diag()}" if diag else ""))
        time.sleep(0.05)


@dataclass
class Proc:
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
        return f"{self.name} (pid {self.pid}, {state}), {self.log}:\n{self.output()[-2000:]}"

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise LabError(f"{self.name} exited early:\n{self.diag()}")
        return True

    def wait_listening(self, proto: str, port: int) -> None:
        _wait(lambda: self.alive() and _listening(self.pid, proto, port), f"{self.name} on {proto}/{port}",
              diag=self.diag)

    def wait_log(self, text: str, timeout: float = WAIT_S) -> None:
        _wait(lambda: self.alive() and text in self.output(), f"{self.name} to log {text!r}", timeout,
              self.diag)


# -- the lab ----------------------------------------------------------------------------------------


class Lab:
    def __init__(self, cfg: LabConfig) -> None:
        self.cfg = cfg
        self.dir = cfg.dir.resolve()
        self.state = State(self.dir / STATE)
        self.logs = self.dir / "logs"

    def say(self, msg: str) -> None:
        if not self.cfg.quiet:
            print(f"lab: {msg}", file=sys.stderr, flush=True)

    def spawn(self, name: str, argv: list[str], ns: str | None = None, cwd: Path | None = None) -> Proc:
        """A foreground daemon in its own session (outlives ``make``), logging to logs/NAME.log."""
        log = self.logs / f"{name}.log"
        full = _ns(ns, *argv) if ns else argv
        with log.open("wb") as out:
            proc = subprocess.Popen(full, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=cwd or self.dir,
                                    env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.state.procs.append({"name": name, "pid": proc.pid, "start": _starttime(proc.pid), "ns": ns})
        self.state.save()
        return Proc(name, proc, log)

    def ip(self, *args: str) -> None:
        _run(["ip", *args])

    # -- network --

    def build_network(self) -> None:
        cfg, st = self.cfg, self.state
        for ns in cfg.namespaces:
            self.ip("netns", "add", ns)
            st.namespaces.append(ns)
            st.save()
            self.ip("-n", ns, "link", "set", "lo", "up")
            _run(_ns(ns, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; "
                                     "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"), check=False)
        gw, inet = cfg.gw, cfg.inet
        if not ETC_NETNS.exists():
            st.paths.append(str(ETC_NETNS))  # made here: stop removes it again when empty
            st.save()
        # the LAN and the guest network (the portal's: only guests' traffic meets it): a bridge
        # each on the gateway, one veth per client
        nets: tuple[tuple[str, str, tuple[Client | Guest, ...]], ...] = (
            ("br0", GW_LAN, CLIENTS), ("br1", GW_GUEST, GUESTS))
        for bridge, addr, clients in nets:
            self.ip("-n", gw, "link", "add", bridge, "type", "bridge")
            self.ip("-n", gw, "addr", "add", f"{addr}/24", "dev", bridge)
            self.ip("-n", gw, "link", "set", bridge, "up")
            for i, c in enumerate(clients):
                port = f"{bridge}p{i}"
                self.ip("link", "add", "eth0", "netns", cfg.client_ns(c), "address", c.mac, "type", "veth",
                        "peer", "name", port, "netns", gw)
                self.ip("-n", gw, "link", "set", port, "master", bridge, "up")
                self.ip("-n", cfg.client_ns(c), "link", "set", "eth0", "up")
                fixed = c.ip if isinstance(c, Client) else None  # else from DHCP
                if fixed is not None:
                    self.ip("-n", cfg.client_ns(c), "addr", "add", f"{fixed}/24", "dev", "eth0")
                    self.ip("-n", cfg.client_ns(c), "route", "add", "default", "via", addr)
                # resolv.conf of the namespace (ip netns exec bind-mounts /etc/netns/NS/resolv.conf)
                etc = ETC_NETNS / cfg.client_ns(c)
                etc.mkdir(parents=True, exist_ok=True)
                st.paths.append(str(etc))
                st.save()
                (etc / "resolv.conf").write_text(f"nameserver {DNS}\n" if fixed is not None else "")
        # the outside: the ISP's router in the internet namespace, the servers' addresses behind it
        self.ip("link", "add", "wan0", "netns", gw, "type", "veth", "peer", "name", "isp0", "netns", inet)
        self.ip("-n", gw, "addr", "add", f"{OUTSIDE}/24", "dev", "wan0")
        self.ip("-n", inet, "addr", "add", f"{ISP}/24", "dev", "isp0")
        for a in (WEB, DNS, MAIL):
            self.ip("-n", inet, "addr", "add", f"{a}/32", "dev", "lo")
        self.ip("-n", gw, "link", "set", "wan0", "up")
        self.ip("-n", inet, "link", "set", "isp0", "up")
        self.ip("-n", gw, "route", "add", "default", "via", ISP)
        # the host link: the collector's side in the root namespace
        self.ip("link", "add", cfg.host_if, "type", "veth", "peer", "name", "mgmt0", "netns", gw)
        st.links.append(cfg.host_if)
        st.save()
        self.ip("addr", "add", f"{cfg.host_ip}/30", "dev", cfg.host_if)
        self.ip("link", "set", cfg.host_if, "up")
        self.ip("-n", gw, "addr", "add", f"{cfg.hostnet}.2/30", "dev", "mgmt0")
        self.ip("-n", gw, "link", "set", "mgmt0", "up")
        _run(_ns(gw, "sysctl", "-qw", "net.ipv4.ip_forward=1"))
        rules = (f"table ip {cfg.prefix.replace('-', '_')}_nat {{\n chain post {{\n"
                 "  type nat hook postrouting priority 100; policy accept;\n"
                 f'  oifname "wan0" meta l4proto {{ tcp, udp }} masquerade to :{NAT_PORTS}\n'
                 '  oifname "wan0" masquerade\n }\n}\n')
        _run(_ns(gw, _tool("nft"), "-f", "-"), input=rules)

    # -- the internet's servers --

    def start_internet(self) -> None:
        cfg, d = self.cfg, self.dir / "internet"
        inet = cfg.inet
        d.mkdir(parents=True)
        www = d / "www"
        www.mkdir()
        (www / "index.html").write_text("<html><body><h1>www.example.test</h1>"
                                        "<p>news of the day</p></body></html>\n")
        (d / "nginx.conf").write_text(_NGINX % {"d": d, "addr": WEB, "www": www})
        nginx = self.spawn("nginx", [_tool("nginx"), "-c", str(d / "nginx.conf"), "-p", str(d)], inet)
        dns = self.spawn("dnsmasq-dns", [
            _tool("dnsmasq"), "--no-daemon", "--conf-file=/dev/null", "--user=root", "--no-resolv",
            "--no-hosts", f"--listen-address={DNS}", "--bind-interfaces", "--log-queries", "--log-facility=-",
            f"--pid-file={d / 'dnsmasq.pid'}", f"--local=/{DOMAIN}/",
            f"--host-record=www.{DOMAIN},{WEB}", f"--host-record=mail.{DOMAIN},{MAIL}",
            f"--host-record=ns.{DOMAIN},{DNS}", f"--host-record={PORTAL_HOST},{GW_GUEST}",
            f"--mx-host={DOMAIN},mail.{DOMAIN},10"], inet)
        dove = self._dovecot(inet)
        smtp = self.spawn("smtpd", [sys.executable, str(Path(__file__).resolve()), "smtpd",
                                    "--listen", f"{MAIL}:25", "--maildir", str(cfg.run_dir / "mail"),
                                    "--owner", "dovecot"], inet)
        nginx.wait_listening("tcp", 80)
        dns.wait_listening("udp", 53)
        dove.wait_listening("tcp", 110)
        dove.wait_listening("tcp", 143)
        smtp.wait_listening("tcp", 25)
        self.nginx_log = d / "access.log"

    def _dovecot(self, ns: str) -> Proc:
        cfg = self.cfg
        d = cfg.run_dir
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        self.state.paths.append(str(d))
        self.state.save()
        d.chmod(0o755)
        try:
            pw = pwd.getpwnam("dovecot")
        except KeyError as e:
            raise LabError("no dovecot system user (is dovecot-core installed?)") from e
        for sub in ("run", "state", "mail", "home"):
            (d / sub).mkdir()
        for sub in ("mail", "home"):
            os.chown(d / sub, pw.pw_uid, pw.pw_gid)
        (d / "passwd").write_text("".join(f"{c.name}:{{PLAIN}}{c.password}::::::\n" for c in CLIENTS))
        conf = {"d": d, "addr": MAIL, "uid": pw.pw_uid, "gid": pw.pw_gid, "name": f"{cfg.prefix}-lab",
                "hostname": "mail.example.test"}
        (d / "dovecot.conf").write_text(DOVECOT_CONF % conf)
        return self.spawn("dovecot", [_tool("dovecot"), "-F", "-c", str(d / "dovecot.conf")], ns)

    # -- the gateway's services --

    def start_gateway_services(self) -> None:
        cfg, d = self.cfg, self.dir / "gateway"
        d.mkdir(parents=True)
        self.leases = d / "dnsmasq.leases"
        dhcp = self.spawn("dnsmasq-dhcp", [
            _tool("dnsmasq"), "--no-daemon", "--conf-file=/dev/null", "--port=0", "--user=root",
            "--interface=br0", "--bind-interfaces", "--no-ping", "--dhcp-authoritative",
            f"--dhcp-range={LAN}.100,{LAN}.150,255.255.255.0,3600", f"--dhcp-option=option:router,{GW_LAN}",
            f"--dhcp-option=option:dns-server,{DNS}", f"--dhcp-option=option:domain-name,{DOMAIN}",
            f"--dhcp-leasefile={self.leases}", f"--pid-file={d / 'dnsmasq.pid'}", "--log-dhcp",
            "--log-facility=-"], cfg.gw)
        raddb = self._raddb(d)
        rad = self.spawn("freeradius", [_tool("freeradius"), "-f", "-l", "stdout", "-d", str(raddb)], cfg.gw)
        # the unit's SMS provider, as the portal calls it ([portal.sms]); the lab reads the codes
        self.sms_log = d / "sms.jsonl"
        sms = self.spawn("smsd", [sys.executable, str(Path(__file__).resolve()), "smsd", "--listen",
                                  SMS_LISTEN, "--out", str(self.sms_log)], cfg.gw)
        dhcp.wait_listening("udp", 67)
        rad.wait_listening("udp", 1812)
        rad.wait_listening("udp", 1813)
        sms.wait_listening("tcp", int(SMS_LISTEN.rsplit(":", 1)[1]))

    def _raddb(self, d: Path) -> Path:
        if not (RADDB / "radiusd.conf").exists():
            raise LabError(f"{RADDB} is missing (is freeradius installed?)")
        raddb = d / "raddb"
        shutil.copytree(RADDB, raddb, symlinks=True)
        conf = (raddb / "radiusd.conf").read_text()
        for key, value in (("raddbdir", str(raddb)), ("logdir", str(d / "radlog")),
                           ("run_dir", str(d / "radrun")), ("reject_delay", "0")):
            conf, n = re.subn(rf"(?m)^(\s*){key}\s*=.*$", rf"\g<1>{key} = {value}", conf, count=1)
            if n != 1:
                raise LabError(f"radiusd.conf: no {key} line")
        conf = re.sub(r"(?m)^(\s*)(user|group)\s*=", r"\1#\2 =", conf)
        (raddb / "radiusd.conf").write_text(conf)
        (raddb / "mods-enabled" / "eap").unlink(missing_ok=True)
        for site in (raddb / "sites-enabled").iterdir():
            site.unlink()
        (raddb / "sites-enabled" / "lab").write_text(RADIUS_SITE % {"addr": GW_LAN})
        (raddb / "clients.conf").write_text(
            f'client lan {{\n    ipaddr = {LAN}.0/24\n    secret = "{RADIUS_SECRET}"\n}}\n')
        (raddb / "mods-config" / "files" / "authorize").write_text(
            "".join(f'{c.name} Cleartext-Password := "{c.password}"\n' for c in CLIENTS))
        for sub in ("radlog", "radrun"):
            (d / sub).mkdir()
        return raddb

    # -- collector and agent --

    def start_collector(self) -> tuple[str, str]:
        cfg = self.cfg
        data = self.dir / "collector"
        cli = _exe("edgeaudit-collector", "collector.cli")
        token = _run([*cli, "agents", "add", "gw1", "--unit", "demo-unit", "--data", str(data)]).stdout
        password = _run([*cli, "users", "add", "olga", "--role", "operator", "--data", str(data)]).stdout
        token, password = token.strip(), password.strip()
        listen = f"{cfg.host_ip}:{cfg.port}"
        coll = self.spawn("collector", [*cli, "serve", "--data", str(data), "--listen", listen])

        def up() -> bool:
            coll.alive()
            with contextlib.suppress(OSError), socket.create_connection((cfg.host_ip, cfg.port), timeout=1):
                return True
            return False

        _wait(up, f"the collector on {cfg.host_ip}:{cfg.port}", diag=coll.diag)
        return token, password

    def start_agent(self, token: str) -> Proc:
        cfg, d = self.cfg, self.dir / "agent"
        d.mkdir(parents=True)
        _write_secret(d / "agent.token", token + "\n")
        bob = next(c for c in CLIENTS if c.name == "bob")
        (d / "roster.csv").write_text(
            "account,name,mac,ip\n# the admin's roster: bob's laptop takes its address from DHCP\n"
            f"bob,Bob,{bob.mac},\nprinter,Front-desk printer,,{LAN}.250\n")
        desk_hash = self._portal_files(d)
        (d / "agent.toml").write_text(_AGENT_TOML % {
            "rules": REPO / "rulesets" / "examples", "url": cfg.url, "spool": d / "spool",
            "lan": f"{LAN}.0/24", "outside": OUTSIDE, "dns": DNS, "gw": GW_LAN,
            "guest_gw": GW_GUEST, "portal_host": PORTAL_HOST, "http_port": PORTAL_HTTP,
            "https_port": PORTAL_HTTPS, "sms_url": f"http://{SMS_LISTEN}/send", "desk_user": DESK_USER,
            "desk_hash": desk_hash})
        agent = self.spawn("agent", [*_exe("edgeaudit-agent", "agent.cli"), "run", "--config",
                                     str(d / "agent.toml")], cfg.gw)
        agent.wait_log("running:", timeout=60)
        if "portal: cannot start" in agent.output():
            raise LabError(f"the agent's captive portal did not start:\n{agent.diag()}")
        agent.wait_listening("tcp", PORTAL_HTTP)
        agent.wait_listening("tcp", PORTAL_HTTPS)
        return agent

    def _portal_files(self, d: Path) -> str:
        """The portal's certificate (self-signed, for its name and address) and the desk user's
        password hash, made as a unit's admin would; returns the hash."""
        _run([_tool("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
              "-nodes", "-keyout", str(d / "portal.key"), "-out", str(d / "portal.crt"), "-days", "30",
              "-subj", f"/CN={PORTAL_HOST}", "-addext", f"subjectAltName=DNS:{PORTAL_HOST},IP:{GW_GUEST}"])
        (d / "portal.key").chmod(0o600)
        return _run([*_exe("edgeaudit-agent", "agent.cli"), "portal", "hash-password"],
                    input=DESK_PASSWORD + "\n").stdout.strip()

    def start_guest_dhcp(self) -> str:
        """The guest network's DHCP server, handing out the portal's RFC 8908 API URI as option 114
        (RFC 8910), in the form ``edgeaudit-agent portal dhcp-option`` prints for a dnsmasq.conf
        line; returns the URI."""
        cfg, d = self.cfg, self.dir / "gateway"
        option = _run([*_exe("edgeaudit-agent", "agent.cli"), "portal", "dhcp-option", "--config",
                       str(self.dir / "agent" / "agent.toml")]).stdout.strip()
        m = re.fullmatch(r'114,"(\S+)"', option)
        if m is None:
            raise LabError(f"edgeaudit-agent portal dhcp-option printed {option!r}")
        # in a configuration file dnsmasq takes the quotes off (on a raw argv it would send them)
        (d / "dnsmasq-guest.conf").write_text(f"dhcp-option={option}\n")
        dhcp = self.spawn("dnsmasq-guest", [
            _tool("dnsmasq"), "--no-daemon", f"--conf-file={d / 'dnsmasq-guest.conf'}", "--port=0",
            "--user=root", "--interface=br1", "--bind-interfaces", "--no-ping", "--dhcp-authoritative",
            f"--dhcp-range={GUEST_NET}.100,{GUEST_NET}.150,255.255.255.0,3600",
            f"--dhcp-option=option:router,{GW_GUEST}", f"--dhcp-option=option:dns-server,{DNS}",
            f"--dhcp-option=option:domain-name,{DOMAIN}", f"--dhcp-leasefile={d / 'dnsmasq-guest.leases'}",
            f"--pid-file={d / 'dnsmasq-guest.pid'}", "--log-dhcp", "--log-facility=-"], cfg.gw)
        dhcp.wait_log("sockets bound exclusively to interface br1")
        return m.group(1)

    # -- the users --

    def client_run(self, c: Client | Guest, argv: list[str], input: str | None = None, timeout: float = 60
                   ) -> str:
        return _run(_ns(self.cfg.client_ns(c), *argv), input=input, timeout=timeout).stdout

    def users_log_in(self) -> dict[str, str]:
        """alice: RADIUS auth + accounting Start; bob: DHCP. Returns name -> inside address."""
        addrs: dict[str, str] = {}
        for c in CLIENTS:
            if c.ip is not None:
                nas = {"NAS-IP-Address": c.ip, "NAS-Port": 1, "Called-Station-Id": '"02-ea-de-00-00-01:lab"'}
                auth = {"User-Name": f'"{c.name}"', "User-Password": f'"{c.password}"', **nas}
                acct = {"User-Name": f'"{c.name}"', "Framed-IP-Address": c.ip,
                        "Calling-Station-Id": f'"{c.calling_station}"',
                        "Acct-Session-Id": f'"lab-{c.name}-1"', "Acct-Status-Type": "Start", **nas}
                for kind, port, attrs, want in (("auth", 1812, auth, "Access-Accept"),
                                                ("acct", 1813, acct, "Accounting-Response")):
                    body = "".join(f"{k} = {v}\n" for k, v in attrs.items())
                    out = self.client_run(c, [_tool("radclient"), "-x", "-r", "2", "-t", "3",
                                              f"{GW_LAN}:{port}", kind, RADIUS_SECRET], input=body)
                    if want not in out:
                        raise LabError(f"radclient {kind} for {c.name}: no {want}:\n{out}")
                addrs[c.name] = c.ip
            else:
                script = self.dir / "gateway" / "udhcpc.script"
                script.write_text(_UDHCPC_SCRIPT)
                script.chmod(0o755)
                self.client_run(c, [_tool("udhcpc"), "-q", "-f", "-n", "-i", "eth0", "-t", "5", "-T", "1",
                                    "-x", f"hostname:{c.name}-laptop", "-s", str(script)])
                out = _run(["ip", "-n", self.cfg.client_ns(c), "-4", "-o", "addr", "show", "dev",
                            "eth0"]).stdout
                m = re.search(r"inet (\S+)/", out)
                if m is None:
                    raise LabError(f"{c.name}: no address from DHCP: {out}")
                addrs[c.name] = m.group(1)
        return addrs

    def background(self) -> None:
        """bob's laptop keeps looking names up, twice a second, each from a new port: the agent's
        flows end by packet time (a connection is retired 5 s after its last packet, seen when
        later packets arrive), so a network never quiet is one whose sessions reach the collector."""
        bob = CLIENTS[1]
        self.spawn("background", [sys.executable, "-c", _BACKGROUND, DNS, f"ns.{DOMAIN}"],
                   self.cfg.client_ns(bob))

    def users_work(self) -> None:
        """Browse, mail, and one keyword post; every name resolved through the internet's dnsmasq."""
        curl = _tool("curl")
        for c in CLIENTS:
            # the page itself (200), not a redirect: the portal guards the guest network only
            status = self.client_run(c, [curl, "-sS", "-f", "-o", "/dev/null", "-w", "%{http_code}", "-A",
                                         f"{c.name}-laptop", f"http://www.{DOMAIN}/"])
            if status != "200":
                raise LabError(f"{c.name}: http://www.{DOMAIN}/ answered {status}, not the page")
        alice, bob = CLIENTS
        self.client_run(alice, [sys.executable, "-c", _MAIL_SEND, f"mail.{DOMAIN}", f"alice@{DOMAIN}",
                                f"bob@{DOMAIN}"])
        self.client_run(bob, [sys.executable, "-c", _MAIL_READ, f"mail.{DOMAIN}", "imap", bob.name,
                              bob.password])
        self.client_run(alice, [sys.executable, "-c", _MAIL_READ, f"mail.{DOMAIN}", "pop3", alice.name,
                                alice.password])
        form = urllib.parse.urlencode({"name": "bob", "text": f"最好的{KEYWORD}, 注册就送"})
        self.client_run(bob, [curl, "-sS", "-f", "-o", "/dev/null", "-A", f"{bob.name}-laptop",
                              "--data", form, f"http://www.{DOMAIN}/post"])

    # -- the guest --

    def portal_api(self, g: Guest) -> dict[str, Any]:
        """The RFC 8908 API as the guest's device asks it (over TLS, the portal's certificate
        trusted as a phone trusts a real one): the JSON, its media type and status."""
        url = f"https://{PORTAL_HOST}:{PORTAL_HTTPS}/api/captive"
        out = self.client_run(g, [_tool("curl"), "-sS", "--cacert", str(self.dir / "agent" / "portal.crt"),
                                  "-w", "\n%{content_type}\n%{http_code}", url])
        body, ctype, status = out.rsplit("\n", 2)
        return {"status": int(status), "content_type": ctype, "json": json.loads(body)}

    def guest_joins(self, g: Guest, api_uri: str) -> dict[str, Any]:
        """``g`` takes a lease (asking for option 114), is captive, registers by SMS in a headless
        browser, and browses; returns what each step showed."""
        script = self.dir / "gateway" / "udhcpc-guest.script"
        script.write_text(_UDHCPC_SCRIPT.replace("exit 0", '[ -n "$LAB_DHCP_OUT" ] && [ -n "$opt114" ] && '
                                                 'echo "$opt114" > "$LAB_DHCP_OUT"\nexit 0'))
        script.chmod(0o755)
        opt_file = self.dir / "gateway" / f"dhcp-{g.name}-opt114.hex"
        self.client_run(g, ["env", f"LAB_DHCP_OUT={opt_file}", _tool("udhcpc"), "-q", "-f", "-n", "-i",
                            "eth0", "-t", "5", "-T", "1", "-O", "114", "-x", f"hostname:{g.name}-phone", "-s",
                            str(script)])
        try:  # udhcpc hands an option it has no name for to the script as hex
            got_uri = bytes.fromhex(opt_file.read_text().strip()).decode()
        except (OSError, ValueError) as e:
            raise LabError(f"{g.name}: no DHCP option 114 from the guest network's dnsmasq ({e})") from e
        if got_uri != api_uri:
            raise LabError(f"{g.name}: DHCP option 114 is {got_uri!r}, not {api_uri!r}")
        out = _run(["ip", "-n", self.cfg.client_ns(g), "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
        m = re.search(r"inet (\S+)/", out)
        if m is None:
            raise LabError(f"{g.name}: no address from DHCP: {out}")
        before = self.portal_api(g)
        if before["json"].get("captive") is not True:
            raise LabError(f"{g.name}: the portal's API says {before} before she registered")
        shots = self.dir / "screenshots"
        argv = [_browser_python(), str(Path(__file__).resolve().parent / "guest_browser.py"), "register",
                "--portal", f"http://{PORTAL_HOST}:{PORTAL_HTTP}/", "--url", f"http://www.{DOMAIN}/",
                "--phone", g.phone, "--name", g.person, "--sms-log", str(self.sms_log), "--user-agent",
                g.user_agent, "--shots", str(shots)]
        res = _run(_ns(self.cfg.client_ns(g), *argv), timeout=180, check=False)
        try:
            browser: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            browser = {"error": f"exit {res.returncode}: {res.stdout[-1000:]}{res.stderr[-3000:]}"}
        if "error" in browser:
            raise LabError(f"{g.name}'s browser: {json.dumps(browser, ensure_ascii=False)[:3000]}")
        if "news of the day" not in browser.get("final_text", ""):
            raise LabError(f"{g.name}: after registering, not the web page: {browser}")
        after = self.portal_api(g)
        if after["json"].get("captive") is not False:
            raise LabError(f"{g.name}: the portal's API says {after} after she registered")
        # her phone keeps looking names up (DNS passes the portal for everyone): the capture
        # workers on the guest bridge see time go on and retire her page view's connection
        self.spawn(f"background-{g.name}", [sys.executable, "-c", _BACKGROUND, DNS, f"ns.{DOMAIN}"],
                   self.cfg.client_ns(g))
        return {"name": g.name, "ip": m.group(1), "dhcp_option_114": got_uri, "api_before": before,
                "api_after": after, "browser": browser, "account": browser["account"],
                "screenshots": str(shots)}

    def guest_records(self, password: str, account: str) -> dict[str, list[dict[str, Any]]]:
        """The guest's ``registration`` and ``login`` records at the collector (the operator's
        record search, as the report shows it)."""
        found: dict[str, list[dict[str, Any]]] = {}

        def seen() -> bool:
            with contextlib.suppress(OSError, urllib.error.HTTPError):
                for kind in ("registration", "login"):
                    found[kind] = self.query(password, "/api/v1/query/records", type=kind, account=account,
                                             limit=100)["records"]
            return bool(found.get("registration")) and any(r.get("source") == "portal"
                                                           for r in found.get("login", []))

        _wait(seen, f"the collector to hold {account}'s registration and login", 30,
              lambda: json.dumps(found, ensure_ascii=False, indent=1))
        return found

    # -- the example traceback --

    def query(self, password: str, path: str, **params: Any) -> Any:
        url = f"{self.cfg.url}{path}?{urllib.parse.urlencode(params)}"
        auth = "Basic " + base64.b64encode(f"olga:{password}".encode()).decode()
        req = urllib.request.Request(url, headers={"Authorization": auth})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def public_view(self, user_agent: str) -> tuple[str, int, float]:
        """(address, port, time) of the page view of ``user_agent``, as the web server logged it."""
        for line in self.nginx_log.read_text().splitlines():
            f = line.split()
            if len(f) >= 5 and f[4] == user_agent and f[3] == "/":
                return f[0], int(f[1]), float(f[2])
        raise LabError(f"no page view of {user_agent} in {self.nginx_log}")

    def traceback(self, password: str, user_agent: str) -> dict[str, Any]:
        ip, port, ts = self.public_view(user_agent)
        got: dict[str, Any] = {}

        def ready() -> bool:
            nonlocal got
            try:
                got = self.query(password, "/api/v1/query/traceback", ip=ip, port=port, ts=ts, proto="tcp")
            except (OSError, urllib.error.HTTPError):
                return False
            return bool(got.get("identity") and got["identity"].get("account")
                        and any(r.get("type") == "http" for r in got.get("records", [])))

        _wait(ready, "the collector to answer the traceback", 60,
              lambda: json.dumps(got, ensure_ascii=False, indent=1))
        return got

    def wait_alert(self, password: str) -> dict[str, Any] | None:
        """The keyword alert at the collector, with the login in force at its address then
        (``_login``: the login records the collector keeps, as an operator would look it up)."""
        found: dict[str, Any] = {}

        def seen() -> bool:
            with contextlib.suppress(OSError, urllib.error.HTTPError):
                if not found:
                    alerts = self.query(password, "/api/v1/query/records", type="alert", limit=100)["records"]
                    # bob's keyword post (the mail policy may alert on the lab's mail too)
                    keyword = [a for a in alerts if a.get("keyword") == KEYWORD]
                    if keyword:
                        found.update(keyword[0])
                if found:
                    logins = [r for r in self.query(password, "/api/v1/query/records", type="login",
                                                    ip=found["src_ip"], limit=100)["records"]
                              if r.get("account") and r["ts"] <= found["ts"] + 1]
                    if logins:
                        found["_login"] = logins[-1]
            return "_login" in found

        with contextlib.suppress(LabError):
            _wait(seen, "the keyword alert and the login behind it", 30)
        return found or None


# -- start / stop ------------------------------------------------------------------------------------


def _preflight() -> None:
    if not sys.platform.startswith("linux"):
        raise LabError("the lab needs Linux network namespaces")
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, veths, nftables)")
    for t in ("ip", "nft", "nginx", "dnsmasq", "dovecot", "freeradius", "radclient", "udhcpc", "curl",
              "openssl", "chromium"):
        _tool(t)


def start(cfg: LabConfig) -> dict[str, Any]:
    """Build and run the lab; returns what ``main`` prints (``url``, ``operator``, ``traceback``...)."""
    _preflight()
    if not re.fullmatch(r"[a-z][a-z0-9]{0,9}", cfg.prefix):
        raise LabError(f"prefix {cfg.prefix!r}: 1-10 lower-case letters and digits (interface names)")
    stop(cfg)
    d = cfg.dir.resolve()
    d.mkdir(parents=True, exist_ok=True)
    for sub in ("logs", "collector", "agent", "gateway", "internet", "screenshots", "traceback.json",
                "traceback-carol.json", "summary.txt"):
        p = d / sub
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
    (d / "logs").mkdir()
    lab = Lab(cfg)
    lab.state.save()
    t0 = time.monotonic()
    lab.say("network namespaces: " + ", ".join(cfg.namespaces))
    lab.build_network()
    lab.say("internet servers: nginx, dnsmasq (DNS), dovecot (IMAP/POP3), SMTP")
    lab.start_internet()
    lab.say("gateway services: dnsmasq (DHCP), FreeRADIUS")
    lab.start_gateway_services()
    lab.say(f"collector on {cfg.url}")
    token, password = lab.start_collector()
    lab.say("agent on the gateway")
    lab.start_agent(token)
    lab.say("users log in (RADIUS, DHCP), browse, mail, post")
    addrs = lab.users_log_in()
    lab.users_work()
    lab.background()
    lab.say("guest network: DHCP with the portal's option 114; carol registers by SMS in a headless browser")
    api_uri = lab.start_guest_dhcp()
    guest = lab.guest_joins(GUESTS[0], api_uri)
    addrs[GUESTS[0].name] = guest["ip"]
    ip, port, ts = lab.public_view("alice-laptop")
    lab.say(f"traceback of alice's page view {ip}:{port} at {ts}")
    tb = lab.traceback(password, "alice-laptop")
    alert = lab.wait_alert(password)
    (d / "traceback.json").write_text(json.dumps(tb, ensure_ascii=False, indent=2) + "\n")
    gip, gport, gts = lab.public_view(GUESTS[0].user_agent)
    lab.say(f"traceback of carol's page view {gip}:{gport} at {gts}")
    guest["public"] = [gip, gport, gts]
    guest["traceback"] = lab.traceback(password, GUESTS[0].user_agent)
    guest["records"] = lab.guest_records(password, guest["account"])
    (d / "traceback-carol.json").write_text(json.dumps(guest["traceback"], ensure_ascii=False, indent=2)
                                            + "\n")
    result = {"url": cfg.url, "operator": ["olga", password], "addresses": addrs, "public": [ip, port, ts],
              "traceback": tb, "alert": alert, "guest": guest, "seconds": round(time.monotonic() - t0, 1),
              "namespaces": cfg.namespaces}
    return result


def _alive_as_recorded(p: dict[str, Any]) -> bool:
    pid = p.get("pid")
    if not isinstance(pid, int) or pid <= 1:
        return False
    now = _starttime(pid)
    if now is None or now != p.get("start"):
        return False
    try:  # a zombie has ended: only its parent's wait is missing (init's, once make has exited)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop(cfg: LabConfig) -> list[str]:
    """Undo ``start`` (module doc); idempotent. Returns what was removed."""
    d = cfg.dir.resolve()
    st = State.load(d / STATE)
    done: list[str] = []
    # the agent first (it drains its spool to the collector on SIGTERM), the collector last
    order = sorted(st.procs, key=lambda p: {"agent": 0, "collector": 2}.get(p.get("name", ""), 1))
    for p in order:
        if not _alive_as_recorded(p):
            continue
        pid = int(p["pid"])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)  # the daemon's own session: its workers too
        deadline = time.monotonic() + (40.0 if p.get("name") == "agent" else 5.0)
        while _alive_as_recorded(p) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive_as_recorded(p):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):  # our own child (start and stop in one process)
            os.waitpid(pid, 0 if _starttime(pid) is not None else os.WNOHANG)
        done.append(f"process {p.get('name')} ({pid})")
    namespaces = list(dict.fromkeys([*st.namespaces, *cfg.namespaces]))
    existing = set(_run(["ip", "netns", "list"], check=False).stdout.split())
    for ns in namespaces:
        if ns not in existing:
            continue
        # anything still inside the lab's own namespaces was started by the lab
        for left in _run(["ip", "netns", "pids", ns], check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(left), signal.SIGKILL)
        _run(["ip", "netns", "del", ns], check=False)
        done.append(f"namespace {ns}")
    for link in list(dict.fromkeys([*st.links, cfg.host_if])):
        if Path(f"/sys/class/net/{link}").exists():
            _run(["ip", "link", "del", link], check=False)
            done.append(f"link {link}")
    # only the lab's own paths, whatever a (damaged) state file says
    for path in [*(str(ETC_NETNS / cfg.client_ns(c)) for c in (*CLIENTS, *GUESTS)), str(cfg.run_dir)]:
        if os.path.lexists(path):
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"path {path}")
    if str(ETC_NETNS) in st.paths:
        with contextlib.suppress(OSError):  # only when empty: another lab or tool may use it
            ETC_NETNS.rmdir()
            done.append(f"path {ETC_NETNS}")
    (d / STATE).unlink(missing_ok=True)
    return done


# -- the lab's SMTP server -----------------------------------------------------------------------------


def smtpd(listen: str, maildir: Path, owner: str) -> None:
    """A tiny SMTP server (RFC 5321 subset: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) that
    delivers each message into the Maildir of every local recipient, for dovecot to serve."""
    pw = pwd.getpwnam(owner)
    host, port = listen.rsplit(":", 1)

    class Handler(socketserver.StreamRequestHandler):
        def reply(self, line: str) -> None:
            self.wfile.write(line.encode() + b"\r\n")
            self.wfile.flush()

        def handle(self) -> None:
            self.reply(f"220 mail.{DOMAIN} ESMTP lab")
            rcpts: list[str] = []
            while True:
                raw = self.rfile.readline(4096)
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                verb = line[:4].upper()
                if verb in ("EHLO", "HELO"):
                    ehlo = f"250-mail.{DOMAIN}\r\n250 8BITMIME"
                    self.reply(ehlo if verb == "EHLO" else f"250 mail.{DOMAIN}")
                elif verb == "MAIL":
                    rcpts = []
                    self.reply("250 OK")
                elif verb == "RCPT":
                    m = re.search(r"<([^@>]+)@[^>]*>", line)
                    if m is None:
                        self.reply("501 bad address")
                        continue
                    rcpts.append(m.group(1).lower())
                    self.reply("250 OK")
                elif verb == "DATA":
                    self.reply("354 end with .")
                    body = bytearray()
                    while (chunk := self.rfile.readline(65536)) not in (b".\r\n", b".\n", b""):
                        body += chunk[1:] if chunk.startswith(b"..") else chunk
                    for user in rcpts:
                        _deliver(maildir / user, bytes(body), pw.pw_uid, pw.pw_gid)
                    self.reply("250 OK queued")
                elif verb in ("RSET", "NOOP"):
                    self.reply("250 OK")
                elif verb == "QUIT":
                    self.reply("221 bye")
                    return
                else:
                    self.reply("502 not implemented")

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer((host, int(port)), Handler) as server:
        print(f"smtpd listening on {listen}", flush=True)
        server.serve_forever()


# -- the SMS provider's stand-in ------------------------------------------------------------------------


def smsd(listen: str, out: Path) -> None:
    """The unit's SMS provider as the portal calls it: every request (method, path, headers,
    body, and the body as JSON when it is) is one JSON line appended to ``out``, answered 200.
    Reading that file is how the lab (and the tests) get the code a phone would receive."""
    host, port = listen.rsplit(":", 1)

    class Handler(http.server.BaseHTTPRequestHandler):
        def _take(self) -> None:
            body = self.rfile.read(min(int(self.headers.get("Content-Length") or 0), 65536))
            text = body.decode("utf-8", "replace")
            doc: Any = None
            with contextlib.suppress(ValueError):
                doc = json.loads(text) if text else None
            line = json.dumps({"ts": time.time(), "method": self.command, "path": self.path,
                               "content_type": self.headers.get("Content-Type"), "body": text, "json": doc},
                              ensure_ascii=False)
            with out.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "11")
            self.end_headers()
            self.wfile.write(b'{"ok":true}')

        do_GET = do_POST = _take

        def log_message(self, format: str, *args: Any) -> None:  # the numbers stay out of the log
            pass

    http.server.ThreadingHTTPServer.allow_reuse_address = True
    with http.server.ThreadingHTTPServer((host, int(port)), Handler) as server:
        print(f"smsd listening on {listen}", flush=True)
        server.serve_forever()


def _browser_python() -> str:
    """An interpreter with Playwright for the guest's browser: this one, else the repository's
    development venv (``make deps``), since the installed wheel's venv has no test tools."""
    import importlib.util

    if importlib.util.find_spec("playwright") is not None:
        return sys.executable
    dev = REPO / ".venv" / "bin" / "python"
    if dev.exists():
        return str(dev)
    raise LabError("no Python with Playwright for the guest's browser (make deps installs it in .venv)")


def _deliver(box: Path, msg: bytes, uid: int, gid: int) -> None:
    for sub in ("", "tmp", "new", "cur"):
        p = box / sub
        if not p.exists():
            p.mkdir(parents=True)
            os.chown(p, uid, gid)
    name = f"{time.time_ns()}.{os.getpid()}.lab"
    tmp = box / "tmp" / name
    tmp.write_bytes(msg)
    os.chown(tmp, uid, gid)
    tmp.rename(box / "new" / name)


# -- configuration templates -------------------------------------------------------------------------

_NGINX = """
user root;
daemon off;
master_process on;
worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log info;
events { worker_connections 64; }
http {
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fastcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
    # what a website keeps: the peer's (public) address and port, and the time
    log_format lab '$remote_addr $remote_port $msec $request_uri $http_user_agent $request_method $status';
    access_log %(d)s/access.log lab;
    server {
        listen %(addr)s:80;
        server_name www.example.test;
        root %(www)s;
        location = /post { return 200 "thanks\\n"; }
    }
}
"""

# dovecot IMAP/POP3 with plain logins from a passwd file, Maildir: also used by
# tests/e2e/test_peer_dovecot.py.
DOVECOT_CONF = """
protocols = imap pop3
hostname = %(hostname)s
listen = %(addr)s
instance_name = %(name)s
base_dir = %(d)s/run
state_dir = %(d)s/state
log_path = /dev/stderr
info_log_path = /dev/stderr
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
first_valid_uid = %(uid)s
mail_location = maildir:%(d)s/mail/%%u
passdb {
  driver = passwd-file
  args = scheme=PLAIN %(d)s/passwd
}
userdb {
  driver = static
  args = uid=%(uid)s gid=%(gid)s home=%(d)s/home/%%u
}
service imap-login {
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3s {
    port = 0
  }
}
"""

# FreeRADIUS site (PAP auth + accounting on one address): also used by tests/e2e/test_peer_radius.py.
RADIUS_SITE = """
server lab {
    listen {
        type = auth
        ipaddr = %(addr)s
        port = 1812
    }
    listen {
        type = acct
        ipaddr = %(addr)s
        port = 1813
    }
    authorize {
        preprocess
        files
        pap
    }
    authenticate {
        Auth-Type PAP {
            pap
        }
    }
    preacct {
        preprocess
        acct_unique
    }
    accounting {
        detail
        ok
    }
    post-auth {
        Post-Auth-Type REJECT {
            attr_filter.access_reject
        }
    }
}
"""

_UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc event script: address, default route and DNS server from the lease
case "$1" in
    bound|renew)
        ip addr replace "$ip/$subnet" dev "$interface"
        [ -n "$router" ] && ip route replace default via "${router%% *}"
        : > /etc/resolv.conf
        for s in $dns; do echo "nameserver $s" >> /etc/resolv.conf; done
        ;;
esac
exit 0
"""

_BACKGROUND = r"""
import os, socket, struct, sys, time
server, name = sys.argv[1], sys.argv[2]
q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
while True:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    s.sendto(struct.pack("!HHHHHH", int.from_bytes(os.urandom(2), "big"), 0x0100, 1, 0, 0, 0) + q
             + struct.pack("!HH", 1, 1), (server, 53))
    try:
        s.recv(512)
    except OSError:
        pass
    s.close()
    time.sleep(0.5)
"""

_MAIL_SEND = r"""
import smtplib, sys
from email.message import EmailMessage
host, frm, to = sys.argv[1:4]
m = EmailMessage()
m["From"], m["To"], m["Subject"] = frm, to, "lunch on Friday?"
m.set_content("Hi Bob,\nlunch at noon on Friday?\nAlice\n")
with smtplib.SMTP(host, 25, timeout=10) as s:
    s.send_message(m)
m2 = EmailMessage()
m2["From"], m2["To"], m2["Subject"] = frm, frm, "note to self"
m2.set_content("remember the library books\n")
with smtplib.SMTP(host, 25, timeout=10) as s:
    s.send_message(m2)
"""

_MAIL_READ = r"""
import imaplib, poplib, sys
host, proto, user, pw = sys.argv[1:5]
if proto == "imap":
    m = imaplib.IMAP4(host, 143, timeout=10)
    m.login(user, pw); m.select("INBOX"); typ, data = m.search(None, "ALL")
    for n in data[0].split():
        m.fetch(n, "(RFC822)")
    m.logout()
else:
    p = poplib.POP3(host, 110, timeout=10)
    p.user(user); p.pass_(pw)
    count, _size = p.stat()
    for i in range(1, count + 1):
        p.retr(i)
    p.quit()
"""

_AGENT_TOML = """# generated by deploy/lab/lab.py for `make demo`: see deploy/agent.toml for every key
[capture]
mode = "gateway"
interfaces = ["br0", "br1"]    # the LAN bridge and the guest network's: every client's traffic passes them
workers = 2
ring_mb = 8

[inspection]
rules = "%(rules)s"            # the example ruleset directory (gambling: alert, drugs: block)
update_interval_s = 0

[filter]
cache_dir = "engine-cache"     # the compiled keyword database, in the lab's directory, not the repo's

[collector]
url = "%(url)s"
token_file = "agent.token"
batch_seconds = 0.2

[spool]
path = "%(spool)s"
quota = "256MiB"
keep_days = 180

[nat]
conntrack = true

[identity]
roster = "roster.csv"

[metrics]
listen = "127.0.0.1:9187"      # in the gateway namespace

[unit]
name = "示范县图书馆（演示）"
legal_representative = "张三"
address = "示范县人民路1号"
postal_code = "100000"
phone = "010-12345678"
industry = "图书馆"
isp = "演示电信"
access_method = "光纤专线"
security_officers = [
  { name = "李四", certificate_no = "GA-DEMO-0001", phone = "13800000000" },
]
ip_ranges = ["%(lan)s"]
egress_ips = ["%(outside)s"]
dns_servers = ["%(dns)s"]
mail_servers = []
services = ["上网服务"]
security_measures = ["上网日志留存", "关键词过滤", "NAT日志", "实名登记"]

# the guest network's captive portal (br1): SMS, front desk and voucher registration
[portal]
interfaces = ["br1"]
address = "%(guest_gw)s"
hostname = "%(portal_host)s"     # in the internet's DNS, and the certificate's name
http_port = %(http_port)d
https_port = %(https_port)d
tls_cert = "portal.crt"        # self-signed by the lab (openssl)
tls_key = "portal.key"
methods = ["sms", "desk", "voucher"]
unit_notice = "前台服务时间 7:00-23:00（演示）"

[portal.sms]                   # the lab's stand-in for the SMS provider (lab.py smsd)
url = "%(sms_url)s"
body = '{"to": "{phone}", "code": "{code}", "minutes": "{minutes}"}'
resend_after_s = 10

[[portal.desk_users]]
name = "%(desk_user)s"
password_hash = "%(desk_hash)s"   # edgeaudit-agent portal hash-password
"""


# -- command line -----------------------------------------------------------------------------------


def config_from_env(directory: str | None) -> LabConfig:
    return LabConfig(dir=Path(directory or os.environ.get("DEMO_DIR", "demo-out")),
                     prefix=os.environ.get("EADEMO_PREFIX", "eademo"),
                     hostnet=os.environ.get("EADEMO_HOSTNET", "10.254.254"),
                     port=int(os.environ.get("EADEMO_PORT", "8470")))


def report(res: dict[str, Any], cfg: LabConfig) -> str:
    tb = res["traceback"]
    ip, port, ts = res["public"]
    user, password = res["operator"]
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
    lines = [
        f"edgeaudit lab is running ({res['seconds']} s to build; state in {cfg.dir}/; "
        "stop it with: make demo-stop)",
        f"  collector:  {res['url']}  (API: /api/v1/query/traceback, /api/v1/query/records, "
        "/api/v1/units; /metrics)",
        f"  operator:   {user} / {password}",
        f"  network:    namespaces {', '.join(res['namespaces'])}; LAN {LAN}.0/24 behind {OUTSIDE} (NAT)",
        "  users:      " + ", ".join(f"{n} {a}" for n, a in res["addresses"].items())
        + " (alice: RADIUS accounting, bob: DHCP + roster, carol: guest network + captive portal)",
        f"  portal:     http://{PORTAL_HOST}:{PORTAL_HTTP}/ on the guest network {GUEST_NET}.0/24 (br1); "
        f"desk /desk as {DESK_USER} / {DESK_PASSWORD}; RFC 8908 API "
        f"https://{PORTAL_HOST}:{PORTAL_HTTPS}/api/captive",
        f"  build:      {_build()}",
        f"  agent:      ip netns exec {cfg.gw} {_exe('edgeaudit-agent', 'agent.cli')[-1]} selfcheck "
        f"--config {cfg.dir}/agent/agent.toml",
        f"  logs:       {cfg.dir}/logs/",
    ]
    if res.get("alert"):
        a = res["alert"]
        login = a.get("_login") or {}
        lines.append(f"  alert:      {a.get('category')} keyword {a.get('keyword')!r} in {a.get('field')} "
                     f"from {a.get('src_ip')} (logged in: {login.get('account')}, via {login.get('source')})")
    lines += [
        "",
        f"Example traceback: www.example.test ({WEB}) logged alice's page view from {ip} port {port} "
        f"at {when}.",
        f"  curl -u {user}:{password} "
        f"'{res['url']}/api/v1/query/traceback?ip={ip}&port={port}&ts={ts}&proto=tcp'",
        f"  -> inside {tb['inside']['ip']}:{tb['inside']['port']}, account {tb['identity']['account']!r} "
        f"(source {tb['identity'].get('source')}, calling station {tb['identity'].get('calling_station')})",
        json.dumps(tb, ensure_ascii=False, indent=2),
    ]
    if res.get("guest"):
        lines += ["", *guest_report(res["guest"], res["url"], user, password)]
    return "\n".join(lines)


def guest_report(g: dict[str, Any], url: str, user: str, password: str) -> list[str]:
    """The report's part on the guest: how she got online, her records, her traceback."""
    tb = g["traceback"]
    ip, port, ts = g["public"]
    ident = tb.get("identity") or {}
    inside = tb.get("inside") or {}
    reg = tb.get("registration") or (g["records"].get("registration") or [{}])[-1]
    logins = [r for r in g["records"].get("login", []) if r.get("source") == "portal"]
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
    b = g["browser"]
    return [
        f"Guest: {g['name']} ({g['ip']}, DHCP option 114 {g['dhcp_option_114']}) opened "
        f"http://www.{DOMAIN}/, landed on the portal ({b['landing_url'].split('?')[0]}), registered by SMS "
        "and browsed:",
        f"  API before: captive {g['api_before']['json'].get('captive')}; after: captive "
        f"{g['api_after']['json'].get('captive')}, {g['api_after']['json'].get('seconds-remaining')} s left "
        f"({g['api_after']['content_type']})",
        f"  account {g['account']}; screenshots in {g['screenshots']}/",
        f"  registration: {reg.get('name')!r}, phone {reg.get('phone')}, method {reg.get('method')}, "
        f"MAC {reg.get('mac')} (the operator sees personal numbers masked)",
        f"  login: {len(logins)} with source portal, ip {logins[0].get('ip') if logins else '-'}",
        f"  curl -u {user}:{password} '{url}/api/v1/query/records?type=registration&account={g['account']}'",
        f"Traceback of carol's page view: www.example.test logged {ip} port {port} at {when}.",
        f"  curl -u {user}:{password} '{url}/api/v1/query/traceback?ip={ip}&port={port}&ts={ts}&proto=tcp'",
        f"  -> inside {inside.get('ip')}:{inside.get('port')}, account {ident.get('account')!r} "
        f"(source {ident.get('source')})"
        + (f", registered as {tb['registration'].get('name')!r}" if tb.get("registration") else ""),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lab.py", description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("start", "stop"):
        p = sub.add_parser(name)
        p.add_argument("--dir", help="state directory (default $DEMO_DIR or demo-out)")
    s = sub.add_parser("smtpd")
    s.add_argument("--listen", required=True)
    s.add_argument("--maildir", required=True, type=Path)
    s.add_argument("--owner", required=True)
    m = sub.add_parser("smsd")
    m.add_argument("--listen", required=True)
    m.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "smtpd":
        smtpd(args.listen, args.maildir, args.owner)
        return 0
    if args.cmd == "smsd":
        smsd(args.listen, args.out)
        return 0
    cfg = config_from_env(args.dir)
    try:
        if args.cmd == "stop":
            if os.geteuid() != 0:
                raise LabError("stopping the lab needs root")
            done = stop(cfg)
            print("lab stopped: " + ("; ".join(done) if done else "nothing was running"))
            return 0
        res = start(cfg)
    except LabError as e:
        print(f"lab: {e}", file=sys.stderr)
        if args.cmd == "start":
            print(f"lab: logs in {cfg.dir}/logs; `make demo-stop` removes what was made", file=sys.stderr)
        return 1
    text = report(res, cfg)
    _write_secret(cfg.dir / "summary.txt", text + "\n")  # it holds the operator's password
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
