"""Ed25519 keys that sign ruleset bundles (DESIGN.md "Rulesets": agents accept only a bundle
signed by a key in their config).

What: make a key pair, read and write the two files, name a public key by a short id.

Files: the private key is PEM PKCS#8, unencrypted, created with mode 0600 and never printed or
logged by anything here (messages about it name only the path). The public key is text an admin
can paste into an agent's config: comment lines starting with '#', and one line
``ed25519 <base64 of the 32 raw bytes>``.

Key id: the first 16 hex digits of SHA-256 over the 32 raw public bytes; it names the signer in
a bundle's manifest and in "unknown key" messages. It is a name, not a security check: a bundle is
trusted only when its signature verifies with a configured key.

Limits: key files over MAX_KEY_FILE_BYTES are refused unread.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PUBLIC_PREFIX: Final = "ed25519"
KEY_ID_HEX: Final = 16
MAX_KEY_FILE_BYTES: Final = 64 * 1024

__all__ = [
    "Ed25519PrivateKey", "Ed25519PublicKey", "KeyFileError", "generate_keypair", "key_id",
    "load_private_key", "load_public_key", "public_key_text", "raw_public_bytes", "write_keypair",
]


class KeyFileError(ValueError):
    """A key file or key text could not be used; the message says why (never the key itself)."""


def raw_public_bytes(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: Ed25519PublicKey) -> str:
    return hashlib.sha256(raw_public_bytes(public)).hexdigest()[:KEY_ID_HEX]


def public_key_text(public: Ed25519PublicKey, comment: str | None = None) -> str:
    """The public key file's text: an optional '#' comment line, then `ed25519 <base64>`."""
    body = f"{PUBLIC_PREFIX} {base64.b64encode(raw_public_bytes(public)).decode('ascii')}\n"
    if comment:
        return "".join(f"# {line}\n" for line in comment.splitlines()) + body
    return body


def generate_keypair() -> tuple[bytes, str]:
    """A new key pair: (private key PEM PKCS#8 bytes, public key file text)."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = private.public_key()
    return pem, public_key_text(public, f"edgeaudit ruleset signing key {key_id(public)}")


def write_keypair(prefix: str | os.PathLike[str]) -> str:
    """Write PREFIX.key (0600) and PREFIX.pub; refuse (FileExistsError) if either exists.
    Returns the new key's id."""
    key_path = Path(f"{os.fspath(prefix)}.key")
    pub_path = Path(f"{os.fspath(prefix)}.pub")
    for path in (key_path, pub_path):
        if path.exists() or path.is_symlink():
            raise FileExistsError(f"{path} already exists: refusing to overwrite a key")
    pem, public_text = generate_keypair()
    # O_EXCL: never replace a key, not even one created between the check above and now;
    # 0o600 at creation, so the private key is never readable by others, not even briefly.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    fd = os.open(pub_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="ascii") as g:
        g.write(public_text)
    return key_id(load_public_key(public_text))


def _read_key_file(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_KEY_FILE_BYTES:
            raise KeyFileError(f"{path}: {size} bytes, too large for a key file")
        return path.read_bytes()
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read: {e.strerror or e}") from None


def _looks_like_key_text(value: str) -> bool:
    return any(line.strip().startswith(PUBLIC_PREFIX + " ") for line in value.splitlines())


def load_public_key(path_or_text: str | os.PathLike[str]) -> Ed25519PublicKey:
    """A public key from a file path, or from the file's text itself (a str holding a line
    `ed25519 <base64>`)."""
    if isinstance(path_or_text, str) and _looks_like_key_text(path_or_text):
        return _parse_public_text(path_or_text, "public key")
    path = Path(path_or_text)
    try:
        text = _read_key_file(path).decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not a public key file (not ASCII text)") from None
    return _parse_public_text(text, str(path))


def _parse_public_text(text: str, where: str) -> Ed25519PublicKey:
    lines = [line.strip() for line in text.splitlines()]
    entries = [line for line in lines if line and not line.startswith("#")]
    if len(entries) != 1:
        raise KeyFileError(f"{where}: expected one line 'ed25519 <base64>', found {len(entries)} key lines")
    parts = entries[0].split()
    if len(parts) != 2 or parts[0] != PUBLIC_PREFIX:
        raise KeyFileError(f"{where}: expected 'ed25519 <base64>'")
    try:
        raw = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"{where}: the key is not valid base64") from None
    if len(raw) != 32:
        raise KeyFileError(f"{where}: an Ed25519 public key is 32 bytes, this one is {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """The private key in a PEM PKCS#8 file (as written by `write_keypair`)."""
    path = Path(path)
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # the library's message may quote the input; name only the file
        raise KeyFileError(f"{path}: not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 private key")
    return key
