"""`edgeaudit-agent run` on a real NAT gateway (issue 6 must-show), end to end.

Client ns -- gateway ns -- server ns (``nat_lab.nat_gateway``: nftables masquerade on the
gateway's outside interface, ports remapped). The collector runs in the gateway namespace on
its loopback; the agent runs there too with an ``agent.toml``: live capture on the inside
interface (AF_PACKET ring, two fanout workers), conntrack NAT, the spool, the uploader, the
admin's roster. The client makes TCP and UDP connections to the server's echo service, which
logs every peer as it saw it: the public address and port, observed outside the agent.

Checks: the collector's `session` records of those connections carry `nat_ip`/`nat_port`
equal to what the server saw (and to the kernel's conntrack table), the agent's `nat` records
say the same, a traceback of each (public address, port, time) names the client's inside
address and port and the roster's account; `selfcheck` reports the measures with evidence
from the running agent; SIGTERM flushes every open flow and the spool drains.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent" / "nat"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "collector"))
from collector_server import free_port  # noqa: E402
from nat_lab import ECHO_PORT, NatNet, conntrack_table, nat_gateway, wait_for  # noqa: E402
from netns import REPO  # noqa: E402
from test_block_inline import collector_on  # noqa: E402

CONNECTIONS = 12
CLIENT = """
import socket, sys
server, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    with socket.create_connection((server, port), timeout=5) as s:
        s.sendall(b"hello %d" % i)
        assert s.recv(100) == b"hello %d" % i
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(5)
    u.sendto(b"ping %d" % i, (server, port))
    assert u.recvfrom(100)[0] == b"ping %d" % i
    u.close()
print("done")
"""


FETCH = """
import sys, urllib.request
req = urllib.request.Request(sys.argv[1], headers={"Authorization": sys.argv[2]})
with urllib.request.urlopen(req, timeout=30) as resp:
    sys.stdout.write(resp.read().decode())
"""


FETCH_RAW = """
import sys, urllib.request
sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=30).read().decode())
"""


def _get(ns_argv: Any, url: str, path: str, user: tuple[str, str], params: dict[str, Any]) -> Any:
    """GET from the collector, which listens on the gateway namespace's loopback."""
    auth = "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    res = subprocess.run(ns_argv(sys.executable, "-c", FETCH, f"{url}{path}?{urlencode(params)}", auth),
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(res.stdout)


def _config(tmp: Path, net: NatNet, url: str, token: str, metrics: int, mode: str = "gateway",
            nat: str = "") -> Path:
    example = (REPO / "deploy" / "agent.toml").read_text()
    unit = example[example.index("[unit]"):]
    (tmp / "roster.csv").write_text(f"account,name,mac,ip\nalice,Alice,,{net.client_ip}\n")
    cfg = tmp / "agent.toml"
    cfg.write_text(f"""
[capture]
mode = "{mode}"
interfaces = ["{net.routed.gw_c.ifname}"]
workers = 2
ring_mb = 8

[inspection]
rules = "{REPO / 'rulesets' / 'examples'}"
update_interval_s = 0

[filter]
cache_dir = "{tmp / 'engine-cache'}"

[collector]
url = "{url}"
token = "{token}"
batch_seconds = 0.2

[spool]
path = "{tmp / 'spool'}"
quota = "256MiB"

[identity]
roster = "roster.csv"
{nat}

[metrics]
listen = "127.0.0.1:{metrics}"

{unit}""")
    return cfg


