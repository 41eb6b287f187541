"""End to end against dovecot: POP3 and IMAP logins (one good, one with a wrong password each).

dovecot runs in the foreground (``dovecot -F -c CONF``) from a config written here:
plaintext auth without TLS, a passwd-file passdb with one {PLAIN} user, a static userdb
(mail as the `dovecot` system user, so no account has to be created on the host), no auth
failure delay. Python's poplib and imaplib drive it from the client namespace.

Each of the four sessions must give exactly one `mailbox` record with its protocol, the
user, login_ok True/False and the verbs the client sent (read back from the capture); each
successful login gives an application `login` record (source pop3/imap); no password
appears anywhere in the output.
"""

from __future__ import annotations

import os
import pwd
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dpkt
import pytest
from netns import Net, assert_captured, replay, require, veth_pair

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy" / "lab"))
from lab import DOVECOT_CONF  # noqa: E402

USER, SECRET, WRONG = "alice", "Mbox-S3cret-71c4", "Wrong-Guess-0b9e"
POP3, IMAP = 110, 143

# Each failing login comes from an address of its own: dovecot's anvil delays every later
# authentication from an address that just failed one (2 s and more), whatever the protocol.
DRIVER = r"""
import imaplib, poplib, socket, sys
host, user, good, bad, pop_bad_src, imap_bad_src = sys.argv[1:7]

def bound(cls, src):
    class Bound(cls):
        def _create_socket(self, timeout):
            return socket.create_connection((self.host, self.port), timeout, source_address=(src, 0))
    return Bound

p = poplib.POP3(host, 110, timeout=5)
p.user(user); p.pass_(good); p.stat(); p.quit()
m = imaplib.IMAP4(host, 143, timeout=5)
m.login(user, good); m.select("INBOX"); m.logout()
p = bound(poplib.POP3, pop_bad_src)(host, 110, timeout=5)
p.user(user)
try:
    p.pass_(bad)
    raise SystemExit("pop3: wrong password accepted")
except poplib.error_proto:
    pass
p.quit()
m = bound(imaplib.IMAP4, imap_bad_src)(host, 143, timeout=5)
try:
    m.login(user, bad)
    raise SystemExit("imap: wrong password accepted")
except imaplib.IMAP4.error:
    pass
m.logout()
print("ok")
"""


def _conf(d: Path, addr: str, pw: pwd.struct_passwd) -> str:
    return DOVECOT_CONF % {"d": d, "addr": addr, "uid": pw.pw_uid, "gid": pw.pw_gid,
                           "hostname": "mail.e2e.test", "name": f"edgeaudit-e2e-{os.getpid()}-{d.name}"}


@pytest.fixture
def dovecot_dir() -> Iterator[Path]:
    """dovecot's login processes run as dovenull: the run dir must be traversable (pytest's tmp is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="ea-e2e-dovecot-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def client_verbs(pcap: Path, port: int, imap: bool) -> dict[int, list[str]]:
    """Per client port: the command verbs the client sent to ``port``, read from the capture."""
    streams: dict[int, bytes] = {}
    with pcap.open("rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP) and ip.data.dport == port:
                streams[ip.data.sport] = streams.get(ip.data.sport, b"") + bytes(ip.data.data)
    verbs: dict[int, list[str]] = {}
    for sport, data in streams.items():
        words = [line.split() for line in data.decode().splitlines() if line.strip()]
        verbs[sport] = [w[1 if imap else 0].upper() for w in words]
    return verbs


def test_peer_dovecot(tmp_path: Path, dovecot_dir: Path) -> None:
    paths = require("dovecot")
    d = dovecot_dir
    try:
        pw = pwd.getpwnam("dovecot")  # created by the Debian package; mail is accessed as this user
    except KeyError:
        pytest.skip("no dovecot system user")
    for sub in ("run", "state", "mail", "home"):
        (d / sub).mkdir()
    for sub in ("mail", "home"):
        os.chown(d / sub, pw.pw_uid, pw.pw_gid)
    (d / "passwd").write_text(f"{USER}:{{PLAIN}}{SECRET}::::::\n")
    with veth_pair(tmp_path / "net") as net:
        conf = d / "dovecot.conf"
        conf.write_text(_conf(d, net.server.addr, pw))
        dove = net.start(net.server, "dovecot", [paths["dovecot"], "-F", "-c", str(conf)])
        dove.wait_listening("tcp", POP3)
        dove.wait_listening("tcp", IMAP)
        pop_bad_src, imap_bad_src = net.add_address(net.client, 3), net.add_address(net.client, 4)
        with net.capture() as cap:
            _drive(net, pop_bad_src, imap_bad_src)
        assert_captured(cap.pcap, "tcp", POP3, f"USER {USER}".encode(), b"+OK Logged in", b"-ERR")
        assert_captured(cap.pcap, "tcp", IMAP, f"LOGIN {USER}".encode(), b"NO [AUTHENTICATIONFAILED]")
        out = replay(cap.pcap)
        pop_verbs = client_verbs(cap.pcap, POP3, imap=False)
        imap_verbs = client_verbs(cap.pcap, IMAP, imap=True)

    mb = out.of("mailbox")
    assert len(mb) == 4, mb
    for proto, port, verbs in (("pop3", POP3, pop_verbs), ("imap", IMAP, imap_verbs)):
        recs = [r for r in mb if r["protocol"] == proto]
        assert len(recs) == 2, (proto, mb)
        assert sorted(r["login_ok"] for r in recs) == [False, True], recs
        assert {r["src_port"] for r in recs} == set(verbs), "one record per connection"
        for r in recs:
            assert r["user"] == USER
            assert r["dst_ip"] == net.server.addr and r["dst_port"] == port
            assert r["src_ip"] == (net.client.addr if r["login_ok"] else
                                   pop_bad_src if proto == "pop3" else imap_bad_src), r
            assert r["tls"] is False
            assert r["commands"] == verbs[r["src_port"]], r
    by = {(r["protocol"], r["login_ok"]): r["commands"] for r in mb}
    assert by["pop3", True] == ["USER", "PASS", "STAT", "QUIT"]
    assert by["pop3", False] == ["USER", "PASS", "QUIT"]
    assert by["imap", True] == ["CAPABILITY", "LOGIN", "SELECT", "LOGOUT"]
    assert by["imap", False] == ["CAPABILITY", "LOGIN", "LOGOUT"]

    out.assert_secret_absent(SECRET, WRONG)

    # identity (DESIGN.md, data path 5): each successful mailbox login binds the account to the
    # client's address; failed ones bind nothing; these logins have no logout
    logins = out.of("login")
    ok = {r["protocol"]: r for r in mb if r["login_ok"]}
    assert sorted(r["source"] for r in logins) == ["imap", "pop3"], logins
    for r in logins:
        assert r["event"] == "login" and r["account"] == USER and r["ip"] == net.client.addr, r
        assert r["session_id"] == ok[r["source"]]["uid"], r
        assert r["duration"] is None and r["mac"] is None, r

    # the sessions of those connections were recognised as pop3 / imap
    for r in mb:
        s = [x for x in out.of("session") if x["uid"] == r["uid"]]
        assert len(s) == 1 and s[0]["service"] == r["protocol"], (r, s)


def _drive(net: Net, pop_bad_src: str, imap_bad_src: str) -> None:
    res = net.python(net.client, DRIVER, net.server.addr, USER, SECRET, WRONG, pop_bad_src, imap_bad_src)
    assert res.stdout.strip() == "ok", res.stdout + res.stderr
