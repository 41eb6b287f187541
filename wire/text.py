"""Text from wire bytes, the way SCHEMA.md says strings decoded from the wire are kept.

"When they are not valid UTF-8 they are decoded as GB18030 if that succeeds, else with
``backslashreplace``. Never drop a record because a field is undecodable." Every decoder
that turns peer bytes into a record's string uses this one function, so the convention
cannot drift between protocols.

A NUL byte decodes as UTF-8 to U+0000, which no record string may hold (``wire.validate``:
a C-string consumer of the stored text would cut it there); it is written ``\\x00``, the
form ``backslashreplace`` gives an undecodable byte, so the record is kept and says what
was sent.
"""

from __future__ import annotations


def wire_text(raw: bytes) -> str:
    """UTF-8, else GB18030, else UTF-8 with backslash escapes for the bytes that are neither;
    NUL as ``\\x00``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = raw.decode("gb18030")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "backslashreplace")
    return without_nul(text)


def escaped_text(raw: bytes) -> str:
    """UTF-8 with backslash escapes for the bytes that are not (Zeek's way with protocol fields:
    a URI, a command argument, a server name), NUL as ``\\x00``."""
    return without_nul(raw.decode("utf-8", "backslashreplace"))


def without_nul(text: str) -> str:
    """Text already decoded (a MIME header in its charset), with NUL written ``\\x00``."""
    # (the str is searched, not the bytes it came from: compiled, bytes.find(0) is a generic
    # call costing ~2,000 instructions, the str's `in` ~100)
    return text.replace("\x00", "\\x00") if "\x00" in text else text
