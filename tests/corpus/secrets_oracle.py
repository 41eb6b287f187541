"""An oracle for the credentials a capture carries, independent of our decoders.

Used by test_no_secrets.py. Wireshark's dissectors (tshark) read the capture
once, and two sources are combined:

1. tshark's own fields: FTP PASS/ACCT arguments, POP3 PASS/APOP, IMAP LOGIN
   (`imap.request.password`), SMTP AUTH (`smtp.auth.*`), HTTP
   Authorization/Proxy-Authorization, Cookie and Set-Cookie, password fields of
   URL-encoded forms, PPP PAP/CHAP, RADIUS User-Password/CHAP-Password and
   EAP-MD5 values.
2. A scan of the raw TCP payload lines, which does not depend on tshark knowing
   the port: FTP/POP3 PASS/ACCT/APOP, IMAP LOGIN (atoms, quoted strings,
   literals), SASL exchanges (POP3 AUTH, IMAP AUTHENTICATE, SMTP AUTH: PLAIN,
   LOGIN, CRAM-MD5, XOAUTH2, OAUTHBEARER, other mechanisms as opaque tokens)
   and the HTTP credential and cookie headers.

Every secret comes with the spellings in which it would leak besides its own
text (the Basic base64 blob and `user:password`, the SASL base64 blobs, hex and
base64 of binary secrets). What the oracle deliberately does not count:
- secrets shorter than MIN_LEN characters (the FTP brute-force trace's
  passwords "1".."30" would match any number in any record);
- a secret equal to a value the agent records legitimately: a user name (the
  PPPoE trace's PAP password "cisco" is also its Peer-ID; the FTP trace whose
  anonymous user gives "anonymous" as the password), or another recorded text.
  An e-mail address given as an anonymous-FTP password is still a secret.
A secret that is only a part of a legitimately recorded value (the FTP
password "password" inside the reply "Please specify the password.") is kept
but marked `ambiguous`: the test then only looks for it as a whole field value.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from wire.text import wire_text

TSHARK = shutil.which("tshark")
MIN_LEN = 3

# tshark fields read from each packet of interest (Wireshark 4.0 names; a missing
# field makes tshark fail, which fails the test loudly instead of finding nothing)
FIELDS = [
    "frame.number", "tcp.stream", "tcp.srcport", "tcp.payload",
    "ftp.request.command", "ftp.request.arg", "ftp.response.arg",
    "pop.request.command", "pop.request.parameter", "pop.response.description",
    "imap.request.username", "imap.request.password", "imap.response",
    "smtp.req.command", "smtp.req.parameter", "smtp.rsp.parameter",
    "smtp.auth.username", "smtp.auth.password", "smtp.auth.username_password",
    "http.authorization", "http.proxy_authorization", "http.cookie", "http.set_cookie",
    "http.request.uri", "http.host", "http.user_agent", "http.referer", "http.response.phrase",
    "urlencoded-form.key", "urlencoded-form.value",
    "pap.peer_id", "pap.password", "chap.name", "chap.value",
    "radius.User_Name", "radius.User_Password", "radius.User_Password_encrypted",
    "radius.CHAP_Password", "eap.identity", "eap.md5.value",
]
# fields whose values the agent records legitimately (ambiguity of a secret is judged against them)
LEGIT_FIELDS = [
    "ftp.response.arg", "pop.response.description", "imap.response", "smtp.rsp.parameter",
    "http.request.uri", "http.host", "http.user_agent", "http.referer", "http.response.phrase",
]
# the payload lines that can carry a credential, for packets tshark does not dissect as such
# (a display-filter string literal: its backslashes are doubled)
_PAYLOAD_FILTER = (
    r'tcp.payload matches "(?im)^(\\S+ )?(AUTH|AUTHENTICATE|LOGIN|PASS|ACCT|APOP|USER) "'
    r' or tcp.payload matches "^[A-Za-z0-9+/]+=*\\r?\\n$"'
    r' or tcp.payload matches "(?im)^((proxy-)?authorization|cookie|set-cookie):"'
)
DISPLAY_FILTER = (
    "ftp or pop or imap or smtp.req.command or smtp.rsp or smtp.auth.username or smtp.auth.password"
    " or smtp.auth.username_password or http.request or http.response or urlencoded-form"
    " or pap or chap or radius or eap or " + _PAYLOAD_FILTER
)

_B64_LINE = re.compile(rb"^[A-Za-z0-9+/]+=*$")
_FORM_SECRET_KEY = re.compile(r"(?i)(pass|pwd|secret|token)")
_SASL_STEPS = {"PLAIN": 1, "LOGIN": 2, "CRAM-MD5": 1, "XOAUTH2": 1, "OAUTHBEARER": 1}
_NOT_SASL = {"TLS", "SSL"}  # FTP's AUTH TLS (RFC 4217)


class OracleError(Exception):
    """tshark failed: the oracle must not silently find nothing."""


@dataclass(frozen=True)
class Secret:
    kind: str  # where it came from, e.g. "ftp PASS", "http Basic", "pop3 SASL PLAIN"
    value: str  # the secret as text
    frame: int  # the packet that carried it (1-based, as tshark counts)
    user: str | None = None  # the account it belongs to, when the exchange names one
    forms: tuple[str, ...] = ()  # other spellings that must not appear either
    ambiguous: bool = False  # a part of a legitimately recorded value: searched as a whole value only

    def spellings(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s for s in (self.value, *self.forms) if len(s) >= MIN_LEN))


@dataclass
class Findings:
    secrets: list[Secret] = field(default_factory=list)
    users: set[str] = field(default_factory=set)  # account names named by credential exchanges
    legit: set[str] = field(default_factory=set)  # values the agent may record
    dropped: list[Secret] = field(default_factory=list)  # equal to a legit value (see module doc)


def b64decode(text: str | bytes) -> bytes | None:
    t = text.strip() if isinstance(text, str) else text.strip().decode("ascii", "replace")
    if not t or len(t) % 4:
        return None
    try:
        return base64.b64decode(t, validate=True)
    except (binascii.Error, ValueError):
        return None


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _bytes_forms(raw: bytes) -> tuple[str, ...]:
    return (raw.hex(), raw.hex().upper(), b64(raw), wire_text(raw))


class _Collector:
    def __init__(self) -> None:
        self.found: list[Secret] = []
        self.users: set[str] = set()
        self.legit: set[str] = set()

    def user(self, name: str | bytes | None) -> str | None:
        if name is None:
            return None
        text = wire_text(name) if isinstance(name, bytes) else name
        text = text.strip()
        if text:
            self.users.add(text)
        return text or None

    def secret(self, kind: str, value: str | bytes, frame: int, user: str | bytes | None = None,
               forms: Iterable[str] = ()) -> None:
        text = wire_text(value) if isinstance(value, bytes) else value
        all_forms = list(forms)
        if isinstance(value, bytes) and text != value.decode("latin-1"):
            all_forms.append(value.decode("latin-1"))
        if len(text) < MIN_LEN:
            return
        self.found.append(Secret(kind, text, frame, self.user(user), tuple(all_forms)))

    def binary(self, kind: str, hexval: str, frame: int, user: str | None = None) -> None:
        try:
            raw = bytes.fromhex(hexval.replace(":", ""))
        except ValueError:
            return
        if len(raw) >= MIN_LEN:
            forms = _bytes_forms(raw)
            self.found.append(Secret(kind, forms[0], frame, self.user(user), forms[1:]))

    # ---- credential formats shared by the sources

    def authorization(self, header: str, frame: int) -> None:
        parts = header.strip().split(None, 1)
        if len(parts) != 2:
            return
        scheme, rest = parts[0].lower(), parts[1].strip()
        if scheme == "basic":
            raw = b64decode(rest)
            if raw is not None and b":" in raw:
                user, pw = raw.split(b":", 1)
                self.secret("http Basic", pw, frame, user,
                            (rest, b64(raw), wire_text(raw)))
                return
            self.secret("http Basic (undecodable)", rest, frame)
        elif scheme == "digest":
            params = dict(re.findall(r'(\w+)\s*=\s*"?([^",]*)"?', rest))
            if "response" in params:
                self.secret("http Digest response", params["response"], frame, params.get("username"))
        else:
            self.secret(f"http {parts[0]} token", rest, frame)

    def cookies(self, header: str, frame: int, kind: str = "http Cookie") -> None:
        for pair in header.split(";"):
            if "=" in pair:
                value = pair.split("=", 1)[1].strip().strip('"')
                self.secret(kind, value, frame)

    def set_cookie(self, header: str, frame: int) -> None:
        self.cookies(header.split(";", 1)[0], frame, "http Set-Cookie")

    def sasl(self, proto: str, mech: str, step: int, line: bytes, frame: int) -> None:
        kind = f"{proto} SASL {mech}"
        if line in (b"=", b"*", b""):
            return
        raw = b64decode(line)
        blob = line.decode("ascii")
        if raw is None:
            return
        if mech == "PLAIN":
            parts = raw.split(b"\0")
            if len(parts) == 3:
                self.secret(kind, parts[2], frame, parts[1],
                            (blob, b64(raw), wire_text(raw), wire_text(b"\0".join(parts[1:]))))
        elif mech == "LOGIN":
            if step == 0:
                self.user(raw)  # the first response is the user name
            else:
                self.secret(kind, raw, frame, None, (blob,))
        elif mech == "CRAM-MD5":
            user, _, digest = raw.rpartition(b" ")
            self.secret(kind, digest, frame, user or None, (blob,))
        elif mech in ("XOAUTH2", "OAUTHBEARER"):
            fields = raw.split(b"\x01")
            user = None
            token = None
            for f in fields:
                if f.startswith(b"user="):
                    user = f[5:]
                elif f.startswith(b"n,") and b"a=" in f:
                    user = f.split(b"a=", 1)[1].split(b",", 1)[0]
                elif f.lower().startswith(b"auth="):
                    token = f[5:].split(b" ", 1)[-1]
            if token is not None:
                self.secret(kind, token, frame, user, (blob,))
            else:
                self.secret(kind, blob, frame, user)
        else:
            self.secret(kind, blob, frame)


def _vals(layers: dict[str, list[str]], name: str) -> list[str]:
    v = layers.get(name, [])
    return v if isinstance(v, list) else [v]


def _unquote_imap(s: str) -> str:
    if len(s) >= 2 and s[0] == s[-1] == '"':
        return re.sub(r"\\(.)", r"\1", s[1:-1])
    return s


class _PayloadScanner:
    """Credential lines in raw TCP payload, per packet (credential lines are short)."""

    _IMAP_ARG = re.compile(rb'\s*(?:"((?:[^"\\]|\\.)*)"|\{(\d+)\+?\}\r?\n|([^\s"{}()]+))')

    def __init__(self, c: _Collector) -> None:
        self.c = c
        self.sasl_state: dict[tuple[str, str], tuple[str, str, int]] = {}  # -> (proto, mech, next step)
        self.imap_pending: dict[tuple[str, str], tuple[list[bytes], int]] = {}  # -> (LOGIN args, literal)

    def packet(self, stream: str, port: str, frame: int, data: bytes) -> None:
        key = (stream, port)
        pos = 0
        pending = self.imap_pending.pop(key, None)
        if pending is not None:  # the literal a LOGIN line announced (RFC 9051 §4.3)
            args, n = pending
            args.append(data[:n])
            pos = self._login_args(key, frame, data, n, args)
        while pos < len(data):
            end = data.find(b"\n", pos)
            end = len(data) if end < 0 else end + 1
            line = data[pos:end].rstrip(b"\r\n")
            m = re.match(rb"(?i)^\S+ LOGIN ", line)
            if m:
                pos = self._login_args(key, frame, data, pos + m.end(), [])
                continue
            pos = end
            self.line(key, frame, line)

    def _login_args(self, key: tuple[str, str], frame: int, data: bytes, p: int, args: list[bytes]) -> int:
        """Reads IMAP LOGIN's two astrings from data[p:]; returns where the next line starts."""
        while len(args) < 2 and p < len(data):
            a = self._IMAP_ARG.match(data, p)
            if not a:
                break
            if a.group(1) is not None:
                args.append(re.sub(rb"\\(.)", rb"\1", a.group(1)))
                p = a.end()
            elif a.group(2) is not None:
                n = int(a.group(2))
                if a.end() >= len(data):  # the literal comes in the client's next segment
                    self.imap_pending[key] = (args, n)
                    return len(data)
                args.append(data[a.end(): a.end() + n])
                p = a.end() + n
            else:
                args.append(a.group(3))
                p = a.end()
        if len(args) == 2:
            self.c.secret("imap LOGIN", args[1], frame, args[0])
        nl = data.find(b"\n", p)
        return len(data) if nl < 0 else nl + 1

    def line(self, key: tuple[str, str], frame: int, line: bytes) -> None:
        c = self.c
        state = self.sasl_state.get(key)
        if state is not None:
            proto, mech, step = state
            if _B64_LINE.match(line) or line in (b"=", b"*"):
                c.sasl(proto, mech, step, line, frame)
                if step + 1 >= _SASL_STEPS.get(mech, 3):
                    del self.sasl_state[key]
                else:
                    self.sasl_state[key] = (proto, mech, step + 1)
                return
            del self.sasl_state[key]
        m = re.match(rb"(?i)^(?:(\S+) )?(AUTH|AUTHENTICATE) ([A-Za-z0-9_-]+)(?: (\S+))?$", line)
        if m and (m.group(1) is None) == (m.group(2).upper() == b"AUTH"):
            mech = m.group(3).decode("ascii").upper()
            if mech in _NOT_SASL:
                return
            proto = "imap" if m.group(1) else "pop3/smtp"
            step = 0
            if m.group(4) is not None:
                c.sasl(proto, mech, 0, m.group(4), frame)
                step = 1
            if step < _SASL_STEPS.get(mech, 3):
                self.sasl_state[key] = (proto, mech, step)
            return
        m = re.match(rb"(?i)^(PASS|ACCT) (.+)$", line)
        if m:
            c.secret(f"{m.group(1).decode().upper()} command", m.group(2), frame)
            return
        m = re.match(rb"(?i)^USER (.+)$", line)
        if m:
            c.user(m.group(1))
            return
        m = re.match(rb"(?i)^APOP (\S+) (\S+)$", line)
        if m:
            c.secret("pop3 APOP digest", m.group(2), frame, m.group(1))
            return
        m = re.match(rb"(?i)^(proxy-authorization|authorization|cookie|set-cookie):\s*(.*)$", line)
        if m:
            name, value = m.group(1).lower(), wire_text(m.group(2))
            if name.endswith(b"authorization"):
                c.authorization(value, frame)
            elif name == b"cookie":
                c.cookies(value, frame)
            else:
                c.set_cookie(value, frame)


