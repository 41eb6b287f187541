"""End to end against vsftpd: an anonymous session with passive LIST and RETR, and a failed login.

Why anonymous: a real local account would mean adding a user to the host's /etc/passwd
(and removing it after), which a test must not do to a developer's machine. vsftpd's
anonymous login still goes USER/PASS; its "password" is a unique string here and must
never appear in the output. The failed login is a user that does not exist, refused by
PAM (Debian's /etc/pam.d/vsftpd) with 530. vsftpd runs in the foreground
(``background=NO``) with a config written here: anon_root in tmp, passive ports in a
fixed range, no seccomp sandbox or namespace isolation (the test's namespace is enough).

Each command that got a reply must give one `ftp` record (Zeek ftp.log semantics), in
order, with the user, command, argument and reply code; PASS carries "<hidden>"; the two
passive data connections are `session` records with service "ftp-data".
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns import Net, assert_captured, pcap_payloads, replay, require, veth_pair

ANON_PASS = "anon-S3cret-4e1d@example.test"
BAD_USER, BAD_PASS = "nosuchuser-e2e", "Ftp-S3cret-a77c"
FILE = "report.txt"
CONTENT = b"edgeaudit ftp end-to-end file\n" * 100

DRIVER = r"""
import ftplib, sys
host, anon_pass, bad_user, bad_pass, name = sys.argv[1:6]
f = ftplib.FTP(host, timeout=5)
f.login("anonymous", anon_pass)
f.set_pasv(True)
lines = []
f.retrlines("LIST", lines.append)
f.voidcmd("TYPE I")
size = f.size(name)
chunks = []
f.retrbinary("RETR " + name, chunks.append)
f.quit()
print(len(lines), size, len(b"".join(chunks)))
g = ftplib.FTP(host, timeout=5)
try:
    g.login(bad_user, bad_pass)
    raise SystemExit("bad login accepted")
except ftplib.error_perm as e:
    print(str(e)[:3])
g.quit()
"""


def _conf(d: Path, addr: str) -> str:
    return f"""
listen=YES
listen_ipv6=NO
listen_address={addr}
listen_port=21
background=NO
anonymous_enable=YES
anon_root={d}/anon
no_anon_password=NO
local_enable=YES
pam_service_name=vsftpd
write_enable=NO
pasv_enable=YES
pasv_min_port=40000
pasv_max_port=40100
port_enable=NO
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
secure_chroot_dir={d}/empty
xferlog_enable=YES
vsftpd_log_file={d}/vsftpd.log
dual_log_enable=NO
log_ftp_protocol=YES
ftpd_banner=edgeaudit e2e FTP
delay_failed_login=0
delay_successful_login=0
"""


@pytest.fixture
def ftp_dir() -> Iterator[Path]:
    """The anonymous root is read by user ftp: it must not sit under pytest's 0700 tmp dirs."""
    d = Path(tempfile.mkdtemp(prefix="ea-e2e-vsftpd-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_peer_vsftpd(tmp_path: Path, ftp_dir: Path) -> None:
    paths = require("vsftpd")
    d = ftp_dir
    for sub in ("anon", "empty"):
        (d / sub).mkdir(mode=0o755)
    (d / "anon" / FILE).write_bytes(CONTENT)
    os.chmod(d / "anon" / FILE, 0o644)
    with veth_pair(tmp_path / "net") as net:
        conf = d / "vsftpd.conf"
        conf.write_text(_conf(d, net.server.addr))
        ftpd = net.start(net.server, "vsftpd", [paths["vsftpd"], str(conf)])
        ftpd.wait_listening("tcp", 21)
        with net.capture() as cap:
            _drive(net)
        assert_captured(cap.pcap, "tcp", 21, b"USER anonymous", b"227 Entering Passive Mode",
                        f"USER {BAD_USER}".encode(), b"530 Login incorrect")
        pasv_ports = [int(a) * 256 + int(b) for a, b in
                      re.findall(rb"227 Entering Passive Mode \(\d+,\d+,\d+,\d+,(\d+),(\d+)\)",
                                 b"".join(pcap_payloads(cap.pcap, "tcp", 21)))]
        assert len(pasv_ports) == 2, pasv_ports
        out = replay(cap.pcap)

    ftp = out.of("ftp")
    anon = [r for r in ftp if r["src_ip"] == net.client.addr and r["user"] == "anonymous"]
    bad = [r for r in ftp if r["user"] == BAD_USER]
    assert [(r["command"], r["arg"], r["reply_code"]) for r in anon] == [
        ("USER", "anonymous", 331),
        ("PASS", "<hidden>", 230),
        ("TYPE", "A", 200),
        ("PASV", None, 227),
        ("LIST", None, 226),
        ("TYPE", "I", 200),
        ("SIZE", FILE, 213),
        ("TYPE", "I", 200),  # retrbinary sets the type again
        ("PASV", None, 227),
        ("RETR", FILE, 226),
        ("QUIT", None, 221),
    ], anon
    assert [(r["command"], r["arg"], r["reply_code"]) for r in bad] == [
        ("USER", BAD_USER, 331),
        ("PASS", "<hidden>", 530),
        ("QUIT", None, 221),
    ], bad
    assert len(ftp) == len(anon) + len(bad), "no other ftp records"
    assert len({r["uid"] for r in anon}) == 1 and len({r["uid"] for r in bad}) == 1
    by_cmd = {r["command"]: r for r in anon}
    assert by_cmd["SIZE"]["file_size"] == len(CONTENT)
    assert by_cmd["RETR"]["file_size"] == len(CONTENT)  # from "150 ... (N bytes)"
    assert by_cmd["PASS"]["reply_msg"] == "Login successful."
    assert all(r["dst_ip"] == net.server.addr and r["dst_port"] == 21 for r in ftp)
    out.assert_secret_absent(ANON_PASS, BAD_PASS)

    # identity: an anonymous login names nobody (RFC 1635) and a refused one proves nothing
    assert out.of("login") == []

    control = [s for s in out.of("session") if s["dst_port"] == 21]
    assert len(control) == 2 and all(s["service"] == "ftp" for s in control), control
    data = [s for s in out.of("session") if s["dst_port"] in pasv_ports]
    assert sorted(s["dst_port"] for s in data) == sorted(pasv_ports), data
    assert all(s["service"] == "ftp-data" and s["src_ip"] == net.client.addr for s in data), data
    retr = next(s for s in data if s["dst_port"] == pasv_ports[1])
    assert retr["resp_bytes"] == len(CONTENT)


def _drive(net: Net) -> None:
    res = net.python(net.client, DRIVER, net.server.addr, ANON_PASS, BAD_USER, BAD_PASS, FILE)
    listed, size, got, code = res.stdout.split()
    assert (int(listed), int(size), int(got), code) == (1, len(CONTENT), len(CONTENT), "530"), res.stdout
