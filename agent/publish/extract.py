"""What a request to a publishing host carried: its text fields, and the `publish` record.

What: ``text_fields(body, content_type)`` turns a request body (already dechunked and
decompressed by the HTTP decoder) into its text fields, in order, and the charset they were
decoded with; ``Publisher`` is one pipeline's publishing: the hosts (``agent.publish.hosts``),
the body bound, the counters, and ``record(...)``, the `publish` record (SCHEMA-additions 1.6)
the HTTP decoder adds for a request to a declared host.

Fields, by the body's media type:

- ``application/x-www-form-urlencoded``: each ``name=value`` pair, percent-decoded with ``+``
  as a space (``agent.filter.normalize.percent_decode``: the filter's own decoding);
- ``multipart/form-data`` (any ``multipart/*``): each part without a file name whose type is
  text (or absent), named by its Content-Disposition ``name``; file parts are not text a
  user typed and are left out (the record's ``body_len`` still counts them);
- JSON (a type naming ``json``): each string member, named by its dotted path from the root
  (``post.title``, ``tags.0``; the root itself, a bare string, has the empty path); numbers
  and booleans are not text. A body that does not parse (cut at the bound) is taken as text;
- other text (``text/*``, XML): the whole body as one field named ``body``;
- anything else (media, archives, octet streams): no field, the record tells the size.

Charset: the Content-Type's ``charset`` (a multipart part's own first), read as the filter
reads labels (``normalize.charset_codec``: GB2312 and GBK as GB18030); without one, UTF-8 when
every field's bytes are valid UTF-8, else GB18030 (what a GBK page's form sends). The record
names it (``utf-8``, ``gb18030``, ...).

Text: one ``name=value`` line per field. So that a line is one field whatever the user typed,
a backslash is written ``\\\\``, a line feed ``\\n``, a carriage return ``\\r``, a NUL ``\\x00``,
and an ``=`` in a name ``\\=`` (split a line at its first unescaped ``=``). ``text_line`` is
that escaping; ``parse_text`` undoes it.

Bounds (named, counted): the body is kept up to ``Publisher.max_body`` decoded bytes
(``MAX_BODY``, 64 KiB, by default; the decoder keeps that prefix, and ``body_len`` counts the
whole); at most ``MAX_LIST_LEN`` fields are listed (the wire's list bound), a name at most
``MAX_LIST_ITEM_LEN`` characters; fields past the list bound are dropped from both
``fields`` and ``text`` and counted in ``fields_dropped``; ``text`` is cut at
``MAX_STRING_LEN`` characters, ``text_len`` tells how long it was.

Totality: nothing here raises on any body (the HTTP decoder may raise only DecodeError).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Final

from agent.publish.hosts import HostMatcher
from wire.limits import MAX_LIST_ITEM_LEN, MAX_LIST_LEN, MAX_STRING_LEN
from wire.records import PublishFields

#: Decoded body bytes kept per request to a publishing host: a long forum post (32,000 Chinese
#: characters of GB18030, or 21,000 of UTF-8); a bigger body is counted, its text taken from
#: this prefix. The HTTP decoder exempts this prefix from the inspection depth when it can.
MAX_BODY: Final = 64 * 1024
#: The bounds ``[publishing] max_body`` may take.
MIN_BODY_SETTING: Final = 1024
MAX_BODY_SETTING: Final = 1024 * 1024
BODY_FIELD: Final = "body"  # the one field of a text body that is no form and no JSON
#: Host fields already judged, kept (``Publisher.judged``): a gateway sees the same few hundred
#: names over and over; bounded, as the names are the senders' to choose (past it, each is judged)
MAX_JUDGED: Final = 4096

_TEXT_TYPES: Final = frozenset({"application/xml", "application/javascript",
                                "application/x-www-form-urlencoded"})
_ESCAPE_VALUE: Final = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\x00": "\\x00"})
_ESCAPE_NAME: Final = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\x00": "\\x00", "=": "\\="})
_UNESCAPE: Final = {"\\": "\\", "n": "\n", "r": "\r", "=": "="}

Fields = list[tuple[str, str]]


def _media(ctype: str) -> str:
    return ctype.split(";", 1)[0].strip().lower()


def _is_text(media: str) -> bool:
    return (media.startswith("text/") or media in _TEXT_TYPES or media.endswith("+xml")
            or media.endswith("+json") or "json" in media)


def _codec_name(codec: str) -> str:
    """A Python codec's name as the record says it: "utf_8" -> "utf-8"."""
    return codec.replace("_", "-")


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _clean(text: str) -> str:
    """Text any record may hold: no lone surrogate (a JSON "\\ud800" makes one)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _decode(raw: bytes, codec: str) -> str:
    try:
        return raw.decode(codec, "replace")
    except (LookupError, ValueError):  # a codec refusing its input: stay total
        return raw.decode("utf-8", "replace")


def _guess(raws: Iterable[bytes]) -> str:
    """UTF-8 when every one of `raws` is valid UTF-8, else GB18030."""
    return "utf_8" if all(_utf8(r) for r in raws) else "gb18030"


def _form(body: bytes, codec: str | None) -> tuple[Fields, str | None]:
    from agent.filter.normalize import percent_decode  # (on use: see text_fields)

    pairs: list[tuple[bytes, bytes]] = []
    for seg in body.split(b"&"):
        if not seg:
            continue
        name, _, value = seg.partition(b"=")
        pairs.append((percent_decode(name, plus=True), percent_decode(value, plus=True)))
    if not pairs:
        return [], None
    codec = codec or _guess(x for p in pairs for x in p)
    return [(_decode(n, codec), _decode(v, codec)) for n, v in pairs], codec


def _multipart(body: bytes, ctype: str, codec: str | None) -> tuple[Fields, str | None]:
    from agent.filter.normalize import charset_codec, content_type_param, multipart_leaves

    texts: list[tuple[bytes, bytes, str | None]] = []  # (name, value, the part's own codec)
    for part_type, disposition, content in multipart_leaves(body, ctype):
        disp = disposition.decode("latin-1")
        if any(content_type_param(disp, k) is not None for k in ("filename", "filename*")):
            continue  # a file: not text a user typed
        media = _media(part_type)
        if media and not _is_text(media):
            continue
        name = content_type_param(disp, "name")
        label = content_type_param(part_type, "charset") if part_type else None
        texts.append(((name or "").encode("latin-1", "replace"), content,
                      charset_codec(label) if label else None))
    if not texts:
        return [], None
    codec = codec or _guess(x for n, v, own in texts for x in ((n,) if own else (n, v)))
    return [(_decode(n, codec), _decode(v, own or codec)) for n, v, own in texts], codec


def _json_strings(doc: Any) -> Fields:
    """The string members of a parsed JSON document with their dotted paths, in document order."""
    out: Fields = []
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            out.append((path, node))
        elif isinstance(node, dict):
            # reversed onto the stack, so that members come off it in document order
            stack.extend((f"{path}.{k}" if path else str(k), v) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend((f"{path}.{i}" if path else str(i), v) for i, v in reversed(list(enumerate(node))))
    return out


def _json(body: bytes, codec: str | None) -> tuple[Fields, str | None]:
    codec = codec or _guess((body,))
    text = _decode(body, codec)
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, cut at the bound, or nested past the stack
        return [(BODY_FIELD, text)], codec
    return [(_clean(n), _clean(v)) for n, v in _json_strings(doc)], codec


def text_fields(body: bytes, content_type: str | None) -> tuple[Fields, str | None]:
    """The text fields of a decoded request body of type `content_type` (the header's value as
    sent), in order, and the codec they were decoded with (None when there are none)."""
    if not body:
        return [], None
    ctype = content_type or ""
    media = _media(ctype)
    # the keyword filter's decoders, imported when a post is first read: the HTTP decoder imports
    # this module at start, and an agent without publishing hosts (or rules) need not pay for
    # importing them (3 ms, measured)
    from agent.filter.normalize import charset_codec, content_type_param

    label = content_type_param(ctype, "charset")
    codec = charset_codec(label) if label else None
    if media == "application/x-www-form-urlencoded":
        return _form(body, codec)
    if media.startswith("multipart/"):
        return _multipart(body, ctype, codec)
    if "json" in media:
        return _json(body, codec)
    if media == "" or _is_text(media):
        codec = codec or _guess((body,))
        return [(BODY_FIELD, _decode(body, codec))], codec
    return [], None


def text_line(name: str, value: str) -> str:
    """One field as a line of a record's ``text`` (module doc: the escaping)."""
    return f"{name.translate(_ESCAPE_NAME)}={value.translate(_ESCAPE_VALUE)}"


