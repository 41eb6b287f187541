"""Views of content to match keywords in: decoded spellings of a message body or field.

What: pure functions, bytes in, bytes out, that undo the encodings a user's text
goes through on its way onto the wire (DESIGN.md data path step 7, "normalize
first"): ASCII case folding, percent-encoding (``%XX``, IIS ``%uXXXX``, ``+``),
form bodies, JSON ``\\uXXXX`` escapes, MIME base64 and quoted-printable, RFC 2047
encoded-words in mail headers, and multipart bodies (RFC 2046 §5.1). Their
results are matched with the ``utf-8``/``gbk``/``gb18030`` forms of each keyword
(``forms.keyword_forms``); the percent-encoded forms catch what is not decoded.

Why whole buffers, not streams: message bodies are scanned as they stream
(``patterns.StreamScan``) in their raw bytes; that needs no decoding and
finds most matches. The decoded views are extra haystacks, computed once per
message on the body prefix a decoder keeps (``BODY_KEEP`` in the HTTP and SMTP
decoders, 8 KiB) when the message is complete. Decoding a whole buffer is
simpler and faster than incremental decoders (a ``%E8`` or a base64 quantum split
across segments needs no state) and the prefix bounds the work per message.

Totality: no function here raises on any input. Malformed input is left as it is
(an invalid ``%ZZ``, a ``\\x`` in JSON, a broken encoded-word), a lone UTF-16
surrogate becomes U+FFFD, garbage ends a base64 run. Nothing here trusts a length
or a count taken from the data.

Output bounds (name: bound):

* ``fold``, ``percent_decode``, ``form_decode``, ``json_unescape``, ``qp_decode``,
  ``base64_decode``: output <= input length (every decoding shrinks).
* ``rfc2047_decode``: <= ``DECODE_GROWTH`` x input (a single undecodable byte
  becomes U+FFFD, 3 bytes of UTF-8; each decoded word is also capped so).
* ``multipart_parts``: <= ``DECODE_GROWTH`` x input in total (part bodies shrink,
  decoded header values grow by at most ``DECODE_GROWTH``); at most ``MAX_PARTS``
  parts, nested at most ``MAX_MULTIPART_DEPTH`` deep.
* ``body_views``: at most ``MAX_VIEWS`` views, ``MAX_VIEW_BYTES`` bytes in total.

These functions run on the compiled packet path (mypyc): plain typed code, the
byte work done by ``re``, ``binascii`` and codecs in C, Python work per escape run
or per part, never per byte.
"""

from __future__ import annotations

import binascii
import encodings
import encodings.aliases
import re
from typing import Final

# --- limits -----------------------------------------------------------------------------
DECODE_GROWTH: Final = 3  # worst-case growth of a charset conversion to UTF-8: 1 bad byte -> U+FFFD
MAX_MULTIPART_DEPTH: Final = 4  # multipart inside multipart; real mail nests 2-3 deep
MAX_PARTS: Final = 64  # parts of one message, all depths together
MAX_VIEWS: Final = 16  # decoded views of one body
MAX_VIEW_BYTES: Final = 64 * 1024  # bytes of all views of one body (8x an 8 KiB kept body prefix)

# --- case folding ------------------------------------------------------------------------


def fold(b: bytes) -> bytes:
    """ASCII case fold: A-Z -> a-z, every other byte unchanged (GBK/UTF-8 lead bytes are >= 0x80)."""
    return b.lower()


# --- percent-encoding --------------------------------------------------------------------

# A run of %XX escapes, or a run of IIS %uXXXX escapes: one Python call per run, not per
# escape (a percent-encoded Chinese sentence is one run).
_PCT_RUN: Final = re.compile(rb"(?:%[0-9A-Fa-f]{2})+|(?:%[uU][0-9A-Fa-f]{4})+")


def _utf16_hex_to_utf8(hex_digits: bytes) -> bytes:
    """UTF-16 code units written as hex -> UTF-8; surrogate pairs joined, lone surrogates -> U+FFFD."""
    return binascii.unhexlify(hex_digits).decode("utf-16-be", "replace").encode("utf-8")


