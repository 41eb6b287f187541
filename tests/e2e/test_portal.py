"""The captive portal for real, in network namespaces (issue 19).

A guest network of its own: a gateway namespace with a bridge (``br1``, 192.168.61.1/24) and
two guest namespaces plugged into it (``a`` takes its address from the gateway's dnsmasq,
``b`` has a fixed one), and an internet namespace behind the gateway with nginx on
198.51.100.80 (ports 80 and 443, and the captive-probe URLs answered as Google's, Apple's and
Microsoft's servers answer them). The gateway runs the real ``edgeaudit-agent run`` with
``[portal]`` (nftables admission, the portal's HTTP and HTTPS with a self-signed certificate
made by openssl, a desk user hashed by ``edgeaudit-agent portal hash-password``), the lab's
stand-in SMS provider (``deploy/lab/lab.py smsd``: each request a JSON line, where the test
reads the code a phone would get) and a collector on its loopback. The guest network's dnsmasq
hands out ``edgeaudit-agent portal dhcp-option``'s option 114 (RFC 8910).

``test_portal_registration_rules_and_records`` (times as deployed, code_ttl_s 30):
- udhcpc asking for option 114 (``-O 114``) gets the RFC 8908 API URI: busybox hands the
  script an option it has no name for as ``opt114``, hex;
- unregistered: an ordinary ``http://`` request gets 302 to the portal page (``?url=`` the
  page wanted); TCP to port 443 is refused (reset); nginx never sees the guest;
- the RFC 8908 API (over TLS): ``application/captive+json``, ``Cache-Control: private``,
  ``captive`` true with ``user-portal-url`` and no ``seconds-remaining``; after registering
  captive false, ``seconds-remaining`` and ``can-extend-session``;
- the probes (``generate_204``, ``hotspot-detect.html``, ``connecttest.txt``): 302 before;
  after, nginx's 204, ``Success`` and the Microsoft text reach the guest (the filter lets it
  out), and the portal's own probe URLs answer the same;
- SMS: a wrong code (tries left), the right one (online), a code expired (30 s later);
- brute force: wrong codes over two numbers until the device is refused, a right code too;
- the desk in a headless Chromium (sign in, register with a resident ID, the voucher;
  screenshots), a wrong ID check digit refused in Chinese and, with ``lang=en``, English;
  guest ``b`` redeems the voucher and is online;
- at stop the agent logs both guests out and removes its nftables table; the spool and the
  collector hold the ``registration`` records (SMS: name and phone; desk: ID, room, desk user),
  the ``login`` records (source ``portal``) and the logouts; the portal's state file holds no
  phone, ID number or name.

``test_portal_idle_and_time_up`` (session_s 6, idle_s 3, valid_s 10, sweep_s 0.5): a quiet
guest is logged out after its idle time (the kernel's set timeout) with that duration; a
guest browsing all along gets its time-up logout at 6 s, is let back in by its next plain-HTTP
request (a device registered within its validity), logged out again when the registration's
10 s are over, and is then redirected to the portal for good.
"""

from __future__ import annotations

import contextlib
import html
import itertools
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import msgpack
import pytest
from netns import REPO, Daemon, _ip, agent_exe, nginx_conf, require, wait_for

from agent.portal.identity_check import resident_id_check
from wire.validate import validate_record

GUEST_NET = "192.168.61"
PORTAL_IP = f"{GUEST_NET}.1"
B_IP = f"{GUEST_NET}.20"
WAN_GW, WAN_ISP = "203.0.113.10", "203.0.113.1"
WEB = "198.51.100.80"
HOST = "portal.test"
HTTP_PORT, HTTPS_PORT = 8080, 8443
PAGE = f"http://{HOST}:{HTTP_PORT}/"
API = f"https://{HOST}:{HTTPS_PORT}/api/captive"
SMS_LISTEN = "127.0.0.1:9099"
COLLECTOR_PORT = 18471
DESK_PASSWORD = "desk-password-1"
NAME = "王小明"
PHONE_A, PHONE_EXPIRES, PHONE_B1, PHONE_B2, PHONE_IDLE = (
    "13912345678", "13912345600", "13700001111", "13700002222", "13600003333")
