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

Why these and no more: every haystack is matched once against every form of every
keyword, ASCII-case-insensitively where a byte is an ASCII character (see below). So:

* A keyword "VPN翻墙" also matches "vpn翻墙" and "Vpn翻墙", as a case-insensitive filter
  should. Patterns are written ASCII-lower-cased where their bytes are case-insensitive.
* Percent-encoding is written with lower-case hex only: a client may send ``%E8%B5%8C``
  or ``%e8%b5%8c``, and hex digits are case-insensitive like every ASCII character, so
  one pattern finds both.
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

Case, and GBK: case-insensitivity applies to ASCII letters only where they are
characters. A GBK trail byte may be an ASCII letter (0x41-0x5A, 0x61-0x7A; 3082 of the
21791 GBK characters): 丅 is ``81 42``, 乥 is ``81 62``, so folding the bytes would make
the keyword 丅丅测试 match the different text 乥乥测试. Each pattern therefore comes with
its *exact* positions: the offsets of letter bytes that belong to a multi-byte GBK or
GB18030 character (written as sent), or to such a character's literal bytes in a
``url-gbk`` spelling (``%81B`` is 丅, ``%81b`` is 乥). A matcher finds candidates
ASCII-case-insensitively and keeps those whose exact positions are equal byte for byte
(``agent.filter.patterns``). UTF-8 forms have no exact positions: every byte of a
multi-byte UTF-8 character is >= 0x80 and no letter.

Limits and known consequences:

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
            # lower-case hex: patterns are lower case where matching ignores case
            table.append(b"%%%02x" % byte)
        else:
            table.append(bytes((byte,)))
    return table


_URL_STYLES: Final = (_build_table(0), _build_table(1), _build_table(2))


def _spellings(chars: list[tuple[bytes, bool]],
               tables: tuple[list[bytes], ...]) -> list[tuple[bytes, tuple[int, ...]]]:
    """`chars` (each character's bytes, and whether it is one ASCII character) spelled with each
    table (a byte's spelling), with the exact positions of the result: a letter byte that is
    part of a multi-byte character, written literally."""
    out: list[tuple[bytes, tuple[int, ...]]] = []
    for table in tables:
        pattern = bytearray()
        exact: list[int] = []
        for raw, is_ascii in chars:
            for byte in raw:
                spelled = table[byte]
                if len(spelled) == 1 and not is_ascii and spelled.isalpha():
                    exact.append(len(pattern))
                    pattern += spelled
                else:
                    # an ASCII character, or hex digits of a %XX escape: case-insensitive
                    pattern += spelled.lower()
        out.append((bytes(pattern), tuple(exact)))
    return out


# every byte as itself: the "spelling" of the raw (not percent-encoded) forms
_RAW_TABLES: Final = ([bytes((b,)) for b in range(256)],)


def _chars(text: str, encoding: str) -> list[tuple[bytes, bool]] | None:
    """Each character of `text` encoded, with whether it is ASCII; None when one cannot be."""
    out: list[tuple[bytes, bool]] = []
    for ch in text:
        try:
            raw = ch.encode(encoding)
        except UnicodeEncodeError:
            return None
        out.append((raw, ch.isascii()))
    return out


def _add(out: list[tuple[bytes, str, tuple[int, ...]]], seen: set[tuple[bytes, tuple[int, ...]]],
         pattern: bytes, exact: tuple[int, ...], encoding: str) -> None:
    if pattern and (pattern, exact) not in seen:
        seen.add((pattern, exact))
        out.append((pattern, encoding, exact))


def _encoded(text: str, encoding: str) -> bytes | None:
    try:
        return text.encode(encoding)
    except UnicodeEncodeError:
        return None


