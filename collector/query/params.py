"""Query-string parameters read strictly: what is not exactly a value of its kind is refused.

``int_param`` takes ASCII digits only: ``port=53418.9`` or ``limit=1.9`` is a 400, not port
53418 or a page of 1 (``int(float(...))`` truncated them), and neither ``1_000``, ``+5``,
`` 5`` nor other scripts' digits (which ``int()`` accepts) pass. ``number_param`` takes a
plain decimal (``1719820800.25``, ``1e9``), finite and within its range (``float()`` would
also take ``nan``, ``inf`` and ``1_0``). ``ip_param`` canonicalises an address. Each raises
``BadQuery`` naming the parameter; handlers answer it as a 400.
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Final


class BadQuery(ValueError):
    pass


_INT: Final = re.compile(r"[0-9]{1,18}")
_NUMBER: Final = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")


def _shown(value: str) -> str:
    return repr(value[:60])


def ip_param(value: str | None, name: str) -> str | None:
    """The canonical address, None when absent or empty."""
    if value is None or value == "":
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise BadQuery(f"{name}: not an IP address: {_shown(value)}") from None


def number_param(value: str | None, name: str, *, lo: float, hi: float) -> float | None:
    """A finite decimal number in ``lo..hi``, None when absent or empty."""
    if value is None or value == "":
        return None
    if not _NUMBER.fullmatch(value):
        raise BadQuery(f"{name}: not a number: {_shown(value)}")
    x = float(value)
    if not math.isfinite(x) or not lo <= x <= hi:
        raise BadQuery(f"{name}: out of range {lo:g}..{hi:g}")
    return x


def int_param(value: str | None, name: str, *, lo: int, hi: int) -> int | None:
    """A whole number in ``lo..hi`` written in ASCII digits, None when absent or empty."""
    if value is None or value == "":
        return None
    if not _INT.fullmatch(value):
        raise BadQuery(f"{name}: not a whole number: {_shown(value)}")
    x = int(value)
    if not lo <= x <= hi:
        raise BadQuery(f"{name}: out of range {lo}..{hi}")
    return x