@dataclass
class Run:
    """A tshark run under way; its output goes to temporary files, so it never waits for a reader."""

    pcap: Path
    proc: subprocess.Popen[bytes]
    out: IO[bytes]
    err: IO[bytes]


def start(pcap: Path) -> Run:
    """Starts tshark on `pcap`; `collect` reads the result."""
    if TSHARK is None:
        raise OracleError("tshark not installed")
    cmd = [TSHARK, "-n", "-r", str(pcap), "-Y", DISPLAY_FILTER, "-T", "json"]
    for f in FIELDS:
        cmd += ["-e", f]
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # noqa: SIM115 (closed by collect)
    return Run(pcap, subprocess.Popen(cmd, stdout=out, stderr=err), out, err)


def _read(run: Run) -> list[dict[str, list[str]]]:
    with run.out, run.err:
        rc = run.proc.wait(timeout=300)
        run.out.seek(0)
        out = run.out.read().decode("utf-8", "replace")
        run.err.seek(0)
        err = run.err.read().decode("utf-8", "replace")[-500:]
    # exit 2: the capture is cut short (tshark still prints what it read)
    if rc not in (0, 2) or (rc and not out.strip()):
        raise OracleError(f"tshark {run.pcap}: exit {rc}: {err}")
    if not out.strip():
        return []
    try:
        packets = json.loads(out)
    except json.JSONDecodeError as e:
        raise OracleError(f"tshark {run.pcap}: unreadable JSON: {e}") from e
    return [p["_source"]["layers"] for p in packets]


