"""Desk passwords, one-time codes and vouchers: made and compared without keeping them.

- Desk passwords: scrypt (n=2**14, r=8, p=1, 16-byte salt) written as
  ``scrypt$n$r$p$salt$hash`` (base64), the form ``[[portal.desk_users]] password_hash`` takes.
- SMS codes: 6 random digits (``secrets``); the portal keeps only their keyed hash.
- Vouchers: 10 characters from an alphabet without look-alikes (no 0/O, 1/I/L), about 49
  bits; printed in two groups of five; compared case-blind with spaces and dashes ignored.
- ``Keyed``: HMAC-SHA256 with the portal's own random key (in its state file), for codes,
  vouchers and the phone numbers it must recognise again (a returning number keeps its
  account) without keeping the numbers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

SCRYPT_N: Final = 2**14
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
VOUCHER_ALPHABET: Final = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
VOUCHER_LENGTH: Final = 10
CODE_DIGITS: Final = 6


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, hashed: str) -> bool:
    try:
        _, n, r, p, salt, digest = hashed.split("$")
        want = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(want), maxmem=64 * 2**20)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def new_voucher() -> str:
    return "".join(secrets.choice(VOUCHER_ALPHABET) for _ in range(VOUCHER_LENGTH))


def voucher_text(code: str) -> str:
    """As printed: two groups of five."""
    return f"{code[:5]}-{code[5:]}"


def normal_voucher(typed: str) -> str:
    return "".join(ch for ch in typed.upper() if ch not in " -\t")


class Keyed:
    """HMAC-SHA256 under the portal's key, hex: what the state file keeps instead of a secret."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __call__(self, kind: str, value: str) -> str:
        return hmac.new(self._key, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()