def _pct_run(m: re.Match[bytes]) -> bytes:
    run = m.group()
    if run[1] == 0x75 or run[1] == 0x55:  # %u / %U
        return _utf16_hex_to_utf8(run.replace(b"%u", b"").replace(b"%U", b""))
    return binascii.unhexlify(run.replace(b"%", b""))


# "in" with a bytes needle makes CPython raise and clear a TypeError inside (it tries the
# needle as an int first): a byte is looked for by its int value, a longer needle with find
_PCT: Final = 0x25  # "%"
_PLUS: Final = 0x2B  # "+"
_BACKSLASH: Final = 0x5C
_EQUALS: Final = 0x3D


def percent_decode(b: bytes, *, plus: bool = False) -> bytes:
    """Decode %XX (either hex case) and %uXXXX; invalid sequences stay; `plus`: "+" -> space first."""
    if plus and _PLUS in b:
        b = b.replace(b"+", b" ")  # before decoding, so that %2B stays a "+"
    if _PCT not in b:
        return b
    return _PCT_RUN.sub(_pct_run, b)


def form_decode(b: bytes) -> bytes:
    """application/x-www-form-urlencoded: each name=value pair decoded, pairs joined by "\\n".

    The newline keeps a keyword from being made up of the end of one field and the
    start of the next. Replacing "&" before decoding is the same as splitting first:
    an escape never spans an "&" (it is not a hex digit), and %26 still decodes to "&".
    """
    return percent_decode(b.replace(b"&", b"\n"), plus=True)


# --- JSON ---------------------------------------------------------------------------------

# Left to right, so "\\\\u0041" is an escaped backslash followed by the text "u0041".
_JSON_ESC: Final = re.compile(rb'\\u[0-9A-Fa-f]{4}(?:\\u[0-9A-Fa-f]{4})*|\\[nt"\\/bfr]')
_JSON_SIMPLE: Final[dict[int, bytes]] = {
    ord("n"): b"\n", ord("t"): b"\t", ord('"'): b'"', ord("\\"): b"\\",
    ord("/"): b"/", ord("b"): b"\b", ord("f"): b"\f", ord("r"): b"\r",
}


def _json_esc(m: re.Match[bytes]) -> bytes:
    esc = m.group()
    if esc[1] == 0x75:  # \u run
        return _utf16_hex_to_utf8(esc.replace(b"\\u", b""))
    return _JSON_SIMPLE[esc[1]]


def json_unescape(b: bytes) -> bytes:
    """JSON string escapes -> their characters (\\uXXXX as UTF-8); other bytes unchanged."""
    if _BACKSLASH not in b:
        return b
    return _JSON_ESC.sub(_json_esc, b)


# --- base64 and quoted-printable (RFC 2045) ---------------------------------------------

_WHITESPACE: Final = b" \t\r\n\x0b\x0c"
_B64_RUN: Final = re.compile(rb"[A-Za-z0-9+/]*")
_B64_URLSAFE: Final = bytes.maketrans(b"-_", b"+/")


def base64_decode(b: bytes) -> bytes:
    """Lenient base64: whitespace ignored, missing padding tolerated, decoding stops at garbage.

    Both alphabets are accepted (standard and URL-safe, RFC 4648 §5). "=" or any byte
    outside the alphabet ends the data; a final lone 6-bit character is dropped.
    """
    data = b.translate(_B64_URLSAFE, _WHITESPACE)
    m = _B64_RUN.match(data)
    end = m.end() if m is not None else 0
    data = data[: end - end % 4] if end % 4 == 1 else data[:end] + b"=" * ((4 - end % 4) % 4)
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:  # cannot happen with a clean, padded run; total all the same
        return b""


# "=" then transport padding then a line end: a soft line break (RFC 2045 §6.7 rule 5, and
# the padding a sender may leave, rule 3); binascii wants the "=" right at the line end.
_QP_PADDED_SOFT_BREAK: Final = re.compile(rb"=[ \t]+(?=\r?\n)")


def qp_decode(b: bytes) -> bytes:
    """Quoted-printable (RFC 2045 §6.7): =XX (either case), soft line breaks removed, invalid "=" kept."""
    if _EQUALS not in b:
        return b
    if b.find(b"= ") >= 0 or b.find(b"=\t") >= 0:
        b = _QP_PADDED_SOFT_BREAK.sub(b"=", b)
    return binascii.a2b_qp(b)