ID_FIRST17 = "11010519900307123"
ID_NUMBER = ID_FIRST17 + resident_id_check(ID_FIRST17)
ID_WRONG = ID_FIRST17 + ("0" if ID_NUMBER[-1] != "0" else "1")
APPLE_SUCCESS = "<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"
SHOTS = Path(os.environ.get("EDGEAUDIT_SCREENSHOTS", REPO / "build" / "portal-screenshots"))

_counter = itertools.count()

# One HTTP request without following redirects: a JSON line with status, headers and text.
HTTP = r"""
import http.client, json, sys, urllib.parse
method, host, port, path, form, headers = sys.argv[1:7]
headers = json.loads(headers)
body = None
if form:
    body = urllib.parse.urlencode(json.loads(form)).encode()
    headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
c = http.client.HTTPConnection(host, int(port), timeout=10)
c.request(method, path, body=body, headers=headers)
r = c.getresponse()
print(json.dumps({"status": r.status, "headers": {k.lower(): v for k, v in r.getheaders()},
                  "cookies": r.headers.get_all("Set-Cookie") or [],
                  "text": r.read().decode("utf-8", "replace")}))
"""

CONNECT = r"""
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
    print("open")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print(type(e).__name__)
"""

# A browsing guest: a new connection to the web server every 0.3 s for N seconds; each status.
BROWSE = r"""
import http.client, json, sys, time
host, seconds = sys.argv[1], float(sys.argv[2])
out, t0 = [], time.time()
while time.time() - t0 < seconds:
    try:
        c = http.client.HTTPConnection(host, 80, timeout=3)
        c.request("GET", "/", headers={"Host": "www.example.test"})
        r = c.getresponse()
        r.read()
        out.append([time.time(), r.status])
        c.close()
    except OSError as e:
        out.append([time.time(), type(e).__name__])
    time.sleep(0.3)
print(json.dumps(out))
"""

UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
    bound|renew)
        ip addr replace "$ip/$subnet" dev "$interface"
        [ -n "$router" ] && ip route replace default via "${router%% *}"
        [ -n "$opt114" ] && echo "$opt114" > "$OPT_OUT"
        ;;
esac
exit 0
"""


class Reply(NamedTuple):
    """One answer, as the HTTP script printed it; ``message`` is what the portal's page says."""

    status: int
    headers: dict[str, str]
    cookies: list[str]
    text: str
    message: str


def _reply(doc: dict[str, Any]) -> Reply:
    said = re.search(r'id="msg">(.*?)</div>', doc["text"], re.S)
    return Reply(message=html.unescape(said.group(1)) if said else "", **doc)


