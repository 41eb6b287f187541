"""The mail policy for real (issue 20): the unit's mail server, its users' PCs and the agent between.

Three namespaces (`test_block_inline.Routed`): the LAN (alice's PC, bob's and carol's, one address
each), the gateway where `edgeaudit-agent run` works, and the unit's mail server: Debian's Postfix
with SASL authentication through Dovecot (Postfix's `smtpd_sasl_type = dovecot`, the auth socket
of the Dovecot that serves the unit's IMAP and POP3: the lab's configuration). Postfix runs from
a configuration in the test's own directory (`postfix -c DIR start-fg`; the host's /etc/postfix
is never read for it). Every message is accepted for delivery to one maildir; Postfix logs to
the test's file (`maillog_file`), and that log is the truth of what was delivered: per queue id
its SASL user, envelope sender and `status=sent`. The PCs send with `swaks`.

- Gateway mode, two capture workers (PACKET_FANOUT_HASH spreads alice's connections over both),
  the default limits: 200 messages from alice within a minute (4 at a time) are alerted once each
  for her account, her sender address and her PC, as the 101st-or-so is counted (the
  workers' tallies make one count), while bob's mail in that minute raises nothing; a forged
  envelope sender, a sender and a From: that are not the authenticated account, a HELO naming
  the mail server and a display name hiding another address are each alerted; ordinary mail
  raises nothing; every message is delivered (a passive gateway stops nothing).
- Inline mode (NFQUEUE), `rate = "block"` with 50 messages a minute per account: of alice's 200,
  Postfix delivers exactly 50; the others are reset at their MAIL FROM, each blocked connection
  an alert with `blocked: true`, while bob's mail in the same minute is delivered; a forged
  envelope sender is stopped before DATA and a hidden sender at the message's final dot (the
  packet dropped, so Postfix never accepts the message).
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from netns import Daemon, _ip, agent_exe, require, wait_for
from test_block_inline import Routed, collector_on, routed

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy" / "lab"))
from lab import DOVECOT_CONF  # noqa: E402

QUEUE = 9
DOMAIN = "unit.test"
PASSWORDS = {"alice": "Alice-Mail-4b1", "bob": "Bob-Mail-77e", "carol": "Carol-Mail-0c3"}

POSTFIX_MAIN = """\
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
myhostname = mail.{domain}
mydomain = {domain}
myorigin = {domain}
inet_interfaces = {addr}
inet_protocols = ipv4
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
# every domain is delivered here, to one maildir: nothing leaves for the internet
virtual_mailbox_domains = static:all
virtual_mailbox_base = {d}/mail
virtual_mailbox_maps = static:box/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {d}/dovecot/run/auth-postfix
smtpd_tls_security_level = none
# the namespaces have no DNS: no reverse lookup of each client (a 10 s resolver timeout)
smtpd_peername_lookup = no
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
maillog_file = /dev/stdout
biff = no
"""

# the services a delivering Postfix needs, none chrooted (the test's directories are not a chroot)
POSTFIX_MASTER = """\
smtp      inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
showq     unix  n       -       n       -       -       showq
"""

# Dovecot as the unit runs it (the lab's: IMAP and POP3 for its users), and its SASL socket for
# Postfix's smtpd (Postfix's smtpd_sasl_type = dovecot)
SASL_SOCKET = """
service auth {
  unix_listener auth-postfix {
    mode = 0666
  }
}
"""

# Runs swaks jobs in the LAN namespace, `width` at a time; prints each one's exit status.
SENDER = r"""
import json, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
jobs, width = json.loads(sys.argv[1]), int(sys.argv[2])
def one(argv):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return [r.returncode, (r.stdout + r.stderr)[-400:]]
with ThreadPoolExecutor(width) as ex:
    print(json.dumps(list(ex.map(one, jobs))))