# --- RFC 2047 encoded-words -------------------------------------------------------------

# =?charset[*language]?B|Q?encoded-text?=  (RFC 2047 §2, language: RFC 2231 §5)
_ENCODED_WORD: Final = re.compile(rb"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([BbQq])\?([^?\s]*)\?=")

# Charset labels are resolved without codecs.lookup: that imports a module for an unknown
# name and caches every miss forever, and labels come from the network. A label is
# normalized the way Python's encodings package does, mapped through its alias table and
# accepted only when the module is one of _CHARSETS; anything else is read as UTF-8.
_EXTRA_LABELS: Final[dict[str, str]] = {
    "x_gbk": "gbk", "csgb2312": "gb2312", "gb_2312_80": "gb2312", "x_euc_cn": "gb2312",
    "cn_big5": "big5", "x_big5": "big5", "csbig5": "big5", "x_x_big5": "big5",
}
# Labels decoded as a superset, as mail clients and browsers do (WHATWG Encoding Standard):
# mail labelled GB2312 routinely holds GBK characters. "us-ascii" labels 8-bit text that
# is today most often UTF-8.
_SUPERSET: Final[dict[str, str]] = {
    "gb2312": "gb18030", "gbk": "gb18030", "big5": "big5hkscs", "latin_1": "cp1252",
    "ascii": "utf_8", "euc_kr": "cp949", "shift_jis": "cp932",
}
_CHARSETS: Final = frozenset((
    "utf_8", "utf_16", "utf_16_be", "utf_16_le", "utf_32", "utf_32_be", "utf_32_le",
    "gb18030", "gbk", "gb2312", "hz", "big5", "big5hkscs", "cp950",
    "latin_1", "iso8859_2", "iso8859_3", "iso8859_4", "iso8859_5", "iso8859_6", "iso8859_7",
    "iso8859_8", "iso8859_9", "iso8859_10", "iso8859_13", "iso8859_14", "iso8859_15", "iso8859_16",
    "cp1250", "cp1251", "cp1252", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257", "cp1258",
    "cp874", "koi8_r", "koi8_u", "tis_620", "shift_jis", "cp932", "euc_jp", "iso2022_jp",
    "euc_kr", "cp949", "iso2022_kr",
))
_MAX_LABEL: Final = 40  # longer than any charset name


def _codec_for(label: bytes) -> str:
    """The Python codec to decode an encoded-word labelled `label` with ("utf_8" when unknown)."""
    if len(label) > _MAX_LABEL:
        return "utf_8"
    norm = encodings.normalize_encoding(label.decode("latin-1").lower())
    norm = _EXTRA_LABELS.get(norm, norm)
    module = encodings.aliases.aliases.get(norm, norm)
    module = _SUPERSET.get(module, module)
    return module if module in _CHARSETS else "utf_8"


def _word_bytes(kind: bytes, text: bytes) -> bytes:
    if kind == b"B" or kind == b"b":
        return base64_decode(text)
    return binascii.a2b_qp(text, header=True)  # Q: "_" is a space, =XX a byte (RFC 2047 §4.2)


def _to_utf8(raw: bytes, codec: str, cap: int) -> bytes:
    try:
        text = raw.decode(codec, "replace")
    except (LookupError, ValueError):  # a codec refusing its input; fall back, stay total
        text = raw.decode("utf-8", "replace")
    return text.encode("utf-8", "replace")[:cap]


def rfc2047_decode(b: bytes) -> bytes:
    """Encoded-words (=?charset?B|Q?...?=) -> UTF-8; other bytes unchanged.

    Adjacent encoded-words separated only by whitespace are joined (RFC 2047 §6.2); the
    raw bytes of adjacent words in the same charset are joined before conversion, so a
    character a sender split across two words (common with GBK in base64) survives.
    """
    if b.find(b"=?") < 0:
        return b
    out: list[bytes] = []
    pos = 0
    pending = b""  # raw bytes of the run of adjacent words in one charset
    pending_codec = ""
    pending_cap = 0
    for m in _ENCODED_WORD.finditer(b):
        gap = b[pos : m.start()]
        codec = _codec_for(m.group(1))
        raw = _word_bytes(m.group(2), m.group(3))
        cap = DECODE_GROWTH * (m.end() - m.start())
        adjacent = pending_codec != "" and not gap.translate(None, _WHITESPACE)
        if adjacent and codec == pending_codec:
            pending += raw
            pending_cap += cap
        else:
            if pending_codec:
                out.append(_to_utf8(pending, pending_codec, pending_cap))
            if not adjacent:
                out.append(gap)
            pending, pending_codec, pending_cap = raw, codec, cap
        pos = m.end()
    if pending_codec:
        out.append(_to_utf8(pending, pending_codec, pending_cap))
    out.append(b[pos:])
    return b"".join(out)