@dataclass
class GuestNet:
    """gateway (br1) -- guests a and b; gateway (wan0) -- internet (nginx)."""

    dir: Path
    tag: str
    daemons: list[Daemon] = field(default_factory=list)

    @property
    def gw(self) -> str:
        return f"eap-{self.tag}-gw"

    @property
    def inet(self) -> str:
        return f"eap-{self.tag}-inet"

    def guest(self, name: str) -> str:
        return f"eap-{self.tag}-{name}"

    @property
    def namespaces(self) -> list[str]:
        return [self.gw, self.inet, self.guest("a"), self.guest("b")]

    def up(self) -> None:
        for ns in self.namespaces:
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            subprocess.run(["ip", "netns", "exec", ns, "sh", "-c",
                            "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6"], check=False)
        gw, inet = self.gw, self.inet
        _ip("-n", gw, "link", "add", "br1", "type", "bridge")
        _ip("-n", gw, "addr", "add", f"{PORTAL_IP}/24", "dev", "br1")
        _ip("-n", gw, "link", "set", "br1", "up")
        for i, name in enumerate(("a", "b")):
            _ip("link", "add", "eth0", "netns", self.guest(name), "address", f"02:ea:9e:00:00:0{i + 1}",
                "type", "veth", "peer", "name", f"gp{i}", "netns", gw)
            _ip("-n", gw, "link", "set", f"gp{i}", "master", "br1", "up")
            _ip("-n", self.guest(name), "link", "set", "eth0", "up")
        _ip("-n", self.guest("b"), "addr", "add", f"{B_IP}/24", "dev", "eth0")
        _ip("-n", self.guest("b"), "route", "add", "default", "via", PORTAL_IP)
        _ip("link", "add", "wan0", "netns", gw, "type", "veth", "peer", "name", "isp0", "netns", inet)
        _ip("-n", gw, "addr", "add", f"{WAN_GW}/24", "dev", "wan0")
        _ip("-n", inet, "addr", "add", f"{WAN_ISP}/24", "dev", "isp0")
        _ip("-n", inet, "addr", "add", f"{WEB}/32", "dev", "lo")
        _ip("-n", gw, "link", "set", "wan0", "up")
        _ip("-n", inet, "link", "set", "isp0", "up")
        _ip("-n", gw, "route", "add", "default", "via", WAN_ISP)
        _ip("-n", inet, "route", "add", f"{GUEST_NET}.0/24", "via", WAN_GW)  # routed, no NAT here
        subprocess.run(["ip", "netns", "exec", gw, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)

    def start(self, ns: str, name: str, args: list[str]) -> Daemon:
        log = self.dir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, *args], stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.dir,
                                    env=dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1"))
        d = Daemon(name, proc, log)
        self.daemons.append(d)
        return d

    def run(self, ns: str, *args: str, timeout: float = 30, input: str | None = None) -> str:
        res = subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, text=True,
                             timeout=timeout, input=input, check=False,
                             env=dict(os.environ, PYTHONPATH=str(REPO)))
        assert res.returncode == 0, (f"{args}: exit {res.returncode}\n{res.stdout}\n{res.stderr}\n"
                                     + "\n".join(d.diag() for d in self.daemons))
        return res.stdout

    def http(self, ns: str, method: str, url: str, form: dict[str, str] | None = None,
             headers: dict[str, str] | None = None) -> Reply:
        """``url``'s host is where the request goes; ``headers`` may name another Host."""
        u = urllib.parse.urlsplit(url)
        path = u.path + (f"?{u.query}" if u.query else "")
        out = self.run(ns, sys.executable, "-c", HTTP, method, u.hostname or "", str(u.port or 80), path,
                       json.dumps(form) if form is not None else "", json.dumps(headers or {}))
        return _reply(json.loads(out))

    def down(self) -> None:
        for d in reversed(self.daemons):
            d.stop(timeout=30)
        for ns in self.namespaces:
            res = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            for pid in res.stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@dataclass
