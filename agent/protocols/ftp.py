"""Sans-IO FTP control-channel decoder: one `ftp` record per answered command.

Design (RFC 959 "File Transfer Protocol", RFC 2428 "FTP Extensions for IPv6
and NATs", RFC 3659 "Extensions to FTP"):

* Commands (RFC 959 §4.1, §5.3): the originator sends lines
  ``command [SP argument] CRLF``; the command is an alphabetic code,
  compared case-insensitively (§5.3.1) and recorded upper-cased. Bare LF line
  ends are tolerated, as are empty lines (ignored). A command code that is not
  1-16 ASCII letters is malformed and raises ``DecodeError``.
* Replies (RFC 959 §4.2): ``ddd SP text CRLF``, or a multi-line reply that
  starts with ``ddd-text`` and ends with the first line that begins with the
  same code followed by SP (a bare ``ddd`` is accepted too). Lines inside a
  multi-line reply are free text. The recorded ``reply_msg`` is the text of the
  final line, as in Zeek's ftp.log.
* Pairing (RFC 959 §4.2, §5.4): commands may be pipelined; they queue and each
  final reply (2yz-5yz) answers the oldest one. Preliminary 1yz replies do not
  end the command (e.g. 150 before the 226 of a RETR). Replies with no command
  waiting (the 220 greeting, an unsolicited 421) produce no record.
* Records use Zeek ftp.log semantics: ``ts`` is when the command was sent;
  ``user`` is the last USER argument (``"<unknown>"`` before any); ``arg`` is
  the raw argument (Zeek rewrites file-command arguments into
  ``ftp://host/path`` URLs; this decoder does not know addresses, so it keeps
  the path as sent); ``file_size`` comes from a 213 reply to SIZE
  (RFC 3659 §4) or from the ``(N bytes)`` of a 150 reply to RETR.
* Secrets (SCHEMA.md): the argument of PASS is never stored or recorded; the
  record carries ``"<hidden>"`` (Zeek's marker) instead. ACCT is treated the
  same way, as it may carry a secret too.
* Data channels: ``expected_data_channels`` lists ``(ip | None, port, passive)``
  learnt from the 227 reply to PASV (RFC 959 §4.1.2; the six numbers are found
  anywhere in the text, RFC 1123 §4.1.2.6), the 229 reply to EPSV
  (``(|||port|)``, RFC 2428 §3, ip None = the control connection's server),
  and PORT / EPRT commands (RFC 959 §4.1.2, RFC 2428 §2) once the server
  accepted them with a 2yz reply. Unparsable addresses are skipped, not fatal.
* ``AUTH`` answered with 234 (RFC 4217 §4) turns the channel into TLS: the
  decoder stops reading it and says so (``finished``: the inspector stops
  handing it the connection).
* The whole control connection is followed (the spec's ``whole_connection``):
  every command past the inspection depth is a record too, as in Zeek's
  ftp.log; a control connection is command and reply lines only (the data
  goes over its own connections). A gap in either direction drops the partial line,
  resynchronises on the next line end and forgets the commands waiting for a
  reply, as the pairing can no longer be trusted.
"""

from __future__ import annotations

import ipaddress
import re
from collections import deque
from dataclasses import dataclass
from typing import cast

from agent.decode.errors import DecodeError
from agent.protocols.base import Content, ContentSource, DataChannels, Finishing, Record
from agent.protocols.spec import Probe, ProtocolSpec
from wire.records import FtpFields
from wire.text import escaped_text

# --- limits (every buffer is bounded) -------------------------------------
MAX_LINE = 8 * 1024  # longest command or reply line; path names fit well within (servers cap at 4 KiB)
MAX_PENDING = 64  # pipelined commands waiting for a reply (Zeek caps at 20 by default)
MAX_CHANNELS = 256  # expected data channels kept; older ones are dropped (the flow table consumes them)
MAX_USER = 256  # characters of a user name kept

HIDDEN = "<hidden>"
UNKNOWN_USER = "<unknown>"
_SECRET_COMMANDS = frozenset({"PASS", "ACCT"})

_COMMAND = re.compile(rb"[A-Za-z]{1,16}\Z")
_CODE = re.compile(rb"([1-5][0-9][0-9])([ -]|\Z)")
_PASV = re.compile(r"(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})")
_EPSV = re.compile(r"\((.)\1\1(\d{1,5})\1\)")
_COUNT = re.compile(r"\d+")