# --- Content-Type parameters -------------------------------------------------------------

# ; name = value | "quoted \"value\""  (RFC 9110 §5.6.6; an unterminated quote runs to the end)
_PARAM: Final = re.compile(r';\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;]*)', re.S)
_QUOTED_PAIR: Final = re.compile(r"\\(.)", re.S)


def content_type_param(ctype: str | bytes, name: str) -> str | None:
    """The value of parameter `name` (case-insensitive) of a Content-Type value, unquoted; None if absent."""
    text = ctype.decode("latin-1") if isinstance(ctype, bytes) else ctype
    want = name.lower()
    for m in _PARAM.finditer(text):
        if m.group(1).lower() == want:
            value = m.group(2).strip()
            if value.startswith('"'):
                value = value[1:-1] if len(value) > 1 and value.endswith('"') else value[1:]
                value = _QUOTED_PAIR.sub(r"\1", value)
            return value
    return None


def _media_type(ctype: str) -> str:
    return ctype.split(";", 1)[0].strip().lower()


# --- multipart (RFC 2046 §5.1) -----------------------------------------------------------


class _Part:
    """One leaf part of a multipart body, its content decoded per Content-Transfer-Encoding."""

    def __init__(self, header_view: bytes, media_type: str, transfer: str, body: bytes, leaf: bool,
                 ctype: str = "", disposition: bytes = b"") -> None:
        self.header_view = header_view  # decoded header values that held encoded-words, or b""
        self.media_type = media_type  # lower-case type/subtype, "" when absent
        self.transfer = transfer  # "base64", "quoted-printable" or "" (identity)
        self.body = body
        self.leaf = leaf  # False: a nested multipart, kept for its header view; its parts follow
        # the Content-Type and Content-Disposition values as sent (a form field's name and
        # charset: agent.publish reads them through `multipart_leaves`)
        self.ctype = ctype
        self.disposition = disposition


def _next_delimiter(body: bytes, dash: bytes, start: int) -> tuple[int, int, bool]:
    """The next delimiter line at or after `start`: (end of the preceding part, start of the next, close?).

    (-1, -1, False) when there is none. The line end before "--boundary" belongs to the
    delimiter (RFC 2046 §5.1.1); CRLF or bare LF, and transport padding after it, accepted.
    """
    size = len(body)
    i = start
    while True:
        j = body.find(dash, i)
        if j < 0:
            return -1, -1, False
        i = j + 1
        if j > 0 and body[j - 1] != 0x0A:
            continue  # not at the start of a line
        k = j + len(dash)
        close = body.startswith(b"--", k)
        if close:
            k += 2
        while k < size and (body[k] == 0x20 or body[k] == 0x09):
            k += 1
        if k < size and not close:
            if body[k] == 0x0A:
                k += 1
            elif body[k] == 0x0D and (k + 1 == size or body[k + 1] == 0x0A):
                k = min(k + 2, size)
            else:
                continue  # "--boundary" followed by more text: a longer line, not a delimiter
        part_end = j
        if j > 0:
            part_end = j - 2 if j >= 2 and body[j - 2] == 0x0D else j - 1
        return max(part_end, start), k, close


_BLANK_LINE: Final = re.compile(rb"\r?\n\r?\n")
_FOLDED_LINE: Final = re.compile(rb"\r?\n[ \t]+")


def _split_part(part: bytes) -> tuple[bytes, bytes]:
    """(header block, content) of one part; a part that starts with a blank line has no headers."""
    if part.startswith(b"\r\n"):
        return b"", part[2:]
    if part.startswith(b"\n"):
        return b"", part[1:]
    m = _BLANK_LINE.search(part)
    if m is None:
        return part, b""  # truncated inside the headers
    return part[: m.start()], part[m.end() :]


