"""Sans-IO HTTP/1.x decoder: one `http` record per request/response pair.

Design (RFC 9112 "HTTP/1.1", RFC 9110 "HTTP Semantics"):

* Each direction is a small state machine over a bounded byte buffer:
  start line -> header fields -> body -> start line ...
  - request-line (RFC 9112 §3): ``method SP request-target SP HTTP-version``;
    method must be a token (RFC 9110 §5.6.2, §9.1). Empty lines before a
    request-line are ignored (RFC 9112 §2.2).
  - status-line (RFC 9112 §4): ``HTTP-version SP status-code SP [reason]``.
  - field lines (RFC 9112 §5); obsolete line folding (§5.2) is tolerated by
    joining the continuation onto the previous value with one space. Bare LF
    line ends are accepted (§2.2).
* Message body length (RFC 9112 §6.3), in order: HEAD responses, 1xx, 204 and
  304 have no body (RFC 9110 §9.3.2, §15.2, §15.3.5, §15.4.5); a 2xx reply to
  CONNECT and 101 end HTTP on the connection; Transfer-Encoding ending in
  ``chunked`` (§7.1, chunk extensions and trailer section §7.1.1-§7.1.2) wins
  over Content-Length (§6.3 item 3); then Content-Length (§6.2, a list of
  identical values is accepted, RFC 9110 §8.6); otherwise a request has no
  body and a response is read until the connection closes (§6.3 item 8).
* Pipelining / persistence (RFC 9112 §9.3): requests are queued and paired
  with responses in order. Interim 1xx responses (RFC 9110 §15.2, e.g.
  ``100 Continue`` after ``Expect: 100-continue``, §10.1.1) do not end the
  transaction; only the final status is recorded.
* Content codings (RFC 9110 §8.4.1): gzip / x-gzip and deflate are inflated
  incrementally with bounded output; for deflate the first two bytes decide
  between zlib-wrapped (RFC 1950) and raw (RFC 1951) streams, as servers send
  both. Body lengths are DECODED bytes, as in Zeek's http.log.
* Authorization / Proxy-Authorization ``Basic`` (RFC 7617): only the user id
  (text before the first colon) is recorded. The password and the raw header
  are never stored.
* Publishing (issue 20): given a ``Publisher`` (``agent.publish``), a request
  with a body to one of the unit's publishing hosts also makes a `publish`
  record when its body is complete (or the connection ends): its body is kept
  up to the publisher's bound (64 KiB), beyond the content filter's share, and
  ``exempt`` offers the inspector that prefix and the header bytes of every
  request to such a host (a post late in a long keep-alive connection is still
  read: the depth is spent on the other hosts' traffic only). With a publisher and no
  content filter attached (``content`` None), other bodies are only counted,
  whatever ``body_keep`` says: the pipeline asks for kept bodies to get the
  exemption, and the other hosts' bodies must cost what they cost before.

Zeek semantics kept: ``version`` comes from the status line (``None`` when
there is no reply), ``host`` is the Host field as sent (a name keeps its
``:port``, as in Zeek's http.log; the one exception is a port after a
bracketed IPv6 literal, dropped as Suricata's ``http.hostname`` does, see
``_host_field``), ``uri`` the raw
request-target, ``request_body_len``/``response_body_len`` are decoded entity
lengths. Errors raise ``DecodeError`` with Zeek weird names.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections import deque
from typing import Final, cast

from agent.decode.errors import DecodeError
from agent.protocols.base import BodySkipping, Content, ContentSource, Record, weird
from agent.protocols.spec import Probe, ProtocolSpec
from agent.publish.extract import Publisher, installed
from wire.records import HttpFields
from wire.text import escaped_text

# --- limits (every buffer is bounded) -------------------------------------
MAX_LINE: Final = 16 * 1024  # longest start/field/chunk-size line; real servers cap at 8-16 KiB
MAX_HEADER_BLOCK: Final = 64 * 1024  # whole header (or trailer) section of one message
MAX_HEADERS: Final = 256  # field lines per message
MAX_PENDING: Final = 64  # pipelined requests awaiting a response
BODY_KEEP: Final = 8 * 1024  # decoded body prefix kept for the keyword filter
INFLATE_STEP: Final = 64 * 1024  # output produced per zlib call (bounded memory)
MAX_DECODED: Final = 256 * 1024 * 1024  # decoded bytes counted per body before we stop inflating (bomb guard)
UNTIL_CLOSE_SKIP: Final = 1 << 40  # "the rest of the stream": a reply body that ends with the connection

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_WS = (32, 9)  # space, tab: a field line starting with one continues the previous (obs-fold)
_TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# bodies not kept for the keyword filter: media, fonts and archives hold no text a user typed
# (or only compressed); every other type, and a body without one, is scanned
_OPAQUE_MAJOR: Final = frozenset({"image", "video", "audio", "font"})
_OPAQUE_TYPES: Final = frozenset({
    "application/octet-stream", "application/zip", "application/gzip", "application/x-gzip",
    "application/x-7z-compressed", "application/x-rar-compressed", "application/vnd.rar",
    "application/x-tar", "application/x-bzip2", "application/x-xz", "application/zstd",
    "application/pdf", "application/wasm", "application/x-protobuf", "application/grpc",
    "application/java-archive", "application/x-msdownload", "application/vnd.android.package-archive",
    "application/x-shockwave-flash", "application/ogg", "application/vnd.ms-cab-compressed",
})
# the fields a message's record or framing depends on (the others are only checked for syntax)
_USED_FIELDS: Final = frozenset({
    b"host", b"user-agent", b"referer", b"authorization", b"proxy-authorization",
    b"content-type", b"content-encoding", b"transfer-encoding", b"content-length",
})
# byte -> 1 when it may appear in a token (RFC 9110 §5.6.2), else 0
_IS_TOKEN: Final = bytes(1 if c in _TOKEN_CHARS else 0 for c in range(256))
# field names already seen as they were written -> lower-cased: a gateway sees the same few dozen
# names in every message, and one dict lookup costs less than checking and lower-casing each time
_NAMES: dict[bytes, bytes] = {}
MAX_KNOWN_NAMES: Final = 4096  # bounded: names are attacker-chosen
_HEX = re.compile(rb"[0-9A-Fa-f]+\Z")
_VERSION = re.compile(rb"HTTP/(\d)\.(\d)\Z")
_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+[ \t]")  # a token, then white space (RFC 9112 §3)
_ENDS_WITH_VERSION = re.compile(rb" HTTP/\d\.\d\Z", re.I)

# direction states
_START: Final = 0
_HEADERS: Final = 1
_BODY_LEN: Final = 2
_CHUNK_SIZE: Final = 3
_CHUNK_DATA: Final = 4
_CHUNK_END: Final = 5
_TRAILERS: Final = 6
_UNTIL_CLOSE: Final = 7
_DEAD: Final = 8


def _text(b: bytes) -> str:
    return escaped_text(b)


def _host_field(value: bytes) -> bytes:
    """The Host field for the record: as sent, except ``[v6]:port`` -> ``[v6]``.

    RFC 9110 §7.2 / RFC 3986 §3.2.2: an IPv6 literal is bracketed, so the
    port of ``[::1]:8000`` is the digits after ``]:``; Suricata logs
    ``[::1]``. A name or IPv4 address keeps its ``:port`` (Zeek's http.log
    does: ``localhost:8000``), and a bare, unbracketed literal is kept whole,
    since its last colon is not a port separator.
    """
    if value[:1] == b"[":
        end = value.find(b"]")
        if end > 0 and value[end + 1 : end + 2] == b":" and value[end + 2 :].isdigit():
            return value[: end + 1]
    return value


class _Body:
    """Counts decoded body bytes; keeps only the first `keep` of them."""

    def __init__(self, coding: str | None, keep: int, sink: list[Content] | None = None,
                 field: str = "", msg: int = 0, ctype: str | None = None) -> None:
        self.length = 0
        self.keep = keep
        # the kept prefix, as the pieces it was decoded in (references, not a copy)
        self.pieces: list[bytes] = []
        self.kept_len = 0
        # the keyword filter's pieces of this body (agent.protocols.base.Content), when it runs
        self.sink = sink
        self.field = field
        self.msg = msg
        self.ctype = ctype
        self.exempted = False  # its scan budget was given to the reassembler (HttpDecoder.exempt)
        # the part of `keep` that is the content filter's (the rest: a publish body's own bound);
        # what the direction's filter budget is charged for
        self.budget = keep
        self._coding = coding
        self._z: zlib._Decompress | None = None
        self._head = b""  # deflate: first bytes until the zlib header can be judged
        self._failed = False
        if coding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)

    @property
    def coded(self) -> bool:
        """A content coding is decoded: the decoded length is not the raw length."""
        return self._coding in ("gzip", "x-gzip", "deflate")

    @property
    def undecoded(self) -> bool:
        """A content coding this decoder does not undo (br, compress...): the bytes are raw."""
        return self._coding == "unknown"

    def _out(self, data: bytes) -> None:
        self.length += len(data)
        room = self.keep - self.kept_len
        if room > 0:
            piece = data[:room] if len(data) > room else data
            if not isinstance(piece, bytes):  # a part of the parse buffer (a bytearray): copied
                piece = bytes(piece)
            self.pieces.append(piece)
            self.kept_len += len(piece)
            if self.sink is not None:
                # the type on every piece: the filter decides at the first whether to keep it for views
                self.sink.append(Content(self.field, piece, self.msg, False, self.ctype))

    @property
    def kept(self) -> bytes:
        """The kept prefix of the decoded body."""
        return b"".join(self.pieces)

    def end(self) -> None:
        """The body is complete: tell the keyword filter (with its type, for decoded views), if
        it was handed any of it (a GET's empty body is not worth a piece)."""
        if self.sink is not None and self.kept_len:
            self.sink.append(Content(self.field, b"", self.msg, True, self.ctype))

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._coding == "deflate" and self._z is None and not self._failed:
            self._head += data
            if len(self._head) < 2:
                return
            data, self._head = self._head, b""
            cmf, flg = data[0], data[1]
            zlib_wrapped = (cmf & 0x0F) == 8 and (cmf * 256 + flg) % 31 == 0
            self._z = zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)
        if self._z is None:
            if self._coding != "deflate":
                self._out(data)  # identity or a coding we do not decode: raw bytes
            return
        if self._failed or self._z.eof:
            return
        try:
            buf = data
            while buf and not self._z.eof:
                if self.length >= MAX_DECODED:
                    self._failed = True
                    return
                out = self._z.decompress(buf, INFLATE_STEP)
                self._out(out)
                buf = self._z.unconsumed_tail
        except zlib.error:
            # Zeek stops delivering the entity on a decompression error; so do we.
            self._failed = True