class Portal:
    """The running pieces of one setup, and what a guest or the test does with them."""

    net: GuestNet
    agent: Daemon
    spool: Path
    sms_log: Path
    cert: Path
    nginx_log: Path
    operator: tuple[str, str]
    started: float = field(default_factory=time.time)

    def api(self, ns: str) -> tuple[dict[str, Any], str, str]:
        """(JSON, media type, Cache-Control) of the RFC 8908 API as the guest's device gets them."""
        out = self.net.run(ns, "curl", "-sS", "--cacert", str(self.cert), "--resolve",
                           f"{HOST}:{HTTPS_PORT}:{PORTAL_IP}", "-D", "-", API)
        head, body = re.split(r"\r?\n\r?\n", out, maxsplit=1)  # (text mode: \r\n may be \n)
        cache = re.search(r"(?im)^cache-control:\s*(.+?)\s*$", head)
        ctype = re.search(r"(?im)^content-type:\s*(.+?)\s*$", head)
        return json.loads(body), ctype.group(1) if ctype else "", cache.group(1) if cache else ""

    def web(self, ns: str, path: str = "/", host: str = "www.example.test") -> Reply:
        return self.net.http(ns, "GET", f"http://{WEB}{path}", headers={"Host": host})

    def connect(self, ns: str, port: int) -> str:
        return self.net.run(ns, sys.executable, "-c", CONNECT, WEB, str(port)).strip()

    def sms(self, ns: str, form: dict[str, str]) -> Reply:
        return self.net.http(ns, "POST", f"http://{PORTAL_IP}:{HTTP_PORT}/sms", form)

    def send(self, ns: str, phone: str) -> Reply:
        r = self.sms(ns, {"action": "send", "phone": phone, "name": NAME})
        assert r.status == 200 and "验证码已发送" in r.message, (r.status, r.message, self.agent.diag())
        return r

    def code(self, phone: str) -> str:
        for line in reversed(self.sms_log.read_text().splitlines()):
            req = json.loads(line)
            if req["json"]["to"] == phone:
                return str(req["json"]["code"])
        raise AssertionError(f"no SMS to {phone}")

    def verify(self, ns: str, phone: str, code: str) -> Reply:
        return self.sms(ns, {"action": "verify", "phone": phone, "name": NAME, "code": code, "agree": "1",
                             "url": "http://www.example.test/"})

    def register(self, ns: str, phone: str) -> str:
        self.send(ns, phone)
        r = self.verify(ns, phone, self.code(phone))
        m = re.search(r'id="account">(guest-\d{6})<', r.text)
        assert r.status == 200 and m is not None, (r.status, r.message)
        return m.group(1)

    def records(self, rtype: str | None = None, **match: Any) -> list[dict[str, Any]]:
        """What the agent's spool holds (read-only, beside the running agent)."""
        db = sqlite3.connect(f"file:{self.spool / 'spool.sqlite'}?mode=ro", uri=True, timeout=30)
        try:
            rows = db.execute("SELECT body FROM records ORDER BY id").fetchall()
        finally:
            db.close()
        recs = [dict(msgpack.unpackb(b, raw=False)) for (b,) in rows]
        return [r for r in recs if (rtype is None or r["type"] == rtype)
                and all(r.get(k) == v for k, v in match.items())]

    def collector(self, **params: Any) -> list[dict[str, Any]]:
        script = ("import base64, sys, urllib.request\n"
                  "req = urllib.request.Request(sys.argv[1], headers={'Authorization': 'Basic ' + "
                  "base64.b64encode(sys.argv[2].encode()).decode()})\n"
                  "print(urllib.request.urlopen(req, timeout=30).read().decode())")
        url = f"http://127.0.0.1:{COLLECTOR_PORT}/api/v1/query/records?{urllib.parse.urlencode(params)}"
        out = self.net.run(self.net.gw, sys.executable, "-c", script, url, ":".join(self.operator))
        return list(json.loads(out)["records"])

    def admitted(self) -> str:
        return self.net.run(self.net.gw, "nft", "list", "set", "inet", "edgeaudit_portal", "admitted")


def _require() -> None:
    require("nft", "nginx", "dnsmasq", "udhcpc", "curl", "openssl")


def _agent_toml(d: Path, desk_hash: str, portal: str, sms: str) -> str:
    return f"""
[capture]
mode = "gateway"
interfaces = ["br1"]
workers = 1
ring_mb = 4

[collector]
url = "http://127.0.0.1:{COLLECTOR_PORT}"
token_file = "agent.token"
batch_seconds = 0.2

[spool]
path = "{d / 'spool'}"
quota = "64MiB"

[unit]
name = "测试宾馆"

[portal]
interfaces = ["br1"]
address = "{PORTAL_IP}"
hostname = "{HOST}"
http_port = {HTTP_PORT}
https_port = {HTTPS_PORT}
tls_cert = "portal.crt"
tls_key = "portal.key"
methods = ["sms", "desk", "voucher"]
{portal}

[portal.sms]
url = "http://{SMS_LISTEN}/send"
body = '{{"to": "{{phone}}", "code": "{{code}}", "minutes": "{{minutes}}"}}'
{sms}

[[portal.desk_users]]
name = "front1"
password_hash = "{desk_hash}"
"""


