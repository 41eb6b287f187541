"""TLS/SSL hello decoder: SNI, negotiated version, ALPN, Zeek's `established`.

Design
------
Sans-IO (agent/protocols/base.py). Each direction is a byte stream that is cut
into records:

* TLS record layer (RFC 8446 §5.1, RFC 5246 §6.2): ``type(1) version(2)
  length(2) fragment``. Content types 20..24 (change_cipher_spec, alert,
  handshake, application_data, heartbeat RFC 6520); a fragment is at most
  2^14 + 2048 bytes (RFC 5246 §6.2.3, the largest any version allows).
* Handshake messages (RFC 8446 §4, RFC 5246 §7.4) are ``type(1) length(3)
  body`` and may be split over many records and TCP segments: the fragments
  of one direction are concatenated and parsed once a whole message is
  there, bounded by `MAX_HANDSHAKE` bytes.
* ClientHello (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2): extensions server_name
  (RFC 6066 §3), application_layer_protocol_negotiation (RFC 7301 §3.1),
  supported_versions (RFC 8446 §4.2.1).
* ServerHello (RFC 8446 §4.1.3): the selected version is supported_versions
  when present (TLS 1.3 and its drafts), else the legacy server_version; the
  selected ALPN protocol. A HelloRetryRequest (RFC 8446 §4.1.4, recognised by
  its fixed random) is not final: the next ServerHello is awaited.
  Pre-draft-22 TLS 1.3 ServerHellos (version 0x7fNN, no session id and no
  compression byte) are parsed too.
* SSLv2-compatible hellos (RFC 6101 appendix E.2; draft-hickman SSL 2.0):
  2-byte record header with the high bit set, CLIENT-HELLO (1), SERVER-HELLO
  (4), CLIENT-MASTER-KEY (2).

After both hellos the decoder stops parsing handshake contents (DESIGN.md,
step 3: TLS stops after the ClientHello/ServerHello) and only walks record
headers to reproduce Zeek's ``established`` (ssl-analyzer.pac
``proc_ciphertext_record``): a direction turns "encrypted" with its
ChangeCipherSpec (TLS <= 1.2; Zeek ignores CCS under TLS 1.3) or, under TLS
1.3, with its first application_data record; the first record seen while both
directions are encrypted sets ``established``. SSLv2 sets it on
CLIENT-MASTER-KEY, as Zeek does. Once established the record is final and is
returned at once; otherwise at `close`. Exactly one ``tls`` record per
connection, and only if a hello was seen.

Field semantics follow Zeek's ssl.log: ``version`` uses Zeek's strings
(``TLSv12``, ``TLSv13-draft23``, ``SSLv2`` ...) and comes from the server;
``next_protocol`` is the server's ALPN choice, or — SCHEMA.md: "ALPN chosen,
or first offered" — the client's first offer when the choice is unseen (under
TLS 1.3 it is encrypted; Zeek logs null there, and conformance.py does not
compare fields Zeek leaves unset). ``alpn_fallback_offered=False`` gives Zeek's
reading exactly. ``ts`` is
the time of the first hello seen (Zeek: network time of the first SSL event).

STARTTLS: the decoder needs no connection start; the caller creates one
(`starttls_decoder`) and feeds each direction from the first byte after the
STARTTLS/STLS reply. `looks_like_tls` is a content probe for classification.

A gap in one direction loses record framing: that direction is no longer
parsed (no error), the record still comes out at `close`. After a
`DecodeError` the decoder ignores further bytes, but `close` still returns the
record when a hello was seen, so a caller that closes the flow keeps the SNI
(e.g. a TLS client answered by a plaintext HTTP error). Garbage in a direction
after its own hello only stops the watching of that direction (no error).
"""

from __future__ import annotations

from typing import Final, cast

from agent.decode.errors import DecodeError
from agent.protocols.base import Content, ContentSource, Finishing, Record
from agent.protocols.spec import Probe, ProtocolSpec
from wire.records import TlsFields
from wire.text import escaped_text

# Limits, each with its reason.
MAX_RECORD: Final = 2**14 + 2048  # RFC 5246 §6.2.3: no TLS version allows a longer fragment
MAX_SSL2_RECORD: Final = 0x7FFF  # 2-byte SSLv2 header: 15-bit length
MAX_HANDSHAKE: Final = 64 * 1024  # a hello with every extension fits easily; caps reassembly memory
MAX_NAME: Final = 255  # DNS names (RFC 1035) and ALPN ids (RFC 7301) are at most 255 bytes