def _decode_header_value(value: bytes) -> bytes:
    decoded = rfc2047_decode(value)
    if decoded.find(b"*=") >= 0:  # RFC 2231 extended parameter: filename*=utf-8''%E8%B5%8C...
        decoded = percent_decode(decoded)
    return decoded


def _parse_multipart(body: bytes, boundary: bytes, depth: int, out: list[_Part]) -> None:
    if not boundary or depth >= MAX_MULTIPART_DEPTH:
        return
    dash = b"--" + boundary
    _, start, close = _next_delimiter(body, dash, 0)  # the preamble is ignored
    while start >= 0 and not close and len(out) < MAX_PARTS:
        part_end, next_start, next_close = _next_delimiter(body, dash, start)
        # no further delimiter: a truncated capture, the part runs to the end
        part = body[start:] if part_end < 0 else body[start:part_end]
        start, close = next_start, next_close
        if not part.strip():
            continue  # an empty part (or the end of a capture cut right after a delimiter)
        headers, content = _split_part(part)
        media_type = ""
        ctype = ""
        transfer = ""
        disposition = b""
        changed: list[bytes] = []
        for line in _FOLDED_LINE.sub(b" ", headers).split(b"\n"):
            name, sep, raw_value = line.partition(b":")
            if not sep:
                continue
            value = raw_value.strip()
            key = name.strip().lower()
            if key == b"content-type":
                ctype = value.decode("latin-1")
                media_type = _media_type(ctype)
            elif key == b"content-transfer-encoding":
                transfer = value.decode("latin-1").lower()
            elif key == b"content-disposition":
                disposition = value
            decoded = _decode_header_value(value)
            if decoded != value:
                changed.append(decoded)
        if transfer == "base64":
            content = base64_decode(content)
        elif transfer == "quoted-printable":
            content = qp_decode(content)
        else:
            transfer = ""  # 7bit, 8bit, binary, or unknown: taken as is
        header_view = b"\n".join(changed)
        nested = content_type_param(ctype, "boundary") if media_type.startswith("multipart/") else None
        if nested:
            if header_view:
                out.append(_Part(header_view, media_type, "", b"", False))
            _parse_multipart(content, nested.encode("latin-1", "replace"), depth + 1, out)
        else:
            out.append(_Part(header_view, media_type, transfer, content, True, ctype, disposition))


def multipart_parts(body: bytes, boundary: bytes) -> list[bytes]:
    """The leaf parts of a multipart body, in order: each part's decoded header values (only when
    they held RFC 2047/2231 encodings, values joined by "\\n") then its content decoded per its
    Content-Transfer-Encoding. Nested multiparts are entered (``MAX_MULTIPART_DEPTH``); a missing
    close delimiter (a truncated capture) ends the last part at the end of the buffer.
    """
    parts: list[_Part] = []
    _parse_multipart(body, boundary, 0, parts)
    out: list[bytes] = []
    for part in parts:
        if part.header_view:
            out.append(part.header_view)
        if part.leaf:
            out.append(part.body)
    return out


def _boundary(content: bytes, ctype: str) -> str | None:
    """A multipart body's boundary: its Content-Type parameter, else its first line (a body
    sent without the parameter starts with its first delimiter)."""
    boundary = content_type_param(ctype, "boundary")
    if not boundary and content.startswith(b"--"):
        boundary = content[2:].split(b"\n", 1)[0].strip().decode("latin-1")
    return boundary or None


def multipart_leaves(body: bytes, content_type: str) -> list[tuple[str, bytes, bytes]]:
    """The leaf parts of a multipart body (nested ones entered, as `multipart_parts`): each its
    Content-Type and Content-Disposition values as sent ("" and b"" when absent) and its content
    decoded per its Content-Transfer-Encoding. What a form's fields are (agent.publish)."""
    boundary = _boundary(body, content_type)
    parts: list[_Part] = []
    if boundary:
        _parse_multipart(body, boundary.encode("latin-1", "replace"), 0, parts)
    return [(p.ctype, p.disposition, p.body) for p in parts if p.leaf]