@contextlib.contextmanager
def portal_setup(tmp_path: Path, portal: str, sms: str) -> Iterator[Portal]:
    """The namespaces, nginx, the collector, the SMS stand-in, the agent with ``[portal]`` (plus
    the ``portal`` and ``sms`` lines given) and the guest network's dnsmasq with option 114."""
    _require()
    d = tmp_path
    net = GuestNet(d, f"{os.getpid() % 100000}{next(_counter)}")
    try:
        net.up()
        # the internet: nginx, answering the captive probes as their real servers do
        www = d / "www"
        www.mkdir()
        (www / "index.html").write_text("<html><body><h1>www.example.test</h1><p>the web page</p>"
                                        "</body></html>\n")
        (d / "nginx.conf").write_text(nginx_conf(d, f"""
    log_format guest '$remote_addr $remote_port $msec $request_uri $status';
    access_log {d}/access.log guest;
    server {{
        listen {WEB}:80;
        listen {WEB}:443;
        root {www};
        location = /generate_204 {{ return 204; }}
        location = /hotspot-detect.html {{ default_type text/html; return 200 "{APPLE_SUCCESS}"; }}
        location = /connecttest.txt {{ default_type text/plain; return 200 "Microsoft Connect Test"; }}
    }}"""))
        nginx = net.start(net.inet, "nginx", ["nginx", "-c", str(d / "nginx.conf"), "-p", str(d)])
        # the collector, on the gateway's loopback
        data = d / "collector"

        def cli(*args: str) -> str:
            return subprocess.run([sys.executable, "-m", "collector.cli", *args, "--data", str(data)],
                                  capture_output=True, text=True, check=True, cwd=REPO, timeout=60,
                                  env=dict(os.environ, PYTHONPATH=str(REPO))).stdout.strip()

        (d / "agent.token").write_text(cli("agents", "add", "gw1", "--unit", "unit-1") + "\n")
        operator = ("olga", cli("users", "add", "olga", "--role", "operator"))
        collector = net.start(net.gw, "collector", [sys.executable, "-m", "collector.cli", "serve", "--data",
                                                     str(data), "--listen", f"127.0.0.1:{COLLECTOR_PORT}"])
        sms_log = d / "sms.jsonl"
        smsd = net.start(net.gw, "smsd", [sys.executable, str(REPO / "deploy" / "lab" / "lab.py"), "smsd",
                                          "--listen", SMS_LISTEN, "--out", str(sms_log)])
        # the unit admin's part: a certificate for the portal's name, a desk password's hash
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(d / "portal.key"), "-out",
                        str(d / "portal.crt"), "-days", "2", "-subj", f"/CN={HOST}", "-addext",
                        f"subjectAltName=DNS:{HOST},IP:{PORTAL_IP}"],
                       check=True, capture_output=True)
        desk_hash = subprocess.run([*agent_exe(), "portal", "hash-password"], input=DESK_PASSWORD + "\n",
                                   capture_output=True, text=True, check=True).stdout.strip()
        (d / "agent.toml").write_text(_agent_toml(d, desk_hash, portal, sms))
        option = subprocess.run([*agent_exe(), "portal", "dhcp-option", "--config", str(d / "agent.toml")],
                                capture_output=True, text=True, check=True).stdout.strip()
        assert option == f'114,"{API}"', option
        nginx.wait_listening("tcp", 80)
        collector.wait_listening("tcp", COLLECTOR_PORT, timeout=30)
        smsd.wait_listening("tcp", int(SMS_LISTEN.rsplit(":", 1)[1]))
        agent = net.start(net.gw, "agent", [*agent_exe(), "run", "--config", str(d / "agent.toml")])
        agent.wait_log("running:", timeout=60)
        agent.wait_listening("tcp", HTTP_PORT)
        agent.wait_listening("tcp", HTTPS_PORT)
        # the guest network's DHCP server: the option as printed, in a dnsmasq.conf line
        (d / "dnsmasq.conf").write_text(f"dhcp-option={option}\n")
        dhcp = net.start(net.gw, "dnsmasq", [
            "dnsmasq", "--no-daemon", f"--conf-file={d / 'dnsmasq.conf'}", "--port=0", "--user=root",
            "--interface=br1", "--bind-interfaces", "--no-ping",
            f"--dhcp-range={GUEST_NET}.100,{GUEST_NET}.150,255.255.255.0,3600",
            f"--dhcp-option=option:router,{PORTAL_IP}", f"--dhcp-leasefile={d / 'leases'}",
            f"--pid-file={d / 'dnsmasq.pid'}", "--log-dhcp", "--log-facility=-"])
        dhcp.wait_listening("udp", 67)
        yield Portal(net, agent, d / "spool", sms_log, d / "portal.crt", d / "access.log", operator)
    finally:
        net.down()