class _Txn:
    """One request/response pair (a plain class: compiled, it is built without interpreted code)."""

    def __init__(self, ts: float, depth: int, method: str | None = None, uri: str | None = None) -> None:
        self.ts = ts
        self.depth = depth
        self.method = method
        self.uri = uri
        self.host: str | None = None
        self.referrer: str | None = None
        self.user_agent: str | None = None
        self.username: str | None = None
        self.req_content_type: str | None = None
        self.request_body_len = 0
        self.version: str | None = None
        self.status_code: int | None = None
        self.status_msg: str | None = None
        self.resp_content_type: str | None = None
        self.response_body_len = 0
        self.v09 = False  # HTTP/0.9-style request: the reply is a bare body until close
        self.publish = False  # to a publishing host: its body makes a `publish` record
        self.req_ctype_raw: str | None = None  # the request's Content-Type as sent (its charset)

    def record(self) -> Record:
        rec: HttpFields = {
            "type": "http",
            "ts": self.ts,
            "trans_depth": self.depth,
            "method": self.method,
            "host": self.host,
            "uri": self.uri,
            "referrer": self.referrer,
            "version": self.version,
            "user_agent": self.user_agent,
            "status_code": self.status_code,
            "status_msg": self.status_msg,
            "request_body_len": self.request_body_len,
            "response_body_len": self.response_body_len,
            "req_content_type": self.req_content_type,
            "resp_content_type": self.resp_content_type,
            "username": self.username,
            "account": None,
        }
        return cast(Record, rec)


