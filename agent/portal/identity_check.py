"""What a guest types, checked: mainland mobile numbers, identity documents, names.

- Mainland mobile numbers: 11 digits starting 13–19 (the MIIT numbering plan's mobile
  blocks), with an optional ``+86``/``86``/``0086`` prefix and spaces or dashes typed between
  digits; returned as the 11 digits.
- Resident identity card (居民身份证, GB 11643-1999): 18 characters, 17 digits and a check
  character computed by ISO 7064 MOD 11-2 (weights 2^(17-i) mod 11; remainder → ``10X98765432``),
  digits 7–14 a real date of birth. A lower-case ``x`` is accepted and returned upper-case.
- Passport: 5–20 letters and digits (Chinese passports are a letter and 8 digits; foreign
  ones vary), returned upper-case. Other documents (Mainland Travel Permits, residence
  permits...): 4–40 characters, letters, digits, ``-`` and ``/``.
- Names: 1–50 characters, no control characters (Chinese, Latin with spaces, ``·``).

Each check returns the normalised value or raises ``InputError`` whose ``key`` names the
message the portal shows (``agent.portal.texts``), never a stack trace.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from typing import Final

#: ID types a desk may choose (the registration record's ``id_type``): value -> label key.
ID_TYPES: Final = ("resident", "passport", "other")

_WEIGHTS: Final = tuple(pow(2, 17 - i, 11) for i in range(17))
_CHECK: Final = "10X98765432"
_MOBILE = re.compile(r"(?:\+?86|0086)?(1[3-9][0-9]{9})\Z")
_PASSPORT = re.compile(r"[A-Z0-9]{5,20}\Z")
_OTHER_DOC = re.compile(r"[A-Z0-9/-]{4,40}\Z")


class InputError(ValueError):
    """Input the portal refuses; ``key`` names the message shown to the guest."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def mobile_number(text: str) -> str:
    """The 11 digits of a mainland mobile number, else InputError("bad_phone")."""
    m = _MOBILE.match(re.sub(r"[\s-]", "", text or ""))
    if m is None:
        raise InputError("bad_phone")
    return m.group(1)


def resident_id_check(first17: str) -> str:
    """The GB 11643 check character of the first 17 digits."""
    return _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def resident_id(text: str) -> str:
    """An 18-character resident ID number with a right check character and date of birth."""
    s = (text or "").strip().upper()
    if len(s) != 18 or not s[:17].isdigit() or not s[:17].isascii() or s[17] not in "0123456789X":
        raise InputError("bad_id_format")
    if resident_id_check(s[:17]) != s[17]:
        raise InputError("bad_id_check")
    try:
        born = datetime.date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError as e:
        raise InputError("bad_id_birth") from e
    if not datetime.date(1900, 1, 1) <= born <= datetime.date.today():
        raise InputError("bad_id_birth")
    return s


def id_document(id_type: str, number: str) -> str:
    """``number`` checked for its ``id_type`` (one of ID_TYPES), normalised."""
    if id_type == "resident":
        return resident_id(number)
    s = re.sub(r"\s", "", number or "").upper()
    if id_type == "passport":
        if not _PASSPORT.match(s):
            raise InputError("bad_passport")
        return s
    if id_type == "other":
        if not _OTHER_DOC.match(s):
            raise InputError("bad_other_doc")
        return s
    raise InputError("bad_id_type")


def person_name(text: str, *, required: bool = True) -> str | None:
    s = " ".join((text or "").split())
    if not s:
        if required:
            raise InputError("bad_name")
        return None
    if len(s) > 50 or any(unicodedata.category(ch).startswith("C") for ch in s):
        raise InputError("bad_name")
    return s


def short_text(text: str, limit: int = 40) -> str | None:
    """A room or seat: up to ``limit`` printable characters, or None when empty."""
    s = " ".join((text or "").split())
    if not s:
        return None
    if len(s) > limit or any(unicodedata.category(ch).startswith("C") for ch in s):
        raise InputError("bad_room")
    return s