def _lease(p: Portal) -> tuple[str, str]:
    """Guest a's DHCP lease, asking for option 114: (its address, the option's text)."""
    script = p.net.dir / "udhcpc.script"
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)
    out = p.net.dir / "opt114.hex"
    p.net.run(p.net.guest("a"), "env", f"OPT_OUT={out}", "udhcpc", "-q", "-f", "-n", "-i", "eth0", "-t", "5",
              "-T", "1", "-O", "114", "-s", str(script))
    shown = p.net.run(p.net.guest("a"), "ip", "-4", "-o", "addr", "show", "dev", "eth0")
    addr = re.search(r"inet (\S+)/", shown)
    assert addr is not None
    return addr.group(1), bytes.fromhex(out.read_text().strip()).decode()


def _desk_in_browser(p: Portal) -> str:
    """The front desk registers a guest in Chromium (from the gateway: the desk PC's side);
    returns the voucher. Screenshots of the desk's form and voucher go to SHOTS."""
    chromium = shutil.which("chromium")
    if chromium is None or not _has_playwright():
        pytest.skip("Debian's chromium and Playwright are needed for the desk's page")
    shots = p.net.dir / "shots"
    res = subprocess.run(["ip", "netns", "exec", p.net.gw, sys.executable,
                          str(REPO / "deploy" / "lab" / "guest_browser.py"), "desk",
                          "--portal", f"http://{PORTAL_IP}:{HTTP_PORT}/", "--desk-user", "front1",
                          "--desk-password", DESK_PASSWORD, "--name", NAME, "--id-number", ID_NUMBER,
                          "--room", "305", "--shots", str(shots)],
                         capture_output=True, text=True, timeout=120, check=False)
    out = json.loads(res.stdout.strip().splitlines()[-1]) if res.stdout.strip() else {"error": res.stderr}
    assert "error" not in out, (out, res.stderr[-2000:], p.agent.diag())
    assert "已登记，账号 guest-" in out["desk_text"], out
    SHOTS.mkdir(parents=True, exist_ok=True)
    for s in out["shots"]:
        shutil.copy(s, SHOTS / Path(s).name)
    return str(out["voucher"])


def _has_playwright() -> bool:
    import importlib.util

    return importlib.util.find_spec("playwright") is not None


