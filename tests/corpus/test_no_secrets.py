"""No record carries a password, a password hash, a session cookie or a token (SCHEMA.md).

Every capture of ../shared/corpus, both generated captures (the shared
gen_edge_pcap.py tool and our own `edgeaudit-agent synth`) and a capture
written here with a fresh random password for every login method the agent
decodes go through `edgeaudit-agent replay --jsonl`. An oracle independent of
our decoders (secrets_oracle.py: tshark's dissectors plus a raw payload scan)
lists the secrets each capture carries, and none of them may appear in any
record, in any of its spellings (the base64 of `user:password` for HTTP Basic,
of `\\0user\\0password` for SASL PLAIN, hex and base64 of binary secrets):
- as a whole string value (or key) of a record, always;
- inside a string value, unless the secret is also a part of a value the agent
  records legitimately (the FTP password "password" inside the reply text
  "Please specify the password.": `ambiguous` in the oracle);
- inside the raw JSON line (keys, numbers and escaped spellings too), for
  spellings of 6 characters or more that are neither ambiguous nor numeric
  (short or numeric text matches schema names, timestamps and counters).

So that the test cannot pass by finding nothing, the credential captures of
the corpus are listed in KNOWN with the number of secrets the oracle must find
in them and the account names the agent must have recorded (the credential
exchange was decoded, not skipped), and the planted capture checks the oracle
itself: it must find every planted password.

Captures the agent rejects as damaged (exit 2) are still checked: the records
written before the damage must hold no secret either.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import io
import json
import re
import secrets
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ahocorasick
import dpkt
import pytest
import secrets_oracle as oracle

from agent.cli import main as agent_main

SHARED = Path(__file__).resolve().parents[3] / "shared"
CORPUS = SHARED / "corpus"
GEN_TOOL = SHARED / "tools" / "gen_edge_pcap.py"
GENERATED_PACKETS = 20_000

needs_tshark = pytest.mark.skipif(oracle.TSHARK is None, reason="tshark is not installed")
needs_corpus = pytest.mark.skipif(not (CORPUS / "manifest.json").exists(), reason=f"no corpus at {CORPUS}")
pytestmark = needs_tshark

_CAPTURE_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
                   b"\x0a\x0d\x0d\x0a"}


def corpus_captures() -> list[str]:
    """Every capture file of the corpus: those manifest.json names and any other file with a pcap magic."""
    if not (CORPUS / "manifest.json").exists():
        return []
    found: set[str] = set()
    manifest = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))
    for entries in manifest.values():
        for e in entries:
            for item in e.get("traces", []) + e.get("pcaps", []) + ([e["pcap"]] if "pcap" in e else []):
                found.add(item["path"])
    for p in CORPUS.rglob("*"):
        if p.is_file():
            with p.open("rb") as f:
                if f.read(4) in _CAPTURE_MAGICS:
                    found.add(p.relative_to(CORPUS).as_posix())
    return sorted(found)


CAPTURES = corpus_captures()

# capture -> (secrets the oracle must find in it at least, account names the agent must record).
# Left out: zeek/Traces/pppoe.pcap (PAP password "cisco" equals the Peer-ID, so nothing to
# check), tcpdump/RADIUS-port1700.pcap (a CoA-Request on port 1700; only the user name "bob").
KNOWN: dict[str, tuple[int, set[str]]] = {
    "zeek/Traces/ftp/ftp-password-pass-command.pcap": (1, {"Admin"}),
    "zeek/Traces/ftp/ipv4.pcap": (1, {"anonymous"}),
    "zeek/Traces/ftp/ipv6.pcap": (1, {"anonymous"}),
    "suricata-verify/ftp/ftp-download-passive/input.pcap": (1, {"bob"}),
    "suricata-verify/ftp/ftp-upload-active/input.pcap": (1, {"alice"}),
    "zeek/Traces/pop3/pop3.pcap": (2, {"digitalinvestigator@networksims.com"}),
    "suricata-verify/pop3/input.pcap": (1, {"moises.nunez@ingenierianumar.com"}),
    "suricata-verify/pop3-auth-01/input.pcap": (1, {"joe.speedboat"}),
    "suricata-verify/imap-detection/input.pcap": (1, {"neulingern"}),
    "zeek/Traces/smtp.pcap": (1, {"gurpartap@patriots.in"}),
    "suricata-verify/smtp-eve/input.pcap": (1, {"gurpartap@patriots.in"}),
    "zeek/Traces/http/basic-auth-with-colon.pcap": (1, {"test"}),
    "suricata-verify/http-post-file/input.pcap": (1, set()),
    "suricata-verify/http-chunked/input.pcap": (1, set()),
    "suricata-verify/bug-4810/pppoe-session-http.pcap": (1, set()),
    "zeek/Traces/http/methods.pcap": (10, set()),
    "zeek/Traces/http/missing-zlib-header.pcap": (8, set()),
    "zeek/Traces/tcp/miss_end_data.pcap": (3, set()),
    "zeek/Traces/radius/radius.pcap": (2, {"John.McGuirk"}),
    "tcpdump/RADIUS.pcap": (2, {"John.McGuirk"}),
    "zeek/Traces/radius/radius_localhost.pcap": (12, {"steve"}),
    "tcpdump/RADIUS-RFC4675.pcap": (3, {"bob-tagged", "bob-untagged", "bob-invalid"}),
    "tcpdump/RADIUS-RFC3162.pcap": (1, {"bob"}),
}
# the oracle found 61 distinct secrets in these captures (tshark 4.0); a broken oracle finds few
MIN_KNOWN_SECRETS = 50

_NUMERIC = re.compile(r"^[0-9.:,+-]+$")
_USER_KEYS = ("user", "username", "account")


# ---------------------------------------------------------------- running the agent


def replay(pcap: Path, out: Path) -> list[str]:
    """`edgeaudit-agent replay PCAP --jsonl OUT`, run in this process (the console script's `main`).

    In-process saves the interpreter start and imports for each of the ~120 captures, and
    under EDGEAUDIT_TREE (conftest.py) it runs the compiled tree. The command tunes the
    garbage collector for a long run; that is undone afterwards.
    """
    threshold = gc.get_threshold()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            rc = agent_main(["replay", str(pcap), "--jsonl", str(out), "--no-progress"])
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
    # 0, or 2 for a damaged capture (the records before the damage are written and checked)
    assert rc in (0, 2), f"replay exit {rc}: {err.getvalue()}"
    return out.read_text(encoding="utf-8").splitlines() if out.exists() else []


def replay_and_oracle(pcap: Path, out: Path) -> tuple[list[str], oracle.Findings]:
    tshark = oracle.start(pcap)  # tshark runs while the agent replays
    try:
        lines = replay(pcap, out)
    finally:
        found = oracle.collect(tshark)
    return lines, found


# ---------------------------------------------------------------- looking for the secrets


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(field path, text) of every key and string value, nested ones too."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield f"{path}.{k}" if path else str(k), str(k)
            yield from _strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")


Check = tuple[oracle.Secret, str, bool, bool]  # secret, spelling, look inside values, look in the raw line


def _json_spellings(form: str) -> set[str]:
    """How `form` shows in a JSON line (the writer uses ensure_ascii=False; both kinds, to be safe)."""
    return {form, json.dumps(form)[1:-1], json.dumps(form, ensure_ascii=False)[1:-1]}


def leaks(name: str, lines: list[str], found: oracle.Findings) -> list[str]:
    """One line per place a secret of `found` shows in the records.

    Every way a secret can show (a whole value, inside a value, anywhere in the line) leaves
    one of its JSON spellings in the raw line, so an Aho-Corasick pass over each line finds
    the candidates; only those records are decoded and judged by the rules of the module doc.
    """
    automaton = ahocorasick.Automaton()
    by_spelling: dict[str, list[Check]] = {}
    for s in found.secrets:
        for form in s.spellings():
            ambiguous = s.ambiguous if form == s.value else any(form in v for v in found.legit)
            numeric = bool(_NUMERIC.match(form))
            check = (s, form, not ambiguous, not ambiguous and not numeric and len(form) >= 6)
            for sp in _json_spellings(form):
                by_spelling.setdefault(sp, []).append(check)
    for sp, checks in by_spelling.items():
        automaton.add_word(sp, checks)
    out: list[str] = []
    if not by_spelling:
        for line in lines:
            json.loads(line)  # still every line must be one JSON record
        return out
    automaton.make_automaton()
    for n, line in enumerate(lines, 1):
        record = json.loads(line)
        candidates: list[Check] = []
        for _, checks in automaton.iter(line):
            candidates.extend(checks)
        if not candidates:
            continue
        rtype = record.get("type") if isinstance(record, dict) else None
        strings = list(_strings(record, ""))
        for s, form, in_values, in_raw in dict.fromkeys(candidates):
            where = [p for p, text in strings if text == form]
            if not where and in_values:
                where = [p for p, text in strings if form in text]
            if not where and in_raw and any(sp in line for sp in _json_spellings(form)):
                where = ["<raw JSON line>"]
            if where:
                out.append(f"{name}: record {n} (type {rtype}) field {', '.join(where)} carries the "
                           f"{s.kind} secret {form!r} (frame {s.frame}, user {s.user!r})")
    return out


def recorded_users(lines: list[str]) -> set[str]:
    users: set[str] = set()
    for line in lines:
        record = json.loads(line)
        users.update(record[k] for k in _USER_KEYS if isinstance(record.get(k), str))
    return users


# ---------------------------------------------------------------- generated captures
# (first in the file: xdist hands tests out in this order, and gen_edge_pcap.py alone takes ~12 s)


def _generate(kind: str, out: Path) -> None:
    if kind == "gen_edge_pcap":
        if not GEN_TOOL.exists():
            pytest.skip(f"no generator at {GEN_TOOL}")
        cmd = [sys.executable, str(GEN_TOOL), str(out), "--packets", str(GENERATED_PACKETS)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=600, cwd=out.parent)
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            assert agent_main(["synth", str(out), "--packets", str(GENERATED_PACKETS)]) == 0


@pytest.mark.parametrize("kind", ["gen_edge_pcap", "synth"])
def test_generated_capture_records_carry_no_secret(kind: str, tmp_path: Path) -> None:
    pcap = tmp_path / f"{kind}.pcap"
    _generate(kind, pcap)
    lines, found = replay_and_oracle(pcap, tmp_path / "records.jsonl")
    problems = leaks(kind, lines, found)
    assert not problems, "secrets in the records:\n" + "\n".join(problems[:50])
    # both generators send Cookie headers and URL-encoded login forms with a `pass` field
    kinds = {s.kind for s in found.secrets}
    assert "http Cookie" in kinds and "http form pass" in kinds, kinds
    assert len(found.secrets) >= 50
    assert any(json.loads(line)["type"] == "http" for line in lines)


# ---------------------------------------------------------------- planted credentials

CLIENT_MAC, SERVER_MAC = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"
CLIENT_IP, SERVER_IP = socket.inet_aton("10.20.0.5"), socket.inet_aton("10.20.0.1")


class Capture:
    """Ethernet frames with their times, written as a classic pcap."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, bytes]] = []
        self.ts = 1_700_000_000.0
        self.next_port = 40_000

    def add(self, frame: bytes) -> None:
        self.ts += 0.001
        self.frames.append((self.ts, frame))

    def ip(self, src: bytes, dst: bytes, proto: int, payload: Any, to_server: bool) -> None:
        pkt = dpkt.ip.IP(src=src, dst=dst, p=proto, ttl=64, id=len(self.frames) & 0xFFFF, data=payload)
        pkt.len = 20 + len(bytes(payload))
        eth = dpkt.ethernet.Ethernet(src=CLIENT_MAC if to_server else SERVER_MAC,
                                     dst=SERVER_MAC if to_server else CLIENT_MAC,
                                     type=dpkt.ethernet.ETH_TYPE_IP, data=pkt)
        self.add(bytes(eth))

    def write(self, path: Path) -> None:
        with path.open("wb") as f:
            w = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_EN10MB)
            for ts, frame in self.frames:
                w.writepkt(frame, ts=ts)