def _text(b: bytes) -> str:
    return escaped_text(b)


def _host_port(nums: tuple[str, ...]) -> tuple[str, int] | None:
    """h1,h2,h3,h4,p1,p2 (RFC 959 §4.1.2 PORT / §4.1.2 PASV reply)."""
    vals = [int(n) for n in nums]
    if any(v > 255 for v in vals):
        return None
    port = vals[4] * 256 + vals[5]
    if port == 0:
        return None
    return ".".join(str(v) for v in vals[:4]), port


def _eprt(arg: str) -> tuple[str, int] | None:
    """``<d><net-prt><d><net-addr><d><tcp-port><d>`` (RFC 2428 §2)."""
    if len(arg) < 2:
        return None
    parts = arg.split(arg[0])
    if len(parts) != 5 or parts[0] or parts[4] or parts[1] not in ("1", "2"):
        return None
    try:
        addr = ipaddress.ip_address(parts[2])
    except ValueError:
        return None
    if addr.version != (4 if parts[1] == "1" else 6) or not parts[3].isdigit():
        return None
    port = int(parts[3])
    if not 0 < port < 65536:
        return None
    return str(addr), port


@dataclass
class _Cmd:
    ts: float
    command: str
    arg: str | None
    user: str
    file_size: int | None = None


