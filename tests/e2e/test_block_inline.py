"""Blocking for real: client, gateway and server in three network namespaces.

The gateway forwards between the client's and the server's networks and queues every
forwarded packet to NFQUEUE (an nftables `queue` rule); `edgeaudit-agent inline` runs in
the gateway's namespace with the example ruleset (`rulesets/examples`: its `drugs`
category blocks). nginx serves the server's network and passes POSTs to a small backend
that writes each body it gets to a file.

A form POST whose body carries a block keyword in its second segment is cut off: the
client's connection is reset, the backend never gets the body and nginx's access log
never shows the request completed; the agent's alert says `blocked: true`. The same POST
without the keyword, on the next connection, goes through (200 in nginx's log, the body
at the backend), so the gateway forwards normally and only the matching connection was
stopped.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from netns import REPO, Daemon, Side, _ip, agent_exe, nginx_conf, require, wait_for

QUEUE = 7
KEYWORD = "出售冰毒"  # rulesets/examples/drugs.txt has 冰毒: action block
CLEAN_BODY = "name=alice&text=" + quote("今天天气很好")
BAD_BODY = "name=mallory&text=" + quote(f"便宜{KEYWORD}联系我")

BACKEND = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(sys.argv[1], "ab") as f:
            f.write(body + b"\n")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", 8080), H).serve_forever()
"""

# The client sends the headers and the body's first half, then the second half (with the
# keyword when there is one) as a separate segment, and reports what became of the request.
CLIENT = r"""
import socket, sys
host, body = sys.argv[1], sys.argv[2].encode()
s = socket.create_connection((host, 80), timeout=5)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
head = (f"POST /post HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
try:
    s.sendall(head + body[:10])
    s.sendall(body[10:])
    reply = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        reply += chunk
    print("REPLY", reply.split(b"\r\n", 1)[0].decode())
except ConnectionResetError:
    print("RESET")
except socket.timeout:
    print("TIMEOUT")
"""


def server_conf(tmp: Path, addr: str) -> str:
    return nginx_conf(tmp, f"""
    log_format e2e '$request_method $request_uri $status $request_length';
    access_log {tmp}/access.log e2e;
    server {{
        listen {addr}:80;
        location /post {{ proxy_pass http://127.0.0.1:8080; }}
    }}""")