def _raw_form(text: str, encoding: str) -> tuple[bytes, tuple[int, ...]] | None:
    """`text` in `encoding` as a pattern with its exact positions; None when it cannot be encoded.
    The per-character walk is needed only for a multi-byte charset whose bytes hold letters."""
    raw = _encoded(text, encoding)
    if raw is None:
        return None
    if raw.lower() == raw.upper():  # no ASCII letter at all: nothing to fold, nothing exact
        return raw, ()
    if encoding == "utf-8" or text.isascii():  # every letter byte is an ASCII character
        return raw.lower(), ()
    chars = _chars(text, encoding)
    assert chars is not None  # the whole text encoded
    return _spellings(chars, _RAW_TABLES)[0]


def _url_forms(text: str, encoding: str) -> list[tuple[bytes, tuple[int, ...]]]:
    """The percent-encoded spellings of `text` in `encoding` (none when it cannot be encoded)."""
    raw = _encoded(text, encoding)
    if raw is None:
        return []
    if min(raw) >= 0x80:  # every URL style escapes every byte alike: one spelling, no letters kept
        return [(b"%" + raw.hex("%").encode("ascii"), ())]
    chars = _chars(text, encoding)
    assert chars is not None
    return _spellings(chars, _URL_STYLES)


def keyword_patterns(text: str) -> list[tuple[bytes, str, tuple[int, ...]]]:
    """The byte patterns of `text` with their `alert.encoding` names and exact positions.

    A pattern is ASCII-lower-cased except at its exact positions (module docstring), which
    are the offsets of letter bytes that must be matched as written. Deterministic; the
    first form wins when two encodings give the same pattern (an ASCII keyword has only
    its ``utf-8`` form). Fast paths cover the usual keyword (no letter among the bytes of
    its multi-byte characters); ``tests/agent/filter/test_filter_forms.py`` holds them to
    the character-by-character definition.
    """
    out: list[tuple[bytes, str, tuple[int, ...]]] = []
    seen: set[tuple[bytes, tuple[int, ...]]] = set()
    if not text:
        return out
    utf8 = _raw_form(text, "utf-8")
    if utf8 is not None:
        _add(out, seen, utf8[0], utf8[1], "utf-8")
    if text.isascii():
        return out  # every other form is the same bytes
    gbk = _raw_form(text, "gbk")
    if gbk is not None:
        _add(out, seen, gbk[0], gbk[1], "gbk")
    gb18030 = _raw_form(text, "gb18030")
    if gb18030 is not None and gb18030 != gbk:
        _add(out, seen, gb18030[0], gb18030[1], "gb18030")
    for pattern, exact in _url_forms(text, "utf-8"):
        _add(out, seen, pattern, exact, "url")
    for pattern, exact in _url_forms(text, "gbk"):
        _add(out, seen, pattern, exact, "url-gbk")
    return out


def keyword_patterns_by_character(text: str) -> list[tuple[bytes, str, tuple[int, ...]]]:
    """`keyword_patterns` the slow way, character by character for every form: its definition."""
    out: list[tuple[bytes, str, tuple[int, ...]]] = []
    seen: set[tuple[bytes, tuple[int, ...]]] = set()
    if not text:
        return out
    utf8 = _chars(text, "utf-8")
    gbk = _chars(text, "gbk")
    gb18030 = _chars(text, "gb18030")
    forms: list[tuple[list[tuple[bytes, bool]] | None, tuple[list[bytes], ...], str]] = [
        (utf8, _RAW_TABLES, "utf-8"), (gbk, _RAW_TABLES, "gbk")]
    if gb18030 != gbk:
        forms.append((gb18030, _RAW_TABLES, "gb18030"))
    if not text.isascii():
        forms += [(utf8, _URL_STYLES, "url"), (gbk, _URL_STYLES, "url-gbk")]
    for chars, tables, encoding in forms:
        if chars is not None:
            for pattern, exact in _spellings(chars, tables):
                _add(out, seen, pattern, exact, encoding)
    return out


def keyword_forms(text: str) -> list[tuple[bytes, str]]:
    """`keyword_patterns` without the exact positions: (pattern, `alert.encoding`) pairs."""
    return [(pattern, encoding) for pattern, encoding, _ in keyword_patterns(text)]
