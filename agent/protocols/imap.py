"""Sans-IO IMAP decoder: one `mailbox` record per session (SCHEMA.md).

Design (RFC 9051 "IMAP4rev2" and RFC 3501 "IMAP4rev1", RFC 7888 "IMAP4
Non-synchronizing Literals", RFC 3516 "IMAP4 Binary Content Extension",
RFC 4959 "IMAP Extension for SASL Initial Client Response", RFC 2177 "IMAP4
IDLE", RFC 4978 "IMAP COMPRESS", RFC 2595 "Using TLS with IMAP, POP3 and
ACAP"):

* Client (RFC 9051 §2.2.1, §6): ``tag SP command [SP arguments] CRLF``. The
  command name (case-insensitive) goes upper-cased into ``commands``, in order,
  the first ``MAX_COMMANDS`` only; ``UID`` is recorded with its subcommand
  (``UID FETCH``, §6.4.9). Bare LF line ends are tolerated, empty lines
  ignored. An argument may be a literal (§4.3): the line ends with ``{n}``
  (synchronizing), ``{n+}`` (RFC 7888 §3) or ``~{n}`` (literal8, RFC 3516
  §4.2), then exactly n octets follow, then the command line goes on. Literal
  octets are skipped by count, never parsed as lines; when the server refuses
  a synchronizing literal with a tagged NO/BAD before any of its octets
  arrived, the client does not send it (§7.5) and the command ends there.
* Server (RFC 9051 §2.2.2, §7): untagged ``* ...`` lines, continuation
  requests ``+ ...`` and tagged completions ``tag OK|NO|BAD ...``. Untagged
  data may hold literals too (FETCH bodies, §7.5.2): a line ending in ``{n}``
  is followed by n octets that are skipped by count, and the line after them
  continues the same response. Untagged lines longer than the buffer (a
  ``* SEARCH`` over a big mailbox) are skipped in pieces; only their last
  ``_TAIL`` octets are kept, to see a trailing literal marker.
* The whole connection is followed (the spec's ``whole_connection``: the
  commands after a large APPEND are recorded too), and literals cost little
  however large: their length is known, so once one is under way the rest of
  it is offered to the flow inspector to skip (`skippable`/`skip`, the
  `BodySkipping` calls: the flow table's fast path counts those bytes without
  calling the decoder). Not offered: a LOGIN userid literal (it is read), and
  a synchronizing literal before its first octet (the server may refuse it).
  ``finished`` once nothing more is decoded (TLS, COMPRESS, close).
* Pairing: tagged completions find their command by tag (commands may be
  pipelined and complete out of order, §5.5); a tag the decoder never saw is
  ignored (the capture started mid-session).
* Logins: ``LOGIN userid password`` (§6.2.3; each an atom, a quoted string
  with ``\\`` escapes, or a literal) sets ``user``; ``AUTHENTICATE mechanism
  [initial-response]`` (§6.2.2, RFC 4959 §3) starts a SASL exchange in which
  every client line is a base64 response (``*`` cancels) until the tagged
  completion; the user name comes out of the responses as in the POP3
  decoder (`agent.protocols.pop3.SaslExchange`: PLAIN, LOGIN, CRAM-MD5,
  XOAUTH2, OAUTHBEARER). The completion of either decides ``login_ok`` (OK:
  True; NO/BAD: False unless a login already succeeded). A ``* PREAUTH``
  greeting (§7.1.4) means the session is authenticated: ``login_ok`` True.
* ``IDLE`` (RFC 2177 §3): the client's ``DONE`` line ends it; it is not a
  command.
* Secrets (SCHEMA.md, DESIGN.md standard 11): a LOGIN password is never kept:
  a line leaves the buffer once parsed, only the first LOGIN argument is
  taken out of it, and a password literal is skipped by count without being
  stored. SASL values are dropped once the identity is taken out.
* ``STARTTLS`` completed with OK (RFC 9051 §6.2.1, RFC 2595 §3.1): the rest
  is TLS. The decoder sets ``tls = True``, returns the record at once and
  decodes nothing more; the pipeline reads ``decoder.tls`` after each feed.
  A TLS record (0x16) from the client while STARTTLS awaits its completion is
  taken as the same switch. ``COMPRESS`` completed with OK (RFC 4978 §3)
  also ends decoding (the streams are deflated); the record waits for close.
* One record per connection: at the TLS switch or at ``close``, never twice;
  ``ts`` is the time of the first byte seen. A connection that carried no
  byte yields no record.
* Gaps: inside a literal the missing octets are counted off it; elsewhere the
  partial line (and the command being assembled) is dropped and the
  direction resynchronises on the next line end. Malformed lines are skipped
  instead of raising from then on.

Peer input errors raise ``DecodeError`` with Zeek-style weird names
(``imap_line_too_long``, ``imap_bad_command``, ``imap_bad_response``).
"""