"""


@dataclass
class Pc:
    """A LAN machine: its address, and the account that uses it (None: sends without AUTH)."""

    addr: str
    user: str | None


class MailLab:
    """The routed namespaces with the mail server on the server side and three PCs on the LAN."""

    def __init__(self, net: Routed, d: Path, postfix: Daemon) -> None:
        self.net = net
        self.d = d
        self.postfix = postfix
        self.failures: list[str] = []
        base = net.client.addr.rsplit(".", 1)[0]
        self.alice = Pc(net.client.addr, "alice")
        self.bob = Pc(f"{base}.3", "bob")
        self.carol = Pc(f"{base}.4", "carol")

    @property
    def server(self) -> str:
        return self.net.server.addr

    def swaks(self, pc: Pc, *, mailfrom: str | None = None, to: str = f"news@{DOMAIN}", helo: str = "pc",
              auth: bool = True, headers: tuple[str, ...] = (), subject: str = "hello") -> list[str]:
        argv = ["swaks", "--server", self.server, "--port", "25", "--local-interface", pc.addr,
                "--from", mailfrom or f"{pc.user}@{DOMAIN}", "--to", to, "--helo", helo,
                "--header", f"Subject: {subject}", "--body", "Meeting at 3.", "--timeout", "10"]
        if auth and pc.user is not None:
            argv += ["--auth", "PLAIN", "--auth-user", pc.user, "--auth-password", PASSWORDS[pc.user]]
        for h in headers:
            argv += ["--header", h]
        return argv

    def send(self, jobs: list[list[str]], width: int = 1) -> list[int]:
        """Run swaks jobs from the LAN; their exit statuses (0: the server accepted the message)."""
        res = subprocess.run(self.net.client.argv(sys.executable, "-c", SENDER, json.dumps(jobs), str(width)),
                             capture_output=True, text=True, timeout=300, check=False)
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        self.failures = [tail for rc, tail in out if rc]  # what swaks said when it failed
        return [rc for rc, _tail in out]

    def delivered(self) -> list[dict[str, Any]]:
        """Postfix's log, per queue id: the SASL user, envelope sender, recipients sent."""
        by: dict[str, dict[str, Any]] = {}
        for line in self.postfix.output().splitlines():
            m = re.search(r"postfix/\w+\[\d+\]: ([0-9A-F]{6,}): (.*)$", line)
            if m is None:
                continue
            q = by.setdefault(m.group(1), {"user": None, "from": None, "sent": 0})
            rest = m.group(2)
            if rest.startswith("client="):
                u = re.search(r"sasl_username=([^,\s]+)", rest)
                q["user"] = u.group(1) if u else None
            elif rest.startswith("from=<"):
                q["from"] = rest[6:rest.index(">")]
            elif "status=sent" in rest:
                q["sent"] += 1
        return [q for q in by.values() if q["sent"]]

    def delivered_count(self, **match: Any) -> int:
        return sum(all(q[k] == v for k, v in match.items()) for q in self.delivered())

    def wait_delivered(self, n: int) -> None:
        wait_for(lambda: len(self.delivered()) >= n, f"Postfix to deliver {n} messages", timeout=60,
                 diag=self.postfix.diag)


