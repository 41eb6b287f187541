"""edgeaudit-rules, run in-process through `main(argv)` (and once as the installed command) on real
directories, keys and bundles in tmp_path."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from rulesets_testlib import EXAMPLES, MANY_PROBLEMS_FILES, full_ruleset, minimal_ruleset, write_ruleset

from rulesets.bundle import sign_bundle
from rulesets.cli import build_parser, main
from rulesets.keys import Ed25519PrivateKey

REPO = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


# -- check --------------------------------------------------------------------------------------------


def test_check_valid(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "check", EXAMPLES)
    assert (rc, err) == (0, "")
    assert out == f"{EXAMPLES}: 2 categories, 23 keywords, 0 errors, 0 warnings\n"


def test_check_invalid_lists_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml, files = MANY_PROBLEMS_FILES
    root = write_ruleset(tmp_path / "rs", toml, files)
    rc, out, _ = run(capsys, "check", root)
    lines = out.splitlines()
    assert rc == 1
    assert lines[0] == "ruleset.toml:1: error: 'name' must be a non-empty string"
    assert "words.txt:6: warning: duplicate keyword 'ok keyword' (first on line 2)" in lines
    assert "combos.txt:3: error: combination 'foo & & bar' has an empty part" in lines
    assert lines[-1] == f"{root}: 4 categories, 2 keywords, 23 errors, 1 warnings"
    assert len(lines) == 24 + 1


def test_check_warnings_only_exit_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = minimal_ruleset(tmp_path / "rs")
    (root / "gambling.txt").write_text("赌博\n赌博\n")
    rc, out, _ = run(capsys, "check", root)
    assert rc == 0
    assert out.splitlines() == [
        "gambling.txt:2: warning: duplicate keyword '赌博' (first on line 1)",
        f"{root}: 1 categories, 1 keywords, 0 errors, 1 warnings",
    ]


def test_check_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "check", tmp_path / "nope")
    assert rc == 1
    assert out.splitlines()[0] == f"{tmp_path / 'nope'}: error: not a directory"


# -- keygen, sign, verify -----------------------------------------------------------------------------


def test_keygen_sign_verify_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "keygen", "--out", tmp_path / "signer")
    assert (rc, err) == (0, "")
    key_file = tmp_path / "signer.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "PRIVATE" not in out and key_file.read_text() not in out
    key_id = out.split("key id ")[1].strip()
    assert len(key_id) == 16

    rc, out, err = run(capsys, "keygen", "--out", tmp_path / "signer")
    assert rc == 1 and "already exists" in err

    bundle = tmp_path / "example.bundle"
    rc, out, err = run(capsys, "sign", EXAMPLES, "--key", key_file, "--out", bundle, "--expires-days", "7")
    assert (rc, err) == (0, "")
    assert out.startswith(f"signed example version 1 (6 files) with key {key_id}, expires ")

    rc, out, err = run(capsys, "verify", bundle, "--pubkey", tmp_path / "signer.pub")
    assert (rc, err) == (0, "")
    fields = dict(line.split(": ", 1) for line in out.splitlines())
    got = (fields["name"], fields["version"], fields["key id"], fields["files"])
    assert got == ("example", "1", key_id, "6")
    assert fields["expires"].endswith("Z")

    rc, out, err = run(capsys, "verify", bundle, "--pubkey", tmp_path / "signer.pub", "--newer-than", "1")
    assert (rc, out) == (1, "")
    assert err == "verify: version 1 is not newer than 1: refusing a rollback or replay\n"

    run(capsys, "keygen", "--out", tmp_path / "other")
    rc, _, err = run(capsys, "verify", bundle, "--pubkey", tmp_path / "other.pub")
    assert (rc, err) == (1, f"verify: signed by unknown key {key_id}\n")
    both = ["--pubkey", tmp_path / "other.pub", "--pubkey", tmp_path / "signer.pub"]
    rc, _, err = run(capsys, "verify", bundle, *both)
    assert rc == 0

    data = bytearray(bundle.read_bytes())
    data[len(data) // 3] ^= 0xFF
    bundle.write_bytes(bytes(data))
    rc, _, err = run(capsys, "verify", bundle, "--pubkey", tmp_path / "signer.pub")
    assert rc == 1 and err.startswith("verify: ") and err.count("\n") == 1


def test_sign_refuses_an_invalid_ruleset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "keygen", "--out", tmp_path / "k")
    root = minimal_ruleset(tmp_path / "rs")
    (root / "gambling.txt").write_text("赌博\nx\n")
    rc, out, err = run(capsys, "sign", root, "--key", tmp_path / "k.key", "--out", tmp_path / "b")
    assert (rc, out) == (1, "")
    assert err.splitlines() == [
        "gambling.txt:2: error: keyword 'x' is shorter than 2 bytes: it would match almost everything",
        f"sign: {root}: invalid ruleset, not signed",
    ]
    assert not (tmp_path / "b").exists()


def test_sign_and_verify_with_bad_key_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "junk").write_text("junk\n")
    rc, _, err = run(capsys, "sign", EXAMPLES, "--key", tmp_path / "junk", "--out", tmp_path / "b")
    assert rc == 1 and "not an unencrypted PEM private key" in err
    rc, _, err = run(capsys, "verify", tmp_path / "missing", "--pubkey", tmp_path / "junk")
    assert (rc, err) == (1, f"verify: {tmp_path / 'junk'}: expected 'ed25519 <base64>'\n")


def test_verify_missing_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "keygen", "--out", tmp_path / "k")
    rc, _, err = run(capsys, "verify", tmp_path / "missing", "--pubkey", tmp_path / "k.pub")
    assert rc == 1 and err.startswith("verify: ") and "cannot read" in err


# -- diff ---------------------------------------------------------------------------------------------


def test_diff_directories_and_bundles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = full_ruleset(tmp_path / "old")
    new = full_ruleset(tmp_path / "new", version=4)
    (new / "drugs.txt").write_text("冰毒\nbuy meth\n海洛因\n")
    rc, out, _ = run(capsys, "diff", old, old)
    assert (rc, out) == (0, "")
    rc, out, _ = run(capsys, "diff", old, new)
    assert rc == 1
    assert out.splitlines() == ["~ version 3 -> 4", "+ drugs keyword 海洛因"]

    # a bundle (even one that has expired: diff does not verify) against a directory
    bundle = tmp_path / "old.bundle"
    sign_bundle(old, Ed25519PrivateKey.generate(), bundle, expires=2, now=1)
    rc, out, _ = run(capsys, "diff", bundle, new)
    assert rc == 1 and out.splitlines()[0] == "~ version 3 -> 4"
    rc, out, _ = run(capsys, "diff", bundle, old)
    assert (rc, out) == (0, "")


def test_diff_trouble_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "not-a-bundle").write_bytes(b"hello")
    rc, _, err = run(capsys, "diff", EXAMPLES, tmp_path / "not-a-bundle")
    assert rc == 2 and "not a valid tar bundle" in err
    bad = write_ruleset(tmp_path / "bad", 'name = "x"\n')
    rc, _, err = run(capsys, "diff", bad, EXAMPLES)
    assert rc == 2 and "invalid ruleset" in err


# -- usage --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["check"], ["sign", "d", "--out", "b"], ["verify", "b"],
     ["sign", "d", "--key", "k", "--out", "b", "--expires-days", "0"], ["test", "d"]],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_test_subcommand_is_registered() -> None:
    args = build_parser().parse_args(["test", "rs", "a.pcap", "b.pcap"])
    assert (args.dir, args.pcaps, args.func.__name__) == ("rs", ["a.pcap", "b.pcap"], "cmd_test")


def test_installed_command(tmp_path: Path) -> None:
    command = shutil.which("edgeaudit-rules", path=str(Path(sys.executable).parent))
    argv = [command] if command else [sys.executable, "-m", "rulesets.cli"]
    proc = subprocess.run(
        [*argv, "check", str(EXAMPLES)], capture_output=True, text=True, cwd=REPO, timeout=60,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.endswith("2 categories, 23 keywords, 0 errors, 0 warnings\n")
