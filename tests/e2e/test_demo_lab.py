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

The guest network (issue 19): carol's lease carries the portal's RFC 8908 API URI as DHCP option
114 (RFC 8910); the API says captive (``application/captive+json``) until she registers; her
headless Chromium opens an ordinary ``http://`` page, lands on the portal, gets a code by SMS
(the lab's stand-in for the provider), registers and is sent on to the page, which nginx serves;
the traceback of the public address and port nginx logged names her guest account (source
``portal``) and her registration; the operator's record search finds her ``registration`` (phone
masked) and her ``login`` with source ``portal``; alice and bob (br0) are not behind the portal.
The browser's screenshots are copied to ``build/portal-screenshots/`` (``$EDGEAUDIT_SCREENSHOTS``)
for the README (docs/portal/).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = ("ip", "nft", "nginx", "dnsmasq", "dovecot", "freeradius", "radclient", "udhcpc", "curl", "openssl",
         "chromium")
SHOTS = Path(os.environ.get("EDGEAUDIT_SCREENSHOTS", REPO / "build" / "portal-screenshots"))


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
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed (make deps installs it): the guest's browser")


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

    # carol, the guest
    g, carol = res["guest"], lab.GUESTS[0]
    portal = f"http://{lab.PORTAL_HOST}:{lab.PORTAL_HTTP}/"
    assert g["dhcp_option_114"] == f"https://{lab.PORTAL_HOST}:{lab.PORTAL_HTTPS}/api/captive", g
    assert g["ip"].startswith(f"{lab.GUEST_NET}."), g
    for api in (g["api_before"], g["api_after"]):
        assert api["status"] == 200 and api["content_type"] == "application/captive+json", api
        assert api["json"]["user-portal-url"] == f"https://{lab.PORTAL_HOST}:{lab.PORTAL_HTTPS}/", api
    assert g["api_before"]["json"]["captive"] is True and "seconds-remaining" not in g["api_before"]["json"]
    assert g["api_after"]["json"]["captive"] is False
    assert 0 < g["api_after"]["json"]["seconds-remaining"] <= 28800, g["api_after"]
    b = g["browser"]
    assert b["landing_url"].startswith(portal) and "url=" in b["landing_url"], b
    assert "验证码已发送" in b["code_sent_message"] and b["code_length"] == 6, b
    account = g["account"]
    assert re.fullmatch(r"guest-\d{6}", account) and account in b["online_text"], b
    assert b["final_url"] == f"http://www.{lab.DOMAIN}/" and "news of the day" in b["final_text"], b
    gtb = g["traceback"]
    assert gtb["nat"] and gtb["inside"]["via"] == "nat" and gtb["inside"]["ip"] == g["ip"], gtb
    assert gtb["identity"]["account"] == account and gtb["identity"]["source"] == "portal", gtb
    ghttp = [r for r in gtb["records"] if r["type"] == "http"]
    assert ghttp and ghttp[0]["user_agent"] == carol.user_agent, gtb
    if "registration" in gtb:  # the collector names the person behind a portal account
        assert gtb["registration"]["name"] == carol.person, gtb
    regs = g["records"]["registration"]
    assert [(r["method"], r["name"], r["mac"]) for r in regs] == [("sms", carol.person, carol.mac)], regs
    assert regs[0]["phone"] != carol.phone and regs[0]["phone"].endswith(carol.phone[-2:]), regs  # masked
    logins = [r for r in g["records"]["login"] if r["source"] == "portal" and r["event"] == "login"]
    assert logins and logins[0]["ip"] == g["ip"] and logins[0]["mac"] == carol.mac, g["records"]
    assert f"account {account}" in text and f"account {account!r} (source portal)" in text, text
    shots = sorted(Path(p).name for p in b["shots"])
    assert shots == ["portal-code-sent.png", "portal-landing.png", "portal-online.png", "web-page.png"], shots
    SHOTS.mkdir(parents=True, exist_ok=True)
    for p in b["shots"]:
        shutil.copy(p, SHOTS / Path(p).name)

    # stop left nothing behind
    assert any(d.startswith("namespace ") for d in done), done
    assert state.procs and not any(lab._alive_as_recorded(p) for p in state.procs), state.procs
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [ns for ns in cfg.namespaces if ns in names.split()], names
    assert not Path(f"/sys/class/net/{cfg.host_if}").exists()
    assert not any(Path("/etc/netns", cfg.client_ns(c)).exists() for c in (*lab.CLIENTS, *lab.GUESTS))
    assert not cfg.run_dir.exists()
    assert not (cfg.dir / lab.STATE).exists()
    assert lab.stop(cfg) == []  # idempotent
