"""End to end against dnsmasq: busybox udhcpc takes a lease, then releases it.

dnsmasq runs in the foreground as the DHCP server only (``--no-daemon --port=0``, no
ping check before offering, lease file and pid file in tmp, no system config file).
udhcpc runs in the foreground in the client namespace (``-f -R``: release on exit) with a
script of our own that puts the leased address on the veth (busybox sends its RELEASE from
a socket bound to that address, so it must be there). The lease is read from dnsmasq's
lease file once written; SIGTERM then makes udhcpc release it, and the release is
complete when dnsmasq has removed the lease from its file.

Asserted: one `dhcp` record for DISCOVER/OFFER/REQUEST/ACK (mac of the client veth,
assigned and requested address = dnsmasq's lease, server, host name, lease time) and one
for the RELEASE (busybox picks a new transaction id for it); `login` records: a login with
source dhcp, the leased ip and the MAC (calling_station = the MAC, no account: nobody
vouches for a DHCP host name), then its logout with the time since the login.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from netns import assert_captured, replay, require, veth_pair, wait_for

HOSTNAME = "e2e-laptop"
LEASE_S = 3600

SCRIPT = """#!/bin/sh
# udhcpc event script: keep the leased address on the interface (see the test's docstring).
# The event is logged after the address is in place: the test stops udhcpc once it reads
# "bound", and the release udhcpc then sends is bound to that address.
case "$1" in
    bound|renew) ip addr replace "$ip/$subnet" dev "$interface" ;;
esac
echo "$1 ${ip:-}" >> "%(log)s"
exit 0
"""


def _leases(path: Path) -> list[list[str]]:
    """dnsmasq's lease file: expiry, mac, ip, host name, client id per line."""
    try:
        return [line.split() for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def test_peer_dhcp(tmp_path: Path) -> None:
    paths = require("dnsmasq", "udhcpc")
    leasefile = tmp_path / "dnsmasq.leases"
    script = tmp_path / "udhcpc.script"
    script_log = tmp_path / "udhcpc.events"
    script.write_text(SCRIPT % {"log": script_log})
    script.chmod(0o755)
    with veth_pair(tmp_path / "net") as net:
        prefix = net.server.addr.rsplit(".", 1)[0]
        dnsmasq = net.start(net.server, "dnsmasq", [
            paths["dnsmasq"], "--no-daemon", "--conf-file=/dev/null", "--port=0", "--user=root",
            f"--interface={net.server.ifname}", "--bind-interfaces", "--no-ping", "--dhcp-authoritative",
            f"--dhcp-range={prefix}.100,{prefix}.150,255.255.255.0,{LEASE_S}",
            f"--dhcp-leasefile={leasefile}", f"--pid-file={tmp_path / 'dnsmasq.pid'}",
            "--log-dhcp", "--log-facility=-"])
        dnsmasq.wait_listening("udp", 67)
        with net.capture() as cap:
            udhcpc = net.start(net.client, "udhcpc", [
                paths["udhcpc"], "-f", "-R", "-i", net.client.ifname, "-x", f"hostname:{HOSTNAME}",
                "-s", str(script), "-t", "5", "-T", "1"])
            wait_for(lambda: bool(_leases(leasefile)) and "bound" in _read(script_log),
                     "the lease", diag=lambda: dnsmasq.diag() + "\n" + udhcpc.diag())
            [lease] = _leases(leasefile)
            udhcpc.stop()  # SIGTERM: udhcpc -R sends DHCPRELEASE before exiting
            wait_for(lambda: not _leases(leasefile), "dnsmasq to drop the released lease",
                     diag=lambda: dnsmasq.diag() + "\n" + udhcpc.diag())
        assert udhcpc.proc.returncode == 0, udhcpc.diag()
        assert_captured(cap.pcap, "udp", 67, HOSTNAME.encode())
        out = replay(cap.pcap)

    _expiry, lease_mac, lease_ip, lease_host, *_ = lease
    assert (lease_mac, lease_host) == (net.client.mac, HOSTNAME)
    assert lease_ip.startswith(prefix + ".")

    dhcp = out.of("dhcp")
    assert len(dhcp) == 2, dhcp
    acks = [r for r in dhcp if "ACK" in r["msg_types"]]
    releases = [r for r in dhcp if "RELEASE" in r["msg_types"]]
    assert len(acks) == 1 and len(releases) == 1, dhcp
    ack, rel = acks[0], releases[0]
    assert ack["msg_types"] == ["DISCOVER", "OFFER", "REQUEST", "ACK"]
    assert ack["mac"] == net.client.mac
    assert ack["assigned_addr"] == lease_ip
    assert ack["requested_addr"] == lease_ip
    assert ack["server_addr"] == net.server.addr
    assert ack["host_name"] == HOSTNAME
    assert ack["lease_time"] == LEASE_S
    assert len(ack["uids"]) >= 1
    assert rel["msg_types"] == ["RELEASE"]
    assert rel["mac"] == net.client.mac
    assert rel["client_addr"] == lease_ip
    assert rel["ts"] > ack["ts"]

    logins = out.of("login")
    assert [(r["event"], r["source"]) for r in logins] == [("login", "dhcp"), ("logout", "dhcp")], logins
    login, logout = logins
    for r in logins:
        assert r["ip"] == lease_ip
        assert r["mac"] == net.client.mac
        assert r["calling_station"] == net.client.mac
        assert r["account"] is None
    assert login["duration"] is None
    assert login["ts"] == pytest.approx(ack["ts"], abs=1.0)
    assert logout["ts"] == pytest.approx(rel["ts"], abs=1e-3)
    assert logout["duration"] == pytest.approx(logout["ts"] - login["ts"], abs=1e-3)
    assert logout["duration"] > 0


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
