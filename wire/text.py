"""Text from wire bytes, the way SCHEMA.md says strings decoded from the wire are kept.

"When they are not valid UTF-8 they are decoded as GB18030 if that succeeds, else with
``backslashreplace``. Never drop a record because a field is undecodable." Every decoder
that turns peer bytes into a record's string uses this one function, so the convention
cannot drift between protocols.
"""

from __future__ import annotations


def wire_text(raw: bytes) -> str:
    """UTF-8, else GB18030, else UTF-8 with backslash escapes for the bytes that are neither."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("gb18030")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace")