class _Dir:
    """One direction's parser state."""

    def __init__(self, is_orig: bool) -> None:
        self.is_orig = is_orig
        self.buf = bytearray()
        self.pos = 0  # read position in buf while parsing (0 between feeds)
        self.state = _START
        self.remaining = 0
        self.header_bytes = 0
        self.headers: list[list[bytes]] = []
        self.start_ts: float | None = None
        # the message being parsed
        self.txn: _Txn | None = None
        self.body: _Body | None = None
        self.no_body = False
        self.interim = False
        self.upgrade = False
        # body bytes this direction may still keep for a content filter: the decoder's
        # `body_keep` is a budget per direction of the connection, like the inspection depth
        self.scan_left = 0
        # header bytes of requests to a publishing host, to give back to the depth (`exempt`)
        self.exempt_owed = 0


def _basic_user(value: bytes) -> str | None:
    parts = value.strip().split(None, 1)
    if len(parts) != 2 or parts[0].lower() != b"basic":
        return None
    try:
        raw = base64.b64decode(parts[1].strip(), validate=False)
    except (binascii.Error, ValueError):
        return None
    user = raw.split(b":", 1)[0]  # the password after the colon is dropped here
    return _text(user)


def _field(line: bytes) -> list[bytes] | None:
    """A field line (RFC 9112 §5) as [lower-cased name, value without surrounding blanks], or None
    when it is none: no colon, or a name that is not a token (white space before the colon is
    tolerated, as Zeek does).

    Written as loops over the bytes: compiled, each step is a load and a table lookup, where
    partition/strip would be three method calls and two objects per line.
    """
    n = len(line)
    i = 0
    while i < n and _IS_TOKEN[line[i]]:
        i += 1
    if i == 0:
        return None
    c = i
    while c < n and (line[c] == 32 or line[c] == 9):
        c += 1
    if c == n or line[c] != 58:  # ':'
        return None
    name = line[:i]
    low = _NAMES.get(name)
    if low is None:
        low = name.lower()
        if len(_NAMES) < MAX_KNOWN_NAMES:
            _NAMES[name] = low
    start = c + 1
    while start < n and (line[start] == 32 or line[start] == 9):
        start += 1
    end = n
    while end > start and (line[end - 1] == 32 or line[end - 1] == 9):
        end -= 1
    return [low, line[start:end]]


