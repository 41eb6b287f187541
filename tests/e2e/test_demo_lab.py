"""`make demo`'s lab (deploy/lab/lab.py), started and stopped for real.

The lab module's ``start`` builds the namespaces (two clients, the gateway, the internet, a veth
to the host), starts the real servers, the collector on the host and the agent on the gateway,
lets the users log in (RADIUS, DHCP), browse, mail and post a keyword, and asks the collector
for a traceback of alice's page view from what nginx logged (public address, port, time).
A prefix, host subnet and port of this test's own keep it apart from a `make demo` lab.

Checks: the traceback goes through the NAT record to alice's inside address and port and names
the RADIUS account with its calling station, and holds the http record of that page view; the
printed report says so; the keyword post is an alert at the collector with bob logged in behind
it (DHCP + the roster); ``stop`` leaves no process it recorded, no namespace, no host veth and
no file under /etc/netns or /run; a second ``stop`` finds nothing to do.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = ("ip", "nft", "nginx", "dnsmasq", "dovecot", "freeradius", "radclient", "udhcpc", "curl")


def _lab() -> ModuleType:
    spec = importlib.util.spec_from_file_location("edgeaudit_lab", REPO / "deploy" / "lab" / "lab.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _require() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the lab needs Linux network namespaces")
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces)")
    for t in TOOLS:
        if shutil.which(t, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            pytest.skip(f"{t} is not installed")
    probe = f"eadtprobe-{os.getpid()}"
    res = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"ip netns unavailable: {res.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_lab_start_traceback_stop(tmp_path: Path) -> None:
    _require()
    lab = _lab()
    n = os.getpid() % 200
    cfg = lab.LabConfig(dir=tmp_path / "demo", prefix=f"eadt{os.getpid() % 100000}",
                        hostnet=f"10.253.{n}", port=_free_port(), quiet=True)
    try:
        res = lab.start(cfg)
        state = lab.State.load(cfg.dir / lab.STATE)
        text = lab.report(res, cfg)
    finally:
        done = lab.stop(cfg)

    tb = res["traceback"]
    ip, port, _ts = res["public"]
    assert ip == lab.OUTSIDE and tb["query"]["port"] == port
    assert tb["nat"] and tb["inside"]["via"] == "nat", tb
    assert tb["inside"]["ip"] == "192.168.50.11", tb
    assert tb["identity"]["account"] == "alice" and tb["identity"]["source"] == "radius", tb
    assert tb["identity"]["calling_station"] == "13800138011", tb
    http = [r for r in tb["records"] if r["type"] == "http"]
    assert http and http[0]["user_agent"] == "alice-laptop" and http[0]["host"] == "www.example.test", tb
    assert tb["sessions"] and tb["sessions"][0]["nat_port"] == port, tb
    assert "account 'alice'" in text and f"olga / {res['operator'][1]}" in text, text
    assert res["addresses"]["bob"].startswith("192.168.50."), res["addresses"]

    alert = res["alert"]
    assert alert is not None and alert["category"] == "gambling" and alert["keyword"] == lab.KEYWORD, alert
    assert alert["src_ip"] == res["addresses"]["bob"]
    assert alert["_login"]["account"] == "bob", alert

    # stop left nothing behind
    assert any(d.startswith("namespace ") for d in done), done
    assert state.procs and not any(lab._alive_as_recorded(p) for p in state.procs), state.procs
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [ns for ns in cfg.namespaces if ns in names.split()], names
    assert not Path(f"/sys/class/net/{cfg.host_if}").exists()
    assert not any(Path("/etc/netns", cfg.client_ns(c)).exists() for c in lab.CLIENTS)
    assert not cfg.run_dir.exists()
    assert not (cfg.dir / lab.STATE).exists()
    assert lab.stop(cfg) == []  # idempotent