@pytest.fixture
def mail_dir() -> Iterator[Path]:
    """Postfix's and Dovecot's directories: traversable by their unprivileged processes (pytest's
    tmp is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="ea-e2e-mail-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _mail_server(net: Routed, d: Path) -> Daemon:
    """Dovecot (SASL) and Postfix in the server namespace; returns Postfix."""
    try:
        pw = pwd.getpwnam("dovecot")  # the maildir's owner (any unprivileged user would do)
    except KeyError:
        pytest.skip("no dovecot system user")
    for sub in ("etc", "queue", "data", "mail", *(f"dovecot/{x}" for x in ("run", "state", "home", "mail"))):
        (d / sub).mkdir(parents=True)
    shutil.chown(d / "data", "postfix", "postfix")
    for sub in ("mail", "dovecot/home", "dovecot/mail"):
        os.chown(d / sub, pw.pw_uid, pw.pw_gid)
    (d / "dovecot/passwd").write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in PASSWORDS.items()))
    dovecot_conf = DOVECOT_CONF % {"d": d / "dovecot", "addr": net.server.addr, "uid": pw.pw_uid,
                                   "gid": pw.pw_gid, "hostname": f"mail.{DOMAIN}",
                                   "name": f"ea-mail-{os.getpid()}-{d.name}"}
    (d / "dovecot/dovecot.conf").write_text(dovecot_conf + SASL_SOCKET)
    conf = {"d": d, "addr": net.server.addr, "domain": DOMAIN, "uid": pw.pw_uid, "gid": pw.pw_gid}
    (d / "etc/main.cf").write_text(POSTFIX_MAIN.format(**conf))
    (d / "etc/master.cf").write_text(POSTFIX_MASTER)
    dovecot = net.start(net.server, "dovecot", ["dovecot", "-F", "-c", str(d / "dovecot/dovecot.conf")])
    wait_for(lambda: (d / "dovecot/run/auth-postfix").exists(), "Dovecot's auth socket", diag=dovecot.diag)
    # `postfix check` makes the queue's directories with their owners and modes
    check = subprocess.run(net.server.argv("postfix", "-c", str(d / "etc"), "check"), capture_output=True,
                           text=True, timeout=30, check=False)
    assert check.returncode == 0, check.stderr
    postfix = net.start(net.server, "postfix", ["postfix", "-c", str(d / "etc"), "start-fg"])
    postfix.wait_listening("tcp", 25)
    return postfix


@pytest.fixture
def lab(tmp_path: Path, mail_dir: Path) -> Iterator[MailLab]:
    require("postfix", "dovecot", "swaks", "nft")
    with routed(tmp_path / "net") as net:
        postfix = _mail_server(net, mail_dir)
        m = MailLab(net, mail_dir, postfix)
        for pc in (m.bob, m.carol):
            _ip("-n", net.client.ns, "addr", "add", f"{pc.addr}/24", "dev", net.client.ifname)
        yield m


def _agent_config(tmp: Path, net: Routed, url: str, token: str, mode: str, mail: str) -> Path:
    capture = (f'mode = "inline"\nqueue = {QUEUE}' if mode == "inline" else
               f'mode = "gateway"\ninterfaces = ["{net.gw_c.ifname}"]\nworkers = 2\nring_mb = 8')
    cfg = tmp / "agent.toml"
    cfg.write_text(f"""
[capture]
{capture}
[nat]
conntrack = false
[collector]
url = "{url}"
token = "{token}"
batch_seconds = 0.2
[spool]
path = "{tmp / 'spool'}"
quota = "256MiB"
[unit]
name = "Reading room 3"
mail_servers = ["{net.server.addr}"]
{mail}
""")
    return cfg


def _alerts(net: Routed, url: str, operator: tuple[str, str]) -> list[dict[str, Any]]:
    fetch = ("import sys, urllib.request\n"
             "req = urllib.request.Request(sys.argv[1], headers={'Authorization': sys.argv[2]})\n"
             "print(urllib.request.urlopen(req, timeout=30).read().decode())")
    auth = "Basic " + base64.b64encode(f"{operator[0]}:{operator[1]}".encode()).decode()
    got = subprocess.run(net.gw_c.argv(sys.executable, "-c", fetch,
                                       f"{url}/api/v1/query/records?type=alert&limit=1000", auth),
                         capture_output=True, text=True, timeout=60, check=True).stdout
    alerts: list[dict[str, Any]] = json.loads(got)["records"]
    return sorted(alerts, key=lambda a: a["ts"])


def _run_agent(net: Routed, cfg: Path) -> Daemon:
    agent = net.start(net.gw_c, "agent", [*agent_exe(), "run", "--config", str(cfg)])
    agent.wait_log("running:", timeout=30)
    return agent


def test_a_gateway_alerts_mass_and_forged_mail_across_two_workers(tmp_path: Path, lab: MailLab) -> None:
    net = lab.net
    url, token, operator, _collector = collector_on(net, tmp_path / "collector")
    cfg = _agent_config(tmp_path, net, url, token, "gateway", f"""
