"""Sans-IO POP3 decoder: one `mailbox` record per session (SCHEMA.md).

Design (RFC 1939 "Post Office Protocol - Version 3", RFC 2449 "POP3 Extension
Mechanism", RFC 5034 "POP3 SASL Authentication Mechanism", RFC 2595 "Using
TLS with IMAP, POP3 and ACAP"):

* The originator sends command lines (RFC 1939 §3: ``keyword [SP args]
  CRLF``; keywords are case-insensitive and recorded upper-cased in
  ``commands``, in order, the first ``MAX_COMMANDS`` only). Bare LF line ends
  are tolerated, empty lines ignored.
* The responder answers each command with one status line, ``+OK`` or
  ``-ERR`` (§3). Commands may be pipelined (RFC 2449 §6.6), so they queue and
  each status line answers the oldest one; a status line with nothing queued
  (the greeting, §4) is ignored. ``+OK`` to CAPA (RFC 2449 §5), to RETR and
  TOP (§7), to LIST and UIDL without an argument (§5, §7) and to a bare AUTH
  (the de-facto mechanism listing) starts a multi-line response: lines up to
  a line holding only ``.``; other lines starting with ``.`` are
  dot-stuffed (§3) and are body. A body is never read, only searched for
  that line (`agent.protocols.base.dot_end`: one search per segment, across
  segment boundaries, whatever the line lengths) and dropped: the whole
  connection is followed (the spec's ``whole_connection``, so the commands
  after a large download or a long SASL token are recorded too) and a
  session that downloads 50 MB costs one search per segment.
  A non-status line where a status line was expected (an extension command
  with a multi-line answer this decoder does not know) is treated as the body
  of such a response and skipped up to its ``.`` line; only the very first
  server line must be a status line (else ``pop3_bad_reply``).
* Logins: ``USER name`` sets ``user`` and ``PASS`` decides ``login_ok`` from
  its status (§7); ``APOP name digest`` does both (§7); ``AUTH mechanism
  [initial-response]`` (RFC 5034 §4) starts a SASL exchange: the server's
  ``+ challenge`` lines are continuations, every client line is a base64
  response (``*`` cancels) until the final ``+OK`` / ``-ERR``, which decides
  ``login_ok``. The user name comes out of the responses (`SaslExchange`):
  PLAIN (RFC 4616 §2, authcid), LOGIN (first response), CRAM-MD5 (RFC 2195),
  XOAUTH2 (``user=``), OAUTHBEARER (RFC 7628 §3.1, the gs2 ``a=``); other
  mechanisms leave it None. ``login_ok`` is True once any login succeeded,
  False when attempts were made and all failed, None without an attempt;
  ``user`` stops changing once a login succeeded.
* Secrets (SCHEMA.md, DESIGN.md standard 11): the PASS argument, the APOP
  digest and SASL passwords are never kept: a line leaves the buffer as soon
  as it is complete, and decoded SASL values are dropped after the identity
  is taken out.
* ``STLS`` answered ``+OK`` (RFC 2595 §4): the rest is TLS. The decoder sets
  ``tls = True``, returns the record at once and decodes nothing more; the
  pipeline reads ``decoder.tls`` after each feed and hands later bytes to the
  TLS decoder. A TLS record (0x16) from the client while STLS awaits its
  answer is taken as the same switch (the reply was not captured).
* ``finished`` (the inspector stops handing it the connection) once it
  decodes nothing more: after the switch to TLS, or at ``close``.
* One record per connection: at the TLS switch or at ``close``, never twice;
  ``ts`` is the time of the first byte seen. A connection that carried no
  byte yields no record.
* Gaps: the partial line is dropped and the direction resynchronises on the
  next line end; the queued commands are forgotten (pairing can no longer be
  trusted) and malformed lines are skipped instead of raising from then on.

Peer input errors raise ``DecodeError`` with Zeek-style weird names
(``pop3_line_too_long``, ``pop3_bad_command``, ``pop3_bad_reply``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
from collections import deque
from dataclasses import dataclass
from typing import Literal, cast

from agent.decode.errors import DecodeError
from agent.protocols.base import Finishing, Record, StartTls, dot_end
from agent.protocols.spec import Probe, ProtocolSpec
from wire.records import MailboxFields
from wire.text import escaped_text, without_nul

# --- limits (every buffer is bounded) -------------------------------------
# RFC 2449 §4 caps command lines at 255 octets, but SASL responses (RFC 5034
# §4 sets no limit; GSSAPI tokens with a large Kerberos PAC run to tens of KiB
# of base64) arrive as client lines too.
MAX_CMD_LINE = 64 * 1024
# RFC 1939 §3: status lines are at most 512 octets; servers add long texts.
# Multi-line body lines are not bound by this: they are skipped in pieces.
MAX_REPLY_LINE = 4 * 1024
MAX_PENDING = 128  # commands awaiting a status line (oldest dropped: one-sided captures)
MAX_COMMANDS = 64  # verbs kept in the record's `commands` (later ones are counted only)
MAX_USER = 256  # characters of a user name kept

_VERB = re.compile(rb"[A-Za-z][A-Za-z0-9_-]{0,15}\Z")
_MULTI_ALWAYS = frozenset({"CAPA", "RETR", "TOP"})  # +OK starts a multi-line response
_MULTI_WITHOUT_ARG = frozenset({"LIST", "UIDL", "AUTH"})  # ... when sent without an argument


def _text(b: bytes) -> str:
    return escaped_text(b)


def _user(b: bytes) -> str | None:
    b = b.strip()
    return _text(b)[:MAX_USER] if b else None


def _oauthbearer_user(raw: bytes) -> bytes | None:
    """The ``a=`` authzid of the gs2 header (RFC 7628 §3.1, RFC 5801 §4 saslname)."""
    gs2 = raw.split(b"\x01", 1)[0]
    for field in gs2.split(b","):
        if field.startswith(b"a="):
            return field[2:].replace(b"=2C", b",").replace(b"=3D", b"=")
    return None


def _identity(mech: str, step: int, raw: bytes) -> bytes | None:
    """The authentication identity in one decoded SASL response, or None."""
    if mech == "PLAIN":
        fields = raw.split(b"\0")
        return fields[1] if len(fields) == 3 else None  # authzid NUL authcid NUL passwd
    if mech == "LOGIN":
        return raw if step == 0 else None  # the second response is the password
    if mech == "CRAM-MD5":
        return raw.rsplit(b" ", 1)[0] if step == 0 and b" " in raw else None  # "user digest"
    if mech == "XOAUTH2":
        for field in raw.split(b"\x01"):
            if field.startswith(b"user="):
                return field[5:]
        return None
    if mech == "OAUTHBEARER":
        return _oauthbearer_user(raw) if step == 0 else None
    return None


def mailbox_record(ts: float, protocol: Literal["pop3", "imap"], user: str | None, login_ok: bool | None,
                   commands: list[str], tls: bool) -> Record:
    """The one `mailbox` record of a POP3 or IMAP session (SCHEMA.md); IMAP's decoder uses it too."""
    rec: MailboxFields = {"type": "mailbox", "ts": ts, "protocol": protocol, "user": user,
                          "login_ok": login_ok, "commands": list(commands), "tls": tls}
    return cast(Record, rec)