from __future__ import annotations

import contextlib
import re
from collections import deque
from dataclasses import dataclass

from agent.decode.errors import DecodeError
from agent.protocols.base import BodySkipping, Finishing, Record, StartTls
from agent.protocols.pop3 import SaslExchange, mailbox_record
from agent.protocols.spec import Probe, ProtocolSpec
from wire.text import escaped_text

# --- limits (every buffer is bounded) -------------------------------------
# RFC 9051 §4 / RFC 7162 §4 advise clients to keep command lines under 8192
# octets, but SASL responses (GSSAPI tokens with a large Kerberos PAC run to
# tens of KiB of base64) are client lines too.
MAX_CMD_LINE = 64 * 1024
# Tagged and continuation lines are short; untagged lines may be far longer
# (SEARCH results) and are skipped in pieces, so this only bounds the buffer.
MAX_RESP_LINE = 16 * 1024
MAX_PENDING = 128  # tagged commands awaiting completion (oldest dropped: one-sided captures)
MAX_COMMANDS = 64  # command names kept in the record's `commands` (later ones are counted only)
MAX_USER = 256  # characters (and literal octets) of a user name kept
_TAIL = 32  # octets kept of an over-long untagged line: "~{" 19 digits "+}" CR fits

_TAG = rb"[^\x00-\x20\x7f(){%*\"\\+]+"  # ASTRING-CHAR except "+" (RFC 9051 §9 "tag")
_COMMAND = re.compile(rb"(" + _TAG + rb") ([A-Za-z][A-Za-z0-9_-]{0,31})(?: (.*))?\Z", re.DOTALL)
_TAGGED = re.compile(rb"(" + _TAG + rb") ([A-Za-z]+)(?:[ \[].*)?\Z", re.DOTALL)
_LITERAL = re.compile(rb"~?\{([0-9]{1,19})(\+?)\}\Z")  # literal / literal8 at the end of a line
_ATOM = re.compile(rb"[^\x00-\x20\x7f(){%*\"\\]+")  # ASTRING-CHAR run (atom or "]")


def _astring(data: bytes) -> tuple[bytes | None, bytes]:
    """(first astring, rest) of ``data``: an atom or a quoted string (RFC 9051 §4.1-4.3)."""
    data = data.lstrip(b" ")
    if data[:1] == b'"':
        out = bytearray()
        i = 1
        while i < len(data):
            c = data[i]
            if c == 0x5C and i + 1 < len(data):  # "\" quotes the next char
                out.append(data[i + 1])
                i += 2
                continue
            if c == 0x22:
                return bytes(out[: MAX_USER * 4]), data[i + 1 :]
            out.append(c)
            i += 1
        return None, b""  # unterminated quoted string
    m = _ATOM.match(data)
    if m is None:
        return None, data
    return m.group(), data[m.end() :]


@dataclass
class _Cmd:
    """A client command being read (it may span lines, between literals)."""

    tag: bytes
    verb: str
    args: int = 0  # LOGIN arguments seen so far
    user: str | None = None  # LOGIN userid
    mech: bytes = b""  # AUTHENTICATE mechanism
    initial: bytes | None = None  # AUTHENTICATE initial response (RFC 4959)


