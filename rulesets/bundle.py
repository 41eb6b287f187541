"""Signed ruleset bundles: what `edgeaudit-rules sign` writes and what an agent accepts
(DESIGN.md "Rulesets": only a bundle signed by a configured key, newer than the running one).

A bundle is an uncompressed ustar file holding exactly:

- ``manifest.json``: canonical JSON (sorted keys, no spaces) ``{"format": 1, "name", "version",
  "created", "expires" (unix seconds), "key_id", "files": {path: {"sha256", "size"}}}``;
- ``manifest.sig``: the raw 64-byte Ed25519 signature over the exact manifest.json bytes;
- ``files/<path>``: ruleset.toml and every file it references, byte for byte as checked.

The signature covers the manifest and the manifest covers every file by SHA-256 and size, so one
signature check authenticates the whole bundle. Bundles are built deterministically (members
sorted, mtime 0, uid/gid 0, mode 0644; Ed25519 signatures are deterministic), so the same
ruleset signed with the same key at the same `now` gives the same bytes.

Verification treats the bytes as hostile: nothing is extracted to disk or executed; the tar is
read from memory; the size is checked before parsing; only regular members with canonical
relative names are accepted (no links, devices, directories, absolute names, '..', duplicates);
the end-of-archive marker must follow the last member (so truncation is reported as such) and
nothing but zero padding may follow it. Each failure raises BundleError with a reason an operator
can act on. The order of checks: structure, signature, manifest, files, expiry, rollback, ruleset,
so no claim inside the bundle is believed before its signature is checked (except the key id,
read only to word the "unknown key" message).

Limits: MAX_BUNDLE_BYTES (a parameter of verify_bundle), MAX_MEMBERS, MAX_MANIFEST_BYTES.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature

from rulesets.keys import Ed25519PrivateKey, Ed25519PublicKey, key_id
from rulesets.load import MANIFEST, RulesetError, examine_ruleset, load_ruleset, normalize_relpath
from rulesets.model import Ruleset
from wire.files import write_atomically

FORMAT: Final = 1
MANIFEST_JSON: Final = "manifest.json"
MANIFEST_SIG: Final = "manifest.sig"
FILES_PREFIX: Final = "files/"
SIGNATURE_BYTES: Final = 64
MAX_BUNDLE_BYTES: Final = 128 * 1024 * 1024
MAX_MEMBERS: Final = 4_096  # 3 files per category at most, MAX_CATEGORIES categories, with room
MAX_MANIFEST_BYTES: Final = 1024 * 1024

_MANIFEST_KEYS: Final = frozenset({"format", "name", "version", "created", "expires", "key_id", "files"})
_KEY_ID_RE: Final = re.compile(r"[0-9a-f]{16}\Z")
_SHA256_RE: Final = re.compile(r"[0-9a-f]{64}\Z")


class BundleError(Exception):
    """A bundle was refused; `reason` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class FileEntry:
    sha256: str  # lowercase hex
    size: int


