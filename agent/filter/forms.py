"""A keyword as the byte patterns it takes on the wire (DESIGN.md data path, step 7).

What: ``keyword_forms(text)`` turns one rule keyword into the byte strings to
search for, each named with the SCHEMA ``alert.encoding`` it stands for:

* ``utf-8``    the UTF-8 bytes (web pages, JSON, modern mail);
* ``gbk``      the GBK bytes, when GBK can encode the text (older Chinese sites,
               QQ-era clients, mail in GB2312/GBK);
* ``gb18030``  the GB18030 bytes, only when they differ from the GBK bytes or
               GBK cannot encode the text (characters outside GBK such as
               U+20BB7 𠮷 or U+20AC €, which GB18030 encodes as 4 or 2 bytes);
* ``url``      the UTF-8 bytes percent-encoded (query strings, form bodies,
               cookies, referers), only for keywords with non-ASCII characters:
               an ASCII-only keyword appears literally in a URL;
* ``url-gbk``  the GBK bytes percent-encoded (forms submitted from GBK pages),
               when GBK can encode the text and it is not ASCII-only.

Why these and no more: the filter scans every haystack once, ASCII-case-folded
(``normalize.fold``), with one automaton holding every form of every keyword.
So:

* Every pattern is ASCII-lower-cased (``bytes.lower()``: only bytes A-Z change),
  the same fold the haystack gets. A keyword "VPN翻墙" therefore also matches
  "vpn翻墙" and "Vpn翻墙", as a case-insensitive filter should.
* Percent-encoding is written with lower-case hex only. A client may send
  ``%E8%B5%8C`` or ``%e8%b5%8c``; folding the haystack turns both into
  ``%e8%b5%8c``, so the upper-case-hex pattern could never match anything the
  lower-case one does not: it would only cost automaton size. One pattern per
  spelling is the minimal correct set for a folded haystack.
* Encoders disagree on which ASCII bytes they escape; for a keyword of CJK
  characters, letters and digits they all agree, so usually one ``url`` and one
  ``url-gbk`` pattern result. When they differ (a space, punctuation, or a GBK
  trail byte such as 0x5C ``\\`` or 0x7C ``|``), up to three spellings per
  encoding are kept (``_URL_STYLES``): the WHATWG URL query set (what a browser
  sends when the text is typed into the address bar), RFC 3986 unreserved
  characters kept (``urllib.parse.quote(safe="")``, ``encodeURIComponent``-like)
  and the WHATWG application/x-www-form-urlencoded serializer (``+`` for space;
  what a browser sends for a form). Duplicates are removed, the first form (in
  the order above) keeping its encoding name.
* UTF-16 and JSON ``\\uXXXX`` spellings are not forms: the filter decodes those
  views of a body (``normalize.body_views``) and matches the UTF-8 form there.

Limits and known consequences:

* ASCII folding and GBK: a GBK trail byte may be an ASCII letter (0x41-0x5A; 3082
  of the 21791 GBK characters). Folding maps it to the byte 0x20 higher, which
  is, for 3067 of them, the trail byte of another character in the same row. A
  ``gbk``/``gb18030``/``url-gbk`` pattern holding such a character also matches
  the text with that other character in its place: a rare false positive, never
  a missed match. The alert's decoded snippet shows the operator which it was.
* Byte matching does not know GBK character boundaries: the GBK bytes of a
  keyword can straddle two characters of other GBK text ("露牟─" is C2 B6 C4 B2
  A9 A4 and holds B6 C4 B2 A9, the bytes of 赌博). UTF-8 cannot misalign so (its
  lead and continuation bytes differ); GBK, a double-byte code, can.
* An empty keyword has no forms (an empty pattern would match everywhere); a
  keyword UTF-8 cannot encode (a lone surrogate) has only the forms that can.
* At most ``MAX_FORMS`` patterns per keyword.
"""

from __future__ import annotations

from typing import Final

# utf-8, gbk, gb18030 + three URL spellings of each of two encodings
MAX_FORMS: Final = 9

# WHATWG URL "query percent-encode set" for special schemes (http, https): C0
# controls, space, " # < > ' and everything above 0x7E. What a browser escapes when a
# user types the text into the address bar (the query part).
_QUERY_ESCAPED: Final = frozenset(
    list(range(0x00, 0x21)) + [0x22, 0x23, 0x27, 0x3C, 0x3E] + list(range(0x7F, 0x100))
)
# RFC 3986 unreserved characters: kept by urllib.parse.quote(safe="") and most client libraries.
_UNRESERVED: Final = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
# WHATWG application/x-www-form-urlencoded serializer: these are kept, space becomes "+".
_FORM_KEPT: Final = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789*-._")


def _build_table(style: int) -> list[bytes]:
    """Byte -> its spelling in one URL style (0 query, 1 RFC 3986 component, 2 form)."""
    table: list[bytes] = []
    for byte in range(256):
        if style == 0:
            escaped = byte in _QUERY_ESCAPED
        elif style == 1:
            escaped = byte not in _UNRESERVED
        else:
            escaped = byte not in _FORM_KEPT
        if style == 2 and byte == 0x20:
            table.append(b"+")
        elif escaped:
            # lower-case hex: the only spelling a folded haystack contains (module docstring)
            table.append(b"%%%02x" % byte)
        else:
            table.append(bytes((byte,)))
    return table


_URL_STYLES: Final = (_build_table(0), _build_table(1), _build_table(2))


def _encode(text: str, encoding: str) -> bytes | None:
    try:
        return text.encode(encoding)
    except UnicodeEncodeError:
        return None


def _percent_spellings(raw: bytes) -> list[bytes]:
    """`raw` percent-encoded in each URL style, in style order, duplicates kept (the caller drops them)."""
    out: list[bytes] = []
    for table in _URL_STYLES:
        out.append(b"".join([table[byte] for byte in raw]))
    return out


def _add(out: list[tuple[bytes, str]], seen: set[bytes], pattern: bytes, encoding: str) -> None:
    folded = pattern.lower()  # the haystack is ASCII-case-folded the same way
    if folded and folded not in seen:
        seen.add(folded)
        out.append((folded, encoding))


def keyword_forms(text: str) -> list[tuple[bytes, str]]:
    """The byte patterns of `text` to search a folded haystack for, with their `alert.encoding` names.

    Deterministic; the first form wins when two encodings give the same bytes (an ASCII
    keyword has only its ``utf-8`` form).
    """
    out: list[tuple[bytes, str]] = []
    seen: set[bytes] = set()
    if not text:
        return out
    utf8 = _encode(text, "utf-8")
    gbk = _encode(text, "gbk")
    gb18030 = _encode(text, "gb18030")
    if utf8 is not None:
        _add(out, seen, utf8, "utf-8")
    if gbk is not None:
        _add(out, seen, gbk, "gbk")
    if gb18030 is not None and gb18030 != gbk:
        _add(out, seen, gb18030, "gb18030")
    if not text.isascii():
        if utf8 is not None:
            for spelling in _percent_spellings(utf8):
                _add(out, seen, spelling, "url")
        if gbk is not None:
            for spelling in _percent_spellings(gbk):
                _add(out, seen, spelling, "url-gbk")
    return out