class SaslExchange:
    """The client side of one SASL exchange: keeps the user name, drops the secrets.

    Shared by the POP3 AUTH (RFC 5034) and IMAP AUTHENTICATE (RFC 9051 §6.2.2)
    decoders. ``response`` takes one base64 client response, the initial
    response included (``=`` is the empty one, RFC 5034 §4 / RFC 4959 §3).
    """

    def __init__(self, mechanism: bytes) -> None:
        self.mech = without_nul(mechanism.decode("ascii", "replace").upper())
        self.step = 0  # client responses seen
        self.user: str | None = None

    def response(self, b64: bytes) -> None:
        step = self.step
        self.step += 1
        b64 = b64.strip()
        if not b64 or b64 == b"=":
            return
        try:
            raw = base64.b64decode(b64 + b"=" * (-len(b64) % 4), validate=True)
        except (binascii.Error, ValueError):
            return
        found = _identity(self.mech, step, raw)
        del raw  # holds the password for PLAIN / LOGIN: not kept
        user = _user(found) if found is not None else None
        if user is not None:
            self.user = user


@dataclass
class _Cmd:
    verb: str
    multi: bool  # +OK starts a multi-line response
    login: bool  # the status decides login_ok (PASS, APOP, AUTH mechanism)


class Pop3Decoder:
    """POP3 on one TCP connection -> one `mailbox` record (see the module docstring)."""

    name = "pop3"

    def __init__(self) -> None:
        self._buf = {True: bytearray(), False: bytearray()}
        self._skip = {True: False, False: False}  # after a gap: drop bytes up to the next LF
        self._pending: deque[_Cmd] = deque()
        self._multi = False  # inside a multi-line response body
        self._midline = False  # a body line longer than the buffer is being skipped
        self._seen_reply = False  # a valid status line was seen (protocol confirmed)
        self._lenient = False  # after a gap: skip malformed lines instead of raising
        self._sasl: SaslExchange | None = None  # client lines are SASL responses
        self._user: str | None = None
        self._login_ok: bool | None = None
        self._commands: list[str] = []
        self._ts0: float | None = None
        self._emitted = False
        self._dead = False  # TLS, or closed
        self.tls = False
        self.tls_leftover = b""  # client bytes after the switch to TLS, for the TLS decoder
        self.commands_dropped = 0  # verbs seen beyond MAX_COMMANDS
        self.pending_dropped = 0  # commands dropped at MAX_PENDING

    @property
    def finished(self) -> bool:
        """Nothing more is decoded (TLS, or closed): the inspector may stop (Finishing)."""
        return self._dead

    # --- StreamDecoder interface ---------------------------------------
    def feed(self, is_orig: bool, data: bytes, ts: float) -> list[Record]:
        if self._dead or not data:
            return []
        if self._ts0 is None:
            self._ts0 = ts
        buf = self._buf[is_orig]
        buf += data
        if is_orig:
            return self._client(buf)
        return self._server(buf)

    def gap(self, is_orig: bool, length: int, ts: float) -> list[Record]:
        if self._dead:
            return []
        if self._ts0 is None:
            self._ts0 = ts
        self._buf[is_orig].clear()
        self._skip[is_orig] = True
        self._pending.clear()
        self._sasl = None
        self._lenient = True
        if not is_orig:
            self._multi = self._midline = False
        return []

    def close(self, ts: float) -> list[Record]:
        out: list[Record] = []
        for is_orig in (True, False):
            buf = self._buf[is_orig]
            if buf and not self._dead and not self._skip[is_orig] and not (self._midline and not is_orig):
                line = bytes(buf).rstrip(b"\r")
                buf.clear()
                with contextlib.suppress(DecodeError):  # an unterminated fragment: keep the record
                    out += self._line(is_orig, line)
        if self._dead:
            return out  # switched to TLS: the record went out already (or closed twice)
        self._dead = True
        self._buf[True].clear()
        self._buf[False].clear()
        return out + self._emit()

    # --- internals ---------------------------------------------------------
    def _emit(self) -> list[Record]:
        if self._emitted or self._ts0 is None:
            return []
        self._emitted = True
        return [mailbox_record(self._ts0, "pop3", self._user, self._login_ok, self._commands, self.tls)]

    def _start_tls(self) -> list[Record]:
        self.tls = True
        self._dead = True
        self.tls_leftover = bytes(self._buf[True])  # a ClientHello already read: for the TLS decoder
        self._buf[True].clear()
        self._buf[False].clear()
        self._pending.clear()
        return self._emit()

    def _client(self, buf: bytearray) -> list[Record]:
        while not self._dead:
            if (
                buf[:1] == b"\x16"
                and self._pending
                and self._pending[-1].verb == "STLS"
                and not self._skip[True]
            ):
                return self._start_tls()  # a TLS ClientHello: the +OK was not captured
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > MAX_CMD_LINE:
                    n = len(buf)
                    buf.clear()
                    if self._skip[True] or self._lenient:
                        self._skip[True] = True
                        break
                    raise DecodeError("pop3_line_too_long", f"command line over {MAX_CMD_LINE} bytes ({n})")
                break
            line = bytes(buf[:nl]).rstrip(b"\r")
            del buf[: nl + 1]
            if self._skip[True]:
                self._skip[True] = False
                continue
            if nl > MAX_CMD_LINE:
                if self._lenient:
                    continue
                raise DecodeError("pop3_line_too_long", f"command line over {MAX_CMD_LINE} bytes ({nl})")
            self._command(line)
        return []

    def _server(self, buf: bytearray) -> list[Record]:
        while not self._dead:
            if self._multi and not self._skip[False]:
                # a multi-line response's body: only its "." line is looked for (module docstring)
                n, t = dot_end(buf, not self._midline)
                if t:
                    del buf[:n + t]
                    self._multi = self._midline = False  # its end (RFC 1939 §3)
                    continue
                if n:
                    self._midline = buf[n - 1] != 0x0A
                    del buf[:n]
                break
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > MAX_REPLY_LINE:
                    n = len(buf)
                    buf.clear()
                    if self._skip[False]:
                        break  # still resynchronising
                    if self._multi:
                        self._midline = True  # a long body line: not the "." line
                        break
                    if self._lenient:
                        self._skip[False] = True
                        break
                    raise DecodeError("pop3_line_too_long", f"reply line over {MAX_REPLY_LINE} bytes ({n})")
                break
            line = bytes(buf[:nl]).rstrip(b"\r")
            del buf[: nl + 1]
            if self._skip[False]:
                self._skip[False] = False
                continue
            if self._midline:
                self._midline = False  # the end of a long body line
                continue
            if nl > MAX_REPLY_LINE and not self._multi:
                if self._lenient:
                    continue
                raise DecodeError("pop3_line_too_long", f"reply line over {MAX_REPLY_LINE} bytes ({nl})")
            out = self._reply(line)
            if out:
                return out
        return []

    def _line(self, is_orig: bool, line: bytes) -> list[Record]:
        if is_orig:
            self._command(line)
            return []
        return self._reply(line)

    def _command(self, line: bytes) -> None:
        if self._sasl is not None:
            if line.strip() == b"*":  # the client cancels (RFC 5034 §4)
                self._sasl = None
                return
            self._sasl.response(line)
            self._set_user(self._sasl.user)
            return
        stripped = line.strip(b" \t")
        if not stripped:
            return  # empty line: tolerated
        word, _, rest = stripped.partition(b" ")
        if not _VERB.match(word):
            if self._lenient:
                return
            raise DecodeError("pop3_bad_command", repr(word[:40]))
        verb = word.decode("ascii").upper()
        arg = rest.strip(b" \t")
        if len(self._commands) < MAX_COMMANDS:
            self._commands.append(verb)
        else:
            self.commands_dropped += 1
        login = False
        if verb == "USER":
            self._set_user(_user(arg))
        elif verb == "PASS":
            login = True  # the argument is the password: not kept
        elif verb == "APOP":
            name = arg.rsplit(None, 1)[0] if len(arg.split()) > 1 else arg  # "name digest"
            self._set_user(_user(name))
            login = True
        elif verb == "AUTH" and arg:
            mech, _, initial = arg.partition(b" ")
            self._sasl = SaslExchange(mech)
            if initial.strip():
                self._sasl.response(initial)
                self._set_user(self._sasl.user)
            login = True
        multi = verb in _MULTI_ALWAYS or (verb in _MULTI_WITHOUT_ARG and not arg)
        if len(self._pending) >= MAX_PENDING:
            self._pending.popleft()  # one-sided capture: the replies never come
            self.pending_dropped += 1
        self._pending.append(_Cmd(verb, multi, login))

    def _set_user(self, user: str | None) -> None:
        if user is not None and self._login_ok is not True:
            self._user = user

    def _reply(self, line: bytes) -> list[Record]:
        if self._multi:
            if line == b".":
                self._multi = False  # end of the multi-line response (RFC 1939 §3)
            return []
        head = line[:4].upper()
        if head[:3] == b"+OK":
            ok = True
        elif head == b"-ERR":
            ok = False
        elif head[:1] == b"+":
            self._seen_reply = True
            return []  # SASL continuation (RFC 5034 §4): the client's response follows
        else:
            if line == b"." or self._seen_reply or self._lenient:
                # the body of a multi-line answer not foreseen: skip up to its "." line
                self._multi = line != b"."
                return []
            raise DecodeError("pop3_bad_reply", repr(line[:40]))
        self._seen_reply = True
        if not self._pending:
            return []  # greeting (RFC 1939 §4) or unsolicited
        cmd = self._pending.popleft()
        if cmd.verb == "AUTH":
            self._sasl = None  # the final status ends the exchange
        if cmd.login:
            if ok:
                self._login_ok = True
            elif self._login_ok is None:
                self._login_ok = False
        if ok and cmd.multi:
            self._multi = True
        if ok and cmd.verb == "STLS":
            return self._start_tls()  # RFC 2595 §4
        return []


#: What this module decodes (agent.protocols.spec; listed in agent.protocols.registry).
SPEC = ProtocolSpec(
    "pop3", ("tcp",), Pop3Decoder, records=("mailbox",), ports=frozenset({110}),
    probe=Probe(server=(b"+OK",)),
    capabilities=(StartTls, Finishing), whole_connection=True,
)