[mail]
domains = ["{DOMAIN}"]
server_names = ["mail.{DOMAIN}"]
""")
    agent = _run_agent(net, cfg)
    alice, bob, carol = lab.alice, lab.bob, lab.carol
    # ordinary mail: nothing to say
    assert lab.send([lab.swaks(alice), lab.swaks(bob, helo=f"[{bob.addr}]"), lab.swaks(carol)]) == [0, 0, 0]
    # alice's 200 in a minute, 4 at a time; bob mails in the same minute
    flood = [lab.swaks(alice, to=f"customer{i}@example.org", subject=f"offer {i}") for i in range(200)]
    assert lab.send(flood[:150], width=4) == [0] * 150, lab.failures
    assert lab.send([lab.swaks(bob, subject="lunch?")]) == [0]
    assert lab.send(flood[150:], width=4) == [0] * 50
    # the forgeries, one each
    forged = [
        lab.swaks(carol, mailfrom="ceo@bank.example", auth=False),  # nobody authenticated
        lab.swaks(carol, mailfrom=f"bob@{DOMAIN}", headers=(f"From: carol@{DOMAIN}",)),  # bob's envelope
        lab.swaks(carol, headers=(f"From: Bob <bob@{DOMAIN}>",)),  # ... bob's From:
        lab.swaks(carol, headers=(f'From: "boss@{DOMAIN}" <carol@{DOMAIN}>',)),  # a hidden sender
        lab.swaks(carol, helo=f"mail.{DOMAIN}"),  # claims to be the mail server
    ]
    assert lab.send(forged) == [0] * 5
    lab.wait_delivered(3 + 200 + 1 + 5)
    agent.stop(timeout=60)
    assert agent.proc.returncode == 0, agent.diag()

    # Postfix delivered everything: a passive gateway stops nothing
    assert lab.delivered_count(user="alice") == 201 and lab.delivered_count(user="bob") == 2
    assert lab.delivered_count(user="carol") == 5
    assert lab.delivered_count(user=None, **{"from": "ceo@bank.example"}) == 1

    alerts = _alerts(net, url, operator)
    for a in alerts:
        assert a["category"] == "mail" and a["ruleset_version"] == "builtin" and a["blocked"] is False, a
        assert a["dst_ip"] == net.server.addr and a["dst_port"] == 25, a
    rates = [a for a in alerts if a["reason"].startswith("rate:")]
    by_reason = {a["reason"]: a for a in rates}
    assert sorted(by_reason) == ["rate:account:messages:minute", "rate:host:messages:minute",
                                 "rate:sender:messages:minute"], rates
    assert len(rates) == 3, rates  # once each: the two workers did not both alert
    for reason, sender in (("rate:account:messages:minute", "alice"),
                           ("rate:sender:messages:minute", f"alice@{DOMAIN}"),
                           ("rate:host:messages:minute", alice.addr)):
        a = by_reason[reason]
        # counted over both workers (each saw about half of alice's connections), 4 at a time
        assert a["sender"] == sender and a["limit"] == 100 and a["window_s"] == 60, a
        assert 101 <= a["count"] <= 104, a
        assert a["action"] == "block" and a["src_ip"] == alice.addr, a
    assert by_reason["rate:account:messages:minute"]["account"] == "alice"  # stamped from her SMTP AUTH
    forgeries = sorted((a["reason"], a["keyword"], a["src_ip"]) for a in alerts if a not in rates)
    assert forgeries == sorted([
        ("forged:envelope_domain", "bank.example", carol.addr),
        ("forged:mailfrom_not_account", f"bob@{DOMAIN}", carol.addr),
        ("forged:from_not_account", f"bob@{DOMAIN}", carol.addr),
        ("hidden:display_name", f"boss@{DOMAIN}", carol.addr),
        ("forged:helo", f"mail.{DOMAIN}", carol.addr),
    ]), alerts
    # bob's and every ordinary message raised nothing
    assert not [a for a in alerts if a["src_ip"] == bob.addr]

    # both workers counted alice's mail and told each other (the tallies)
    from agent.run.status import read_status

    status = [doc for doc in read_status(tmp_path / "spool").values() if doc.get("role") == "capture"]
    assert len(status) == 2, status
    for st in status:
        c = st["counters"]
        assert c.get("mail_tallies_forwarded", 0) > 0 and c.get("mail_tallies_received", 0) > 0, c


def test_inline_blocks_an_account_past_its_limit_and_forged_mail(tmp_path: Path, lab: MailLab) -> None:
    net = lab.net
    net.queue(QUEUE)
    url, token, operator, _collector = collector_on(net, tmp_path / "collector")
    cfg = _agent_config(tmp_path, net, url, token, "inline", f"""