class FtpDecoder:
    """FTP control channel on one TCP connection (see the module docstring)."""

    name = "ftp"

    def __init__(self) -> None:
        # pieces for the keyword filter (agent.protocols.base.Content); None: no filter runs
        self.content: list[Content] | None = None
        self._commands = 0  # commands with an argument, numbering them for the filter
        self._buf = {True: bytearray(), False: bytearray()}
        self._skip = {True: False, False: False}  # resynchronising after a gap: drop up to the next LF
        self._pending: deque[_Cmd] = deque()
        self._user = UNKNOWN_USER
        self._multi: bytes | None = None  # the code of the multi-line reply being read
        self._dead = False  # TLS after AUTH, or stopped
        self.expected_data_channels: list[tuple[str | None, int, bool]] = []

    @property
    def finished(self) -> bool:
        """Nothing more is decoded (TLS after AUTH, or closed): the inspector may stop (Finishing)."""
        return self._dead

    # --- StreamDecoder interface ---------------------------------------
    def feed(self, is_orig: bool, data: bytes, ts: float) -> list[Record]:
        out: list[Record] = []
        if self._dead or not data:
            return out
        buf = self._buf[is_orig]
        buf += data
        while not self._dead:
            i = buf.find(b"\n")
            if i < 0:
                if len(buf) > MAX_LINE:
                    if self._skip[is_orig]:
                        buf.clear()
                        break
                    n = len(buf)
                    buf.clear()
                    raise DecodeError("FTP_line_too_long", f"{n} bytes without a line end")
                break
            line = bytes(buf[:i])
            del buf[: i + 1]
            if self._skip[is_orig]:
                self._skip[is_orig] = False
                continue
            if i > MAX_LINE:
                raise DecodeError("FTP_line_too_long", f"{i} bytes")
            if line.endswith(b"\r"):
                line = line[:-1]
            self._line(is_orig, line, ts, out)
        if self._dead:
            self._buf[True].clear()
            self._buf[False].clear()
        return out

    def gap(self, is_orig: bool, length: int, ts: float) -> list[Record]:
        self._buf[is_orig].clear()
        self._skip[is_orig] = True
        self._pending.clear()
        if not is_orig:
            self._multi = None
        return []

    def close(self, ts: float) -> list[Record]:
        out: list[Record] = []
        for is_orig in (True, False):
            buf = self._buf[is_orig]
            if buf and not self._dead and not self._skip[is_orig]:
                line = bytes(buf).rstrip(b"\r")
                buf.clear()
                self._line(is_orig, line, ts, out)
            buf.clear()
        self._pending.clear()  # commands never answered produce no record
        self._dead = True
        return out

    # --- internals ---------------------------------------------------------
    def _line(self, is_orig: bool, line: bytes, ts: float, out: list[Record]) -> None:
        if is_orig:
            self._command(line, ts)
        else:
            self._reply(line, out)

    def _command(self, line: bytes, ts: float) -> None:
        stripped = line.strip(b" \t")
        if not stripped:
            return  # empty line: tolerated
        word, _, rest = stripped.partition(b" ")
        if not _COMMAND.match(word):
            raise DecodeError("FTP_bad_command", _text(word[:40]))
        command = word.decode("ascii").upper()
        arg: str | None = _text(rest.strip(b" ")) if rest.strip(b" ") else None
        if command in _SECRET_COMMANDS and arg is not None:
            arg = HIDDEN  # never keep the secret (SCHEMA.md)
        elif arg is not None and self.content is not None:  # a secret is never scanned either
            self._commands += 1
            self.content.append(Content("ftp.arg", rest.strip(b" "), self._commands, True))
        if command == "USER":
            self._user = (arg or "")[:MAX_USER]
        if len(self._pending) >= MAX_PENDING:
            raise DecodeError("FTP_too_many_pending_commands", f"more than {MAX_PENDING}")
        self._pending.append(_Cmd(ts, command, arg, self._user))

    def _reply(self, line: bytes, out: list[Record]) -> None:
        if self._multi is not None:
            # inside a multi-line reply: only "ddd SP" (or a bare "ddd") ends it (RFC 959 §4.2)
            code = self._multi
            if not (line.startswith(code) and (len(line) == 3 or line[3:4] == b" ")):
                return
            self._multi = None
            self._final(int(code), _text(line[4:]), out)
            return
        m = _CODE.match(line)
        if m is None:
            raise DecodeError("FTP_bad_reply", _text(line[:80]))
        if m.group(2) == b"-":
            self._multi = m.group(1)
            return
        self._final(int(m.group(1)), _text(line[4:]), out)

    def _final(self, code: int, msg: str, out: list[Record]) -> None:
        if not self._pending:
            return  # greeting or unsolicited reply
        cmd = self._pending[0]
        if code < 200:  # preliminary (RFC 959 §4.2: 1yz)
            if code == 150 and cmd.command == "RETR":
                _, paren, after = msg.partition("(")
                m = _COUNT.match(after.strip()) if paren else None
                if m:
                    cmd.file_size = int(m.group())
            return
        self._pending.popleft()
        if code == 213 and cmd.command == "SIZE":
            m = _COUNT.search(msg)
            if m:
                cmd.file_size = int(m.group())
        if 200 <= code < 300:
            self._channel(cmd, code, msg)
        rec: FtpFields = {
            "type": "ftp",
            "ts": cmd.ts,
            "user": cmd.user,
            "command": cmd.command,
            "arg": cmd.arg,
            "reply_code": code,
            "reply_msg": msg,
            "file_size": cmd.file_size,
        }
        out.append(cast(Record, rec))
        if cmd.command == "AUTH" and code == 234:
            self._dead = True  # TLS from here on (RFC 4217 §4)

    def _channel(self, cmd: _Cmd, code: int, msg: str) -> None:
        found: tuple[str | None, int, bool] | None = None
        if cmd.command == "PASV" and code == 227:
            m = _PASV.search(msg)
            hp = _host_port(m.groups()) if m else None
            if hp:
                found = (hp[0], hp[1], True)
        elif cmd.command == "EPSV" and code == 229:
            m = _EPSV.search(msg)
            if m and 0 < int(m.group(2)) < 65536:
                found = (None, int(m.group(2)), True)
        elif cmd.command == "PORT" and cmd.arg:
            m = _PASV.fullmatch(cmd.arg.strip())
            hp = _host_port(m.groups()) if m else None
            if hp:
                found = (hp[0], hp[1], False)
        elif cmd.command == "EPRT" and cmd.arg:
            hp = _eprt(cmd.arg.strip())
            if hp:
                found = (hp[0], hp[1], False)
        if found is not None:
            self.expected_data_channels.append(found)
            if len(self.expected_data_channels) > MAX_CHANNELS:
                del self.expected_data_channels[0]


#: What this module decodes (agent.protocols.spec; listed in agent.protocols.registry).
# a client's first command; USER is POP3's as well, so on its own it counts only on FTP's ports
_FIRST_COMMANDS = (b"USER ", b"user ", b"AUTH TLS", b"AUTH SSL", b"FEAT", b"SYST")
SPEC = ProtocolSpec(
    "ftp", ("tcp",), FtpDecoder, records=("ftp",), ports=frozenset({21, 2121, 2811}),
    probe=Probe(client=_FIRST_COMMANDS, client_on_port=True, greeting=b"220", greeting_names=(b"FTP",),
                greeting_answers=_FIRST_COMMANDS),
    capabilities=(ContentSource, DataChannels, Finishing), whole_connection=True,
)