def charset_codec(label: str) -> str:
    """The Python codec to decode text labelled `label` (a Content-Type charset) with, as the
    views do: a known charset or its superset (GB2312 and GBK as GB18030), else "utf_8"."""
    return _codec_for(label.encode("latin-1", "replace"))


# --- views of a message body ------------------------------------------------------------

# name=value(&name=value)*: a body sent without a Content-Type that is a form all the same
_FORM_SHAPE: Final = re.compile(rb"[\w.\-\[\]%+*]+=[^&\s]*(?:&[\w.\-\[\]%+*]+=?[^&\s]*)*\s*")


class _Views:
    """The views collected for one body, within MAX_VIEWS and MAX_VIEW_BYTES."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.out: list[tuple[bytes, str]] = []
        self.room = MAX_VIEW_BYTES

    def add(self, view: bytes, source: bytes, transform: str) -> None:
        # a view that changed nothing is already scanned (as its source, or the body)
        if view == source or view == self.body or not view:
            return
        if len(self.out) >= MAX_VIEWS or self.room <= 0:
            return
        view = view[: self.room]
        for seen, _ in self.out:
            if seen == view:
                return
        self.room -= len(view)
        self.out.append((view, transform))


def _content_views(views: _Views, data: bytes, media_type: str, form_ok: bool) -> None:
    """The url and json views of one piece of content of type `media_type` ("" = unknown)."""
    # only "&" -> "\n" would change: the form view would hold nothing the body does not
    escaped = _PCT in data or _PLUS in data
    if escaped and (
        media_type == "application/x-www-form-urlencoded"
        or (form_ok and media_type == "" and _FORM_SHAPE.fullmatch(data) is not None)
    ):
        form = form_decode(data)
        views.add(form, data, "url")
        if form.find(b"\\u") >= 0:  # a JSON value sent in a form field
            views.add(json_unescape(form), form, "json")
    if "json" in media_type or data.find(b"\\u") >= 0:
        views.add(json_unescape(data), data, "json")


# Media types whose bodies body_views may decode further (besides multipart/* and *json*)
_VIEW_MEDIA: Final = frozenset({"", "application/x-www-form-urlencoded"})


def views_possible(content_type: str | None, transfer_encoding: str | None = None) -> bool:
    """Whether `body_views` can find a view in a body of this type: a MIME transfer
    encoding, multipart, JSON, a form, or an untyped body that may be a form. A body of
    another type (an HTML page, a script, a style sheet) need not be kept for views."""
    if (transfer_encoding or "").strip().lower() in ("base64", "quoted-printable"):
        return True
    media = _media_type(content_type or "")
    return media in _VIEW_MEDIA or "json" in media or media.startswith("multipart/")


def body_views(
    body: bytes, content_type: str | None, transfer_encoding: str | None = None
) -> list[tuple[bytes, str]]:
    """Decoded views of a message body to scan in addition to the body itself (as decoded,
    not case-folded: the matchers ignore ASCII case themselves, agent.filter.patterns).

    Each is (view, transform): "base64"/"quoted-printable" (the body's
    `transfer_encoding`, the mail case, or a multipart part's), "multipart" (a part's
    decoded header values), "url" (form_decode of a form body), "json" (json_unescape
    when the type says json or the content holds a \\u escape). Views of the decoded
    content follow its transfer-decoded view. A view equal to what it was decoded from
    is left out; at most MAX_VIEWS views, MAX_VIEW_BYTES bytes together.
    """
    views = _Views(body)
    ctype = content_type or ""
    media_type = _media_type(ctype)
    transfer = (transfer_encoding or "").strip().lower()
    content = body
    if transfer == "base64":
        content = base64_decode(body)
        views.add(content, body, "base64")
    elif transfer == "quoted-printable":
        content = qp_decode(body)
        views.add(content, body, "quoted-printable")
    if media_type.startswith("multipart/"):
        boundary = _boundary(content, ctype)
        parts: list[_Part] = []
        if boundary:
            _parse_multipart(content, boundary.encode("latin-1", "replace"), 0, parts)
        for part in parts:
            views.add(part.header_view, b"", "multipart")
            if part.transfer:
                views.add(part.body, b"", part.transfer)
            # a form-data field without a type is text typed by the user, not a form body
            _content_views(views, part.body, part.media_type, False)
    else:
        _content_views(views, content, media_type, True)
    return views.out