def test_agent_run_on_a_nat_gateway(tmp_path: Path) -> None:
    with nat_gateway(tmp_path / "lab") as net:
        routed = net.routed
        url, token, operator, collector = collector_on(net.routed, tmp_path / "collector")

        def query(path: str, **params: Any) -> Any:
            return _get(routed.gw_c.argv, url, path, operator, params)

        metrics = free_port()
        cfg = _config(tmp_path, net, url, token, metrics)
        agent = routed.start(routed.gw_c, "agent",
                             [sys.executable, "-m", "agent.cli", "run", "--config", str(cfg)])
        agent.wait_log("running:", timeout=60)
        agent.wait_listening("tcp", metrics)
        # which keyword engine runs, and why, in the log at start (issue 16)
        agent.wait_log("keyword engine vectorscan (auto: vectorscan", timeout=10)

        net.client(CLIENT, net.server_ip, str(ECHO_PORT), str(CONNECTIONS))
        peers = net.peers()
        assert len(peers) == 2 * CONNECTIONS
        # the kernel's own view, read right after the traffic (TCP TIME_WAIT and UDP entries remain)
        table = {(c.proto, c.reply[1], c.reply[3]) for c in conntrack_table(net.gw)}
        assert set(peers) <= table

        # the running agent's self-check, with evidence from its status files
        def receipt() -> dict[str, Any]:
            argv = routed.gw_c.argv(sys.executable, "-m", "agent.cli", "selfcheck", "--config", str(cfg),
                                    "--json")
            res = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO,
                                 env=dict(os.environ, PYTHONPATH=str(REPO)))
            return {m["key"]: m for m in json.loads(res.stdout)["measures"]}

        expected = ("capture", "nat", "registration", "upload", "maintenance_log", "backup", "filtering")
        # status files are rewritten every few seconds: wait for the one that shows the traffic
        wait_for(lambda: all(receipt()[k]["ok"] for k in expected), "selfcheck to pass", 40,
                 lambda: json.dumps(receipt(), ensure_ascii=False, indent=1) + agent.diag())
        got_receipt = receipt()
        assert any(e.startswith("running keyword engine: vectorscan (auto: vectorscan")
                   for e in got_receipt["filtering"]["evidence"]), got_receipt["filtering"]

        # SIGHUP: the configuration is read again, and the reload is in the maintenance log
        os.kill(agent.pid, signal.SIGHUP)

        def reloaded() -> bool:
            audit = query("/api/v1/query/records", type="audit", limit=100)["records"]
            return any(r["action"] == "reload" and r["result"] == "ok" for r in audit)

        wait_for(reloaded, "the reload's audit record at the collector", 30, agent.diag)

        # Prometheus text on the agent's metrics port: capture counters, records, the spool
        def scrape() -> tuple[str, dict[str, float]]:
            text = subprocess.run(routed.gw_c.argv(sys.executable, "-c", FETCH_RAW,
                                                   f"http://127.0.0.1:{metrics}/metrics"),
                                  capture_output=True, text=True, timeout=30, check=True).stdout
            # a label value may hold spaces: the value is after the last one
            return text, {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                          if line}

        # every connection's NAT create counted (a conntrack event lost on a busy machine is
        # made up by the agent's table re-read, which may take a moment)
        wait_for(lambda: scrape()[1].get('edgeaudit_records_total{type="nat"}', 0) >= 2 * CONNECTIONS,
                 "the NAT records counted on /metrics", 30, lambda: scrape()[0])
        metrics_text, values = scrape()
        assert values["edgeaudit_capture_packets_total"] > 0, metrics_text
        assert values["edgeaudit_spool_quota_bytes"] == 256 * 2**20
        assert "edgeaudit_capture_kernel_drops_total" in values
        engine_info = 'edgeaudit_keyword_engine_info{engine="vectorscan",reason="auto: '
        assert [k for k in values if k.startswith(engine_info)], metrics_text

        agent.stop(timeout=60)  # SIGTERM: open flows are flushed, the spool drains
        assert agent.proc.returncode == 0, agent.diag()

        def sessions() -> list[dict[str, Any]]:
            got = query("/api/v1/query/records", type="session", ip=net.client_ip, limit=1000)["records"]
            return [r for r in got if r["dst_port"] == ECHO_PORT]

        wait_for(lambda: len(sessions()) >= 2 * CONNECTIONS, "the sessions at the collector", 30, agent.diag)
        got = sessions()
        stamped = {(r["proto"], r["nat_ip"], r["nat_port"]) for r in got}
        assert stamped == set(peers), (sorted(stamped), sorted(peers))

        nat = query("/api/v1/query/records", type="nat", limit=1000)["records"]
        created = {(r["proto"], r["outside_ip"], r["outside_port"]) for r in nat if r["event"] == "create"
                   and r["inside_ip"] == net.client_ip and r["remote_port"] == ECHO_PORT}
        assert created == set(peers)

        for s in got:
            # at the middle of the connection: before the conntrack event's receipt for a short one
            ans = query("/api/v1/query/traceback", ip=s["nat_ip"], port=s["nat_port"], proto=s["proto"],
                        ts=s["ts"] + s["duration"] / 2)
            assert ans["nat"] and ans["inside"]["via"] == "nat", ans
            assert ans["inside"]["ip"] == net.client_ip and ans["inside"]["port"] == s["src_port"], ans
            assert ans["identity"]["account"] == "alice", ans
            assert s["uid"] in [r["uid"] for r in ans["records"]]
        stats = query("/api/v1/query/records", type="stats", limit=100)["records"]
        assert stats and {r.get("keyword_engine") for r in stats} == {"vectorscan"}, stats
        units = {u["unit"]: u for u in query("/api/v1/units")["units"]}
        assert units["unit-1"]["profile"]["name"] == "某某市图书馆", units
        audit = query("/api/v1/query/records", type="audit", limit=100)["records"]
        assert [r["action"] for r in audit if r["action"] in ("start", "stop")] == ["start", "stop"], audit
        os.kill(collector.pid, signal.SIGINT)