class Routed:
    """client ns -- gateway ns -- server ns, two /24s, the gateway routing between them."""

    def __init__(self, workdir: Path) -> None:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
        w = int(worker) if worker.isdigit() else 0
        third = (os.getpid() % 120) * 2
        self.cnet, self.snet = f"10.{150 + w % 50}.{third}", f"10.{150 + w % 50}.{third + 1}"
        tag = f"{os.getpid() % 10_000_000}"
        self.client = Side(f"eab-{tag}-cli", f"eabc{tag}", f"{self.cnet}.2", "02:eb:00:00:00:02")
        self.gw_c = Side(f"eab-{tag}-gw", f"eabgc{tag}", f"{self.cnet}.1", "02:eb:00:00:00:01")
        self.gw_s = Side(self.gw_c.ns, f"eabgs{tag}", f"{self.snet}.1", "02:eb:00:00:01:01")
        self.server = Side(f"eab-{tag}-srv", f"eabs{tag}", f"{self.snet}.2", "02:eb:00:00:01:02")
        self.workdir = workdir
        self.daemons: list[Daemon] = []

    def up(self) -> None:
        for ns in (self.client.ns, self.gw_c.ns, self.server.ns):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            subprocess.run(["ip", "netns", "exec", ns, "sh", "-c",
                            "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6"], check=False)
        for a, b in ((self.client, self.gw_c), (self.server, self.gw_s)):
            _ip("link", "add", a.ifname, "netns", a.ns, "address", a.mac, "type", "veth",
                "peer", "name", b.ifname, "netns", b.ns, "address", b.mac)
            for s in (a, b):
                _ip("-n", s.ns, "addr", "add", f"{s.addr}/24", "dev", s.ifname)
                _ip("-n", s.ns, "link", "set", s.ifname, "up")
                # real segments on the wire (and in the queue), as on a physical link
                subprocess.run(["ip", "netns", "exec", s.ns, "ethtool", "-K", s.ifname, "tso", "off",
                                "gso", "off", "gro", "off"], capture_output=True, check=False)
        _ip("-n", self.client.ns, "route", "add", "default", "via", self.gw_c.addr)
        _ip("-n", self.server.ns, "route", "add", "default", "via", self.gw_s.addr)
        subprocess.run(["ip", "netns", "exec", self.gw_c.ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                       check=True)

    def queue(self, num: int) -> None:
        """Queue every forwarded packet to NFQUEUE `num`: nftables' own `queue` statement, or, on
        a kernel built without it (CONFIG_NFT_QUEUE, as on this VM), the xtables NFQUEUE target
        in an nftables table (iptables-nft); the kernel's queue is the same either way."""
        rules = (f"table inet eablock {{\n chain forward_q {{\n"
                 f"  type filter hook forward priority 0; policy accept;\n  queue num {num}\n }}\n}}\n")
        res = subprocess.run(["ip", "netns", "exec", self.gw_c.ns, "nft", "-f", "-"], input=rules, text=True,
                             capture_output=True, check=False)
        if res.returncode != 0:
            self.run(self.gw_c, "iptables-nft", "-A", "FORWARD", "-j", "NFQUEUE", "--queue-num", str(num))

    def start(self, side: Side, name: str, args: list[str]) -> Daemon:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(side.argv(*args), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, cwd=REPO,
                                    env=dict(os.environ, PYTHONPATH=str(REPO)))
        d = Daemon(name, proc, log)
        self.daemons.append(d)
        return d

    def run(self, side: Side, *args: str) -> str:
        res = subprocess.run(side.argv(*args), capture_output=True, text=True, timeout=30, check=False)
        assert res.returncode == 0, f"{args}: {res.stderr}\n" + "\n".join(d.diag() for d in self.daemons)
        return res.stdout

    def down(self) -> None:
        for d in reversed(self.daemons):
            d.stop()
        for ns in (self.client.ns, self.gw_c.ns, self.server.ns):
            res = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            for pid in res.stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def collector_on(net: Routed, data: Path) -> tuple[str, str, tuple[str, str], Daemon]:
    """A collector on the gateway namespace's loopback with agent gw1 (unit-1) and operator
    olga: (url, gw1's token, olga's credentials, the daemon). The port is the gateway
    namespace's own, so any fixed one is free."""
    def cli(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "collector.cli", *args, "--data", str(data)],
                              capture_output=True, text=True, check=True, cwd=REPO, timeout=60,
                              env=dict(os.environ, PYTHONPATH=str(REPO))).stdout.strip()

    token = cli("agents", "add", "gw1", "--unit", "unit-1")
    operator = ("olga", cli("users", "add", "olga", "--role", "operator"))
    port = 18470
    collector = net.start(net.gw_c, "collector", [sys.executable, "-m", "collector.cli", "serve", "--data",
                                                   str(data), "--listen", f"127.0.0.1:{port}"])
    collector.wait_listening("tcp", port)
    return f"http://127.0.0.1:{port}", token, operator, collector


@contextlib.contextmanager
def routed(workdir: Path) -> Iterator[Routed]:
    require("nft")
    workdir.mkdir(parents=True, exist_ok=True)
    net = Routed(workdir)
    try:
        net.up()
        yield net
    finally:
        net.down()


@contextlib.contextmanager
def _web(tmp_path: Path) -> Iterator[tuple[Routed, Path]]:
    """The three namespaces with nginx and its backend on the server side, and the
    gateway's forwarded packets queued to NFQUEUE ``QUEUE``; yields (net, nginx's directory)."""
    require("nginx", "nft")
    with routed(tmp_path / "net") as net:
        srv = tmp_path / "srv"
        srv.mkdir()
        (srv / "nginx.conf").write_text(server_conf(srv, net.server.addr))
        backend = net.start(net.server, "backend", [sys.executable, "-c", BACKEND, str(srv / "received.txt")])
        backend.wait_listening("tcp", 8080)
        nginx = net.start(net.server, "nginx", ["nginx", "-c", str(srv / "nginx.conf"), "-p", str(srv)])
        nginx.wait_listening("tcp", 80)
        net.queue(QUEUE)
        yield net, srv