[mail]
domains = ["{DOMAIN}"]
rate = "block"
envelope_domain = "block"
display_name = "block"
[mail.account]
messages_per_minute = 50
[mail.sender]
messages_per_minute = 0
[mail.host]
messages_per_minute = 0
""")
    agent = _run_agent(net, cfg)
    alice, bob, carol = lab.alice, lab.bob, lab.carol
    flood = [lab.swaks(alice, to=f"customer{i}@example.org", subject=f"offer {i}") for i in range(200)]
    first = lab.send(flood[:100], width=8)
    assert lab.send([lab.swaks(bob, subject=f"lunch {i}") for i in range(3)]) == [0, 0, 0]  # same minute
    rest = lab.send(flood[100:], width=8)
    results = first + rest
    assert results.count(0) == 50, results  # the server took exactly alice's 50
    # stopped: the forged envelope at its MAIL FROM, the hidden sender at the final dot
    stopped = lab.send([lab.swaks(carol, mailfrom="ceo@bank.example", auth=False),
                        lab.swaks(carol, headers=(f'From: "boss@{DOMAIN}" <carol@{DOMAIN}>',))])
    assert all(rc != 0 for rc in stopped), stopped
    assert lab.send([lab.swaks(carol)]) == [0]  # carol's ordinary mail goes through
    lab.wait_delivered(50 + 3 + 1)
    agent.stop(timeout=60)
    assert agent.proc.returncode == 0, agent.diag()

    # Postfix's log: alice's 50, bob's 3, carol's one ordinary message; nothing forged
    assert lab.delivered_count(user="alice") == 50 and lab.delivered_count(user="bob") == 3
    assert lab.delivered_count(user="carol") == 1 and len(lab.delivered()) == 54
    # when each was stopped, as Postfix saw it: alice's 150 before their MAIL FROM (after AUTH),
    # the forged envelope before its MAIL FROM too (after EHLO), the hidden sender in its DATA
    def lost(after: str, pc: Pc) -> int:
        pattern = rf"lost connection after {after} .*from \S+\[{re.escape(pc.addr)}\]"
        return len(re.findall(pattern, lab.postfix.output()))

    # (each smtpd logs its reset connection when it notices it, while the others are delivered)
    wait_for(lambda: lost("AUTH", alice) >= 150, "Postfix to log alice's reset connections",
             diag=lab.postfix.diag)
    assert (lost("AUTH", alice), lost("EHLO", carol), lost("DATA", carol)) == (150, 1, 1), lab.postfix.diag()
    assert "ceo@bank.example" not in lab.postfix.output()

    alerts = _alerts(net, url, operator)
    rates = [a for a in alerts if a["reason"] == "rate:account:messages:minute"]
    assert len(rates) == 150, len(rates)  # each stopped connection has its alert
    assert rates[0]["count"] == 51 and rates[0]["limit"] == 50 and rates[0]["sender"] == "alice", rates[0]
    assert all(a["blocked"] is True and a["action"] == "block" and a["src_ip"] == alice.addr for a in rates)
    others = sorted((a["reason"], a["blocked"], a["src_ip"]) for a in alerts if a not in rates)
    assert others == [("forged:envelope_domain", True, carol.addr), ("hidden:display_name", True, carol.addr)]
    assert not [a for a in alerts if a["src_ip"] == bob.addr]
