"""Signed checkpoints of the audit log, and verifying the log against them.

What: a checkpoint says "at time TS the audit log's entry SEQ had hash HASH", signed with the
collector's Ed25519 checkpoint key. It travels as one line of text,

    edgeaudit-checkpoint {"hash":"<64 hex>","key":"<key id>","seq":N,"sig":"<base64>","ts":"...Z","v":1}

(canonical JSON after the marker), the same in a witness file and in a syslog message, so
`checkpoints_in(text)` finds it in either (rsyslog's file lines carry a prefix before it).
The signature covers `SIGNED_PREFIX` + the canonical JSON of the fields without "sig".
`verify_with_checkpoints(log, text, public_key)` checks the chain and that every checkpoint
the key signed is still in it.

Why: a hash chain alone accepts a log whose newest entries were cut off, or one rewritten
whole by someone who can write the file (collector.auth.audit, "Limits"). A checkpoint kept
where that person cannot write (another mount, a remote syslog: collector.auth.witness)
pins entry SEQ; cutting the tail below SEQ, or changing any entry up to SEQ, no longer
verifies. The key signs, so a witness's copy cannot be forged by whoever can append to the
witness, and lines of other collectors (other keys) in a shared syslog are told apart.

Keys: `KEY_NAME`.key (PEM PKCS#8, created 0600 with O_EXCL on the collector's first start)
and `KEY_NAME`.pub in the data directory, written by `rulesets.keys.write_keypair` (the same
format as ruleset signing keys). Keep a copy of the public key off the machine (it is printed
when created; `audit pubkey` prints it): verifying with the copy in the data directory trusts
whoever could replace it.

Limits: entries appended after the newest checkpoint are protected by the chain only (the
interval bounds that window); a witness that lost lines protects less, but cannot make a
good log fail. A private key readable by anyone but its owner is refused, as ssh does.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature

from collector.auth.audit import GENESIS_PREV, Pin, VerifyResult, canonical, verify
from rulesets.keys import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
    KeyFileError,
    key_id,
    load_private_key,
    load_public_key,
    write_keypair,
)

MARKER: Final = "edgeaudit-checkpoint "
VERSION: Final = 1
SIGNED_PREFIX: Final = b"edgeaudit audit checkpoint v1\n"  # these signatures mean nothing else
KEY_NAME: Final = "audit-checkpoint"
FIELDS: Final = frozenset({"v", "key", "seq", "hash", "ts", "sig"})


class CheckpointError(ValueError):
    """A checkpoint line or key that cannot be used; the message says why."""


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    ts: str  # UTC ISO 8601
    key: str  # the signing key's id (rulesets.keys.key_id)
    sig: str = ""  # base64 Ed25519 signature; empty until signed

    def _signed_bytes(self) -> bytes:
        return SIGNED_PREFIX + canonical(
            {"v": VERSION, "key": self.key, "seq": self.seq, "hash": self.hash, "ts": self.ts})

    def line(self) -> str:
        """The checkpoint as one line of text (no newline)."""
        return MARKER + canonical({"v": VERSION, "key": self.key, "seq": self.seq, "hash": self.hash,
                                   "ts": self.ts, "sig": self.sig}).decode("ascii")

    def signed_by(self, public: Ed25519PublicKey) -> bool:
        try:
            public.verify(base64.b64decode(self.sig, validate=True), self._signed_bytes())
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True


def key_paths(data: Path) -> tuple[Path, Path]:
    return data / f"{KEY_NAME}.key", data / f"{KEY_NAME}.pub"


def load_or_create_key(data: Path) -> tuple[Ed25519PrivateKey, bool]:
    """The data directory's checkpoint key, made on first use; (key, created now)."""
    private_path, _ = key_paths(data)
    created = False
    if not private_path.exists():
        try:
            write_keypair(data / KEY_NAME)
            created = True
        except FileExistsError:  # another process made it meanwhile, or only the .pub is left
            if not private_path.exists():
                raise CheckpointError(f"{key_paths(data)[1]} exists without its private key: move it "
                                      "away (keep it: it verifies the old checkpoints)") from None
    mode = private_path.stat().st_mode
    if mode & 0o077:
        raise CheckpointError(f"{private_path}: readable by others (mode {mode & 0o777:o}); "
                              f"chmod 600 it, and think about whether it leaked")
    try:
        return load_private_key(private_path), created
    except KeyFileError as e:
        raise CheckpointError(str(e)) from None


