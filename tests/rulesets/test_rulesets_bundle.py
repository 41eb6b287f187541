"""Signed bundles: keys, a sign/verify round trip, deterministic bytes, and the attack matrix
(each forged bundle is a real tar built here, verified from memory)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import stat
import tarfile
from pathlib import Path

import pytest
from rulesets_testlib import (
    EXAMPLES,
    full_ruleset,
    member,
    minimal_ruleset,
    retar,
    tar_members,
    write_ruleset,
)

from rulesets.bundle import (
    BundleError,
    Manifest,
    VerifiedBundle,
    pack_bundle,
    read_bundle_unverified,
    sign_bundle,
    verify_bundle,
)
from rulesets.keys import (
    Ed25519PrivateKey,
    KeyFileError,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    write_keypair,
)
from rulesets.load import RulesetError, load_ruleset

NOW = 1_700_000_000
EXPIRES = NOW + 30 * 86_400

# One key pair for the module: generating is cheap, but the tests read better with fixed names.
SIGNER = Ed25519PrivateKey.generate()
PUBLIC = SIGNER.public_key()
OTHER = Ed25519PrivateKey.generate()


@pytest.fixture
def bundle(tmp_path: Path) -> bytes:
    out = tmp_path / "full.bundle"
    sign_bundle(full_ruleset(tmp_path / "rs"), SIGNER, out, expires=EXPIRES, now=NOW)
    return out.read_bytes()


def refused(data: bytes, **kwargs: object) -> str:
    keys = kwargs.pop("keys", [PUBLIC])
    with pytest.raises(BundleError) as raised:
        verify_bundle(data, keys, now=kwargs.pop("now", NOW), **kwargs)  # type: ignore[arg-type]
    return raised.value.reason


def members_of(data: bytes) -> dict[str, bytes]:
    return {info.name: content for info, content in tar_members(data)}


def forged(members: dict[str, bytes]) -> bytes:
    return retar([member(name, content) for name, content in sorted(members.items())])


def resigned(members: dict[str, bytes], manifest_bytes: bytes, key: Ed25519PrivateKey = SIGNER) -> bytes:
    """A bundle whose manifest is `manifest_bytes`, correctly signed by `key`."""
    return forged(members | {"manifest.json": manifest_bytes, "manifest.sig": key.sign(manifest_bytes)})


# -- keys ---------------------------------------------------------------------------------------------


def test_keypair_files(tmp_path: Path) -> None:
    kid = write_keypair(tmp_path / "signer")
    key_file, pub_file = tmp_path / "signer.key", tmp_path / "signer.pub"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    lines = pub_file.read_text().splitlines()
    assert lines[0].startswith("#") and lines[-1].startswith("ed25519 ")
    private, public = load_private_key(key_file), load_public_key(pub_file)
    assert key_id(private.public_key()) == key_id(public) == kid
    assert len(kid) == 16 and int(kid, 16) >= 0
    raw = hashlib.sha256(public.public_bytes_raw()).hexdigest()
    assert kid == raw[:16]
    before = key_file.read_bytes(), pub_file.read_bytes()
    with pytest.raises(FileExistsError):
        write_keypair(tmp_path / "signer")
    assert (key_file.read_bytes(), pub_file.read_bytes()) == before
    pub_file.unlink()  # one of the two existing is enough to refuse
    with pytest.raises(FileExistsError):
        write_keypair(tmp_path / "signer")
    assert key_file.read_bytes() == before[0]


def test_generate_keypair_and_public_text() -> None:
    pem, text = generate_keypair()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert key_id(load_public_key(text)) in text  # the comment names the key
    only_key_line = text.splitlines()[-1]
    assert key_id(load_public_key(only_key_line)) == key_id(load_public_key(text))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("ed25519 AAAA\n", "32 bytes"),
        ("ed25519 !!!notbase64\n", "not valid base64"),
        ("ssh-ed25519 AAAAC3Nza\n", "expected 'ed25519 <base64>'"),
        ("# only a comment\n", "found 0 key lines"),
        ("ed25519 a b\n", "expected 'ed25519 <base64>'"),
    ],
)
def test_bad_public_keys(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "k.pub"
    path.write_text(text)
    with pytest.raises(KeyFileError, match=why):
        load_public_key(path)


def test_two_key_lines_are_refused() -> None:
    _, one = generate_keypair()
    _, two = generate_keypair()
    with pytest.raises(KeyFileError, match="found 2 key lines"):
        load_public_key(one + two)


def test_bad_private_key_does_not_echo_the_file(tmp_path: Path) -> None:
    pub = tmp_path / "k.pub"
    _, text = generate_keypair()
    pub.write_text(text)
    with pytest.raises(KeyFileError) as raised:
        load_private_key(pub)
    assert "ed25519 " not in str(raised.value) and str(pub) in str(raised.value)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_private_key(tmp_path / "missing.key")


# -- signing ------------------------------------------------------------------------------------------


def test_round_trip(tmp_path: Path, bundle: bytes) -> None:
    verified = verify_bundle(bundle, [PUBLIC], now=NOW)
    assert isinstance(verified, VerifiedBundle)
    assert (verified.name, verified.version, verified.created, verified.expires) == ("full", 3, NOW, EXPIRES)
    assert verified.key_id == key_id(PUBLIC)
    assert verified.ruleset == load_ruleset(tmp_path / "rs")
    assert verified.files["lists/gambling.txt"] == (tmp_path / "rs/lists/gambling.txt").read_bytes()
    assert set(verified.files) == {
        "ruleset.toml", "drugs.txt", "lists/gambling.txt", "lists/gambling-exceptions.txt",
        "lists/gambling-combos.txt",
    }


def test_examples_sign_and_verify(tmp_path: Path) -> None:
    manifest = sign_bundle(EXAMPLES, SIGNER, tmp_path / "b", expires=EXPIRES, now=NOW)
    verified = verify_bundle((tmp_path / "b").read_bytes(), [PUBLIC], now=NOW)
    assert verified.manifest == manifest
    assert verified.ruleset == load_ruleset(EXAMPLES)


def test_layout(bundle: bytes) -> None:
    members = tar_members(bundle)
    names = [info.name for info, _ in members]
    assert names == sorted(names)
    assert names == [
        "files/drugs.txt", "files/lists/gambling-combos.txt", "files/lists/gambling-exceptions.txt",
        "files/lists/gambling.txt", "files/ruleset.toml", "manifest.json", "manifest.sig",
    ]
    for info, _ in members:
        got = (info.mtime, info.uid, info.gid, info.uname, info.gname, info.type)
        assert got == (0, 0, 0, "", "", tarfile.REGTYPE)
    assert bundle[257:263] == b"ustar\x00"  # POSIX ustar magic in the first header
    contents = dict((info.name, content) for info, content in members)
    manifest_bytes = contents["manifest.json"]
    doc = json.loads(manifest_bytes)
    assert manifest_bytes == _canonical(doc)
    assert set(doc) == {"format", "name", "version", "created", "expires", "key_id", "files"}
    assert (doc["format"], doc["created"], doc["expires"]) == (1, NOW, EXPIRES)
    toml = contents["files/ruleset.toml"]
    assert doc["files"]["ruleset.toml"] == {"sha256": hashlib.sha256(toml).hexdigest(), "size": len(toml)}
    PUBLIC.verify(contents["manifest.sig"], manifest_bytes)
    assert len(contents["manifest.sig"]) == 64
    assert Manifest.from_json(manifest_bytes).to_json() == manifest_bytes


def test_deterministic_bytes(tmp_path: Path) -> None:
    root = minimal_ruleset(tmp_path / "rs")
    sign_bundle(root, SIGNER, tmp_path / "a", expires=EXPIRES, now=NOW)
    sign_bundle(root, SIGNER, tmp_path / "b", expires=EXPIRES, now=NOW)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    sign_bundle(root, SIGNER, tmp_path / "c", expires=EXPIRES, now=NOW + 1)
    assert (tmp_path / "c").read_bytes() != (tmp_path / "a").read_bytes()


def test_only_referenced_files_are_signed(tmp_path: Path) -> None:
    root = minimal_ruleset(tmp_path / "rs")
    (root / "notes.txt").write_text("not part of the ruleset\n")
    manifest = sign_bundle(root, SIGNER, tmp_path / "b", expires=EXPIRES, now=NOW)
    assert set(manifest.files) == {"ruleset.toml", "gambling.txt"}


def test_sign_refuses_an_invalid_ruleset(tmp_path: Path) -> None:
    root = write_ruleset(
        tmp_path / "rs",
        'name = "t"\nversion = 1\n[[categories]]\nid = "c"\naction = "alert"\nseverity = 2\n'
        'keywords = "k.txt"\n',
        {"k.txt": "ok\nx\n"},
    )
    with pytest.raises(RulesetError) as raised:
        sign_bundle(root, SIGNER, tmp_path / "b", expires=EXPIRES, now=NOW)
    assert [(p.file, p.line) for p in raised.value.problems] == [("k.txt", 2)]
    assert not (tmp_path / "b").exists()
    with pytest.raises(ValueError, match="later than now"):
        sign_bundle(minimal_ruleset(tmp_path / "ok"), SIGNER, tmp_path / "b", expires=NOW, now=NOW)


# -- the attack matrix --------------------------------------------------------------------------------


def test_bad_signature(bundle: bytes) -> None:
    members = members_of(bundle)
    sig = bytearray(members["manifest.sig"])
    sig[10] ^= 0x01
    assert refused(forged(members | {"manifest.sig": bytes(sig)})).startswith("bad signature")
    assert "is 63 bytes, not 64" in refused(forged(members | {"manifest.sig": bytes(sig[:63])}))


def test_wrong_key(bundle: bytes) -> None:
    assert refused(bundle, keys=[OTHER.public_key()]) == f"signed by unknown key {key_id(PUBLIC)}"
    # a key list holding the right key among others verifies (key rotation)
    assert verify_bundle(bundle, [OTHER.public_key(), PUBLIC], now=NOW).version == 3
    with pytest.raises(BundleError, match="no trusted public keys"):
        verify_bundle(bundle, [], now=NOW)


def test_manifest_tampered(bundle: bytes) -> None:
    members = members_of(bundle)
    manifest = members["manifest.json"].replace(b'"version":3', b'"version":4')
    assert manifest != members["manifest.json"]
    assert refused(forged(members | {"manifest.json": manifest})).startswith("bad signature")


def test_manifest_key_id_tampered_is_a_bad_signature_not_a_confusing_name(bundle: bytes) -> None:
    members = members_of(bundle)
    manifest = members["manifest.json"].replace(key_id(PUBLIC).encode(), b"not-hex-at-all!!")
    assert refused(forged(members | {"manifest.json": manifest})).startswith("bad signature")


def test_file_tampered(bundle: bytes) -> None:
    members = members_of(bundle)
    same_size = members["files/drugs.txt"].replace("冰毒".encode(), "冰糖".encode())
    reason = refused(forged(members | {"files/drugs.txt": same_size}))
    assert reason == "file 'drugs.txt' does not match its sha256 in the manifest (tampered)"
    reason = refused(forged(members | {"files/drugs.txt": members["files/drugs.txt"] + b"more\n"}))
    assert reason.startswith("file 'drugs.txt' is ") and "the manifest says" in reason


def test_extra_members(bundle: bytes) -> None:
    members = members_of(bundle)
    assert refused(forged(members | {"install.sh": b"rm -rf /\n"})) == "unexpected member 'install.sh'"
    assert refused(forged(members | {"files/extra.txt": b"abc\n"})) == (
        "file 'extra.txt' is in the bundle but not in the manifest"
    )


@pytest.mark.parametrize("missing", ["manifest.json", "manifest.sig"])
def test_missing_manifest_member(bundle: bytes, missing: str) -> None:
    members = members_of(bundle)
    del members[missing]
    assert refused(forged(members)) == f"missing member {missing}"


def test_missing_file_member(bundle: bytes) -> None:
    members = members_of(bundle)
    del members["files/lists/gambling.txt"]
    assert refused(forged(members)) == (
        "file 'lists/gambling.txt' is listed in the manifest but missing from the bundle"
    )


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("files/../../etc/cron.d/x", "leads outside"),
        ("../x", "leads outside"),
        ("/etc/passwd", "is absolute"),
        ("files/./drugs.txt", "not in canonical form"),
        ("files\\..\\x", "backslash"),
    ],
)
def test_unsafe_member_names(bundle: bytes, name: str, why: str) -> None:
    reason = refused(forged(members_of(bundle) | {name: b"x"}))
    assert reason.startswith("unsafe member name") and why in reason


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        (tarfile.SYMTYPE, "links are not allowed"),
        (tarfile.LNKTYPE, "links are not allowed"),
        (tarfile.CHRTYPE, "devices and FIFOs"),
        (tarfile.BLKTYPE, "devices and FIFOs"),
        (tarfile.FIFOTYPE, "devices and FIFOs"),
        (tarfile.DIRTYPE, "unexpected directory member"),
    ],
)
def test_special_members(bundle: bytes, kind: bytes, why: str) -> None:
    members = [member(n, c) for n, c in sorted(members_of(bundle).items())]
    special = member("files/drugs.txt", kind=kind, linkname="/etc/shadow")
    # the link replaces a listed file, so a naive reader would follow it to /etc/shadow
    forged_members = [special if m[0].name == "files/drugs.txt" else m for m in members]
    assert why in refused(retar(forged_members))


def test_duplicate_member(bundle: bytes) -> None:
    members = [member(n, c) for n, c in sorted(members_of(bundle).items())]
    members.append(member("files/drugs.txt", b"other\n"))
    assert refused(retar(members)) == "duplicate member 'files/drugs.txt'"


def test_rollback(bundle: bytes) -> None:
    assert refused(bundle, newer_than=4) == "version 3 is not newer than 4: refusing a rollback or replay"
    assert refused(bundle, newer_than=3) == "version 3 is not newer than 3: refusing a rollback or replay"
    assert verify_bundle(bundle, [PUBLIC], now=NOW, newer_than=2).version == 3


def test_expired(bundle: bytes) -> None:
    assert refused(bundle, now=EXPIRES).startswith("expired at 2023-12-14T22:13:20Z")
    assert verify_bundle(bundle, [PUBLIC], now=EXPIRES - 1).expires == EXPIRES


def test_truncated(bundle: bytes) -> None:
    assert refused(bundle[: len(bundle) // 2]).startswith("truncated")
    assert refused(bundle[:520]).startswith("truncated bundle: data ends inside member 'files/drugs.txt'")
    # cut right after a member: tarfile alone would read this as a shorter, valid archive
    assert "no end-of-archive marker after member 'files/drugs.txt'" in refused(bundle[:1024])
    assert refused(bundle[:100]).startswith("not a valid tar bundle")
    assert refused(b"") == "bundle is empty"


def test_oversized(bundle: bytes) -> None:
    size = len(bundle)
    assert refused(bundle, max_bytes=size - 1) == f"bundle is {size} bytes, over the limit of {size - 1}"
    assert verify_bundle(bundle, [PUBLIC], now=NOW, max_bytes=len(bundle)).version == 3


def test_not_a_tar(bundle: bytes) -> None:
    assert refused(b"PK\x03\x04" + b"\x00" * 2000).startswith("not a valid tar bundle")
    assert refused(gzip.compress(bundle, mtime=0)).startswith("not a valid tar bundle")
    assert refused(bundle + b"trailing").startswith("corrupt bundle: data after the end-of-archive marker")


def test_pax_and_gnu_formats_are_read_but_checked_the_same(bundle: bytes) -> None:
    members = [member(n, c) for n, c in sorted(members_of(bundle).items())]
    assert verify_bundle(retar(members, tarfile.PAX_FORMAT), [PUBLIC], now=NOW).version == 3
    evil = members + [member("files/" + "a/" * 60 + "../../x", b"x")]
    assert refused(retar(evil, tarfile.GNU_FORMAT)).startswith("unsafe member name")


def test_malformed_keyword_file_inside_a_correctly_signed_bundle(tmp_path: Path) -> None:
    root = full_ruleset(tmp_path / "rs")
    (root / "drugs.txt").write_text("冰毒\nx\n")
    with pytest.raises(RulesetError):
        sign_bundle(root, SIGNER, tmp_path / "b", expires=EXPIRES, now=NOW)
    files = {
        rel: (root / rel).read_bytes()
        for rel in ("ruleset.toml", "drugs.txt", "lists/gambling.txt", "lists/gambling-exceptions.txt",
                    "lists/gambling-combos.txt")
    }
    data, _ = pack_bundle(files, SIGNER, name="full", version=3, created=NOW, expires=EXPIRES)
    reason = refused(data)
    assert reason.startswith("the ruleset inside is invalid: drugs.txt:2: error: keyword 'x' is shorter")


def test_manifest_disagreeing_with_the_ruleset(tmp_path: Path) -> None:
    root = minimal_ruleset(tmp_path / "rs")
    files = {rel: (root / rel).read_bytes() for rel in ("ruleset.toml", "gambling.txt")}
    data, _ = pack_bundle(files, SIGNER, name="example", version=9, created=NOW, expires=EXPIRES)
    assert refused(data) == "manifest says example version 9, ruleset.toml says example version 3"


def _manifest_doc(bundle: bytes) -> dict[str, object]:
    doc: dict[str, object] = json.loads(members_of(bundle)["manifest.json"])
    return doc


def _canonical(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda d: d | {"format": 2}, "unsupported format 2"),
        (lambda d: d | {"extra": 1}, "unexpected ['extra']"),
        (lambda d: {k: v for k, v in d.items() if k != "expires"}, "missing ['expires']"),
        (lambda d: d | {"version": True}, "version must be an integer"),
        (lambda d: d | {"expires": "soon"}, "created and expires"),
        (lambda d: d | {"files": {}}, "must be an object that lists ruleset.toml"),
        (lambda d: d | {"files": d["files"] | {"../x": {"sha256": "0" * 64, "size": 1}}}, "leads outside"),
        (lambda d: d | {"files": d["files"] | {"x.txt": {"sha256": "0" * 63, "size": 1}}}, "lowercase hex"),
    ],
)
def test_malformed_manifest_even_when_signed(bundle: bytes, change: object, why: str) -> None:
    manifest = _canonical(change(_manifest_doc(bundle)))  # type: ignore[operator]
    reason = refused(resigned(members_of(bundle), manifest))
    assert reason.startswith("manifest malformed") and why in reason


def test_manifest_not_canonical_or_not_json(bundle: bytes) -> None:
    doc = _manifest_doc(bundle)
    spaced = json.dumps(doc, sort_keys=True).encode()
    assert "not in canonical form" in refused(resigned(members_of(bundle), spaced))
    assert refused(resigned(members_of(bundle), b"[1, 2")).startswith("manifest malformed")
    duplicated = _canonical(doc)[:-1] + b',"name":"other"}'
    assert "duplicate key 'name'" in refused(resigned(members_of(bundle), duplicated))


def test_manifest_naming_another_key(bundle: bytes) -> None:
    manifest = _canonical(_manifest_doc(bundle) | {"key_id": key_id(OTHER.public_key())})
    reason = refused(resigned(members_of(bundle), manifest), keys=[PUBLIC, OTHER.public_key()])
    assert reason == f"manifest names key {key_id(OTHER.public_key())} but was signed by key {key_id(PUBLIC)}"


def test_read_bundle_unverified(bundle: bytes) -> None:
    files = read_bundle_unverified(bundle)
    assert load_ruleset(files).name == "full"
    with pytest.raises(BundleError, match="links"):
        read_bundle_unverified(retar([member("files/x", kind=tarfile.SYMTYPE, linkname="/etc/passwd")]))


def test_nothing_is_extracted(tmp_path: Path, bundle: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    refused(forged(members_of(bundle) | {"../escaped.txt": b"x"}))
    verify_bundle(bundle, [PUBLIC], now=NOW)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_tar_members_helper_sees_the_same_bytes(bundle: bytes) -> None:
    # guards the forging helpers above: re-packing an untouched bundle must still verify
    assert verify_bundle(forged(members_of(bundle)), [PUBLIC], now=NOW).version == 3
    assert io.BytesIO(bundle).read(1)
