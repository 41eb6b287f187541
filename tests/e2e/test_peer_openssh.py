"""End to end against OpenSSH: a refused login and an accepted one, from a real `ssh` to a real
`sshd`, each an `ssh` record whose versions, host key fingerprint and login result agree with
what the two programs say themselves.

sshd runs in the foreground (``-D -e``: its log on stderr) with a config written here: its own
host key, public-key authentication only, keys from a file in tmp (``StrictModes no``: the file
sits in pytest's directories), no PAM, no privilege separation sandbox surprises. The client
logs in as root with a key sshd knows, after a connection with a key it does not know. `ssh -v`
names the versions and the server's host key (``Server host key: ssh-ed25519 SHA256:...``),
`ssh-keygen -lf` the host key's fingerprint, sshd's log which login it accepted. No key or
secret may appear in the records.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from netns import assert_captured, replay, require, veth_pair


def _keygen(path: Path, kind: str = "ed25519") -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "edgeaudit-e2e", "-f", str(path)],
                   check=True)


def test_peer_openssh(tmp_path: Path) -> None:
    paths = require("sshd", "ssh", "ssh-keygen")
    # sshd's privilege separation directory (compiled in; systemd's unit makes it at boot)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    d = tmp_path / "ssh"
    d.mkdir()
    _keygen(d / "host")
    _keygen(d / "good")
    _keygen(d / "bad")
    (d / "authorized_keys").write_text((d / "good.pub").read_text())
    (d / "authorized_keys").chmod(0o600)
    with veth_pair(tmp_path / "net") as net:
        conf = d / "sshd_config"
        conf.write_text(f"""
ListenAddress {net.server.addr}
Port 22
HostKey {d / 'host'}
PidFile none
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile {d / 'authorized_keys'}
StrictModes no
LogLevel VERBOSE
""")
        sshd = net.start(net.server, "sshd", [paths["sshd"], "-D", "-e", "-f", str(conf)])
        sshd.wait_listening("tcp", 22)
        opts = ["-v", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
                "-o", f"UserKnownHostsFile={d / 'known_hosts'}", "-o", "ConnectTimeout=5"]
        with net.capture() as cap:
            refused = net.run(net.client, [paths["ssh"], *opts, "-i", str(d / "bad"),
                                           f"root@{net.server.addr}", "true"], check=False)
            accepted = net.run(net.client, [paths["ssh"], *opts, "-i", str(d / "good"),
                                            f"root@{net.server.addr}", "echo", "logged-in"])
        assert refused.returncode != 0 and "Permission denied" in refused.stderr
        assert accepted.stdout.strip() == "logged-in"
        assert_captured(cap.pcap, "tcp", 22, b"SSH-2.0-OpenSSH_")
        out = replay(cap.pcap)
        log = sshd.log.read_text(errors="replace")

    # what the programs say about themselves
    local = re.search(r"Local version string (SSH-\S+(?: \S+)?)", accepted.stderr)
    remote = re.search(r"remote software version (\S+(?: \S+)?)", accepted.stderr)
    host = re.search(r"Server host key: (\S+) (SHA256:\S+)", accepted.stderr)
    assert local and remote and host, accepted.stderr
    printed = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(d / "host.pub")], check=True,
                             capture_output=True, text=True).stdout.split()[1]
    assert printed == host.group(2)
    assert "Accepted publickey for root" in log, log

    recs = out.of("ssh")
    assert len(recs) == 2, recs
    first, second = sorted(recs, key=lambda r: r["ts"])
    for r in (first, second):
        assert (r["src_ip"], r["dst_ip"], r["dst_port"]) == (net.client.addr, net.server.addr, 22)
        assert r["client"] == local.group(1) and r["server"].endswith(remote.group(1))
        assert r["version"] == 2 and r["host_key_alg"] == host.group(1)
        assert r["host_key_fingerprint"] == printed
        assert r["kex_alg"] and r["cipher_alg"] and r["mac_alg"] and r["compression_alg"] == "none"
        assert r["direction"] is None  # both ends in one private /24: neither is outside
    # the login result, inferred from the server's encrypted packet sizes (Zeek's rules)
    assert first["auth_success"] is not True, first
    assert second["auth_success"] is True and second["auth_attempts"] >= 1, second
    sessions = [s for s in out.of("session") if s["dst_port"] == 22]
    assert len(sessions) == 2 and all(s["service"] == "ssh" for s in sessions)
    keys = [(d / n).read_text().split()[1] for n in ("good.pub", "bad.pub", "host.pub")]
    out.assert_secret_absent(*keys)