@dataclass(frozen=True)
class Manifest:
    name: str
    version: int
    created: int  # unix seconds
    expires: int  # unix seconds; the bundle is refused from this second on
    key_id: str
    files: Mapping[str, FileEntry]
    format: int = FORMAT

    def to_json(self) -> bytes:
        """The canonical bytes: what is signed."""
        doc = {
            "format": self.format, "name": self.name, "version": self.version, "created": self.created,
            "expires": self.expires, "key_id": self.key_id,
            "files": {p: {"sha256": e.sha256, "size": e.size} for p, e in self.files.items()},
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse and check a manifest strictly (BundleError "manifest malformed: ...")."""
        return _parse_manifest(data)


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose signature, hashes, expiry, version and ruleset all checked out."""

    manifest: Manifest
    files: dict[str, bytes]  # relative path -> content (without the "files/" prefix)
    ruleset: Ruleset

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def created(self) -> int:
        return self.manifest.created

    @property
    def expires(self) -> int:
        return self.manifest.expires

    @property
    def key_id(self) -> str:
        return self.manifest.key_id


# -- writing ------------------------------------------------------------------------------------------


def _tar(members: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT, encoding="utf-8") as tf:
        for name in sorted(members):
            data = members[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            try:
                tf.addfile(info, io.BytesIO(data))
            except ValueError as e:  # ustar: a name that cannot be split into prefix + name
                raise BundleError(f"cannot pack {name}: {e}") from None
    return buf.getvalue()


def pack_bundle(
    files: Mapping[str, bytes], private_key: Ed25519PrivateKey, *, name: str, version: int,
    created: int, expires: int,
) -> tuple[bytes, Manifest]:
    """Sign `files` (relative path -> bytes, including ruleset.toml) into bundle bytes.

    Does NOT check the ruleset: `sign_bundle` does. This is the building block, also for tests
    that need a correctly signed bundle with content `sign_bundle` would refuse."""
    entries: dict[str, FileEntry] = {}
    for path, data in sorted(files.items()):
        if normalize_relpath(path) != path:
            raise ValueError(f"{path!r} is not a canonical relative path")
        entries[path] = FileEntry(hashlib.sha256(data).hexdigest(), len(data))
    manifest = Manifest(
        name=name, version=version, created=created, expires=expires,
        key_id=key_id(private_key.public_key()), files=entries,
    )
    manifest_bytes = manifest.to_json()
    members = {FILES_PREFIX + p: bytes(d) for p, d in files.items()}
    members[MANIFEST_JSON] = manifest_bytes
    members[MANIFEST_SIG] = private_key.sign(manifest_bytes)
    return _tar(members), manifest


def sign_bundle(
    ruleset_dir: str | os.PathLike[str], private_key: Ed25519PrivateKey, out_path: str | os.PathLike[str],
    *, expires: int, now: int | None = None,
) -> Manifest:
    """Check the ruleset in `ruleset_dir` (RulesetError if invalid; warnings are allowed), sign
    ruleset.toml and the files it references, and write the bundle to `out_path` atomically
    (a reader never sees half a bundle)."""
    now = int(time.time()) if now is None else now
    if expires <= now:
        raise ValueError(f"expires ({expires}) must be later than now ({now})")
    result = examine_ruleset(ruleset_dir)
    if result.ruleset is None:
        raise RulesetError(result.problems)
    data, manifest = pack_bundle(
        result.files, private_key, name=result.ruleset.name, version=result.ruleset.version,
        created=now, expires=expires,
    )
    write_atomically(Path(out_path), data)
    return manifest




# -- reading ------------------------------------------------------------------------------------------


def _check_member(info: tarfile.TarInfo) -> None:
    name = info.name
    shown = name.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
    if info.issym() or info.islnk():
        raise BundleError(f"unsafe member {shown!r}: links are not allowed")
    if info.ischr() or info.isblk() or info.isfifo():
        raise BundleError(f"unsafe member {shown!r}: devices and FIFOs are not allowed")
    if info.isdir():
        raise BundleError(f"unexpected directory member {shown!r}")
    if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or info.issparse():
        raise BundleError(f"unsafe member {shown!r}: only regular files are allowed")
    try:
        name.encode("utf-8")  # tarfile keeps undecodable bytes as surrogates
        canonical = normalize_relpath(name)
    except (UnicodeEncodeError, ValueError) as e:
        raise BundleError(f"unsafe member name {shown!r}: {e}") from None
    if canonical != name:
        raise BundleError(f"unsafe member name {shown!r}: not in canonical form")


def _read_members(data: bytes, max_bytes: int) -> dict[str, bytes]:
    """Every member of the tar in `data`, checked for safety; BundleError otherwise."""
    if len(data) > max_bytes:
        raise BundleError(f"bundle is {len(data)} bytes, over the limit of {max_bytes}")
    if not data:
        raise BundleError("bundle is empty")
    members: dict[str, bytes] = {}
    last = current = ""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:", encoding="utf-8") as tf:
            for info in tf:
                if len(members) >= MAX_MEMBERS:
                    raise BundleError(f"more than {MAX_MEMBERS} members")
                _check_member(info)
                current = info.name
                if info.name in members:
                    raise BundleError(f"duplicate member {info.name!r}")
                f = tf.extractfile(info)
                content = f.read() if f is not None else b""
                if len(content) != info.size:
                    raise BundleError(f"truncated bundle: member {info.name!r} is cut short")
                members[info.name] = content
                last = info.name
            end = tf.offset
    except tarfile.ReadError as e:
        if str(e) == "unexpected end of data":
            raise BundleError(f"truncated bundle: data ends inside member {current!r}") from None
        raise BundleError(f"not a valid tar bundle: {e}") from None
    except (tarfile.TarError, EOFError, OSError, UnicodeError) as e:
        raise BundleError(f"corrupt tar bundle: {e}") from None
    # tarfile takes a bad or missing header after the first for the archive's end, so a cut or
    # damaged bundle would read as a shorter one: demand the end marker and zeros only after it.
    tail = data[end:]
    if len(tail) < 2 * tarfile.BLOCKSIZE or tail[: 2 * tarfile.BLOCKSIZE].count(0) != 2 * tarfile.BLOCKSIZE:
        after = f"after member {last!r}" if last else "at the start"
        raise BundleError(f"truncated or corrupt bundle: no end-of-archive marker {after}")
    if tail.count(0) != len(tail):
        raise BundleError("corrupt bundle: data after the end-of-archive marker")
    return members


def read_bundle_unverified(data: bytes, *, max_bytes: int = MAX_BUNDLE_BYTES) -> dict[str, bytes]:
    """The ruleset files in a bundle WITHOUT checking its signature, hashes or expiry: for
    looking at a bundle (`edgeaudit-rules diff`), never for trusting it."""
    members = _read_members(data, max_bytes)
    return {name[len(FILES_PREFIX):]: blob for name, blob in members.items() if name.startswith(FILES_PREFIX)}


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_manifest(data: bytes) -> Manifest:
    def bad(why: str) -> BundleError:
        return BundleError(f"manifest malformed: {why}")

    try:
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise bad(str(e)) from None
    if not isinstance(doc, dict):
        raise bad("not a JSON object")
    if set(doc) != _MANIFEST_KEYS:
        missing, extra = sorted(_MANIFEST_KEYS - set(doc)), sorted(set(doc) - _MANIFEST_KEYS)
        raise bad(f"keys missing {missing}, unexpected {extra}")
    if doc["format"] != FORMAT or not _is_int(doc["format"]):
        raise bad(f"unsupported format {doc['format']!r} (this version reads format {FORMAT})")
    name, version, created, expires = doc["name"], doc["version"], doc["created"], doc["expires"]
    kid = doc["key_id"]
    if not isinstance(name, str) or not name:
        raise bad("name must be a non-empty string")
    if not _is_int(version) or version < 1:
        raise bad("version must be an integer >= 1")
    if not _is_int(created) or not _is_int(expires) or created < 0 or expires < 0:
        raise bad("created and expires must be non-negative integers (unix seconds)")
    if not isinstance(kid, str) or not _KEY_ID_RE.match(kid):
        raise bad("key_id must be 16 lowercase hex digits")
    raw_files = doc["files"]
    if not isinstance(raw_files, dict) or MANIFEST not in raw_files:
        raise bad(f"files must be an object that lists {MANIFEST}")
    files: dict[str, FileEntry] = {}
    for path, entry in raw_files.items():
        try:
            if normalize_relpath(path) != path:
                raise ValueError("is not in canonical form")
        except ValueError as e:
            raise bad(f"file path {path!r} {e}") from None
        if not isinstance(entry, dict) or set(entry) != {"sha256", "size"}:
            raise bad(f"entry for {path!r} must have exactly sha256 and size")
        digest, size = entry["sha256"], entry["size"]
        if not isinstance(digest, str) or not _SHA256_RE.match(digest) or not _is_int(size) or size < 0:
            raise bad(f"entry for {path!r}: sha256 must be 64 lowercase hex digits, size an integer >= 0")
        files[path] = FileEntry(digest, size)
    manifest = Manifest(name=name, version=version, created=created, expires=expires, key_id=kid, files=files)
    if manifest.to_json() != data:
        raise bad("not in canonical form (sorted keys, no spaces)")
    return manifest


def _claimed_key_id(manifest_bytes: bytes) -> str | None:
    """The key id the (unverified) manifest names, if it is well-formed: only to word a message."""
    try:
        doc = json.loads(manifest_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    kid = doc.get("key_id") if isinstance(doc, dict) else None
    return kid if isinstance(kid, str) and _KEY_ID_RE.match(kid) else None


def _check_signature(
    manifest_bytes: bytes, signature: bytes, public_keys: Sequence[Ed25519PublicKey]
) -> Ed25519PublicKey:
    if len(signature) != SIGNATURE_BYTES:
        raise BundleError(f"bad signature: {MANIFEST_SIG} is {len(signature)} bytes, not {SIGNATURE_BYTES}")
    for key in public_keys:
        try:
            key.verify(signature, manifest_bytes)
        except InvalidSignature:
            continue
        return key
    claimed = _claimed_key_id(manifest_bytes)
    if claimed is not None and claimed not in {key_id(k) for k in public_keys}:
        raise BundleError(f"signed by unknown key {claimed}")
    raise BundleError(f"bad signature: {MANIFEST_SIG} does not verify over {MANIFEST_JSON}")


def _utc(seconds: int) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
    except (OverflowError, OSError, ValueError):
        return f"{seconds} (unix seconds)"


def verify_bundle(
    data: bytes, public_keys: Sequence[Ed25519PublicKey], *, now: int | None = None,
    newer_than: int | None = None, max_bytes: int = MAX_BUNDLE_BYTES,
) -> VerifiedBundle:
    """Accept `data` only if signed by one of `public_keys`, intact, not expired at `now`
    (default: the clock), with a version above `newer_than` (when given), holding a valid
    ruleset. Raises BundleError(reason) otherwise."""
    if not public_keys:
        raise BundleError("no trusted public keys given")
    members = _read_members(data, max_bytes)
    for required in (MANIFEST_JSON, MANIFEST_SIG):
        if required not in members:
            raise BundleError(f"missing member {required}")
    for member in members:
        if member not in (MANIFEST_JSON, MANIFEST_SIG) and not member.startswith(FILES_PREFIX):
            raise BundleError(f"unexpected member {member!r}")
    manifest_bytes = members[MANIFEST_JSON]
    if len(manifest_bytes) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{MANIFEST_JSON} is over the limit of {MAX_MANIFEST_BYTES} bytes")

    signer = _check_signature(manifest_bytes, members[MANIFEST_SIG], public_keys)
    manifest = _parse_manifest(manifest_bytes)
    if manifest.key_id != key_id(signer):
        raise BundleError(f"manifest names key {manifest.key_id} but was signed by key {key_id(signer)}")

    files: dict[str, bytes] = {}
    for path, entry in manifest.files.items():
        blob = members.get(FILES_PREFIX + path)
        if blob is None:
            raise BundleError(f"file {path!r} is listed in the manifest but missing from the bundle")
        if len(blob) != entry.size:
            raise BundleError(f"file {path!r} is {len(blob)} bytes, the manifest says {entry.size}")
        if hashlib.sha256(blob).hexdigest() != entry.sha256:
            raise BundleError(f"file {path!r} does not match its sha256 in the manifest (tampered)")
        files[path] = blob
    for member in members:
        if member.startswith(FILES_PREFIX) and member[len(FILES_PREFIX):] not in manifest.files:
            raise BundleError(f"file {member[len(FILES_PREFIX):]!r} is in the bundle but not in the manifest")

    now = int(time.time()) if now is None else now
    if manifest.expires <= now:
        raise BundleError(f"expired at {_utc(manifest.expires)} (now {_utc(now)})")
    if newer_than is not None and manifest.version <= newer_than:
        raise BundleError(
            f"version {manifest.version} is not newer than {newer_than}: refusing a rollback or replay"
        )
    try:
        ruleset = load_ruleset(files)
    except RulesetError as e:
        errors = [str(p) for p in e.problems if p.severity == "error"]
        raise BundleError(f"the ruleset inside is invalid: {'; '.join(errors[:10])}") from None
    if (ruleset.name, ruleset.version) != (manifest.name, manifest.version):
        raise BundleError(
            f"manifest says {manifest.name} version {manifest.version}, "
            f"{MANIFEST} says {ruleset.name} version {ruleset.version}"
        )
    return VerifiedBundle(manifest=manifest, files=files, ruleset=ruleset)