def _media_type(value: bytes) -> str:
    return _text(value.split(b";", 1)[0].strip().lower())


class HttpDecoder(BodySkipping):
    """HTTP/1.x on one TCP connection (see the module docstring)."""

    name = "http"

    def __init__(self, body_keep: int = BODY_KEEP, publisher: Publisher | None = None) -> None:
        """`body_keep`: decoded body bytes kept for a content filter (`last_request_body`,
        `last_response_body`), per direction of the connection (the inspection depth's
        meaning): the bodies of later messages get what the earlier ones left; 0 when no
        filter scans them, so bodies are only counted. `publisher`: the unit's publishing
        hosts (module doc), shared by the pipeline's decoders; by default the one the pipeline
        installed for the process (`agent.publish.extract.install`), if any."""
        self._body_keep = body_keep
        self._publisher = publisher if publisher is not None else installed()
        # the publisher's judged Host fields, looked up here without a call (Publisher.judged)
        self._judged: dict[str, bool] | None = self._publisher.judged if self._publisher is not None else None
        # pieces for the keyword filter (agent.protocols.base.Content); None: no filter runs
        self.content: list[Content] | None = None
        self._orig = _Dir(True)
        self._resp = _Dir(False)
        self._orig.scan_left = self._resp.scan_left = body_keep
        self._pending: deque[_Txn] = deque()
        self._depth = 0
        self._closed = False
        self._last_request: _Body | None = None
        self._last_response: _Body | None = None

    @property
    def last_request_body(self) -> bytes:
        """The kept prefix of the last complete request body (b"" when none was kept)."""
        return self._last_request.kept if self._last_request is not None else b""

    @property
    def last_response_body(self) -> bytes:
        """The kept prefix of the last complete response body (b"" when none was kept)."""
        return self._last_response.kept if self._last_response is not None else b""

    # --- public API ------------------------------------------------------
    def feed(self, is_orig: bool, data: bytes, ts: float) -> list[Record]:
        d = self._orig if is_orig else self._resp
        if self._closed or d.state == _DEAD or not data:
            return []
        if d.state == _START and d.start_ts is None:
            d.start_ts = ts
        out: list[Record] = []
        if d.state == _BODY_LEN and not d.buf and d.body is not None:
            # body bytes with nothing buffered before them (most packets of a body): no copy
            # through the buffer
            n = min(len(data), d.remaining)
            d.body.write(data if n == len(data) else data[:n])
            d.remaining -= n
            if d.remaining:
                return out
            self._message_done(d, out)
            data = data[n:]
            if not data or d.state == _DEAD:
                return out
        d.buf += data
        self._run(d, ts, out)
        return out

    def gap(self, is_orig: bool, length: int, ts: float) -> list[Record]:
        d = self._orig if is_orig else self._resp
        if d.state in (_BODY_LEN, _CHUNK_DATA) and not d.buf and length <= d.remaining:
            d.remaining -= length  # body bytes lost: skip them, keep framing
            return []
        if d.state == _UNTIL_CLOSE:
            return []
        d.state = _DEAD  # framing lost: stop decoding this direction
        d.buf.clear()
        return []

    def skippable(self, is_orig: bool) -> int:
        """Bytes of this direction that need only be counted, not seen (a flow inspector may skip them).

        That is the rest of a Content-Length body or of the current chunk (or of
        a reply read until the connection closes) without a content coding,
        once its kept prefix is complete: its decoded length is its raw
        length, and the framing resumes right after it.
        """
        d = self._orig if is_orig else self._resp
        body = d.body
        if d.buf or body is None or body.coded or body.kept_len < body.keep:
            return 0
        if d.state in (_BODY_LEN, _CHUNK_DATA):
            return d.remaining
        if d.state == _UNTIL_CLOSE:
            return UNTIL_CLOSE_SKIP
        return 0

    def exempt(self, is_orig: bool) -> int:
        """Bytes of this direction a content filter will scan on its own budget: once per body,
        the body prefix kept for it (`body_keep`), so that scanning bodies does not use up the
        connection's inspection depth (`StreamReassembler.exempt`). 0 when bodies are not kept.
        Requests to a publishing host also give back their start line and header fields: every
        request of a long keep-alive connection to the unit's forum must be read, however many
        came before it (what the publisher reads is on its own budget, as the filter's bodies)."""
        d = self._orig if is_orig else self._resp
        owed = d.exempt_owed
        d.exempt_owed = 0
        body = d.body
        if body is None or body.keep <= 0 or body.exempted:
            return owed
        body.exempted = True
        return owed + body.keep

    def skip(self, is_orig: bool, length: int, ts: float) -> list[Record]:
        """`length` bytes offered by `skippable` went by: count them as body bytes."""
        d = self._orig if is_orig else self._resp
        body = d.body
        if body is None or d.buf or d.state not in (_BODY_LEN, _CHUNK_DATA, _UNTIL_CLOSE):
            return self.gap(is_orig, length, ts)
        if d.state == _UNTIL_CLOSE:
            body.length += length
            return []
        n = min(length, d.remaining)
        body.length += n
        d.remaining -= n
        out: list[Record] = []
        if d.remaining == 0:
            if d.state == _CHUNK_DATA:
                d.state = _CHUNK_END
            else:
                self._message_done(d, out)
            if length > n:
                out += self.gap(is_orig, length - n, ts)
        return out

    def close(self, ts: float) -> list[Record]:
        if self._closed:
            return []
        self._closed = True
        out: list[Record] = []
        r = self._resp
        if r.txn is not None and r.state in (
            _UNTIL_CLOSE,
            _BODY_LEN,
            _CHUNK_SIZE,
            _CHUNK_DATA,
            _CHUNK_END,
            _TRAILERS,
            _DEAD,
        ):
            if r.body is not None:
                r.txn.response_body_len = r.body.length
                r.body.end()
            if r.txn.status_code is not None:
                self._finish_response(r, out)
        o = self._orig
        if o.txn is not None and o.body is not None:
            o.txn.request_body_len = o.body.length
            o.body.end()
            if o.txn.publish and o.body.length:  # a post cut short: what came of it
                out.append(self._publish(o.txn, o.body))
        while self._pending:
            out.append(self._pending.popleft().record())
        return out

    # --- parsing ----------------------------------------------------------
    def _line(self, d: _Dir) -> bytes | None:
        buf = d.buf
        pos = d.pos
        i = buf.find(b"\n", pos)
        if i < 0:
            if len(buf) - pos > MAX_LINE:
                raise DecodeError("HTTP_line_too_long", f"{len(buf) - pos} bytes without a line end")
            return None
        if i - pos > MAX_LINE:
            raise DecodeError("HTTP_line_too_long", f"{i - pos} bytes")
        # the read position moves; the consumed bytes are dropped once per feed (see _run), not
        # per line: deleting each line from the front would move the rest of the buffer each time
        line = bytes(buf[pos:i])
        d.pos = i + 1
        if line.endswith(b"\r"):
            line = line[:-1]
        return line

    def _run(self, d: _Dir, ts: float, out: list[Record]) -> None:
        try:
            self._parse(d, ts, out)
        finally:
            if d.pos:
                del d.buf[: d.pos]
                d.pos = 0

    def _parse(self, d: _Dir, ts: float, out: list[Record]) -> None:
        while d.pos < len(d.buf) and d.state != _DEAD:
            st = d.state
            if st == _START:
                if d.start_ts is None:
                    d.start_ts = ts
                line = self._line(d)
                if line is None:
                    return
                if not line.strip():
                    d.start_ts = None if d.pos >= len(d.buf) else ts
                    continue
                if d.is_orig:
                    if not self._request_line(d, line, ts, out):
                        return  # not a request line: the request side is given up (as Zeek)
                else:
                    self._status_line(d, line)
                if d.state != _START:
                    continue  # HTTP/0.9 reply: already in its body
                d.state = _HEADERS
                d.header_bytes = len(line)
                d.headers = []
            elif st in (_HEADERS, _TRAILERS):
                if st == _HEADERS and self._header_block(d, out):
                    continue
                line = self._line(d)
                if line is None:
                    return
                d.header_bytes += len(line) + 2
                if d.header_bytes > MAX_HEADER_BLOCK:
                    raise DecodeError("HTTP_header_too_long", f"over {MAX_HEADER_BLOCK} bytes")
                if line:
                    self._field_line(d, line)
                elif st == _HEADERS:
                    self._headers_done(d, out)
                else:
                    self._message_done(d, out)
            elif st in (_BODY_LEN, _CHUNK_DATA):
                pos = d.pos
                n = min(d.remaining, len(d.buf) - pos)
                chunk = bytes(d.buf[pos:pos + n])
                d.pos = pos + n
                d.remaining -= n
                assert d.body is not None
                d.body.write(chunk)
                if d.remaining == 0:
                    if st == _BODY_LEN:
                        self._message_done(d, out)
                    else:
                        d.state = _CHUNK_END
            elif st == _CHUNK_SIZE:
                line = self._line(d)
                if line is None:
                    return
                size = line.split(b";", 1)[0].strip(b" \t")
                if not _HEX.match(size) or len(size) > 16:
                    raise DecodeError("HTTP_bad_chunk_size", _text(line[:64]))
                d.remaining = int(size, 16)
                if d.remaining == 0:
                    d.state = _TRAILERS
                    d.header_bytes = 0
                    d.headers = []
                else:
                    d.state = _CHUNK_DATA
            elif st == _CHUNK_END:
                line = self._line(d)
                if line is None:
                    return
                if line:
                    raise DecodeError("HTTP_bad_chunk_size", "chunk data not followed by CRLF")
                d.state = _CHUNK_SIZE
            elif st == _UNTIL_CLOSE:
                assert d.body is not None
                d.body.write(bytes(d.buf[d.pos:]))
                d.pos = len(d.buf)

    def _header_block(self, d: _Dir, out: list[Record]) -> bool:
        """The whole header section at once when it is buffered with CRLF line ends (nearly always):
        one split instead of a search, a copy and a state step per line. False: go line by line."""
        buf = d.buf
        pos = d.pos
        if buf.startswith(b"\r\n", pos) or buf.startswith(b"\n", pos):
            return False  # no fields at all: the empty line that ends the section comes first
        end = buf.find(b"\r\n\r\n", pos, pos + MAX_HEADER_BLOCK)
        if end < 0:
            return False
        block = bytes(buf[pos:end])
        lines = block.split(b"\r\n")
        if block.count(b"\n") != len(lines) - 1:
            return False  # a bare LF line end somewhere: the line-by-line reader handles it
        fields: list[list[bytes]] = []
        for line in lines:
            field = _field(line)  # None for an obs-fold continuation too: it starts with a blank
            if field is None:
                return False  # an obs-fold continuation or not a field: the line-by-line reader
            fields.append(field)
        d.header_bytes += len(block) + 4
        if d.header_bytes > MAX_HEADER_BLOCK:
            raise DecodeError("HTTP_header_too_long", f"over {MAX_HEADER_BLOCK} bytes")
        if len(d.headers) + len(fields) > MAX_HEADERS:
            raise DecodeError("HTTP_too_many_headers", f"more than {MAX_HEADERS}")
        d.headers += fields
        d.pos = end + 4
        self._headers_done(d, out)
        return True

    def _request_line(self, d: _Dir, line: bytes, ts: float, out: list[Record]) -> bool:
        """Parse a request line; False when it is none (a `weird` record is added, requests stop).

        Zeek (HTTP_Analyzer::HTTP_RequestLine) treats a line that does not start
        with a method token followed by white space as "not a http request
        line": it reports ``bad_HTTP_request`` (``bad_HTTP_request_with_version``
        when the line still ends in `` HTTP/x.y``), expects no more requests on
        the connection, and goes on logging the replies; so do we. A version
        that is not ``HTTP/d.d`` is read leniently, as Zeek does ("HTTP/1."
        happens): a ``bad_HTTP_version`` weird, and the request is kept.
        """
        parts = line.split(b" ")
        parts = [p for p in parts if p]
        if _METHOD.match(line) is None or len(parts) < 2 or len(parts) > 3 or not _TOKEN.match(parts[0]):
            name = "bad_HTTP_request_with_version" if _ENDS_WITH_VERSION.search(line) else "bad_HTTP_request"
            out.append(weird(ts, name, _text(line[:100])))
            d.state = _DEAD
            d.buf.clear()
            d.pos = 0
            return False
        if len(parts) == 2 and _VERSION.match(parts[1]):  # "METHOD HTTP/1.1": empty URI, as Zeek
            method, version = parts
            target = b""
        elif len(parts) == 2:  # "METHOD target": HTTP/0.9-style (Zeek logs version 0.9)
            method, target = parts
            version = b""
        else:
            method, target, version = parts
            if not _VERSION.match(version):
                out.append(weird(ts, "bad_HTTP_version", _text(version[:40])))
        if len(self._pending) >= MAX_PENDING:
            raise DecodeError("HTTP_too_many_pending_requests", f"more than {MAX_PENDING}")
        self._depth += 1
        d.txn = _Txn(ts=d.start_ts or 0.0, depth=self._depth, method=_text(method), uri=_text(target))
        d.txn.v09 = not version
        self._pending.append(d.txn)
        if self.content is not None and target:
            self.content.append(Content("http.uri", target, self._depth, True))
        return True

    def _status_line(self, d: _Dir, line: bytes) -> None:
        if self._pending and self._pending[0].v09:
            txn = self._pending[0]  # HTTP/0.9 reply: no status line, all body (Zeek: 0 "<empty>")
            txn.version, txn.status_code, txn.status_msg = "0.9", 0, "<empty>"
            d.txn = txn
            d.body = self._new_body(d, txn, None, None)
            d.body.write(line + b"\r\n")  # approximation: the line end was CRLF
            d.state = _UNTIL_CLOSE
            return
        parts = line.split(b" ", 2)
        m = _VERSION.match(parts[0])
        if m is None or len(parts) < 2 or len(parts[1]) != 3 or not parts[1].isdigit():
            raise DecodeError("bad_HTTP_reply", _text(line[:100]))
        code = int(parts[1])
        if code < 100:
            raise DecodeError("bad_HTTP_reply", _text(line[:100]))
        d.interim = 100 <= code < 200 and code != 101
        if d.interim:
            d.txn = None
            return
        if self._pending:
            txn = self._pending[0]
        else:  # reply without a request (Zeek: unmatched_HTTP_reply), still logged
            self._depth += 1
            txn = _Txn(ts=d.start_ts or 0.0, depth=self._depth)
            self._pending.append(txn)
        txn.version = f"{m.group(1).decode()}.{m.group(2).decode()}"
        txn.status_code = code
        reason = parts[2].strip() if len(parts) > 2 else b""
        txn.status_msg = _text(reason) if reason else "<empty>"  # Zeek's placeholder
        d.txn = txn

    def _field_line(self, d: _Dir, line: bytes) -> None:
        if line[0] in _WS:
            if not d.headers:
                raise DecodeError("HTTP_bad_header_continuation", _text(line[:60]))
            d.headers[-1][1] += b" " + line.strip(b" \t")  # obs-fold, RFC 9112 §5.2
            return
        field = _field(line)
        if field is None:
            raise DecodeError("bad_HTTP_header", _text(line[:60]))
        if len(d.headers) >= MAX_HEADERS:
            raise DecodeError("HTTP_too_many_headers", f"more than {MAX_HEADERS}")
        d.headers.append(field)

    def _headers_done(self, d: _Dir, out: list[Record]) -> None:
        hdr: dict[bytes, bytes] = {}
        for name, value in d.headers:
            if name not in _USED_FIELDS:
                continue
            if name in hdr and name in (b"transfer-encoding", b"content-encoding"):
                hdr[name] += b", " + value
            else:
                hdr.setdefault(name, value)
        d.headers = []
        if d.interim:  # 1xx: no body, the final response follows
            d.state = _START
            d.interim = False
            return
        txn = d.txn
        assert txn is not None
        ctype = _media_type(hdr[b"content-type"]) if b"content-type" in hdr else None
        if d.is_orig:
            if b"host" in hdr:
                txn.host = _text(_host_field(hdr[b"host"]))
                if self.content is not None:
                    self.content.append(Content("http.host", hdr[b"host"], txn.depth, True))
            if b"user-agent" in hdr:
                txn.user_agent = _text(hdr[b"user-agent"])
            if b"referer" in hdr:
                txn.referrer = _text(hdr[b"referer"])
            for auth in (b"authorization", b"proxy-authorization"):
                if auth in hdr and txn.username is None:
                    txn.username = _basic_user(hdr[auth])
            txn.req_content_type = ctype
            judged = self._judged
            if judged is not None and txn.host is not None:
                wanted = judged.get(txn.host)
                if wanted is None:
                    assert self._publisher is not None
                    wanted = self._publisher.wants(txn.host)
                txn.publish = wanted
            if txn.publish:
                d.exempt_owed += d.header_bytes + 2  # the start line's CRLF is not counted there
        else:
            txn.resp_content_type = ctype
        ctype_raw = hdr.get(b"content-type")
        ctype_text = _text(ctype_raw) if ctype_raw is not None else None
        if d.is_orig:
            txn.req_ctype_raw = ctype_text
        d.body = self._new_body(d, txn, self._coding(hdr.get(b"content-encoding")), ctype_text)
        te = hdr.get(b"transfer-encoding")
        codings = [c.strip().lower() for c in te.split(b",")] if te is not None else []
        codings = [c for c in codings if c]
        if not d.is_orig:
            code = txn.status_code or 0
            method = txn.method or ""
            if code == 101 or (method == "CONNECT" and 200 <= code < 300):
                d.upgrade = True
                self._message_done(d, out)
                return
            if method == "HEAD" or code in (204, 304):
                self._message_done(d, out)
                return
        if codings:
            # RFC 9112 §6.3 wants "chunked" last; like Zeek we honour it anywhere in the list
            if b"chunked" in codings:
                d.state = _CHUNK_SIZE
                return
            if d.is_orig:
                raise DecodeError("bad_HTTP_transfer_encoding", _text(te or b""))
            d.state = _UNTIL_CLOSE
            return
        cl = hdr.get(b"content-length")
        if cl is not None:
            vals = {v.strip() for v in cl.split(b",")}
            if len(vals) != 1:
                raise DecodeError("HTTP_bad_content_length", _text(cl[:40]))
            v = vals.pop()
            if not v.isdigit() or len(v) > 18:
                raise DecodeError("HTTP_bad_content_length", _text(cl[:40]))
            d.remaining = int(v)
            if d.remaining == 0:
                self._message_done(d, out)
            else:
                d.state = _BODY_LEN
            return
        if d.is_orig:
            self._message_done(d, out)
        else:
            d.state = _UNTIL_CLOSE

    @staticmethod
    def _coding(value: bytes | None) -> str | None:
        if value is None:
            return None
        codings = [c.strip().lower() for c in value.split(b",")]
        codings = [c for c in codings if c and c != b"identity"]
        if not codings:
            return None
        if len(codings) == 1 and codings[0] in (b"gzip", b"x-gzip", b"deflate"):
            return codings[0].decode()
        return "unknown"  # not decoded: counted as zero decoded bytes

    def _new_body(self, d: _Dir, txn: _Txn, coding: str | None, ctype: str | None) -> _Body:
        field = "http.request_body" if d.is_orig else "http.response_body"
        published = d.is_orig and txn.publish
        keep = d.scan_left
        if self._publisher is not None and self.content is None:
            keep = 0  # no filter reads bodies: kept only when published (module doc)
        if ctype is not None and (self.content is not None or published):
            media = ctype.split(";", 1)[0].strip().lower()
            if media in _OPAQUE_TYPES or media.split("/", 1)[0] in _OPAQUE_MAJOR:
                # media and archives hold no text a keyword could be found in: counted, not kept
                return _Body(coding, 0, None, field, txn.depth, ctype)
        if published:
            assert self._publisher is not None
            body = _Body(coding, max(keep, self._publisher.max_body), self.content, field, txn.depth, ctype)
            body.budget = keep
            return body
        return _Body(coding, keep, self.content, field, txn.depth, ctype)

    def _publish(self, txn: _Txn, body: _Body) -> Record:
        """The `publish` record of a request to a publishing host (once per request); its text
        goes to the keyword filter as `publish.text` (agent.publish)."""
        pub = self._publisher
        assert pub is not None
        txn.publish = False
        rec, text = pub.record(txn.ts, txn.depth, txn.method, txn.host, txn.uri, txn.req_content_type,
                               txn.req_ctype_raw, body.kept, body.length, not body.undecoded)
        if self.content is not None and text:
            self.content.append(Content("publish.text", text, txn.depth, True))
        return cast(Record, rec)

    def _message_done(self, d: _Dir, out: list[Record]) -> None:
        txn = d.txn
        assert txn is not None
        body = d.body
        if body is not None:
            body.end()
            d.scan_left = max(0, d.scan_left - min(body.kept_len, body.budget))
        if d.is_orig:
            if body is not None:
                txn.request_body_len = body.length
                self._last_request = body
                if txn.publish and body.length:
                    out.append(self._publish(txn, body))
            d.txn = None
            d.body = None
            d.state = _START
            d.start_ts = None
        else:
            if body is not None:
                txn.response_body_len = body.length
            self._finish_response(d, out)
            if d.upgrade:  # 101 / CONNECT tunnel: no more HTTP on this connection
                d.state = _DEAD
                self._orig.state = _DEAD
            else:
                d.state = _START
                d.start_ts = None

    def _finish_response(self, d: _Dir, out: list[Record]) -> None:
        txn = d.txn
        assert txn is not None
        if d.body is not None:
            self._last_response = d.body
        if self._pending and self._pending[0] is txn:
            self._pending.popleft()
        o = self._orig
        if o.txn is txn and o.body is not None:  # response before request body finished
            txn.request_body_len = o.body.length
        out.append(txn.record())
        d.txn = None
        d.body = None


#: What this module decodes (agent.protocols.spec; listed in agent.protocols.registry).
_METHODS = (  # what a request line starts with: RFC 9110, WebDAV (RFC 4918, 3253) and its relatives
    b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"CONNECT ", b"TRACE ", b"PATCH ",
    b"PROPFIND ", b"PROPPATCH ", b"MKCOL ", b"COPY ", b"MOVE ", b"LOCK ", b"UNLOCK ", b"SEARCH ",
    b"REPORT ", b"SUBSCRIBE ", b"NOTIFY ", b"MKACTIVITY ", b"CHECKOUT ", b"MERGE ", b"BPROPFIND ",
)
SPEC = ProtocolSpec(
    "http", ("tcp",), HttpDecoder, records=("http", "publish"), ports=frozenset({80, 8000, 8008, 8080, 8888}),
    probe=Probe(client=_METHODS, server=(b"HTTP/1.", b"HTTP/0.9")),
    capabilities=(ContentSource, BodySkipping),
)
