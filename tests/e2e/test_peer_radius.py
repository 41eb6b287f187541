"""End to end against FreeRADIUS: accounting Start/Stop and two Access-Requests sent by radclient.

FreeRADIUS runs in the foreground (``freeradius -f -l stdout -d DIR``) from a copy of
Debian's /etc/freeradius/3.0 adjusted here: every path in tmp, no switch to user freerad,
no reject delay, the `eap` module left out (Debian installs it without certificates until
its postinst makes them), and one virtual server of our own instead of `default` and
`inner-tunnel`: PAP against the `files` module (one user) and accounting to `detail`. The
client namespace is the only RADIUS client. radclient plays the NAS.

Asserted: one `radius` record per exchange (code, status_type, username, framed_addr,
calling_station_id, acct_session_id, session_time, octets, result); the `login` records
the accounting gives (login at Start, logout at Stop with duration = Acct-Session-Time,
source radius, calling_station = the Calling-Station-Id); Access-Requests bind nothing;
neither password (radclient sends them hidden with the secret, RFC 2865 §5.2, but the
decoder must not try) nor the shared secret appears in the output.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
from netns import Net, assert_captured, replay, require, veth_pair

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy" / "lab"))
from lab import RADIUS_SITE  # noqa: E402

RADDB = Path("/etc/freeradius/3.0")
SECRET = "e2e-Shared-Secret-5d2a"
USER, PASSWORD, WRONG = "alice", "Radius-Pw-8c1f", "Radius-Wrong-3e07"
FRAMED, CSID, CALLED = "100.64.7.23", "13800138000", "00-11-22-33-44-55:edge"
SESSION_ID, SESSION_TIME, IN_OCTETS, OUT_OCTETS = "e2e-sess-0001", 42, 12345, 67890

SITE = RADIUS_SITE  # the lab's site: PAP auth + accounting on one address


def _raddb(d: Path, server_addr: str, client_addr: str) -> Path:
    """A private copy of Debian's raddb, adjusted (see the module docstring)."""
    if not (RADDB / "radiusd.conf").exists():
        pytest.skip(f"{RADDB} not installed")
    raddb = d / "raddb"
    shutil.copytree(RADDB, raddb, symlinks=True)
    conf = (raddb / "radiusd.conf").read_text()
    for key, value in (("raddbdir", str(raddb)), ("logdir", str(d / "log")), ("run_dir", str(d / "run")),
                       ("reject_delay", "0")):
        conf, n = re.subn(rf"(?m)^(\s*){key}\s*=.*$", rf"\g<1>{key} = {value}", conf, count=1)
        assert n == 1, key
    conf = re.sub(r"(?m)^(\s*)(user|group)\s*=", r"\1#\2 =", conf)  # stay root: the tmp dir is 0700
    (raddb / "radiusd.conf").write_text(conf)
    (raddb / "mods-enabled" / "eap").unlink(missing_ok=True)
    for site in (raddb / "sites-enabled").iterdir():
        site.unlink()
    (raddb / "sites-enabled" / "e2e").write_text(SITE % {"addr": server_addr})
    (raddb / "clients.conf").write_text(
        f'client e2e-nas {{\n    ipaddr = {client_addr}\n    secret = "{SECRET}"\n}}\n')
    (raddb / "mods-config" / "files" / "authorize").write_text(f'{USER} Cleartext-Password := "{PASSWORD}"\n')
    for sub in ("log", "run"):
        (d / sub).mkdir()
    return raddb


def _radclient(net: Net, kind: str, attrs: dict[str, str | int], want: str) -> None:
    port = 1813 if kind == "acct" else 1812
    body = "\n".join(f"{k} = {v}" for k, v in attrs.items()) + "\n"
    res = net.run(net.client, ["radclient", "-x", "-r", "1", "-t", "3", f"{net.server.addr}:{port}",
                               kind, SECRET], input=body, check=False)
    assert want in res.stdout, f"radclient {kind}: wanted {want}\n{res.stdout}\n{res.stderr}"


