"""Sans-IO SMTP decoder: one `smtp` record per mail transaction (Zeek smtp.log).

Design (RFC 5321 "Simple Mail Transfer Protocol"):

* The originator sends command lines (§4.1.1, ``verb [SP args] CRLF``; verbs
  are case-insensitive, §2.4); the responder sends reply lines (§4.2,
  ``3DIGIT ( SP / "-" ) text CRLF``; "-" marks a continued multiline reply,
  §4.2.1). Bare LF line ends are tolerated. Replies are paired with commands
  in order (pipelining, RFC 2920 / RFC 5321 §4.5.3.1); only the replies that
  change how the client stream is read are acted on:
  - ``354`` to DATA (§4.1.1.4, §4.3.2); any other reply to DATA while no
    message byte has been read cancels the message;
  - ``220`` to STARTTLS (RFC 3207 §4): the session switches to TLS, the record
    gets ``tls = True`` and nothing more is decoded on the connection;
  - ``334`` to AUTH (RFC 4954 §4): more SASL lines follow; any other reply
    ends the exchange.
* The mail transaction (§3.3) is MAIL FROM -> RCPT TO ... -> DATA/BDAT.
  ``mailfrom`` / ``rcptto`` are the reverse-path / forward-paths with the angle
  brackets and ESMTP parameters (§4.1.2) removed.
* When records come out (one per transaction, from the call that completes it,
  in the connection's order):
  - at the end of the message data: the call that hands over the "." line
    ending DATA (`feed`), or the last byte of the BDAT ... LAST chunk (`feed`,
    or `skip` when the flow inspector skipped the chunk's rest); not on the
    server's reply, so one-sided captures still log, and a pipelining client's
    next transaction never delays it. ``trans_depth`` is then the messages
    the server answered so far, plus one (Zeek's numbering);
  - at a MAIL FROM while the previous transaction had client activity but no
    message end (refused DATA, RSET: Zeek flushes there too), from that `feed`;
  - at STARTTLS (the transaction so far, ``tls`` True);
  - at `close`: a message cut short, or an AUTH without any transaction.
* The whole connection is followed (the spec's ``whole_connection``: a mass
  mailer's 150th message is a record too), so a message costs little past
  what is read of it: its top-level header section, then a body prefix of
  ``body_keep`` bytes for a content filter (0 when none runs), line by line;
  after that its bytes are only counted: DATA is searched for its end
  (`agent.protocols.base.dot_end`, across segment boundaries, however long
  the lines), and the rest of a BDAT chunk is offered to the inspector to
  skip (`BodySkipping`: the flow table's fast path counts it without calling
  the decoder). Nothing past the prefix is kept.
* DATA (§4.1.1.4): the message ends at ``CRLF . CRLF``; a leading "." on any
  other line is removed (dot-unstuffing, §4.5.2) in what is read.
* BDAT (RFC 3030 §2, §3): ``BDAT chunk-size [LAST]``; exactly chunk-size
  octets follow, taken verbatim (no dot-stuffing); the LAST chunk ends the
  message, and the server's reply to it is the message's reply (§4.2).
* Message headers (RFC 5322 §2.2, §3.6): only the top-level header section is
  read; folded lines are unfolded (§2.2.3). ``from`` and ``subject`` are the
  last such field (Zeek overwrites); ``to`` / ``cc`` collect the comma
  separated entries of every such field (commas inside quotes or angle
  brackets do not split). RFC 2047 encoded-words (§2 syntax, §4.1 "B",
  §4.2 "Q", §6.2 whitespace between adjacent encoded-words is dropped) are
  decoded; gb2312 / gbk are decoded as their superset gb18030.
* AUTH (RFC 4954): ``user`` is the authentication identity only: PLAIN
  (RFC 4616 §2) -> authcid; LOGIN -> the base64 username line; CRAM-MD5
  (RFC 2195) -> the user name before the digest. Passwords, digests and the
  raw SASL lines are never stored (SCHEMA.md).
* For the mail policy (`MailSteps`, only while one runs): each transaction's
  steps as they are read, not at its end: MAIL FROM, every RCPT TO (each
  command, duplicates too), and the message's end with its headers, so that
  a sender past its limit can be stopped at MAIL FROM, before its message.

Line-length limits (RFC 5321 §4.5.3.1) are enforced with headroom, as real
clients exceed them: see the named constants. Peer input errors raise
``DecodeError`` with Zeek-like weird names.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from collections import deque
from typing import Final, cast

from agent.decode.errors import DecodeError
from agent.protocols.base import (
    BodySkipping,
    Content,
    ContentSource,
    Finishing,
    MailStep,
    MailSteps,
    Record,
    StartTls,
    dot_end,
)
from agent.protocols.spec import Probe, ProtocolSpec
from wire.records import SmtpFields
from wire.text import wire_text, without_nul

# --- limits (every buffer is bounded) -------------------------------------
# RFC 5321 §4.5.3.1.4 allows 512 octets per command line, but ESMTP parameters
# and SASL initial responses (RFC 4954 §4: up to 12288 octets) are longer.
MAX_CMD_LINE: Final = 16 * 1024
# §4.5.3.1.5: reply lines are 512 octets; servers add long texts, allow more.
MAX_REPLY_LINE: Final = 4 * 1024
# §4.5.3.1.6: text lines are 1000 octets; longer body lines are passed on in
# pieces (no error), this only bounds the buffer.
MAX_DATA_LINE: Final = 8 * 1024
MAX_HEADER_BLOCK: Final = 64 * 1024  # top-level header section read per message
MAX_HEADERS: Final = 512  # header fields per message
MAX_FIELD: Final = 8 * 1024  # one unfolded header value kept
MAX_PENDING: Final = 128  # commands awaiting replies (oldest dropped: one-sided captures)
MAX_RCPT: Final = 1024  # recipients / to / cc entries kept per transaction
# message body prefix (after the headers) kept for the keyword filter, per message: enough of
# a mail's text to say what it is about; the rest is counted (the filter's own depth is larger)
BODY_KEEP: Final = 8 * 1024
MAX_ARG: Final = 1024  # longest helo/mailfrom/rcpt/user value kept

_VERB = re.compile(rb"[A-Za-z][A-Za-z0-9_-]{0,31}\Z")
_REPLY = re.compile(rb"([2-5][0-9][0-9])([ -]|\Z)")
_BDAT = re.compile(rb"([0-9]{1,18})(?:[ \t]+(LAST))?[ \t]*\Z", re.IGNORECASE)
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?=")
_EW_GAP = re.compile(r"(=\?[^?\s]+\?[BbQq]\?[^?\s]*\?=)\s+(?==\?[^?\s]+\?[BbQq]\?[^?\s]*\?=)")
_CHARSET_ALIAS = {"gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "cp936": "gb18030"}

_KNOWN_VERBS = {
    b"HELO",
    b"EHLO",
    b"MAIL",
    b"RCPT",
    b"DATA",
    b"BDAT",
    b"RSET",
    b"QUIT",
    b"NOOP",
    b"STARTTLS",
    b"AUTH",
}


def _is_command(line: bytes) -> bool:
    """A line that is plainly an SMTP command (ends an unknown SASL exchange)."""
    parts = line.split(None, 1)
    return bool(parts) and parts[0].upper() in _KNOWN_VERBS


# client-side states
_CMD: Final = 0
_DATA: Final = 1
_BDAT_CHUNK: Final = 2
_AUTH: Final = 3
_DEAD: Final = 4


def _charset(name: str) -> str:
    name = name.split("*", 1)[0].strip().lower()  # RFC 2231 §5 language suffix
    name = _CHARSET_ALIAS.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return "utf-8"
    return info.name if getattr(info, "_is_text_encoding", True) else "utf-8"


def _decode_word(m: re.Match[str]) -> str:
    charset, enc, text = m.group(1), m.group(2).upper(), m.group(3)
    try:
        if enc == "B":
            raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=False)
        else:
            raw = _q_decode(text)
    except (binascii.Error, ValueError):
        return m.group(0)
    try:
        return without_nul(raw.decode(_charset(charset), "replace"))
    except (LookupError, UnicodeError, ValueError):
        return without_nul(raw.decode("utf-8", "replace"))


def _q_decode(text: str) -> bytes:
    out = bytearray()
    src = text.encode("ascii", "replace")
    i = 0
    while i < len(src):
        c = src[i]
        if c == 0x5F:  # "_" is SP (RFC 2047 §4.2 (2))
            out.append(0x20)
        elif c == 0x3D and _is_hex(src[i + 1 : i + 3]):
            out.append(int(src[i + 1 : i + 3], 16))
            i += 2
        else:
            out.append(c)
        i += 1
    return bytes(out)


def _is_hex(b: bytes) -> bool:
    return len(b) == 2 and all(c in b"0123456789abcdefABCDEF" for c in b)


def decode_rfc2047(value: str) -> str:
    """Decode the RFC 2047 encoded-words in a header value."""
    if "=?" not in value:
        return value
    return _ENCODED_WORD.sub(_decode_word, _EW_GAP.sub(r"\1", value))


def _split_addresses(value: str) -> list[str]:
    """Split an address list at commas outside quotes, comments and <>."""
    out: list[str] = []
    cur: list[str] = []
    quote = False
    depth = 0  # () comment nesting
    angle = False
    esc = False
    for ch in value:
        if esc:
            esc = False
        elif ch == "\\" and (quote or depth):
            esc = True
        elif quote:
            quote = ch != '"'
        elif ch == '"':
            quote = True
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif ch == "<" and not depth:
            angle = True
        elif ch == ">" and not depth:
            angle = False
        elif ch == "," and not depth and not angle:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return [x for x in out if x]


def _path(arg: bytes) -> str:
    """``FROM:<a@b> SIZE=1`` -> ``a@b`` (RFC 5321 §4.1.2 Reverse-/Forward-path)."""
    rest = arg.split(b":", 1)[1].lstrip(b" \t") if b":" in arg else arg
    end = rest.find(b">")
    if rest.startswith(b"<") and end >= 0:
        p = rest[1:end]
    else:
        parts = rest.lstrip(b"<").split(None, 1)
        p = parts[0] if parts else b""
    return wire_text(p[:MAX_ARG])


class _Message:
    """Reads one message (unstuffed bytes): top-level headers, then a body prefix of `keep`
    bytes; then `counting` turns True and the rest is only counted (by the decoder)."""

    def __init__(self, keep: int) -> None:
        self.in_headers = True
        self.keep = keep
        self.counting = False  # the headers and the kept prefix are complete
        self.buf = bytearray()  # partial header line, <= MAX_DATA_LINE
        self.header_bytes = 0
        self.fields: list[tuple[str, bytes]] = []  # (lower name, unfolded raw value)
        self.body = bytearray()  # first `keep` bytes after the header section
        self.length = 0  # message bytes seen (as sent, past the prefix: stuffed dots included)

    def feed(self, data: bytes) -> None:
        self.length += len(data)
        if not self.in_headers:
            self._keep(data)
            return
        self.buf += data
        while self.in_headers:
            nl = self.buf.find(b"\n")
            if nl < 0:
                if len(self.buf) > MAX_DATA_LINE:
                    self.in_headers = False  # over-long "header": treat the rest as body
                break
            line = bytes(self.buf[: nl + 1])
            del self.buf[: nl + 1]
            self._header_line(line)
        if not self.in_headers:
            if self.buf:
                rest = bytes(self.buf)
                self.buf.clear()
                self._keep(rest)
            self.counting = len(self.body) >= self.keep

    def _header_line(self, line: bytes) -> None:
        self.header_bytes += len(line)
        content = line.rstrip(b"\r\n")
        if not content:
            self.in_headers = False
            return
        if self.header_bytes > MAX_HEADER_BLOCK or len(self.fields) >= MAX_HEADERS:
            self.in_headers = False
            self._keep(line)
            return
        if content[:1] in (b" ", b"\t"):
            if self.fields:  # obs-fold continuation (RFC 5322 §2.2.3)
                name, val = self.fields[-1]
                if len(val) < MAX_FIELD:
                    self.fields[-1] = (name, (val + b" " + content.strip())[:MAX_FIELD])
            return
        colon = content.find(b":")
        if colon <= 0:
            self.in_headers = False  # not a header: the body started without a blank line
            self._keep(line)
            return
        name = content[:colon].strip().decode("ascii", "replace").lower()
        self.fields.append((name, content[colon + 1 :].strip()[:MAX_FIELD]))

    def _keep(self, data: bytes) -> None:
        room = self.keep - len(self.body)
        if room > 0:
            self.body += data[:room]
        self.counting = len(self.body) >= self.keep

    def finish(self) -> None:
        if self.in_headers and self.buf:
            line = bytes(self.buf)
            self.buf.clear()
            self._header_line(line)
        self.in_headers = False

    def apply(self, rec: SmtpFields) -> None:
        for name, raw in self.fields:
            value = decode_rfc2047(wire_text(raw))
            if name == "from":
                rec["from"] = value
            elif name == "subject":
                rec["subject"] = value
            elif name == "to" or name == "cc":
                lst = rec["to"] if name == "to" else rec["cc"]
                for a in _split_addresses(value):
                    if a not in lst and len(lst) < MAX_RCPT:
                        lst.append(a)


class SmtpDecoder(BodySkipping):
    """RFC 5321 client/server streams -> `smtp` records (see module docstring)."""

    name = "smtp"

    def __init__(self, body_keep: int = BODY_KEEP) -> None:
        """`body_keep`: bytes of each message's body kept for a content filter (at most
        BODY_KEEP; 0 when no filter runs: bodies are then only counted)."""
        self._keep = body_keep if 0 <= body_keep < BODY_KEEP else BODY_KEEP
        self._cbuf = bytearray()  # client bytes not yet consumed
        self._sbuf = bytearray()  # server bytes not yet consumed (one reply line)
        self._cskip = False  # after a gap: drop client bytes up to the next LF
        self._sskip = False
        self._state = _CMD
        self._pending: deque[str] = deque()  # verbs awaiting a final reply
        self._data_started = False  # a DATA message byte has been read
        self._bol = True  # DATA: at the beginning of a line
        self._bdat_left = 0
        self._bdat_last = False
        self._auth_mech = ""
        self._auth_lines = 0  # SASL lines still expected (-1: until the server says)
        self._msg: _Message | None = None
        self._helo: str | None = None
        self._user: str | None = None
        self._depth = 0
        self._ts = 0.0
        self.tls = False
        self.tls_leftover = b""  # client bytes after the switch to TLS, for the TLS decoder
        self.last_body = b""  # the kept prefix of the last message's body
        # pieces for the keyword filter (agent.protocols.base.Content); None: no filter runs
        self.content: list[Content] | None = None
        # each transaction's steps for the mail policy (agent.protocols.base.MailSteps); None: none runs
        self.mail_steps: list[MailStep] | None = None
        self._ts_set = False
        self._rec = self._new_record()
        self._activity = False
        self._user_logged = False  # a record has carried the AUTH user

    # --- record handling --------------------------------------------------
    def _new_record(self) -> SmtpFields:
        self._ts_set = False  # "ts" is set by the transaction's first command (_touch)
        return {
            "type": "smtp",
            "ts": 0.0,
            "trans_depth": self._depth + 1,
            "helo": self._helo,
            "mailfrom": None,
            "rcptto": [],
            "from": None,
            "to": [],
            "cc": [],
            "subject": None,
            "user": self._user,
            "tls": self.tls,
        }

    def _touch(self, ts: float) -> None:
        if not self._ts_set:
            self._rec["ts"] = ts
            self._ts_set = True
        self._activity = True

    def _flush(self) -> list[Record]:
        if not self._activity:
            return []
        rec = self._rec
        self._user_logged = self._user_logged or rec["user"] is not None
        # Zeek's trans_depth: messages the server answered (its reply to the end of the data),
        # plus one; so a one-sided capture numbers every transaction 1, as Zeek's smtp.log does
        rec["trans_depth"] = self._depth + 1
        self._activity = False
        self._rec = self._new_record()
        return [cast(Record, rec)]

    # --- interface ----------------------------------------------------------
    def feed(self, is_orig: bool, data: bytes, ts: float) -> list[Record]:
        self._ts = ts
        if self._state == _DEAD or not data:
            return []
        if is_orig:
            self._cbuf += data
            return self._client()
        self._sbuf += data
        return self._server()

    @property
    def finished(self) -> bool:
        """Nothing more is decoded (STARTTLS, or closed): the inspector may stop (Finishing)."""
        return self._state == _DEAD

    def skippable(self, is_orig: bool) -> int:
        """Client bytes that need only be counted (BodySkipping): the rest of a BDAT chunk once
        its message's headers and kept prefix are read (RFC 3030 §2: its size is known)."""
        if not is_orig or self._state != _BDAT_CHUNK or self._cbuf:
            return 0
        msg = self._msg
        if msg is not None and not msg.counting:
            return 0
        return self._bdat_left

    def exempt(self, is_orig: bool) -> int:
        """Nothing to give back: the connection is followed whole (the spec's whole_connection)."""
        return 0

    def skip(self, is_orig: bool, length: int, ts: float) -> list[Record]:
        """`length` bytes `skippable` offered went by: counted off the BDAT chunk."""
        self._ts = ts
        if not is_orig or self._state != _BDAT_CHUNK or self._cbuf:
            return self.gap(is_orig, length, ts)
        take = min(length, self._bdat_left)
        if self._msg is not None:
            self._msg.length += take
        self._bdat_left -= take
        out: list[Record] = []
        if self._bdat_left == 0:
            out += self._bdat_done()
        if length > take:
            out += self.gap(is_orig, length - take, ts)
        return out

    def gap(self, is_orig: bool, length: int, ts: float) -> list[Record]:
        self._ts = ts
        if self._state == _DEAD:
            return []
        if not is_orig:
            self._sbuf.clear()
            self._sskip = True
            return []
        if self._state == _BDAT_CHUNK:
            take = min(length, self._bdat_left)
            self._bdat_left -= take
            length -= take
            if self._bdat_left == 0:
                out = self._bdat_done()
                if length:
                    self._cbuf.clear()
                    self._cskip = True
                return out
            return []
        self._cbuf.clear()
        if self._state == _DATA:
            self._bol = False  # resync: the next LF starts a line again
        else:
            self._cskip = True
        return []

    def close(self, ts: float) -> list[Record]:
        self._ts = ts
        out: list[Record] = []
        if self._state in (_DATA, _BDAT_CHUNK) and self._msg is not None:
            out += self._end_message(False)
        if self._user is not None and not self._user_logged:
            self._activity = True  # AUTH without a transaction: still log the login
        out += self._flush()
        self._state = _DEAD
        self._cbuf.clear()
        self._sbuf.clear()
        return out

    # --- server side --------------------------------------------------------
    def _server(self) -> list[Record]:
        out: list[Record] = []
        while self._state != _DEAD:
            nl = self._sbuf.find(b"\n")
            if nl < 0:
                if len(self._sbuf) > MAX_REPLY_LINE:
                    raise DecodeError("smtp_line_too_long", f"reply line over {MAX_REPLY_LINE} bytes")
                break
            line = bytes(self._sbuf[:nl]).rstrip(b"\r")
            del self._sbuf[: nl + 1]
            if self._sskip:
                self._sskip = False
                continue
            out += self._reply(line)
        return out

    def _reply(self, line: bytes) -> list[Record]:
        m = _REPLY.match(line)
        if m is None:
            raise DecodeError("smtp_invalid_reply", repr(line[:40]))
        if m.group(2) == b"-":
            return []  # multiline reply continues (RFC 5321 §4.2.1)
        code = int(m.group(1))
        if not self._pending:
            return []  # greeting or unmatched reply: nothing to act on
        cmd = self._pending[0]
        if cmd == "AUTH":
            if code == 334:
                return []  # challenge: the client's SASL line follows
            self._pending.popleft()
            if self._state == _AUTH:
                self._state = _CMD
            return []
        self._pending.popleft()
        if cmd == "DATA":
            if code != 354 and self._state == _DATA and not self._data_started:
                self._state = _CMD  # DATA refused: no message follows
                self._msg = None
        elif cmd == "STARTTLS" and code == 220:
            return self._start_tls()
        elif cmd == ".":
            self._depth += 1  # a message transferred (Zeek: messages_transferred, on any reply to ".")
        return []

    def _start_tls(self) -> list[Record]:
        self.tls = True
        self._rec["tls"] = True
        self._touch(self._ts)
        out = self._flush()
        self._state = _DEAD  # the rest of the connection is TLS (RFC 3207 §4.2)
        # client bytes already read past the switch (a ClientHello when the 220 was not
        # captured): the TLS decoder that takes over needs them
        self.tls_leftover = bytes(self._cbuf)
        self._cbuf.clear()
        self._sbuf.clear()
        self._pending.clear()
        return out

    # --- client side --------------------------------------------------------
    def _client(self) -> list[Record]:
        out: list[Record] = []
        while self._cbuf and self._state != _DEAD:
            if self._state == _DATA:
                if not self._data():
                    break
                if self._state != _DATA:
                    out += self._end_message(True)
                continue
            if self._state == _BDAT_CHUNK:
                take = min(len(self._cbuf), self._bdat_left)
                msg = self._msg
                if msg is not None:
                    if msg.counting:
                        msg.length += take
                    else:
                        msg.feed(bytes(self._cbuf[:take]))
                del self._cbuf[:take]
                self._bdat_left -= take
                if self._bdat_left == 0:
                    out += self._bdat_done()
                continue
            if (
                self._cbuf[0] == 0x16
                and self._pending
                and self._pending[-1] == "STARTTLS"
                and not self._cskip
            ):
                return out + self._start_tls()  # TLS ClientHello; the 220 was not seen
            nl = self._cbuf.find(b"\n")
            if nl < 0:
                if len(self._cbuf) > MAX_CMD_LINE:
                    raise DecodeError("smtp_line_too_long", f"command line over {MAX_CMD_LINE} bytes")
                break
            line = bytes(self._cbuf[:nl]).rstrip(b"\r")
            del self._cbuf[: nl + 1]
            if self._cskip:
                self._cskip = False
                continue
            if self._state == _AUTH and not (self._auth_lines < 0 and _is_command(line)):
                self._sasl(line)
            else:
                self._state = _CMD
                out += self._command(line)
        return out

    def _push(self, verb: str) -> None:
        if len(self._pending) >= MAX_PENDING:
            self._pending.popleft()  # one-sided capture: replies never come
        self._pending.append(verb)

    def _command(self, line: bytes) -> list[Record]:
        if not line.strip():
            return []
        parts = line.lstrip().split(None, 1)
        verb_b = parts[0]
        arg = parts[1].strip() if len(parts) > 1 else b""
        if not _VERB.match(verb_b):
            raise DecodeError("smtp_invalid_command", repr(line[:40]))
        verb = verb_b.decode("ascii").upper()
        out: list[Record] = []
        self._push(verb)
        if verb in ("HELO", "EHLO"):
            self._helo = wire_text(arg[:MAX_ARG])
            self._rec["helo"] = self._helo
        elif verb == "MAIL" and arg[:5].upper() == b"FROM:":
            out += self._flush()  # Zeek: flush a transaction whose reply was not seen
            self._rec["mailfrom"] = _path(arg)
            self._touch(self._ts)
            if self.mail_steps is not None:
                self.mail_steps.append(("mail", self._ts, cast(Record, self._rec)))
        elif verb == "RCPT" and arg[:3].upper() == b"TO:":
            rcpt = _path(arg)
            lst: list[str] = self._rec["rcptto"]
            if rcpt not in lst and len(lst) < MAX_RCPT:
                lst.append(rcpt)
            self._touch(self._ts)
            if self.mail_steps is not None:
                self.mail_steps.append(("rcpt", self._ts, cast(Record, self._rec)))
        elif verb == "DATA":
            self._state = _DATA
            self._data_started = False
            self._bol = True
            self._msg = _Message(self._keep)
            self._touch(self._ts)
        elif verb == "BDAT":
            m = _BDAT.match(arg)
            if m is None:
                raise DecodeError("smtp_invalid_bdat_command", repr(arg[:40]))
            if self._msg is None:
                self._msg = _Message(self._keep)
            self._bdat_left = int(m.group(1))
            self._bdat_last = m.group(2) is not None
            if self._bdat_last:
                self._pending[-1] = "."  # its reply is the message's (RFC 3030 §2): counted as one
            self._touch(self._ts)
            self._state = _BDAT_CHUNK
            if self._bdat_left == 0:
                out += self._bdat_done()
        elif verb == "AUTH":
            self._auth(arg)
        elif verb == "RSET":
            self._msg = None
        return out

    # --- AUTH (RFC 4954) ------------------------------------------------------
    def _auth(self, arg: bytes) -> None:
        parts = arg.split(None, 1)
        mech = without_nul(parts[0].decode("ascii", "replace").upper()) if parts else ""
        initial = parts[1].strip() if len(parts) > 1 else None
        self._auth_mech = mech
        if not self._ts_set:
            self._rec["ts"] = self._ts
            self._ts_set = True
        if initial is not None and initial != b"=":
            self._sasl_value(initial, first=True)
        if mech == "PLAIN":
            self._auth_lines = 0 if initial is not None else 1
        elif mech == "LOGIN":
            self._auth_lines = 1 if initial is not None else 2  # [user,] password
        elif mech == "CRAM-MD5":
            self._auth_lines = 1
        else:
            self._auth_lines = -1  # unknown mechanism: follow the server's 334s
        if self._auth_lines:
            self._state = _AUTH

    def _sasl(self, line: bytes) -> None:
        if line.strip() == b"*":  # client cancels (RFC 4954 §4)
            self._state = _CMD
            return
        self._sasl_value(line.strip(), first=False)
        if self._auth_lines > 0:
            self._auth_lines -= 1
        if self._auth_lines == 0:
            self._state = _CMD

    def _sasl_value(self, b64: bytes, first: bool) -> None:
        """Take the user name out of one SASL line; the secret part is dropped."""
        mech = self._auth_mech
        try:
            raw = base64.b64decode(b64 + b"=" * (-len(b64) % 4), validate=True)
        except (binascii.Error, ValueError):
            return
        user: bytes | None = None
        if mech == "PLAIN":
            fields = raw.split(b"\0")
            if len(fields) == 3:
                user = fields[1]  # authzid NUL authcid NUL passwd (RFC 4616 §2)
        elif mech == "LOGIN":
            # the username is the first SASL value; the second is the password
            if first or self._auth_lines == 2:
                user = raw
        elif mech == "CRAM-MD5":
            user = raw.rsplit(b" ", 1)[0] if b" " in raw else None
        del raw
        if user:
            self._user = wire_text(user[:MAX_ARG])
            self._rec["user"] = self._user

    # --- message data ---------------------------------------------------------
    def _data(self) -> bool:
        """Consume DATA bytes; False when more input is needed."""
        buf = self._cbuf
        msg = self._msg
        assert msg is not None
        if msg.counting:
            return self._count(buf, msg)
        if self._bol and buf[:1] == b".":
            if buf[:3] == b".\r\n" or buf[:2] == b".\n":
                del buf[: 3 if buf[1:2] == b"\r" else 2]
                self._state = _CMD  # end of data (RFC 5321 §4.1.1.4)
                return True
            if len(buf) < 2 or (buf[:2] == b".\r" and len(buf) < 3):
                return False
            del buf[:1]  # dot-unstuffing (§4.5.2)
            self._bol = False
        nl = buf.find(b"\n")
        if nl < 0:
            if len(buf) <= MAX_DATA_LINE:
                return False
            chunk = bytes(buf)  # over-long line: pass on in pieces
            self._bol = False
        else:
            chunk = bytes(buf[: nl + 1])
            self._bol = True
        del buf[: len(chunk)]
        self._data_started = True
        msg.feed(chunk)
        return True

    def _count(self, buf: bytearray, msg: _Message) -> bool:
        """DATA bytes past what is read of the message: only its end is looked for (module
        docstring); they are counted and dropped. False when more input is needed."""
        n, t = dot_end(buf, self._bol)
        if n:
            msg.length += n
            self._bol = buf[n - 1] == 0x0A
            self._data_started = True
        if t:
            del buf[:n + t]
            self._state = _CMD  # end of data (RFC 5321 §4.1.1.4)
            return True
        if n:
            del buf[:n]
        return False

    def _bdat_done(self) -> list[Record]:
        self._state = _CMD
        if self._bdat_last:
            return self._end_message(False)  # (BDAT LAST's own reply answers the message)
        return []

    def _content(self, msg: _Message) -> None:
        """A finished message for the keyword filter: its raw Subject (RFC 2047 words are the
        filter's to decode) and its body prefix with the type and transfer encoding to decode it."""
        assert self.content is not None
        n = int(self._rec["trans_depth"])
        ctype: str | None = None
        cte: str | None = None
        for name, raw in msg.fields:
            if name == "subject":
                self.content.append(Content("smtp.subject", raw, n, True))
            elif name == "content-type" and ctype is None:
                ctype = wire_text(raw)
            elif name == "content-transfer-encoding" and cte is None:
                cte = wire_text(raw).strip().lower()
        # the body whole, in one final piece with its type: the filter scans it in one call
        self.content.append(Content("smtp.body", bytes(msg.body), n, True, ctype, cte))

    def _end_message(self, dot: bool) -> list[Record]:
        """The message ended; `dot`: by DATA's "." line, whose reply is the message's."""
        msg = self._msg
        self._msg = None
        if self._state != _DEAD:
            self._state = _CMD
        if msg is None:
            return []
        msg.finish()
        msg.apply(self._rec)
        self.last_body = bytes(msg.body)
        if self.mail_steps is not None:
            self.mail_steps.append(("message", self._ts, cast(Record, self._rec)))
        if self.content is not None:
            self._content(msg)
        if dot:
            self._push(".")
        self._touch(self._ts)
        return self._flush()


#: What this module decodes (agent.protocols.spec; listed in agent.protocols.registry).
_GREETS = (b"EHLO", b"HELO", b"ehlo", b"helo")  # a client's first command
SPEC = ProtocolSpec(
    "smtp", ("tcp",), SmtpDecoder, records=("smtp",), ports=frozenset({25, 465, 587, 2525}),
    probe=Probe(client=_GREETS, greeting=b"220", greeting_names=(b"SMTP", b"MAIL"), greeting_answers=_GREETS),
    capabilities=(ContentSource, StartTls, BodySkipping, Finishing, MailSteps), whole_connection=True,
)