def public_key_of(data: Path) -> Ed25519PublicKey:
    try:
        return load_public_key(key_paths(data)[1])
    except KeyFileError as e:
        raise CheckpointError(f"{e} (the collector makes its checkpoint key when it first starts)") from None


def sign(private: Ed25519PrivateKey, seq: int, digest: str, when: datetime | None = None) -> Checkpoint:
    """A signed checkpoint of entry ``seq`` with hash ``digest`` (GENESIS_PREV for the empty log)."""
    ts = (when or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    unsigned = Checkpoint(seq, digest, ts, key_id(private.public_key()))
    sig = base64.b64encode(private.sign(unsigned._signed_bytes())).decode("ascii")
    return Checkpoint(seq, digest, ts, unsigned.key, sig)


def parse(line: str) -> Checkpoint:
    """The checkpoint in ``line`` (from its marker to the end of the line); signature unchecked."""
    at = line.find(MARKER)
    if at < 0:
        raise CheckpointError("no checkpoint marker")
    try:
        raw: Any = json.loads(line[at + len(MARKER):])
    except ValueError:
        raise CheckpointError("not a checkpoint (bad JSON)") from None
    if not isinstance(raw, dict) or set(raw) != FIELDS:
        raise CheckpointError("not a checkpoint (wrong fields)")
    if raw["v"] != VERSION:
        raise CheckpointError(f"checkpoint version {raw['v']!r}, this collector knows {VERSION}")
    seq, digest = raw["seq"], raw["hash"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise CheckpointError("checkpoint seq is not a count")
    if not isinstance(digest, str) or len(digest) != len(GENESIS_PREV):
        raise CheckpointError("checkpoint hash is not a SHA-256 hex digest")
    if not all(isinstance(raw[k], str) for k in ("ts", "key", "sig")):
        raise CheckpointError("checkpoint ts, key or sig is not a string")
    return Checkpoint(seq, digest.lower(), raw["ts"], raw["key"], raw["sig"])


@dataclass(frozen=True)
class Found:
    """What a witness's text holds for one key."""

    checkpoints: list[Checkpoint]  # signed by the key, in the order found
    other_keys: int  # well-formed checkpoints of other keys (other collectors): ignored
    problems: list[str]  # "line N: why" for lines that carry the marker but do not verify


def checkpoints_in(text: str, public: Ed25519PublicKey) -> Found:
    mine = key_id(public)
    found: list[Checkpoint] = []
    other = 0
    problems: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if MARKER not in line:
            continue
        try:
            cp = parse(line)
        except CheckpointError as e:
            problems.append(f"line {lineno}: {e}")
            continue
        if cp.key != mine:
            other += 1
        elif not cp.signed_by(public):
            problems.append(f"line {lineno}: the signature does not verify (forged or altered checkpoint)")
        else:
            found.append(cp)
    return Found(found, other, problems)


def verify_with_checkpoints(log: Path, witnesses: Mapping[str, str], public: Ed25519PublicKey,
                            anchor: str | None = None) -> tuple[VerifyResult, Found]:
    """Verify ``log``'s chain and that it still holds every checkpoint signed by ``public`` in
    the witnesses' texts (name -> text). A line that carries the marker but does not verify
    fails it too (``Found.problems``, "NAME line N: why"), before the log is read."""
    checkpoints: list[Checkpoint] = []
    other = 0
    problems: list[str] = []
    for name, text in witnesses.items():
        one = checkpoints_in(text, public)
        checkpoints += one.checkpoints
        other += one.other_keys
        problems += [f"{name} {problem}" for problem in one.problems]
    found = Found(checkpoints, other, problems)
    if problems:
        return VerifyResult(False, 0, problems[0], None), found
    pins = [Pin(cp.seq, cp.hash, f"the checkpoint of {cp.ts}") for cp in checkpoints]
    return verify(log, anchor, pins), found


def read_witness_text(path: Path) -> str:
    """A witness file's text (lines that are not UTF-8 are kept, replaced, and then refused
    as checkpoints if they carry the marker)."""
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e.strerror or e}") from None


def describe_key(data: Path) -> str:
    """`KEYID (path)` of the data directory's checkpoint public key, for messages."""
    pub = key_paths(data)[1]
    return f"{key_id(load_public_key(pub))} ({pub})" if pub.exists() else f"none yet ({pub})"