def findings(pcap: Path) -> Findings:
    """Every credential `pcap` carries (see the module doc for what is left out)."""
    return collect(start(pcap))


def collect(run: Run) -> Findings:
    """The credentials in the output of a `start`ed tshark run."""
    c = _Collector()
    scan = _PayloadScanner(c)
    for layers in _read(run):
        frame = int(_vals(layers, "frame.number")[0])
        for name in LEGIT_FIELDS:
            c.legit.update(v for v in _vals(layers, name) if v)
        # FTP
        cmds, args = _vals(layers, "ftp.request.command"), _vals(layers, "ftp.request.arg")
        if len(cmds) == len(args):
            for cmd, arg in zip(cmds, args, strict=True):
                if cmd.upper() in ("PASS", "ACCT"):
                    c.secret(f"ftp {cmd.upper()}", arg, frame)
                elif cmd.upper() == "USER":
                    c.user(arg)
                else:
                    c.legit.add(arg)
        # POP3
        cmds, params = _vals(layers, "pop.request.command"), _vals(layers, "pop.request.parameter")
        if len(cmds) == 1 and len(params) == 1:
            cmd, param = cmds[0].upper(), params[0]
            if cmd == "PASS":
                c.secret("pop3 PASS", param, frame)
            elif cmd == "USER":
                c.user(param)
            elif cmd == "APOP" and " " in param:
                user, digest = param.rsplit(" ", 1)
                c.secret("pop3 APOP digest", digest, frame, user)
        # IMAP
        users, pws = _vals(layers, "imap.request.username"), _vals(layers, "imap.request.password")
        for i, pw in enumerate(pws):
            c.secret("imap LOGIN", _unquote_imap(pw), frame,
                     _unquote_imap(users[i]) if i < len(users) else None)
        # SMTP
        for u in _vals(layers, "smtp.auth.username"):
            raw = b64decode(u)
            c.user(raw if raw is not None else u)
        for p in _vals(layers, "smtp.auth.password"):
            decoded = b64decode(p)
            c.secret("smtp AUTH password", decoded if decoded is not None else p, frame, None,
                     (p,) if decoded is not None else ())
        for up in _vals(layers, "smtp.auth.username_password"):
            decoded = b64decode(up)
            if decoded is not None and decoded.count(b"\0") == 2:
                _, authcid, secret = decoded.split(b"\0")
                c.secret("smtp AUTH PLAIN", secret, frame, authcid, (up, wire_text(decoded)))
        for cmd, param in zip(_vals(layers, "smtp.req.command"), _vals(layers, "smtp.req.parameter"),
                              strict=False):
            if cmd.upper() != "AUTH":
                c.legit.add(param)
        # HTTP
        for h in _vals(layers, "http.authorization") + _vals(layers, "http.proxy_authorization"):
            c.authorization(h, frame)
        for h in _vals(layers, "http.cookie"):
            c.cookies(h, frame)
        for h in _vals(layers, "http.set_cookie"):
            c.set_cookie(h, frame)
        keys, values = _vals(layers, "urlencoded-form.key"), _vals(layers, "urlencoded-form.value")
        if len(keys) == len(values):
            for k, v in zip(keys, values, strict=True):
                if _FORM_SECRET_KEY.search(k):
                    c.secret(f"http form {k}", v, frame)
        # PPP, RADIUS, EAP
        peer = next(iter(_vals(layers, "pap.peer_id")), None)
        c.user(peer)
        for pap_pw in _vals(layers, "pap.password"):
            c.secret("ppp PAP password", pap_pw, frame, peer)
        chap_name = next(iter(_vals(layers, "chap.name")), None)
        c.user(chap_name)
        for v in _vals(layers, "chap.value"):
            c.binary("ppp CHAP value", v, frame, chap_name)
        rad_user = next(iter(_vals(layers, "radius.User_Name")), None)
        c.user(rad_user)
        for pw in _vals(layers, "radius.User_Password"):
            c.secret("radius User-Password", pw, frame, rad_user)
        for v in _vals(layers, "radius.User_Password_encrypted"):
            c.binary("radius User-Password (encrypted)", v, frame, rad_user)
        for v in _vals(layers, "radius.CHAP_Password"):
            c.binary("radius CHAP-Password", v, frame, rad_user)
        for v in _vals(layers, "eap.identity"):
            c.user(v)
        for v in _vals(layers, "eap.md5.value"):
            c.binary("eap MD5 value", v, frame)
        # raw payload lines
        for payload in _vals(layers, "tcp.payload"):
            try:
                data = bytes.fromhex(payload.replace(":", ""))
            except ValueError:
                continue
            scan.packet(_vals(layers, "tcp.stream")[0], _vals(layers, "tcp.srcport")[0], frame, data)

    result = Findings(users=c.users, legit=c.legit | c.users)
    merged: dict[str, Secret] = {}  # one entry per secret text, all sources' spellings together
    for s in c.found:
        first = merged.setdefault(s.value, s)
        if first is not s:
            merged[s.value] = Secret(first.kind, first.value, first.frame, first.user or s.user,
                                     tuple(dict.fromkeys(first.forms + s.forms)))
    for s in merged.values():
        if s.value in result.legit:
            result.dropped.append(s)
            continue
        ambiguous = any(s.value in v for v in result.legit)
        result.secrets.append(Secret(s.kind, s.value, s.frame, s.user, s.forms, ambiguous))
    return result