def test_portal_registration_rules_and_records(tmp_path: Path) -> None:
    with portal_setup(tmp_path, "", "code_ttl_s = 30\ncode_tries = 3\nresend_after_s = 0\n"
                      "fails_per_device_hour = 4") as p:
        a, b, gw = p.net.guest("a"), p.net.guest("b"), p.net.gw

        # DHCP: the portal's API URI as option 114 (RFC 8910)
        a_ip, opt114 = _lease(p)
        assert a_ip.startswith(f"{GUEST_NET}.1") and opt114 == API, (a_ip, opt114)

        # not registered: http:// goes to the portal, anything else is refused
        r = p.web(a, "/news?id=1")
        assert r.status == 302, r
        assert r.headers["location"] == PAGE + "?url=" + urllib.parse.quote(
            "http://www.example.test/news?id=1", safe=""), r.headers
        assert p.connect(a, 443) == "refused"
        api, ctype, cache = p.api(a)
        assert ctype == "application/captive+json" and cache == "private", (ctype, cache)
        assert api == {"captive": True, "user-portal-url": f"https://{HOST}:{HTTPS_PORT}/"}, api
        for path, host in (("/generate_204", "connectivitycheck.gstatic.com"),
                           ("/hotspot-detect.html", "captive.apple.com"),
                           ("/connecttest.txt", "www.msftconnecttest.com")):
            r = p.web(a, path, host)
            assert r.status == 302 and r.headers["location"].startswith(PAGE), (path, r)
        landing = p.net.http(a, "GET", r.headers["location"].replace(HOST, PORTAL_IP))
        assert landing.status == 200 and "手机号码登记" in landing.text and "上网凭证" in landing.text

        # SMS: one code to expire, a wrong code, then the right one
        p.send(a, PHONE_EXPIRES)
        expires_sent = time.monotonic()
        p.send(a, PHONE_A)
        code = p.code(PHONE_A)
        r = p.verify(a, PHONE_A, f"{(int(code) + 1) % 10**6:06d}")
        assert r.status == 403 and r.message == "验证码错误，还可以尝试2次。", (r.status, r.message)
        r = p.verify(a, PHONE_A, code)
        assert r.status == 200 and "登记成功" in r.message, (r.status, r.message)
        account_a = re.search(r'id="account">(guest-\d{6})<', r.text)
        assert account_a is not None and 'href="http://www.example.test/"' in r.text
        # online: the web page, other ports, the API and the probes as on an open network
        r = p.web(a)
        assert r.status == 200 and "the web page" in r.text, r
        assert any(line.split()[0] == a_ip for line in p.nginx_log.read_text().splitlines())
        assert p.connect(a, 443) == "open"
        api, ctype, _ = p.api(a)
        assert api["captive"] is False and api["can-extend-session"] is False, api
        assert 28700 < api["seconds-remaining"] <= 28800, api
        assert p.web(a, "/generate_204", "connectivitycheck.gstatic.com").status == 204
        r = p.web(a, "/hotspot-detect.html", "captive.apple.com")
        assert r.status == 200 and r.text == APPLE_SUCCESS
        r = p.web(a, "/connecttest.txt", "www.msftconnecttest.com")
        assert (r.status, r.text) == (200, "Microsoft Connect Test")
        r = p.net.http(a, "GET", f"http://{PORTAL_IP}:{HTTP_PORT}/generate_204")  # the portal's own
        assert r.status == 204
        assert "02:ea:9e:00:00:01" in p.admitted()

        # the desk: a wrong check digit (Chinese, then English), then the guest registered in
        # a browser; guest b redeems the voucher
        r = p.net.http(gw, "POST", f"http://{PORTAL_IP}:{HTTP_PORT}/desk/sign-in",
                       {"user": "front1", "password": DESK_PASSWORD})
        assert r.status == 303 and r.cookies, r
        cookie = {"Cookie": r.cookies[0].split(";", 1)[0]}
        page = p.net.http(gw, "GET", f"http://{PORTAL_IP}:{HTTP_PORT}/desk", headers=cookie)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None, page.text
        form = {"csrf": csrf.group(1), "name": NAME, "id_type": "resident", "id_number": ID_WRONG,
                "room": "305", "phone": "", "days": "2"}
        r = p.net.http(gw, "POST", f"http://{PORTAL_IP}:{HTTP_PORT}/desk/register", form, cookie)
        assert r.status == 400 and r.message == "居民身份证号码校验位不正确，请核对。", (r.status, r.message)
        r = p.net.http(gw, "POST", f"http://{PORTAL_IP}:{HTTP_PORT}/desk/register?lang=en", form, cookie)
        assert r.status == 400, r
        assert r.message == "The resident ID number's check digit is wrong: check the number."
        assert p.connect(b, 80) == "open" and p.web(b).status == 302  # b: captive, redirected
        voucher = _desk_in_browser(p)
        r = p.net.http(b, "POST", f"http://{PORTAL_IP}:{HTTP_PORT}/voucher",
                       {"voucher": voucher, "agree": "1"})
        assert r.status == 200 and "登记成功" in r.message, (r.status, r.message)
        account_b = re.search(r'id="account">(guest-\d{6})<', r.text)
        assert account_b is not None and account_b.group(1) != account_a.group(1)
        assert p.web(b).status == 200

        # brute force from b: wrong codes over two numbers until the device is refused
        p.send(b, PHONE_B1)
        p.send(b, PHONE_B2)
        for phone, expect in ((PHONE_B1, "还可以尝试2次"), (PHONE_B1, "还可以尝试1次"), (PHONE_B1, "已失效"),
                              (PHONE_B2, "还可以尝试2次")):
            r = p.verify(b, phone, f"{(int(p.code(phone)) + 3) % 10**6:06d}")
            assert r.status == 403 and expect in r.message, (phone, r.status, r.message)
        r = p.verify(b, PHONE_B2, p.code(PHONE_B2))  # the right code, too late
        assert r.status == 429, (r.status, r.message)
        assert r.message == "错误次数过多，请一小时后再试，或到前台登记。"
        r = p.sms(b, {"action": "send", "phone": "13800000001", "name": NAME})
        assert r.status == 429 and "错误次数过多" in r.message

        # the code sent at the start has expired (code_ttl_s 30)
        time.sleep(max(0.0, expires_sent + 31 - time.monotonic()))
        r = p.verify(a, PHONE_EXPIRES, p.code(PHONE_EXPIRES))
        assert r.status == 403 and r.message == "验证码已过期，请重新获取。", (r.status, r.message)

        # stop: both guests logged out, the filter gone
        p.agent.stop(timeout=60)
        assert p.agent.proc.returncode == 0, p.agent.diag()
        tables = p.net.run(gw, "nft", "list", "tables")
        assert "edgeaudit_portal" not in tables, tables

        regs = p.records("registration")
        for r0 in p.records():
            validate_record(r0)
        sms_reg = [r0 for r0 in regs if r0["method"] == "sms"]
        desk_reg = [r0 for r0 in regs if r0["method"] == "desk"]
        assert [(r0["account"], r0["phone"], r0["name"], r0["mac"], r0["ip"]) for r0 in sms_reg] == [
            (account_a.group(1), PHONE_A, NAME, "02:ea:9e:00:00:01", a_ip)], regs
        assert [(r0["account"], r0["id_type"], r0["id_number"], r0["room"], r0["desk_user"])
                for r0 in desk_reg] == [(account_b.group(1), "resident", ID_NUMBER, "305", "front1")], regs
        logins = p.records("login", source="portal")
        seen = sorted((r0["account"], r0["event"], r0["ip"]) for r0 in logins)
        acc_a, acc_b = account_a.group(1), account_b.group(1)
        assert seen == sorted([(acc_a, "login", a_ip), (acc_a, "logout", a_ip),
                               (acc_b, "login", B_IP), (acc_b, "logout", B_IP)]), logins
        # the collector got them too (the operator's search; personal numbers masked)
        coll = p.collector(type="registration")
        assert sorted(r0["account"] for r0 in coll) == sorted([account_a.group(1), account_b.group(1)]), coll
        assert all(PHONE_A not in json.dumps(r0) and ID_NUMBER not in json.dumps(r0) for r0 in coll), coll
        assert {r0["account"] for r0 in p.collector(type="login", account=account_a.group(1))} == {
            account_a.group(1)}
        # the portal's own state file keeps none of the personal data
        state = b"".join(f.read_bytes() for f in p.spool.glob("portal.sqlite*"))
        for secret in (PHONE_A, PHONE_EXPIRES, ID_NUMBER, NAME, voucher.replace("-", "")):
            assert secret.encode() not in state, secret