class Tcp:
    """One TCP connection: handshake, data both ways (each acknowledged), FIN close."""

    def __init__(self, cap: Capture, port: int) -> None:
        self.cap = cap
        self.cport = cap.next_port
        cap.next_port += 1
        self.sport = port
        self.seq = {True: 1000, False: 5000}  # to_server -> next sequence number
        self.segment(True, dpkt.tcp.TH_SYN, b"")
        self.segment(False, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK, b"")
        self.segment(True, dpkt.tcp.TH_ACK, b"")

    def segment(self, to_server: bool, flags: int, data: bytes) -> None:
        seg = dpkt.tcp.TCP(sport=self.cport if to_server else self.sport,
                           dport=self.sport if to_server else self.cport,
                           seq=self.seq[to_server],
                           ack=self.seq[not to_server] if flags & dpkt.tcp.TH_ACK else 0,
                           flags=flags, win=65535, data=data)
        self.cap.ip(CLIENT_IP if to_server else SERVER_IP, SERVER_IP if to_server else CLIENT_IP,
                    dpkt.ip.IP_PROTO_TCP, seg, to_server)
        self.seq[to_server] += len(data) + (1 if flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_FIN) else 0)

    def talk(self, *turns: str | bytes) -> None:
        """Alternating lines: the server speaks first when the first turn starts with '<'."""
        for t in turns:
            raw = t.encode() if isinstance(t, str) else t
            to_server = not raw.startswith(b"<")
            self.segment(to_server, dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, raw[1:] if not to_server else raw)

    def close(self) -> None:
        self.segment(True, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK, b"")
        self.segment(False, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK, b"")
        self.segment(True, dpkt.tcp.TH_ACK, b"")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def plant(cap: Capture) -> tuple[dict[str, str], dict[str, str]]:
    """Login traffic of every method the agent decodes; (label -> secret, label -> user)."""
    def pw(label: str) -> str:
        return f"Pw{label}{secrets.token_hex(6)}"

    s: dict[str, str] = {}
    u: dict[str, str] = {}
    for label in ("ftp", "pop3pass", "pop3plain", "pop3login", "imaplogin", "imapliteral", "imapplain",
                  "smtpplain", "smtplogin", "httpbasic", "radius"):
        s[label] = pw(label)
        u[label] = f"user.{label}"
    s["bearer"], s["cookie"], s["setcookie"], s["form"] = (pw("bearer"), pw("cookie"), pw("setcookie"),
                                                           pw("form"))
    s["apop"] = secrets.token_hex(16)
    u["apop"] = "user.apop"

    c = Tcp(cap, 21)
    c.talk("<220 FTP ready\r\n", f"USER {u['ftp']}\r\n", "<331 Please specify the password.\r\n",
           f"PASS {s['ftp']}\r\n", "<230 Login successful.\r\n", "SYST\r\n", "<215 UNIX Type: L8\r\n",
           "QUIT\r\n", "<221 Goodbye.\r\n")
    c.close()

    c = Tcp(cap, 110)
    c.talk("<+OK POP3 ready <1896.697170952@example.net>\r\n", f"USER {u['pop3pass']}\r\n", "<+OK\r\n",
           f"PASS {s['pop3pass']}\r\n", "<+OK logged in\r\n", "STAT\r\n", "<+OK 0 0\r\n",
           "QUIT\r\n", "<+OK bye\r\n")
    c.close()
    c = Tcp(cap, 110)
    c.talk("<+OK POP3 ready <1897.697170952@example.net>\r\n", f"APOP {u['apop']} {s['apop']}\r\n",
           "<+OK logged in\r\n", "QUIT\r\n", "<+OK bye\r\n")
    c.close()
    c = Tcp(cap, 110)
    c.talk("<+OK POP3 ready\r\n", "AUTH PLAIN\r\n", "<+ \r\n",
           _b64(f"\0{u['pop3plain']}\0{s['pop3plain']}".encode()) + "\r\n", "<+OK logged in\r\n",
           "QUIT\r\n", "<+OK bye\r\n")
    c.close()
    c = Tcp(cap, 110)
    c.talk("<+OK POP3 ready\r\n", "AUTH LOGIN\r\n", "<+ VXNlcm5hbWU6\r\n",
           _b64(u["pop3login"].encode()) + "\r\n",
           "<+ UGFzc3dvcmQ6\r\n", _b64(s["pop3login"].encode()) + "\r\n", "<+OK logged in\r\n",
           "QUIT\r\n", "<+OK bye\r\n")
    c.close()

    c = Tcp(cap, 143)
    c.talk("<* OK IMAP4rev1 ready\r\n", f'a1 LOGIN {u["imaplogin"]} "{s["imaplogin"]}"\r\n',
           "<a1 OK LOGIN completed\r\n", "a2 LOGOUT\r\n", "<* BYE\r\na2 OK LOGOUT completed\r\n")
    c.close()
    c = Tcp(cap, 143)
    user, secret = u["imapliteral"], s["imapliteral"]
    c.talk("<* OK IMAP4rev1 ready\r\n", f"a1 LOGIN {{{len(user)}}}\r\n", "<+ go ahead\r\n",
           f"{user} {{{len(secret)}}}\r\n", "<+ go ahead\r\n", f"{secret}\r\n",
           "<a1 OK LOGIN completed\r\n", "a2 LOGOUT\r\n", "<* BYE\r\na2 OK LOGOUT completed\r\n")
    c.close()
    c = Tcp(cap, 143)
    c.talk("<* OK IMAP4rev1 ready\r\n", "a1 AUTHENTICATE PLAIN\r\n", "<+ \r\n",
           _b64(f"\0{u['imapplain']}\0{s['imapplain']}".encode()) + "\r\n",
           "<a1 OK AUTHENTICATE completed\r\n", "a2 LOGOUT\r\n", "<* BYE\r\na2 OK LOGOUT completed\r\n")
    c.close()

    for label in ("smtpplain", "smtplogin"):
        c = Tcp(cap, 587)
        if label == "smtpplain":
            plain = _b64(("\0" + u[label] + "\0" + s[label]).encode())
            auth: list[str] = [f"AUTH PLAIN {plain}\r\n"]
        else:
            auth = ["AUTH LOGIN\r\n", "<334 VXNlcm5hbWU6\r\n", _b64(u[label].encode()) + "\r\n",
                    "<334 UGFzc3dvcmQ6\r\n", _b64(s[label].encode()) + "\r\n"]
        c.talk("<220 mail.example.net ESMTP\r\n", "EHLO client.example.net\r\n",
               "<250-mail.example.net\r\n250 AUTH PLAIN LOGIN\r\n", *auth,
               "<235 2.7.0 Authentication successful\r\n",
               "MAIL FROM:<a@example.net>\r\n", "<250 OK\r\n", "RCPT TO:<b@example.org>\r\n", "<250 OK\r\n",
               "DATA\r\n", "<354 go ahead\r\n", "Subject: hello\r\n\r\nhi\r\n.\r\n", "<250 OK queued\r\n",
               "QUIT\r\n", "<221 bye\r\n")
        c.close()

    c = Tcp(cap, 80)
    basic = _b64(f"{u['httpbasic']}:{s['httpbasic']}".encode())
    form = f"user=someone&password={s['form']}"
    c.talk(f"GET /private HTTP/1.1\r\nHost: www.example.net\r\nAuthorization: Basic {basic}\r\n"
           f"Cookie: session={s['cookie']}\r\n\r\n",
           f"<HTTP/1.1 200 OK\r\nSet-Cookie: token={s['setcookie']}; Path=/; HttpOnly\r\n"
           "Content-Length: 2\r\n\r\nok",
           f"GET /api HTTP/1.1\r\nHost: www.example.net\r\nAuthorization: Bearer {s['bearer']}\r\n\r\n",
           "<HTTP/1.1 204 No Content\r\n\r\n",
           f"POST /login HTTP/1.1\r\nHost: www.example.net\r\nContent-Type: application/x-www-form-urlencoded"
           f"\r\nContent-Length: {len(form)}\r\n\r\n{form}",
           "<HTTP/1.1 302 Found\r\nLocation: /\r\nContent-Length: 0\r\n\r\n")
    c.close()

    # RADIUS Access-Request: User-Password is sent hidden with the shared secret (RFC 2865 §5.2);
    # the planted value stands for those bytes
    hidden = s["radius"].encode().ljust(16, b"\0")[:16]
    s["radius"] = hidden.hex()
    attrs = (bytes([1, 2 + len(u["radius"])]) + u["radius"].encode() + bytes([2, 18]) + hidden
             + bytes([4, 6]) + SERVER_IP)
    req = struct.pack("!BBH", 1, 7, 20 + len(attrs)) + secrets.token_bytes(16) + attrs
    cap.ip(CLIENT_IP, SERVER_IP, dpkt.ip.IP_PROTO_UDP,
           dpkt.udp.UDP(sport=41000, dport=1812, ulen=8 + len(req), data=req), True)
    acc = struct.pack("!BBH", 2, 7, 20) + secrets.token_bytes(16)
    cap.ip(SERVER_IP, CLIENT_IP, dpkt.ip.IP_PROTO_UDP,
           dpkt.udp.UDP(sport=1812, dport=41000, ulen=8 + len(acc), data=acc), False)
    return s, u