CT_CCS: Final = 20
CT_ALERT: Final = 21
CT_HANDSHAKE: Final = 22
CT_APPDATA: Final = 23
CT_HEARTBEAT: Final = 24

HS_CLIENT_HELLO: Final = 1
HS_SERVER_HELLO: Final = 2

EXT_SERVER_NAME: Final = 0
EXT_ALPN: Final = 16
EXT_SUPPORTED_VERSIONS: Final = 43

# RFC 8446 §4.1.3: SHA-256("HelloRetryRequest") as the ServerHello random.
HRR_RANDOM: Final = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

_VERSION_NAMES: Final = {
    0x0002: "SSLv2",
    0x0300: "SSLv3",
    0x0301: "TLSv10",
    0x0302: "TLSv11",
    0x0303: "TLSv12",
    0x0304: "TLSv13",
    0xFEFF: "DTLSv10",
    0xFEFD: "DTLSv12",
    0xFEFC: "DTLSv13",
}


def version_name(v: int) -> str:
    """Zeek's SSL::version_strings, with its draft naming for 0x7fNN."""
    if v in _VERSION_NAMES:
        return _VERSION_NAMES[v]
    if v >> 8 == 0x7F:
        return f"TLSv13-draft{v & 0xFF}"
    return f"unknown-{v}"


def _is_grease(v: int) -> bool:
    # RFC 8701 §2: 0x?A?A values are reserved and must be ignored.
    return v & 0x0F0F == 0x0A0A and v >> 8 == v & 0xFF


def looks_like_tls(data: bytes) -> bool:
    """Content probe: does this originator stream start with a TLS/SSLv2 ClientHello?"""
    if len(data) >= 6 and data[0] == CT_HANDSHAKE and data[1] == 3 and data[5] == HS_CLIENT_HELLO:
        return True
    return len(data) >= 3 and data[0] & 0x80 != 0 and data[2] == 1


class _Reader:
    """Bounds-checked cursor over one message; short data raises DecodeError."""

    __slots__ = ("buf", "pos", "end", "what")

    def __init__(self, buf: bytes, what: str, pos: int = 0, end: int | None = None) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else end
        self.what = what

    def left(self) -> int:
        return self.end - self.pos

    def _short(self, n: int) -> DecodeError:
        return DecodeError(f"SSL_malformed_{self.what}", f"needs {n} bytes, {self.end - self.pos} left")

    def take(self, n: int) -> bytes:
        if n > self.end - self.pos:
            raise self._short(n)
        b = self.buf[self.pos : self.pos + n]
        self.pos += n
        return b

    def skip(self, n: int) -> None:
        if n > self.end - self.pos:
            raise self._short(n)
        self.pos += n

    # numbers are read in place: compiled, an index is a load, where take() would build an object
    def u8(self) -> int:
        p = self.pos
        if p >= self.end:
            raise self._short(1)
        self.pos = p + 1
        return self.buf[p]

    def u16(self) -> int:
        p = self.pos
        if self.end - p < 2:
            raise self._short(2)
        self.pos = p + 2
        return (self.buf[p] << 8) | self.buf[p + 1]

    def vec(self, len_bytes: int) -> _Reader:
        """A length-prefixed vector (RFC 8446 §3.4) with a 1- or 2-byte length."""
        n = self.u8() if len_bytes == 1 else self.u16()
        start = self.pos
        self.skip(n)
        return _Reader(self.buf, self.what, start, start + n)


_WANTED_EXTENSIONS = frozenset({EXT_SERVER_NAME, EXT_ALPN, EXT_SUPPORTED_VERSIONS})


def _extensions(exts: _Reader) -> tuple[list[tuple[int, _Reader]], DecodeError | None]:
    """The extensions this decoder reads, each with a reader over its data (RFC 8446 §4.2),
    and the error that ended the list early, if any: the caller uses what came before it
    (as a walk that stopped there would have) and then raises it.

    The list is walked with plain offsets; only the few extensions of interest get a
    reader (a hello carries a dozen or more, GREASE included).
    """
    buf = exts.buf
    p = exts.pos
    end = exts.end
    out: list[tuple[int, _Reader]] = []
    while p < end:
        if end - p < 4:
            return out, DecodeError(f"SSL_malformed_{exts.what}", f"needs 4 bytes, {end - p} left")
        etype = (buf[p] << 8) | buf[p + 1]
        elen = (buf[p + 2] << 8) | buf[p + 3]
        p += 4
        if elen > end - p:
            return out, DecodeError(f"SSL_malformed_{exts.what}", f"needs {elen} bytes, {end - p} left")
        if etype in _WANTED_EXTENSIONS:
            out.append((etype, _Reader(buf, "extension", p, p + elen)))
        p += elen
    exts.pos = end
    return out, None


