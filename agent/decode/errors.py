"""The one exception a decoder may raise on bad peer input.

DESIGN.md, standard 4: only `DecodeError` escapes a decoder. The pipeline turns
it into a `weird` record named by `name` and keeps going.
"""

from __future__ import annotations


class DecodeError(Exception):
    """Malformed input. `name` is the Zeek-style weird name, `detail` free text."""

    def __init__(self, name: str, detail: str = "") -> None:
        super().__init__(f"{name}: {detail}" if detail else name)
        self.name = name
        self.detail = detail
