"""The issue-6 reliability run against the whole agent: ``edgeaudit-agent run`` and
``edgeaudit-collector serve`` each killed with SIGKILL five times while 100,000 records flow.

The agent runs in the gateway namespace of the three-namespace lab in mirror mode (a capture
worker on the inside interface, the router's NAT syslog over TCP as the record source: the
one input a test can number and replay exactly), with its spool, uploader and status; the
collector runs on the same namespace's loopback. ``syslog_sender.py`` sends 100,000 numbered
ASA "Built" lines at ~5,000/s and, after each agent death, resumes after the newest line in
the spool (what a lost TCP tail needs). The test kills the agent's supervisor process (its
capture worker must go too: ``agent.capture.orphan``) and the collector at random moments,
restarting each, then checks the spool holds every line once and the collector stores every
one of them exactly once (count and content).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "collector"))
from collector_server import free_port  # noqa: E402
from netns import REPO, Daemon, wait_for  # noqa: E402
from syslog_sender import OUTSIDE, REMOTE, number_of  # noqa: E402
from test_block_inline import Routed, collector_on, routed  # noqa: E402

from agent.spool.store import Spool  # noqa: E402
from collector.storage.sqlite import SqliteStorage  # noqa: E402

TOTAL, RATE = 100_000, 5000.0
SENDER = Path(__file__).with_name("syslog_sender.py")


def _config(tmp: Path, net: Routed, url: str, token: str, syslog_port: int) -> Path:
    example = (REPO / "deploy" / "agent.toml").read_text()
    cfg = tmp / "agent.toml"
    cfg.write_text(f"""
[capture]
mode = "mirror"
interfaces = ["{net.gw_c.ifname}"]
workers = 1
ring_mb = 4

[collector]
url = "{url}"
token = "{token}"
batch_seconds = 0.2

[spool]
path = "{tmp / 'spool'}"
quota = "512MiB"

[nat]
syslog_listen = "127.0.0.1:{syslog_port}"
syslog_protocols = ["tcp"]

[metrics]
listen = ""

{example[example.index("[unit]"):]}""")
    return cfg


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def _kill(d: Daemon) -> None:
    os.kill(d.pid, signal.SIGKILL)  # the process only, as `kill -9 PID` (not its group)
    d.proc.wait(10)


def _numbers(records: list[dict[str, Any]]) -> list[int]:
    for r in records:  # content: the line's fields as the router logged them
        assert (r["outside_ip"], r["remote_ip"], r["remote_port"], r["event"]) == (OUTSIDE, REMOTE, 443,
                                                                                  "create"), r
        assert r["outside_port"] == 20000 + number_of(r) % 40000 and r["inside_port"] == 40000, r
    return [number_of(r) for r in records]


def _exactly_once(numbers: list[int], where: str) -> None:
    dups = [n for n, c in Counter(numbers).items() if c > 1]
    missing = set(range(TOTAL)) - set(numbers)
    assert not dups, f"{where}: {len(dups)} lines more than once, e.g. {sorted(dups)[:5]}"
    assert not missing, f"{where}: {len(missing)} lines missing, e.g. {sorted(missing)[:5]}"
    assert len(numbers) == TOTAL, where


def test_kill_the_running_agent_and_the_collector_5_times_each(tmp_path: Path) -> None:
    seed = int(os.environ.get("RUN_KILL_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    with routed(tmp_path / "net") as net:
        data = tmp_path / "collector"
        url, token, _, collector = collector_on(net, data)
        collector_port = int(url.rsplit(":", 1)[1])
        port = free_port()
        cfg = _config(tmp_path, net, url, token, port)

        def start_agent() -> Daemon:
            d = net.start(net.gw_c, "agent", [sys.executable, "-m", "agent.cli", "run", "--config", str(cfg)])
            d.wait_log("running:", timeout=60)
            d.wait_listening("tcp", port, timeout=60)
            return d

        agent = start_agent()
        spool = tmp_path / "spool" / "spool.sqlite"
        sender = net.start(net.gw_c, "sender", [sys.executable, str(SENDER), "127.0.0.1", str(port),
                                                str(spool), str(TOTAL), str(RATE)])
        kills = ["agent"] * 5 + ["collector"] * 5
        rng.shuffle(kills)
        orphans: list[int] = []
        for kind in kills:
            time.sleep(rng.uniform(0.3, 2.0))  # a random moment (not synchronization)
            if kind == "agent":
                workers = _children(agent.pid)
                assert workers, agent.diag()
                _kill(agent)
                orphans += workers
                time.sleep(rng.uniform(0, 0.5))
                agent = start_agent()
            else:
                _kill(collector)
                time.sleep(rng.uniform(0, 0.5))
                collector = net.start(net.gw_c, "collector", [
                    sys.executable, "-m", "collector.cli", "serve", "--data", str(data), "--listen",
                    f"127.0.0.1:{collector_port}"])
                collector.wait_listening("tcp", collector_port)
        # every capture worker of a killed agent ended with it (none kept capturing beside the new one)
        wait_for(lambda: all(_gone(p) for p in orphans), "the killed agents' workers to end", 30, agent.diag)
        wait_for(lambda: sender.proc.poll() is not None, "the sender to see every line spooled", 120,
                 lambda: sender.diag() + "\n" + agent.diag())
        assert sender.proc.returncode == 0, sender.diag()
        def drained() -> bool:
            with Spool(spool) as sp:
                return sp.stats().unsent_records == 0

        wait_for(drained, "the spool to drain", 120, agent.diag)
        agent.stop(timeout=60)
        assert agent.proc.returncode == 0, agent.diag()
        collector.stop(timeout=60)
    print(f"seed {seed}: kills {kills}; sender: {sender.output().strip().splitlines()[-1]}")
    conn = sqlite3.connect(spool)
    spooled = [msgpack.unpackb(b, raw=False) for (b,) in conn.execute(
        "SELECT body FROM records WHERE type = 'nat' ORDER BY id")]
    conn.close()
    _exactly_once(_numbers(spooled), "spool")
    store = SqliteStorage(data / "records")
    try:
        stored: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = store.records(type="nat", cursor=cursor, limit=1000)
            stored += page.records
            if (cursor := page.cursor) is None:
                break
    finally:
        store.close()
    _exactly_once(_numbers(stored), "collector")