SYSLOG = r"""
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
lines = [
    f"<166>1 {stamp} asa1 - - - - %ASA-6-302013: Built outbound TCP connection 4711 for "
    "outside:198.51.100.9/443 (198.51.100.9/443) to inside:192.168.7.5/51234 (203.0.113.7/40001)",
    f"<166>1 {stamp} asa1 - - - - %ASA-6-302014: Teardown TCP connection 4711 for "
    "outside:198.51.100.9/443 to inside:192.168.7.5/51234 duration 0:00:31 bytes 6120 TCP FINs",
    "<166>1 garbage that is not a NAT line",
]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for line in lines:
    s.sendto(line.encode(), (host, port))
"""


def test_mirror_mode_takes_nat_from_the_routers_syslog(tmp_path: Path) -> None:
    """`mode = "mirror"`: no conntrack; the router's NAT log (syslog, Cisco ASA lines) gives
    the `nat` records, which reach the collector; a malformed line is counted, not fatal."""
    with nat_gateway(tmp_path / "lab") as net:
        routed = net.routed
        url, token, operator, collector = collector_on(net.routed, tmp_path / "collector")
        syslog_port = free_port()
        cfg = _config(tmp_path, net, url, token, free_port(), mode="mirror",
                      nat=f'[nat]\nsyslog_listen = "127.0.0.1:{syslog_port}"\nsyslog_protocols = ["udp"]\n')
        agent = routed.start(routed.gw_c, "agent",
                             [sys.executable, "-m", "agent.cli", "run", "--config", str(cfg)])
        agent.wait_log("running:", timeout=60)
        agent.wait_listening("udp", syslog_port)
        routed.run(routed.gw_c, sys.executable, "-c", SYSLOG, "127.0.0.1", str(syslog_port))

        def nat() -> list[dict[str, Any]]:
            got: list[dict[str, Any]] = _get(routed.gw_c.argv, url, "/api/v1/query/records", operator,
                                             {"type": "nat"})["records"]
            return got

        wait_for(lambda: len(nat()) == 2, "the router's two NAT records at the collector", 30, agent.diag)
        create, destroy = nat()
        assert (create["event"], destroy["event"]) == ("create", "destroy")
        assert (create["inside_ip"], create["inside_port"]) == ("192.168.7.5", 51234)
        assert (create["outside_ip"], create["outside_port"]) == ("203.0.113.7", 40001)
        assert (create["remote_ip"], create["remote_port"]) == ("198.51.100.9", 443)
        ans = _get(routed.gw_c.argv, url, "/api/v1/query/traceback", operator,
                   {"ip": "203.0.113.7", "port": 40001, "ts": create["ts"]})
        assert ans["inside"] == {"ip": "192.168.7.5", "port": 51234, "via": "nat"}, ans
        agent.stop(timeout=60)
        assert agent.proc.returncode == 0, agent.diag()
        status = json.loads((tmp_path / "spool" / "status" / "supervisor.json").read_text())
        assert status["syslog"]["malformed"] >= 1, status