def test_peer_radius(tmp_path: Path) -> None:
    paths = require("freeradius", "radclient")
    with veth_pair(tmp_path / "net") as net:
        raddb = _raddb(tmp_path, net.server.addr, net.client.addr)
        rad = net.start(net.server, "freeradius",
                        [paths["freeradius"], "-f", "-l", "stdout", "-d", str(raddb)])
        rad.wait_listening("udp", 1812)
        rad.wait_listening("udp", 1813)
        nas: dict[str, str | int] = {"NAS-IP-Address": net.client.addr, "NAS-Port": 7,
                                     "Called-Station-Id": f'"{CALLED}"'}
        session: dict[str, str | int] = {"User-Name": f'"{USER}"', "Framed-IP-Address": FRAMED,
                                         "Calling-Station-Id": f'"{CSID}"',
                                         "Acct-Session-Id": f'"{SESSION_ID}"', **nas}
        with net.capture() as cap:
            _radclient(net, "auth", {"User-Name": f'"{USER}"', "User-Password": f'"{PASSWORD}"', **nas},
                       "Access-Accept")
            _radclient(net, "auth", {"User-Name": f'"{USER}"', "User-Password": f'"{WRONG}"', **nas},
                       "Access-Reject")
            _radclient(net, "acct", {**session, "Acct-Status-Type": "Start"}, "Accounting-Response")
            _radclient(net, "acct", {**session, "Acct-Status-Type": "Stop", "Acct-Session-Time": SESSION_TIME,
                                     "Acct-Input-Octets": IN_OCTETS, "Acct-Output-Octets": OUT_OCTETS},
                       "Accounting-Response")
        assert_captured(cap.pcap, "udp", 1812, USER.encode())
        assert_captured(cap.pcap, "udp", 1813, SESSION_ID.encode(), CSID.encode(), USER.encode())
        out = replay(cap.pcap)

    radius = out.of("radius")
    auth = [r for r in radius if r["code"] == "Access-Request"]
    acct = [r for r in radius if r["code"] == "Accounting-Request"]
    assert len(radius) == 4 and len(auth) == 2 and len(acct) == 2, radius
    assert [r["result"] for r in auth] == ["success", "failed"]
    for r in auth:
        assert r["username"] == USER and r["status_type"] is None
        assert r["nas_ip"] == net.client.addr and r["called_station_id"] == CALLED
        assert (r["src_ip"], r["dst_ip"], r["dst_port"], r["proto"]) == (
            net.client.addr, net.server.addr, 1812, "udp")
    start, stop = acct
    for r, status in ((start, "Start"), (stop, "Stop")):
        assert r["status_type"] == status
        assert r["username"] == USER
        assert r["framed_addr"] == FRAMED
        assert r["calling_station_id"] == CSID
        assert r["called_station_id"] == CALLED
        assert r["acct_session_id"] == SESSION_ID
        assert r["nas_ip"] == net.client.addr
        assert r["result"] == "success"
        assert (r["src_ip"], r["dst_ip"], r["dst_port"], r["proto"]) == (
            net.client.addr, net.server.addr, 1813, "udp")
    assert (stop["session_time"], stop["input_octets"], stop["output_octets"]) == (
        SESSION_TIME, IN_OCTETS, OUT_OCTETS)
    assert start["session_time"] is None

    logins = out.of("login")
    assert [(r["event"], r["source"]) for r in logins] == [("login", "radius"), ("logout", "radius")], logins
    login, logout = logins
    for r in logins:
        assert r["account"] == USER
        assert r["ip"] == FRAMED
        assert r["calling_station"] == CSID
        assert r["session_id"] == SESSION_ID
        assert r["mac"] is None  # the Calling-Station-Id is a phone number; no lease gives a MAC
    assert login["ts"] == pytest.approx(start["ts"], abs=0.5) and login["duration"] is None
    assert logout["ts"] == pytest.approx(stop["ts"], abs=0.5) and logout["ts"] >= login["ts"]
    assert logout["duration"] == SESSION_TIME

    out.assert_secret_absent(PASSWORD, WRONG, SECRET)