def _posts(net: Routed, srv: Path, agent: Daemon) -> None:
    """The keyword POST is reset, the clean one gets its 200, and only the clean body arrived."""
    bad = net.run(net.client, sys.executable, "-c", CLIENT, net.server.addr, BAD_BODY).strip()
    good = net.run(net.client, sys.executable, "-c", CLIENT, net.server.addr, CLEAN_BODY).strip()
    assert good == "REPLY HTTP/1.1 200 OK", (good, agent.diag())
    assert bad == "RESET", (bad, agent.diag())  # the reset from the gateway reached the client
    # nginx writes its log line after the response went out: wait for the clean POST's own line
    # (the blocked POST's line, if any, may come first)
    wait_for(lambda: (srv / "access.log").exists()
             and any(line.split()[2] == "200" for line in (srv / "access.log").read_text().splitlines()),
             "nginx to log the clean POST")
    # the backend got exactly the clean body; the blocked one never arrived
    assert (srv / "received.txt").read_text().splitlines() == [CLEAN_BODY]
    # nginx logged the clean POST as done (200) and the blocked one never as done
    log = (srv / "access.log").read_text().splitlines()
    done = [line for line in log if line.split()[2] == "200"]
    assert done == [f"POST /post 200 {_req_len(CLEAN_BODY, net)}"], log


def _check_alert(a: dict[str, Any], net: Routed) -> None:
    got = (a["category"], a["action"], a["blocked"], a["field"])
    assert got == ("drugs", "block", True, "http.request_body"), a
    assert a["keyword"] == "冰毒" and a["src_ip"] == net.client.addr and a["dst_port"] == 80
    assert "冰毒" in a["snippet"]


def test_a_post_with_a_block_keyword_is_cut_off(tmp_path: Path) -> None:
    import json

    from wire.validate import validate_record

    with _web(tmp_path) as (net, srv):
        out = tmp_path / "records.jsonl"
        agent = net.start(net.gw_c, "agent", [*agent_exe(), "inline", "--queue", str(QUEUE), "--rules",
                                               str(REPO / "rulesets" / "examples"), "--jsonl", str(out)])
        agent.wait_log("inline on queue")
        _posts(net, srv, agent)
        agent.stop()
        assert "inline stopped" in agent.output(), agent.diag()

        records = [json.loads(line) for line in out.read_text().splitlines()]
        for r in records:
            validate_record(r)
        alerts = [r for r in records if r["type"] == "alert"]
        assert len(alerts) == 1, alerts
        _check_alert(alerts[0], net)
        counters = agent.output().rsplit("inline stopped:", 1)[1]
        assert "connections_blocked=1" in counters and "resets_sent=2" in counters, counters


def test_the_live_agent_in_inline_mode_blocks_and_reports_to_the_collector(tmp_path: Path) -> None:
    """`edgeaudit-agent run` with `mode = "inline"`: the same blocking, and the alert, with
    `blocked: true`, reaches a collector (in the gateway namespace) through the spool."""
    import json

    with _web(tmp_path) as (net, srv):
        url, token, (_, password), _collector = collector_on(net, tmp_path / "collector")
        port = int(url.rsplit(":", 1)[1])
        cfg = tmp_path / "agent.toml"
        cfg.write_text(f"""
[capture]
mode = "inline"
queue = {QUEUE}
[inspection]
rules = "{REPO / 'rulesets' / 'examples'}"
[filter]
cache_dir = "{tmp_path / 'engine-cache'}"
[collector]
url = "http://127.0.0.1:{port}"
token = "{token}"
batch_seconds = 0.2
[spool]
path = "{tmp_path / 'spool'}"
[unit]
name = "Reading room 3"
""")
        agent = net.start(net.gw_c, "agent", [*agent_exe(), "run", "--config", str(cfg)])
        agent.wait_log("running:")
        _posts(net, srv, agent)
        agent.stop(timeout=60)
        assert agent.proc.returncode == 0, agent.diag()
        fetch = ("import sys, urllib.request, base64\n"
                 "req = urllib.request.Request(sys.argv[1], headers={'Authorization': 'Basic ' + "
                 "base64.b64encode(sys.argv[2].encode()).decode()})\n"
                 "print(urllib.request.urlopen(req, timeout=30).read().decode())")
        got = net.run(net.gw_c, sys.executable, "-c", fetch,
                      f"http://127.0.0.1:{port}/api/v1/query/records?type=alert", f"olga:{password}")
        alerts = json.loads(got)["records"]
        assert len(alerts) == 1, (alerts, agent.diag())
        _check_alert(alerts[0], net)


def _req_len(body: str, net: Routed) -> int:
    head = (f"POST /post HTTP/1.1\r\nHost: {net.server.addr}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return len(head) + len(body)