def test_planted_credentials_leave_only_the_user_names(tmp_path: Path) -> None:
    cap = Capture()
    planted, users = plant(cap)
    pcap = tmp_path / "planted.pcap"
    cap.write(pcap)
    lines, found = replay_and_oracle(pcap, tmp_path / "records.jsonl")

    # the oracle itself: it finds every planted secret
    seen = {s.value for s in found.secrets}
    missed = {label: v for label, v in planted.items() if v not in seen}
    assert not missed, f"the oracle missed planted secrets: {missed}"

    problems = leaks("planted", lines, found)
    # and, independently of the oracle, the planted passwords in any form
    text = "\n".join(lines)
    for label, value in planted.items():
        user = users.get(label, "")
        for form in (value, _b64(f"{user}:{value}".encode()), _b64(("\0" + user + "\0" + value).encode()),
                     _b64(value.encode())):
            if form in text:
                problems.append(f"planted: the {label} secret shows as {form!r}")
    assert not problems, "secrets in the records:\n" + "\n".join(problems)

    # the logins were decoded: every account name is in the records
    missing = set(users.values()) - recorded_users(lines)
    assert not missing, f"account names the agent did not record: {sorted(missing)}"


# ---------------------------------------------------------------- the corpus


@needs_corpus
def test_known_credential_captures_are_in_the_corpus() -> None:
    missing = sorted(set(KNOWN) - set(CAPTURES))
    assert not missing, f"credential captures gone from the corpus: {missing}"
    assert sum(floor for floor, _ in KNOWN.values()) >= MIN_KNOWN_SECRETS
    assert sum(len(users) for _, users in KNOWN.values()) >= 10


@needs_corpus
@pytest.mark.parametrize("rel", CAPTURES)
def test_corpus_capture_records_carry_no_secret(rel: str, tmp_path: Path) -> None:
    lines, found = replay_and_oracle(CORPUS / rel, tmp_path / "records.jsonl")
    problems = leaks(rel, lines, found)
    assert not problems, "secrets in the records:\n" + "\n".join(problems)
    floor, users = KNOWN.get(rel, (0, set()))
    assert len(found.secrets) >= floor, (
        f"the oracle found {len(found.secrets)} secrets in {rel}, expected at least {floor}: "
        f"{[s.value for s in found.secrets]}")
    missing = users - recorded_users(lines)
    assert not missing, f"{rel}: account names the agent did not record: {sorted(missing)}"