_NO_FRAGMENT = bytearray()  # the content handed for records that are acted on by type alone


def _host(raw: bytes) -> str:
    return escaped_text(raw[:MAX_NAME])


class _Dir:
    """Per-direction state."""

    __slots__ = ("buf", "hs", "mode", "dead", "encrypted", "want_hello", "skip")

    def __init__(self) -> None:
        self.buf = bytearray()  # unparsed stream bytes: < one record header + fragment (MAX_RECORD)
        self.hs = bytearray()  # handshake reassembly: bounded by MAX_HANDSHAKE
        self.mode = ""  # "", "tls" or "ssl2": fixed by the first bytes of the direction
        self.dead = False  # gap or post-hello garbage: stop looking at this direction
        self.encrypted = False  # Zeek's STATE_ENCRYPTED for this direction
        self.want_hello = True  # still waiting for this side's (final) hello
        self.skip = 0  # bytes of the current record still to pass over (its content is not needed)


class TlsDecoder:
    """One TLS connection (or the TLS part of a STARTTLS one)."""

    name = "tls"

    def __init__(self, alpn_fallback_offered: bool = True) -> None:
        # pieces for the keyword filter (agent.protocols.base.Content); None: no filter runs
        self.content: list[Content] | None = None
        self._alpn_fallback = alpn_fallback_offered
        self._dirs = {True: _Dir(), False: _Dir()}
        self._ts: float | None = None
        self._server_name: str | None = None
        self._version: int | None = None
        self._alpn_chosen: str | None = None
        self._alpn_offered: str | None = None
        self._established = False
        self._done = False  # the record went out: ignore everything after
        self._seen_hello = False
        self._failed = False  # a DecodeError was raised: feed ignores further bytes

    # ----------------------------------------------------------- public API
    def feed(self, is_orig: bool, data: bytes, ts: float) -> list[Record]:
        d = self._dirs[is_orig]
        if self._done or self._failed or d.dead or not data:
            return []
        if d.skip:
            # the rest of a record whose content does not matter (see _parse): not buffered
            n = min(d.skip, len(data))
            d.skip -= n
            data = data[n:]
            if not data:
                return []
        d.buf += data
        try:
            self._parse(is_orig, d, ts)
        except DecodeError:
            # Keep what the hellos gave: `close` still returns the record.
            self._failed = True
            for x in self._dirs.values():
                x.buf.clear()
                x.hs.clear()
            raise
        if self._established:
            return self._finish()
        return []

    def gap(self, is_orig: bool, length: int, ts: float) -> list[Record]:
        d = self._dirs[is_orig]
        d.dead = True
        d.buf.clear()
        d.hs.clear()
        return []

    def close(self, ts: float) -> list[Record]:
        return self._finish()

    @property
    def finished(self) -> bool:
        """Nothing more will be learnt from this connection: the caller may stop feeding it."""
        return self._done or self._failed or (self._dirs[True].dead and self._dirs[False].dead)

    @property
    def tls13(self) -> bool:
        v = self._version
        return v is not None and (v == 0x0304 or v >> 8 == 0x7F)

    # ------------------------------------------------------------ internals
    def _finish(self) -> list[Record]:
        if self._done or not self._seen_hello:
            self._done = True
            return []
        self._done = True
        for d in self._dirs.values():
            d.buf.clear()
            d.hs.clear()
        alpn = self._alpn_chosen
        if alpn is None and self._alpn_fallback:
            alpn = self._alpn_offered
        assert self._ts is not None  # (set with the first hello)
        rec: TlsFields = {
            "type": "tls",
            "ts": self._ts,
            "server_name": self._server_name,
            "version": version_name(self._version) if self._version is not None else None,
            "next_protocol": alpn,
            "established": self._established,
        }
        return [cast(Record, rec)]

    def _hello_seen(self, ts: float) -> None:
        self._seen_hello = True
        if self._ts is None:
            self._ts = ts

    def _parse(self, is_orig: bool, d: _Dir, ts: float) -> None:
        buf = d.buf
        if not d.mode:
            if buf[0] in (CT_CCS, CT_ALERT, CT_HANDSHAKE, CT_APPDATA, CT_HEARTBEAT):
                d.mode = "tls"
            elif buf[0] & 0x80:
                d.mode = "ssl2"
            else:
                raise DecodeError("SSL_invalid_record_type", f"first byte {buf[0]:#x}")
        pos = 0
        try:
            while not self._established and not d.dead:
                if d.mode == "ssl2":
                    if len(buf) - pos < 2:
                        break
                    if not d.want_hello and buf[pos] in (CT_CCS, CT_ALERT, CT_HANDSHAKE, CT_APPDATA):
                        d.mode = "tls"  # v2-compatible hello, the rest of the handshake is TLS
                        continue
                    if buf[pos] & 0x80 == 0:
                        # SSLv2 3-byte headers (padding) only occur after the hellos.
                        raise DecodeError("SSLv2_unsupported_header", f"byte {buf[pos]:#x}")
                    n = ((buf[pos] & 0x7F) << 8) | buf[pos + 1]
                    if len(buf) - pos < 2 + n:
                        break
                    self._ssl2_message(is_orig, d, bytes(buf[pos + 2 : pos + 2 + n]), ts)
                    pos += 2 + n
                    continue
                if len(buf) - pos < 5:
                    break
                ctype = buf[pos]
                n = (buf[pos + 3] << 8) | buf[pos + 4]
                if ctype < CT_CCS or ctype > CT_HEARTBEAT:
                    raise DecodeError("SSL_invalid_record_type", f"type {ctype}")
                if buf[pos + 1] not in (3, 0x7F, 0xFE):
                    raise DecodeError("SSL_invalid_version", f"record version {buf[pos + 1]:#x}")
                if n > MAX_RECORD:
                    raise DecodeError("SSL_record_too_long", f"{n} bytes")
                if ctype == CT_HANDSHAKE and d.want_hello and not d.encrypted:
                    if len(buf) - pos < 5 + n:
                        break
                    self._record(is_orig, d, ctype, buf[pos + 5 : pos + 5 + n], ts)
                    pos += 5 + n
                    continue
                # Any other record only counts by its header (CCS, alerts, application data,
                # handshake messages after the hello: certificates...): act on it now and pass
                # over its content as it arrives, never buffering it.
                self._record(is_orig, d, ctype, _NO_FRAGMENT, ts)
                if len(buf) - pos >= 5 + n:
                    pos += 5 + n
                else:
                    d.skip = 5 + n - (len(buf) - pos)
                    pos = len(buf)
                    break
        except DecodeError:
            if self._seen_hello and not d.want_hello:
                # Past this side's hello we only watch record headers: garbage ends watching.
                d.dead = True
                d.buf.clear()
                return
            raise
        del buf[:pos]

    def _record(self, is_orig: bool, d: _Dir, ctype: int, frag: bytearray, ts: float) -> None:
        if d.encrypted:
            # Zeek's proc_ciphertext_record.
            if self._dirs[not is_orig].encrypted:
                self._established = True
            return
        if ctype == CT_CCS:
            if not self.tls13:
                d.encrypted = True
            return
        if ctype == CT_APPDATA:
            if self.tls13:
                d.encrypted = True
                if self._dirs[not is_orig].encrypted:
                    self._established = True
            return
        if ctype != CT_HANDSHAKE or not d.want_hello:
            return
        d.hs += frag
        while d.want_hello and len(d.hs) >= 4:
            hs = d.hs
            mlen = (hs[1] << 16) | (hs[2] << 8) | hs[3]
            if mlen + 4 > MAX_HANDSHAKE:
                raise DecodeError("SSL_handshake_too_long", f"{mlen} bytes")
            if len(d.hs) < 4 + mlen:
                return
            mtype = d.hs[0]
            body = bytes(d.hs[4 : 4 + mlen])
            del d.hs[: 4 + mlen]
            if is_orig and mtype == HS_CLIENT_HELLO:
                self._client_hello(body, ts)
                d.want_hello = False
            elif not is_orig and mtype == HS_SERVER_HELLO:
                d.want_hello = self._server_hello(body, ts)
            else:
                # Anything before the hello (e.g. HelloRequest) or after it is not ours.
                continue
        if not d.want_hello:
            d.hs.clear()

    def _client_hello(self, body: bytes, ts: float) -> None:
        r = _Reader(body, "client_hello")
        r.u16()  # legacy_version
        r.skip(32)  # random
        r.vec(1)  # session id
        r.vec(2)  # cipher suites
        r.vec(1)  # compression methods
        self._hello_seen(ts)
        if r.left() == 0:
            return  # SSLv3/TLS without extensions
        exts, err = _extensions(r.vec(2))
        for etype, e in exts:
            if etype == EXT_SERVER_NAME and self._server_name is None:
                names = e.vec(2)
                while names.left():
                    kind = names.u8()
                    host = names.vec(2)
                    if kind == 0 and self._server_name is None:
                        raw = host.take(host.left())
                        self._server_name = _host(raw)
                        if self.content is not None:
                            self.content.append(Content("tls.server_name", raw[:MAX_NAME], 1, True))
            elif etype == EXT_ALPN and self._alpn_offered is None:
                protos = e.vec(2)
                if protos.left():
                    p = protos.vec(1)
                    self._alpn_offered = _host(p.take(p.left()))
        if err is not None:
            raise err

    def _server_hello(self, body: bytes, ts: float) -> bool:
        """Parse a ServerHello; True when it was a HelloRetryRequest (not final)."""
        r = _Reader(body, "server_hello")
        legacy = r.u16()
        random = r.take(32)
        draft_old = legacy >> 8 == 0x7F and (legacy & 0xFF) < 22
        if not draft_old:
            r.vec(1)  # session id
        r.u16()  # cipher suite
        if not draft_old:
            r.u8()  # compression
        self._hello_seen(ts)
        version = legacy
        alpn: str | None = None
        if r.left():
            exts, err = _extensions(r.vec(2))
            for etype, e in exts:
                if etype == EXT_SUPPORTED_VERSIONS:
                    sel = e.u16()
                    if not _is_grease(sel):
                        version = sel
                elif etype == EXT_ALPN:
                    protos = e.vec(2)
                    if protos.left():
                        p = protos.vec(1)
                        alpn = _host(p.take(p.left()))
            if err is not None:
                self._version = version
                raise err
        self._version = version
        if alpn is not None:
            self._alpn_chosen = alpn
        return random == HRR_RANDOM

    def _ssl2_message(self, is_orig: bool, d: _Dir, msg: bytes, ts: float) -> None:
        r = _Reader(msg, "ssl2_message")
        kind = r.u8()
        if is_orig and kind == 1 and d.want_hello:  # CLIENT-HELLO
            r.u16()  # highest version the client offers (0x0002 .. 0x0303)
            cs_len, sid_len, ch_len = r.u16(), r.u16(), r.u16()
            r.skip(cs_len + sid_len + ch_len)
            d.want_hello = False
            self._hello_seen(ts)
        elif not is_orig and kind == 4 and d.want_hello:  # SERVER-HELLO
            r.u8()  # session id hit
            r.u8()  # certificate type
            self._version = r.u16()
            d.want_hello = False
            self._hello_seen(ts)
        elif is_orig and kind == 2:  # CLIENT-MASTER-KEY: Zeek's ssl_established
            self._established = True
        elif d.want_hello:
            raise DecodeError("SSLv2_unexpected_message", f"type {kind}")
        else:
            # After the hellos SSLv2 records are encrypted: nothing more to learn here.
            d.dead = True