class ImapDecoder:
    """IMAP on one TCP connection -> one `mailbox` record (see the module docstring)."""

    name = "imap"

    def __init__(self) -> None:
        self._cbuf = bytearray()  # client bytes not yet consumed (one line)
        self._sbuf = bytearray()  # server bytes not yet consumed (one line)
        self._cskip = False  # after a gap: drop client bytes up to the next LF
        self._sskip = False
        self._cur: _Cmd | None = None  # command continued after a literal
        self._lit = 0  # client literal octets still to skip
        self._lit_sync = False  # that literal is synchronizing and none of it arrived yet
        self._lit_user: bytearray | None = None  # collecting a LOGIN userid literal
        self._slit = 0  # server literal octets still to skip
        self._scont = False  # the next server line continues a response (after a literal)
        self._slong = False  # an over-long untagged line is being skipped
        self._pending: deque[tuple[bytes, str]] = deque()  # (tag, verb) awaiting completion
        self._sasl: SaslExchange | None = None
        self._sasl_tag = b""
        self._idle_tag: bytes | None = None
        self._lenient = False  # after a gap: skip malformed lines instead of raising
        self._user: str | None = None
        self._login_ok: bool | None = None
        self._commands: list[str] = []
        self._ts0: float | None = None
        self._emitted = False
        self._dead = False  # TLS, COMPRESS, or closed
        self.tls = False
        self.tls_leftover = b""  # client bytes after the switch to TLS, for the TLS decoder
        self.commands_dropped = 0  # command names seen beyond MAX_COMMANDS
        self.pending_dropped = 0  # commands dropped at MAX_PENDING

    @property
    def finished(self) -> bool:
        """Nothing more is decoded (TLS, COMPRESS, or closed): the inspector may stop (Finishing)."""
        return self._dead

    # --- skipping literals (the BodySkipping calls, through agent.protocols.base.SkippingOf) ----
    def skippable(self, is_orig: bool) -> int:
        """Octets of the literal under way in that direction that need only be counted: all of
        its rest, once nothing is buffered before it (see the module docstring for the
        literals that are read instead)."""
        if self._dead:
            return 0
        if is_orig:
            if self._cbuf or self._lit_sync or self._lit_user is not None:
                return 0
            return self._lit
        return 0 if self._sbuf else self._slit

    def exempt(self, is_orig: bool) -> int:
        return 0  # IMAP hands nothing to a content filter

    def skip(self, is_orig: bool, length: int, ts: float) -> list[Record]:
        """`length` octets `skippable` offered went by: counted off the literal."""
        if self._dead:
            return []
        if is_orig:
            if self._cbuf or not self._lit:
                return self.gap(is_orig, length, ts)
            take = min(length, self._lit)
            self._lit -= take
            if self._lit == 0:
                self._literal_done()
        else:
            if self._sbuf or not self._slit:
                return self.gap(is_orig, length, ts)
            take = min(length, self._slit)
            self._slit -= take
        return self.gap(is_orig, length - take, ts) if length > take else []

    # --- StreamDecoder interface ---------------------------------------
    def feed(self, is_orig: bool, data: bytes, ts: float) -> list[Record]:
        if self._dead or not data:
            return []
        if self._ts0 is None:
            self._ts0 = ts
        if is_orig:
            self._cbuf += data
            return self._client()
        self._sbuf += data
        return self._server()

    def gap(self, is_orig: bool, length: int, ts: float) -> list[Record]:
        if self._dead:
            return []
        if self._ts0 is None:
            self._ts0 = ts
        if is_orig:
            if self._lit and not self._cbuf:
                take = min(length, self._lit)
                self._lit -= take
                length -= take
                self._lit_sync = False
                self._lit_user = None  # the userid is incomplete: not used
                if self._lit == 0 and self._cur is not None:
                    self._cur.args += 1
                if length == 0:
                    return []
            self._cbuf.clear()
            self._cskip = True
            self._cur = None
            self._lit = 0
            self._lit_user = None
        else:
            if self._slit and not self._sbuf:
                take = min(length, self._slit)
                self._slit -= take
                length -= take
                if length == 0:
                    return []
            self._sbuf.clear()
            self._sskip = True
            self._slit = 0
            self._scont = self._slong = False
        self._lenient = True
        return []

    def close(self, ts: float) -> list[Record]:
        out: list[Record] = []
        if not self._dead and not self._lit and self._cbuf and not self._cskip:
            line = bytes(self._cbuf).rstrip(b"\r")
            self._cbuf.clear()
            with contextlib.suppress(DecodeError):  # an unterminated fragment: keep the record
                self._client_line(line)
        if not self._dead and not self._slit and self._sbuf and not self._sskip:
            line = bytes(self._sbuf).rstrip(b"\r")
            self._sbuf.clear()
            with contextlib.suppress(DecodeError):
                out += self._server_line(line)
        self._cbuf.clear()
        self._sbuf.clear()
        self._dead = True
        return out + self._emit()

    # --- record ------------------------------------------------------------
    def _emit(self) -> list[Record]:
        if self._emitted or self._ts0 is None:
            return []
        self._emitted = True
        return [mailbox_record(self._ts0, "imap", self._user, self._login_ok, self._commands, self.tls)]

    def _stop(self) -> None:
        self._dead = True
        self._cbuf.clear()
        self._sbuf.clear()
        self._pending.clear()

    def _start_tls(self) -> list[Record]:
        self.tls = True
        self.tls_leftover = bytes(self._cbuf)  # a ClientHello already read: for the TLS decoder
        self._stop()
        return self._emit()

    def _bad(self, name: str, detail: str) -> None:
        if not self._lenient:
            raise DecodeError(name, detail)

    def _set_user(self, user: str | None) -> None:
        if user is not None and self._login_ok is not True:
            self._user = user

    def _login_result(self, ok: bool) -> None:
        if ok:
            self._login_ok = True
        elif self._login_ok is None:
            self._login_ok = False

    # --- client side ---------------------------------------------------------
    def _client(self) -> list[Record]:
        buf = self._cbuf
        while buf and not self._dead:
            if self._lit:
                take = min(len(buf), self._lit)
                if self._lit_user is not None:
                    room = MAX_USER - len(self._lit_user)
                    self._lit_user += buf[: min(take, room)]
                del buf[:take]
                self._lit -= take
                self._lit_sync = False
                if self._lit == 0:
                    self._literal_done()
                continue
            if (
                buf[0] == 0x16
                and self._cur is None
                and not self._cskip
                and any(verb == "STARTTLS" for _, verb in self._pending)
            ):
                return self._start_tls()  # a TLS ClientHello: the OK was not captured
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > MAX_CMD_LINE:
                    n = len(buf)
                    buf.clear()
                    self._cur = None
                    if self._cskip or self._lenient:
                        self._cskip = True
                        break
                    raise DecodeError("imap_line_too_long", f"command line over {MAX_CMD_LINE} bytes ({n})")
                break
            line = bytes(buf[:nl]).rstrip(b"\r")
            del buf[: nl + 1]
            if self._cskip:
                self._cskip = False
                continue
            if nl > MAX_CMD_LINE:
                self._cur = None
                self._bad("imap_line_too_long", f"command line over {MAX_CMD_LINE} bytes ({nl})")
                continue
            self._client_line(line)
        return []

    def _literal_done(self) -> None:
        cur = self._cur
        if cur is None:
            return
        if self._lit_user is not None:
            self._set_user_arg(cur, bytes(self._lit_user))
            self._lit_user = None
        cur.args += 1

    def _set_user_arg(self, cur: _Cmd, userid: bytes) -> None:
        text = escaped_text(userid)[:MAX_USER]
        cur.user = text or None

    def _client_line(self, line: bytes) -> None:
        cur = self._cur
        if cur is None:
            if self._sasl is not None:
                if b" " not in line.strip():
                    self._sasl_line(line)
                    return
                self._sasl = None  # a command line (base64 has no spaces): the exchange is over
            if self._idle_tag is not None:
                self._idle_tag = None
                if line.strip().upper() == b"DONE":
                    return  # ends IDLE (RFC 2177 §3)
            if not line.strip():
                return  # empty line: tolerated
            m = _COMMAND.match(line.strip(b" \t"))
            if m is None:
                self._bad("imap_bad_command", repr(line[:40]))
                return
            verb = m.group(2).decode("ascii").upper()
            rest = m.group(3) or b""
            if verb == "UID":
                sub = rest.lstrip(b" ").split(b" ", 1)[0]
                if sub.isalpha() and len(sub) <= 32:
                    verb = "UID " + sub.decode("ascii").upper()
            cur = _Cmd(m.group(1), verb)
            if len(self._commands) < MAX_COMMANDS:
                self._commands.append(verb)
            else:
                self.commands_dropped += 1
            if verb == "AUTHENTICATE":
                parts = rest.split()
                cur.mech = parts[0] if parts else b""
                cur.initial = parts[1] if len(parts) > 1 else None
            args = rest
        else:
            args = line
        lit = _LITERAL.search(args)
        if lit is not None:
            args = args[: lit.start()]
        if cur.verb == "LOGIN" and cur.args == 0:
            userid, args = _astring(args)
            if userid is not None:
                self._set_user_arg(cur, userid)
                cur.args = 1
        del args  # may hold the password
        if lit is None:
            self._cur = None
            self._finish(cur)
            return
        self._cur = cur
        self._lit = int(lit.group(1))
        self._lit_sync = not lit.group(2)
        self._lit_user = bytearray() if cur.verb == "LOGIN" and cur.args == 0 else None
        if self._lit == 0:
            self._lit_sync = False
            self._literal_done()

    def _finish(self, cmd: _Cmd) -> None:
        """A whole command was read."""
        if len(self._pending) >= MAX_PENDING:
            self._pending.popleft()  # one-sided capture: the completions never come
            self.pending_dropped += 1
        self._pending.append((cmd.tag, cmd.verb))
        if cmd.verb == "LOGIN":
            self._set_user(cmd.user)
        elif cmd.verb == "AUTHENTICATE" and cmd.mech:
            self._sasl = SaslExchange(cmd.mech)
            self._sasl_tag = cmd.tag
            if cmd.initial is not None:
                self._sasl_line(cmd.initial)
        elif cmd.verb == "IDLE":
            self._idle_tag = cmd.tag

    def _sasl_line(self, line: bytes) -> None:
        sasl = self._sasl
        if sasl is None:
            return
        if line.strip() == b"*":  # the client cancels (RFC 9051 §6.2.2)
            self._sasl = None
            return
        sasl.response(line)
        self._set_user(sasl.user)

    # --- server side ---------------------------------------------------------
    def _server(self) -> list[Record]:
        buf = self._sbuf
        out: list[Record] = []
        while buf and not self._dead:
            if self._slit:
                take = min(len(buf), self._slit)
                del buf[:take]
                self._slit -= take
                continue
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > MAX_RESP_LINE:
                    if self._sskip:
                        buf.clear()
                        break
                    if self._slong or self._scont or buf[:1] == b"*":
                        del buf[:-_TAIL]  # untagged data: keep only what may hold a literal marker
                        self._slong = True
                        break
                    n = len(buf)
                    buf.clear()
                    if self._lenient:
                        self._sskip = True
                        break
                    raise DecodeError("imap_line_too_long", f"response line over {MAX_RESP_LINE} bytes ({n})")
                break
            line = bytes(buf[:nl]).rstrip(b"\r")
            del buf[: nl + 1]
            if self._sskip:
                self._sskip = False
                continue
            skip = self._slong or self._scont
            self._slong = self._scont = False
            # literals only occur in untagged data (RFC 9051 §7.5.2), never in resp-text
            lit = _LITERAL.search(line[-_TAIL:]) if skip or line[:1] == b"*" else None
            if lit is not None:
                self._slit = int(lit.group(1))
                self._scont = True  # the line after the literal continues this response
            if skip:
                continue
            if nl > MAX_RESP_LINE:
                if line[:1] != b"*":
                    self._bad("imap_line_too_long", f"response line over {MAX_RESP_LINE} bytes ({nl})")
                continue  # untagged: skipped, as when it arrives in pieces
            out += self._server_line(line)
        return out

    def _server_line(self, line: bytes) -> list[Record]:
        if line[:1] == b"*":
            if line[:2] == b"* " and line[2:9].upper() == b"PREAUTH" and line[9:10] in (b"", b" "):
                self._login_result(True)  # pre-authenticated greeting (RFC 9051 §7.1.4)
            return []
        if line[:1] == b"+":
            return []  # continuation request: the client stream says what follows
        if not line.strip():
            return []
        m = _TAGGED.match(line)
        if m is None:
            self._bad("imap_bad_response", repr(line[:40]))
            return []
        status = m.group(2).upper()
        if status not in (b"OK", b"NO", b"BAD"):
            self._bad("imap_bad_response", repr(line[:40]))
            return []
        return self._completion(m.group(1), status == b"OK")

    def _completion(self, tag: bytes, ok: bool) -> list[Record]:
        cur = self._cur
        if cur is not None and cur.tag == tag and self._lit_sync:
            # a synchronizing literal refused (RFC 9051 §7.5): it will not be sent
            self._cur = None
            self._lit = 0
            self._lit_sync = False
            self._lit_user = None
            self._finish(cur)
        verb = None
        for i, (t, v) in enumerate(self._pending):
            if t == tag:
                verb = v
                del self._pending[i]
                break
        if verb is None:
            return []  # a command this decoder did not see
        if self._sasl is not None and self._sasl_tag == tag:
            self._sasl = None
        if self._idle_tag == tag:
            self._idle_tag = None
        if verb in ("LOGIN", "AUTHENTICATE"):
            self._login_result(ok)
        elif verb == "STARTTLS" and ok:
            return self._start_tls()  # RFC 9051 §6.2.1
        elif verb == "COMPRESS" and ok:
            self._stop()  # deflated from here on (RFC 4978 §3)
        return []


#: What this module decodes (agent.protocols.spec; listed in agent.protocols.registry).
SPEC = ProtocolSpec(
    "imap", ("tcp",), ImapDecoder, records=("mailbox",), ports=frozenset({143}),
    probe=Probe(server=(b"* OK", b"* PREAUTH")),
    capabilities=(StartTls, BodySkipping, Finishing), whole_connection=True,
)