def test_portal_idle_and_time_up(tmp_path: Path) -> None:
    with portal_setup(tmp_path, "session_s = 6\nidle_s = 3\nvalid_s = 10\nsweep_s = 0.5", "") as p:
        a, b = p.net.guest("a"), p.net.guest("b")
        _lease(p)
        # b: registered, then quiet: the kernel's timeout ends the admission, the sweep logs it out
        account_b = p.register(b, PHONE_IDLE)
        t_b = time.monotonic()
        wait_for(lambda: bool(p.records("login", event="logout", account=account_b)),
                 "b's idle logout", timeout=10, diag=p.agent.diag)
        (idle,) = p.records("login", event="logout", account=account_b)
        assert 2.4 <= idle["duration"] <= 4.0, idle  # idle_s 3 (+ the sweep's and nft's rounding)
        assert 2.5 <= time.monotonic() - t_b <= 6, time.monotonic() - t_b
        assert B_IP not in p.admitted()

        # a: registered, browsing all along (a new connection every 0.3 s) for 12 s
        account_a = p.register(a, PHONE_A)
        out = json.loads(p.net.run(a, sys.executable, "-c", BROWSE, WEB, "12", timeout=40))
        statuses = [s for _, s in out]
        assert statuses[0] == 200 and statuses[-1] == 302, statuses
        # 200s, a redirect at the time-up (the next request lets the device back in), 200s, then
        # redirects for good once the registration's 10 s are over
        runs = [k for k, _ in itertools.groupby(statuses)]
        assert runs == [200, 302, 200, 302], statuses
        ends = p.records("login", account=account_a)
        assert [r0["event"] for r0 in ends] == ["login", "logout", "login", "logout"], ends
        assert ends[1]["duration"] == pytest.approx(6, abs=0.01), ends  # time up: at its hard end
        assert ends[3]["ts"] == pytest.approx(ends[0]["ts"] + 10, abs=0.01), ends  # the registration's end
        assert p.api(a)[0]["captive"] is True
        for r0 in p.records():
            validate_record(r0)