def starttls_decoder(alpn_fallback_offered: bool = True) -> TlsDecoder:
    """A decoder for the TLS part of a STARTTLS connection.

    Feed each direction from the first byte after the STARTTLS (SMTP/IMAP) or
    STLS (POP3) exchange; the record's ``ts`` is that of the first hello.
    """
    return TlsDecoder(alpn_fallback_offered=alpn_fallback_offered)


def starts_hello(p: bytes, is_orig: bool, resp_port: int) -> bool:
    """The probe: a stream opening with a handshake record holding a ClientHello (originator)
    or a ServerHello (responder), or with an SSLv2-compatible ClientHello."""
    if len(p) >= 6 and p[0] == 0x16 and p[1] == 3 and p[2] <= 4:
        return p[5] == (1 if is_orig else 2)
    # SSLv2-compatible ClientHello (RFC 6101 appendix E.2): 2-byte length with the high bit, type 1
    return is_orig and len(p) >= 11 and bool(p[0] & 0x80) and p[2] == 1 and p[3] in (2, 3)


#: What this module decodes (agent.protocols.spec; listed in agent.protocols.registry).
SPEC = ProtocolSpec(
    "tls", ("tcp",), TlsDecoder, records=("tls",),
    ports=frozenset({443, 465, 563, 636, 853, 989, 990, 992, 993, 994, 995, 8443}),
    # a handshake record (22), or an SSLv2-compatible hello's length with its high bit set
    probe=Probe(stream=starts_hello, stream_starts=bytes([22, *range(0x80, 0x100)])),
    capabilities=(ContentSource, Finishing),
)