def parse_text(text: str) -> list[tuple[str, str]]:
    """A record's ``text`` back into (name, value) pairs (the inverse of ``text_line``; a line cut
    by the string bound is returned as cut)."""
    out: list[tuple[str, str]] = []
    for line in text.split("\n"):
        name: list[str] = []
        value: list[str] = []
        cur = name
        i = 0
        while i < len(line):
            ch = line[i]
            if ch == "\\" and i + 1 < len(line):
                if line.startswith("x00", i + 1):
                    cur.append("\x00")
                    i += 4
                    continue
                cur.append(_UNESCAPE.get(line[i + 1], line[i + 1]))
                i += 2
                continue
            if ch == "=" and cur is name:
                cur = value
            else:
                cur.append(ch)
            i += 1
        out.append(("".join(name), "".join(value)))
    return out


COUNTERS: Final = ("records", "bodies_cut", "fields", "fields_dropped", "texts_cut", "undecoded")


class Publisher:
    """One pipeline's publishing (module doc), shared by its HTTP decoders: which requests make
    a `publish` record (`wants`), how much of their body is kept (`max_body`), the record."""

    def __init__(self, hosts: Iterable[str], max_body: int = MAX_BODY) -> None:
        self.hosts = HostMatcher(hosts)
        if not MIN_BODY_SETTING <= max_body <= MAX_BODY_SETTING:
            raise ValueError(f"max_body must be {MIN_BODY_SETTING}..{MAX_BODY_SETTING} bytes")
        self.max_body = max_body
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        # Host field -> whether it is a publishing host's: the HTTP decoder looks a request's
        # Host up here itself (one dict lookup from compiled code, where matching it costs a
        # few thousand instructions) and asks `wants` only for a name not judged yet
        self.judged: dict[str, bool] = {}

    def wants(self, host: str | None) -> bool:
        """Whether a request with this Host goes to a publishing host."""
        if host is None:
            return False
        verdict = self.judged.get(host)
        if verdict is None:
            verdict = self.hosts.matches(host)
            if len(self.judged) < MAX_JUDGED:
                self.judged[host] = verdict
        return verdict

    def record(self, ts: float, depth: int, method: str | None, host: str | None, uri: str | None,
               media_type: str | None, content_type: str | None, body: bytes, body_len: int,
               decoded: bool = True) -> tuple[PublishFields, bytes]:
        """The `publish` record (without its flow id) of a request whose kept body prefix is
        `body` (`body_len` decoded bytes in all; `decoded`: False when a content coding was not
        undone, so the bytes are no text), and its text as UTF-8 for the keyword filter."""
        c = self.counters
        c["records"] += 1
        if body_len > len(body):
            c["bodies_cut"] += 1
        if decoded:
            fields, codec = text_fields(body, content_type)
        else:
            c["undecoded"] += 1
            fields, codec = [], None
        dropped = max(0, len(fields) - MAX_LIST_LEN)
        fields = fields[:MAX_LIST_LEN]
        c["fields"] += len(fields)
        c["fields_dropped"] += dropped
        full = "\n".join(text_line(n, v) for n, v in fields)
        text = full if len(full) <= MAX_STRING_LEN else full[:MAX_STRING_LEN]
        if len(full) > MAX_STRING_LEN:
            c["texts_cut"] += 1
        rec: PublishFields = {
            "type": "publish", "ts": ts, "trans_depth": depth, "method": method, "host": host, "uri": uri,
            "content_type": media_type, "charset": _codec_name(codec) if codec else None,
            "body_len": body_len,
            "fields": [_clean(n[:MAX_LIST_ITEM_LEN]).replace("\x00", "\\x00") for n, _ in fields],
            "text": text if fields else None, "text_len": len(full), "fields_dropped": dropped,
            "account": None,
        }
        return rec, full.encode("utf-8", "replace") if fields else b""


# The process's publisher. The inspector (agent.flows) builds each connection's decoder from the
# protocol registry with the body budget only, so the pipeline's publisher cannot travel with it:
# the pipeline installs it here when it is made (one pipeline per process: a capture worker, a
# replay, the inline agent; every pipeline installs its own, None included, so a later one
# replaces an earlier one's), and an HTTP decoder made without one takes this one.
_installed: list[Publisher | None] = [None]


def install(publisher: Publisher | None) -> None:
    """Make `publisher` the one HTTP decoders made from now on in this process take (None: none)."""
    _installed[0] = publisher


def installed() -> Publisher | None:
    """The publisher `install` set, or None."""
    return _installed[0]
